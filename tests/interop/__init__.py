"""Interoperability tests against the published asherah package (run: nox -s interop)."""
