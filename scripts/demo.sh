#!/usr/bin/env bash
# Install whatever is missing, then start the demo: OpenBao, a sample production database,
# and JupyterLab with every guard on. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what the demo needs, quietly (each step's output in .install-logs/); a second start
# installs nothing.
bash scripts/install.sh --demo
exec .venv/bin/jupyter prod-discovery demo "$@"
