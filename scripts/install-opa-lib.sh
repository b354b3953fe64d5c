#!/usr/bin/env bash
# Installs OPA v1 itself (the Go library, loaded in process through ctypes) for the conformance
# tests and the engine benchmark: `make test` calls it with DEST=.venv/opa-golib.
#
# The only registry build is opa-golib-python-bindings, whose wheel is tagged for Python >= 3.14.
# Its Python part is stdlib-only ctypes and the rest is a Go c-shared library, so it works on 3.11:
# we download the wheel for the 3.14 tag, check it against the SHA-256 pinned here (a wheel we
# did not review never runs), and unpack it into DEST. policy/opa.py finds it there.
#
# Usage: scripts/install-opa-lib.sh DEST [PYTHON]
set -euo pipefail

DEST=${1:?usage: install-opa-lib.sh DEST [PYTHON]}
PY=${2:-python3}
VERSION=0.4.4
# OPA v1.20.2 inside; x86_64 glibc >= 2.34. Another wheel (another platform, another upload under
# the same version) has another hash and is refused.
WHEEL=opa_golib_python_bindings-${VERSION}-py3-none-manylinux_2_34_x86_64.whl
SHA256=d411c901e14b8c7c3023e23e4a944f4cf429c1d31baf80e959e57d11efbfd24a

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  # The conformance tests then skip and say why (policy.opa reports the library as missing).
  echo "install-opa-lib: no pinned OPA library for $(uname -s)-$(uname -m); the opa tests will skip" >&2
  exit 0
fi
if [ -f "$DEST/.sha256" ] && [ "$(cat "$DEST/.sha256")" = "$SHA256" ] && [ -f "$DEST/opa_bindings/libopabridge.so" ]; then
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps --python-version 3.14 --only-binary=:all: \
  --platform manylinux_2_34_x86_64 -d "$tmp" "opa-golib-python-bindings==${VERSION}"
if [ ! -f "$tmp/$WHEEL" ]; then
  echo "install-opa-lib: expected $WHEEL, got: $(ls "$tmp")" >&2
  exit 1
fi
got=$(sha256sum "$tmp/$WHEEL" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "install-opa-lib: SHA-256 mismatch for $WHEEL: got $got, pinned $SHA256" >&2
  exit 1
fi

rm -rf "$DEST.new"
mkdir -p "$DEST.new"
"$PY" -m zipfile -e "$tmp/$WHEEL" "$DEST.new"
echo "$SHA256" > "$DEST.new/.sha256"
# Replace in one step, so an interrupted install never leaves a half-unpacked library behind.
rm -rf "$DEST"
mv "$DEST.new" "$DEST"
echo "install-opa-lib: OPA library ${VERSION} in $DEST" >&2
