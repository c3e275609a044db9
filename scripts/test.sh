#!/usr/bin/env bash
# Set up, check the architecture contract, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser tests drive Debian's chromium: no test tool downloads a browser of its own.
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium
fi
.venv/bin/lint-imports --no-cache
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit "$status"
