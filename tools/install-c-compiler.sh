#!/usr/bin/env bash
# Install a C compiler (Debian's gcc) when there is none: asherah-core's build compiles its
# `_rows` module with mypyc (asherah_core/setup.py), and `nox -s tests` checks that it did.
# Needs root (apt-get); does nothing when `cc` or `gcc` is on PATH. Without a compiler the
# build stays pure Python; ASHERAH_CORE_PURE_PYTHON=1 makes nox build and test it that way.
set -euo pipefail
if command -v cc >/dev/null || command -v gcc >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-c-compiler: no C compiler; run as root, or install one yourself:" >&2
    echo "  sudo apt-get install -y gcc libc6-dev" >&2
    echo "or build and test pure Python: ASHERAH_CORE_PURE_PYTHON=1 nox" >&2
    exit 1
fi
echo "install-c-compiler: installing gcc (apt-get)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev
