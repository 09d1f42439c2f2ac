#!/usr/bin/env bash
# Provide a free-threaded CPython (3.14 built with --disable-gil) for `nox -s tests_free_threaded`
# and the benchmark's free-threaded rows. Prints the interpreter's path as its last line.
#
#   bash tools/install-free-threaded-python.sh PREFIX
#
# - With ASHERAH_FREE_THREADED_PYTHON set, checks that it names a free-threaded interpreter
#   (one with Py_GIL_DISABLED; `pyenv install 3.14t` or `uv python install 3.14t` give one) and
#   uses it: nothing is built.
# - Otherwise uses PREFIX/bin/python3.14t if it is there and free-threaded, or builds it there
#   from CPython's source: about 5 minutes on 2 cores. The source is Debian's copy of the release
#   tarball (deb.debian.org is reachable where python.org is not), checked against the SHA-256
#   below, which was taken when the tarball was first fetched. Build dependencies come from
#   Debian's packages (apt-get, as root) when a header is missing.
set -euo pipefail

VERSION=3.14.7
TARBALL="python3.14_${VERSION}.orig.tar.xz"
URL="http://deb.debian.org/debian/pool/main/p/python3.14/${TARBALL}"
SHA256=3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81
BUILD_DEPS=(gcc make libc6-dev libssl-dev zlib1g-dev libffi-dev libsqlite3-dev libbz2-dev
    liblzma-dev xz-utils curl ca-certificates)

say() { echo "install-free-threaded-python: $*" >&2; }

free_threaded() {  # prints the interpreter's own path when $1 is a working free-threaded Python
    "$1" -I -c 'import sys, sysconfig
if not sysconfig.get_config_var("Py_GIL_DISABLED"):
    raise SystemExit(1)
print(sys.executable)' 2>/dev/null
}

if [ -n "${ASHERAH_FREE_THREADED_PYTHON:-}" ]; then
    if found=$(free_threaded "$ASHERAH_FREE_THREADED_PYTHON"); then
        echo "$found"
        exit 0
    fi
    say "ASHERAH_FREE_THREADED_PYTHON=$ASHERAH_FREE_THREADED_PYTHON is not a free-threaded Python"
    say "(one built with --disable-gil, such as python3.14t); unset it to build one here"
    exit 1
fi

if [ $# -ne 1 ]; then
    say "usage: $0 PREFIX"
    exit 2
fi
prefix=$1
if found=$(free_threaded "$prefix/bin/python3.14t"); then
    echo "$found"
    exit 0
fi

missing=()
for package in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        say "missing build dependencies: ${missing[*]}"
        say "install them (sudo apt-get install -y ${missing[*]}), or set"
        say "ASHERAH_FREE_THREADED_PYTHON to a python3.14t you have (pyenv install 3.14t)"
        exit 1
    fi
    say "installing build dependencies (apt-get): ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "fetching CPython $VERSION's source from deb.debian.org"
curl -fsS --retry 3 -o "$work/$TARBALL" "$URL"
echo "$SHA256  $work/$TARBALL" | sha256sum -c --quiet - \
    || { say "$TARBALL does not have the expected SHA-256; not building it"; exit 1; }
tar -xf "$work/$TARBALL" -C "$work"
source_dir="$work/Python-$VERSION"

# Built into a folder beside PREFIX and moved into place whole, so that an interrupted build
# never leaves a PREFIX that looks finished.
staging="$prefix.partial.$$"
rm -rf "$staging"
mkdir -p "$(dirname "$prefix")"
say "building CPython $VERSION with --disable-gil into $prefix (about 5 minutes; log: $work/build.log)"
if ! (
    cd "$source_dir" \
        && ./configure --disable-gil --prefix="$prefix" --with-ensurepip=install \
        && make -j"$(nproc)" \
        && make install DESTDIR="$staging"
) >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    rm -rf "$staging"
    say "the build failed (the end of its log is above)"
    exit 1
fi
rm -rf "$prefix"
mv "$staging$prefix" "$prefix"
rm -rf "$staging"
if ! found=$(free_threaded "$prefix/bin/python3.14t"); then
    say "the built $prefix/bin/python3.14t does not run as a free-threaded Python"
    exit 1
fi
say "built $found"
echo "$found"
