#!/usr/bin/env bash
# Set up CloudMover in ./.venv on a fresh Debian machine with Python 3.11:
# installs what the OS lacks (apt-get, as root), then the project and its
# test and benchmark tools from PyPI. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

# The codec's Cython kernels compile at install: they need a C compiler and Python's headers.
has_headers() {
    "$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || ! command -v cc >/dev/null || ! has_headers; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq python3-venv python3-dev build-essential
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
