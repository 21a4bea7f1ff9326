#!/usr/bin/env bash
# Install whatever is missing, then start the demo: OpenBao, a sample production database,
# and JupyterLab with every guard on. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/jupyter prod-discovery demo "$@"
