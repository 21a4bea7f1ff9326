#!/usr/bin/env bash
# Install everything the project needs on a fresh machine, idempotently:
# Debian packages (Chromium for the browser tests), a virtualenv in .venv with the package
# (editable, which builds the labextension with Node), the test/dev extras, and the isolated
# Airflow virtualenv the export tests load DAGs in.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

[ -x /usr/bin/chromium ] || apt_install chromium
command -v git >/dev/null 2>&1 || apt_install git
# Node builds the labextension from source; a machine that already has one keeps it.
command -v node >/dev/null 2>&1 || apt_install nodejs npm

# PostgreSQL is a machine service here; start it if it is installed but stopped.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
log "pip install"
python -m pip install -q -U pip wheel
python -m pip install -q -e ".[test,dev,export,ner]"

# configurable-http-proxy for the JupyterHub tests, from the npm registry into .ci/chp.
if [ -f .ci/chp/package.json ] && [ ! -x .ci/chp/node_modules/.bin/configurable-http-proxy ]; then
  log "npm install configurable-http-proxy (.ci/chp)"
  (cd .ci/chp && npm ci --no-audit --no-fund --silent)
fi

if [ -f .ci/airflow-venv.sh ]; then
  log "Airflow virtualenv"
  bash .ci/airflow-venv.sh
fi
log "installed"
