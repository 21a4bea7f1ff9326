#!/usr/bin/env bash
# Install whatever is missing, then run the whole test suite (real OpenBao, PostgreSQL, Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The tests start `jupyter`, `bao` and friends as subprocesses: the venv's bin goes first on PATH.
. .venv/bin/activate
exec python -m pytest "$@"
