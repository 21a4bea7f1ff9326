#!/usr/bin/env bash
# Build the ISOLATED virtualenv in which the export tests import generated Airflow DAGs.
#
# Why a separate venv: Airflow pins much of the ecosystem (SQLAlchemy, Flask, pendulum, ...)
# and would fight JupyterLab's and jupyter_server's pins in the main venv. The DAGs we
# generate only need Airflow itself plus what their task imports at run time (papermill and
# hvac), so that is all this venv holds.
#
# Airflow's constraint files live outside the package registries reachable here, so this is a
# constraints-free install of pinned top-level versions; pip's resolver settles the rest.
#
# Usage: .ci/airflow-venv.sh [VENV_DIR]   (default: $PROD_DISCOVERY_AIRFLOW_VENV or
#        .venv-airflow in this checkout). Idempotent: an existing venv that imports airflow is kept.
# Measured build time on the 2-core project machine: see the export report / README.
set -euo pipefail

AIRFLOW_VERSION="${AIRFLOW_VERSION:-3.1.8}"
PAPERMILL_VERSION="${PAPERMILL_VERSION:-2.7.0}"
HVAC_VERSION="${HVAC_VERSION:-2.4.0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${PROD_DISCOVERY_AIRFLOW_VENV:-$HERE/.venv-airflow}}"
PYTHON="${PROD_DISCOVERY_AIRFLOW_BASE_PYTHON:-python3.11}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import airflow, papermill, hvac" 2>/dev/null; then
  echo "airflow venv already present at $VENV"
  exit 0
fi

start=$(date +%s)
"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q \
  "apache-airflow==${AIRFLOW_VERSION}" \
  "papermill==${PAPERMILL_VERSION}" \
  "hvac==${HVAC_VERSION}" \
  "ipykernel"
"$VENV/bin/python" -c "import airflow; print('airflow', airflow.__version__)"
echo "airflow venv built at $VENV in $(( $(date +%s) - start ))s"
