#!/usr/bin/env bash
# Set up, then run CloudMover on this machine with a local S3 server and demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py
