#!/usr/bin/env bash
# Install whatever is missing, then run the whole test suite (real OpenBao, PostgreSQL, Chromium):
# exactly the tests CI runs, from any clone, with nothing skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The tests start `jupyter`, `bao` and friends as subprocesses: the venv's bin goes first on PATH.
. .venv/bin/activate

# The isolated Airflow venv install.sh built in this checkout (or where PROD_DISCOVERY_AIRFLOW_VENV
# points): the export tests load the generated DAGs with its interpreter.
export PROD_DISCOVERY_AIRFLOW_PYTHON="${PROD_DISCOVERY_AIRFLOW_PYTHON:-${PROD_DISCOVERY_AIRFLOW_VENV:-$PWD/.venv-airflow}/bin/python}"

# The packaging tests inspect a built wheel (production build of the labextension). CI builds
# one and passes it in; otherwise it is built here, and rebuilt only when a file of the checkout
# changed since (the stamp hashes every tracked and untracked, not ignored file).
if [ -z "${PROD_DISCOVERY_WHEEL:-}" ]; then
  stamp="dist/.prod-discovery-stamp"
  want="$(git ls-files -co --exclude-standard -z | xargs -0 sha256sum 2>/dev/null | sha256sum | cut -d' ' -f1)"
  wheel="$(ls "$PWD"/dist/jupyter_prod_discovery-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$wheel" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> wheel (production build of the labextension; log: .install-logs/wheel.log)"
    mkdir -p .install-logs
    rm -rf dist jupyter_prod_discovery/labextension
    if ! python -m pip wheel --no-deps -w dist . >.install-logs/wheel.log 2>&1; then
      tail -n 30 .install-logs/wheel.log >&2
      exit 1
    fi
    printf '%s' "$want" >"$stamp"
    wheel="$(ls "$PWD"/dist/jupyter_prod_discovery-*.whl | head -n1)"
  fi
  export PROD_DISCOVERY_WHEEL="$wheel"
fi

exec python -m pytest "$@"
