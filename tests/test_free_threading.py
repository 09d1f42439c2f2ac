"""On a free-threaded CPython (3.14t; ``nox -s tests_free_threaded``), nothing the distributions
import turns the GIL back on.

CPython turns the GIL on, for the whole process and with only a warning, when it loads an
extension module that does not declare itself safe without it. One such module among our
dependencies (or our own ``_rows`` and ``_b64``, compiled by mypyc) would make threads take
turns again, and the free-threaded rows of the benchmark would mean nothing. Skipped on a GIL
build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest

pytestmark = pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"),
    reason="needs a free-threaded CPython (nox -s tests_free_threaded)",
)

# Every module of the three distributions is imported (those whose optional dependency, such as
# Django, is not installed are listed and skipped), then a row goes both ways through a session,
# which loads what the hot path loads lazily (the base64 modules, msgspec, the AEAD). The child
# prints the modules it could not import, then whether the GIL is on.
_CHILD = """
import importlib, os, pkgutil, sys, warnings
warnings.simplefilter("error", RuntimeWarning)  # "The global interpreter lock (GIL) has been..."
skipped = []
for top in ("asherah_core", "asherah_aws_kms_v2", "asherah_vault_transit"):
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if info.name.endswith(".__main__"):  # runs a command line when imported
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as error:
            skipped.append(f"{info.name} ({error.name})")
from asherah_core import SessionFactory, StaticKms
from asherah_core.metastore.memory import InMemoryMetastore
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the static key's own warning
    kms = StaticKms(bytes(range(32)))
with SessionFactory("service", "product", kms=kms, metastore=InMemoryMetastore()) as factory:
    with factory.get_session("partition") as session:
        data = os.urandom(1024)
        assert session.decrypt_bytes(session.encrypt_bytes(data)) == data
        assert session.decrypt_text(session.encrypt_text("text")) == "text"
print("skipped:", ", ".join(skipped) or "none")
print("gil:", sys._is_gil_enabled())
"""


def test_importing_the_distributions_leaves_the_gil_off() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}  # PYTHON_GIL=1 forces it on
    child = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    lines = child.stdout.splitlines()
    assert lines[-1] == "gil: False", child.stdout + child.stderr
    skipped = lines[-2].removeprefix("skipped: ")
    # Only the Django integration may be missing here (TEST_DEPS does not install Django).
    for entry in skipped.split(", ") if skipped != "none" else []:
        assert entry.endswith("(django)"), f"a module could not be imported: {entry}"
