#!/usr/bin/env bash
# Install everything the project needs on a fresh machine, idempotently:
# Debian packages (Chromium for the browser tests), a virtualenv in .venv with the package
# (editable, which builds the labextension with Node), the test/dev extras, and the isolated
# Airflow virtualenv the export tests load DAGs in.
#
# --demo: only what the demo needs (scripts/demo.sh): no configurable-http-proxy and no Airflow
# venv, which only the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
FOR_DEMO=0
[ "${1:-}" = "--demo" ] && FOR_DEMO=1

log() { printf '==> %s\n' "$*"; }

# Each step's output goes to a log of its own (pip, npm and Airflow's build print hundreds of
# lines a newcomer need not read); a failing step prints its log's tail and where the log is.
LOGS="$PWD/.install-logs"
mkdir -p "$LOGS"
quiet() {
  local name="$1"
  shift
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    echo "error: $name failed; the last lines of $LOGS/$name.log:" >&2
    tail -n 30 "$LOGS/$name.log" >&2
    exit 1
  fi
}

# The RTC/execution extensions of the test extras, off at sys-prefix (see the pip step).
extensions_off() {
  local ext labext=(@jupyter-ai-contrib/server-documents @datalayer/jupyter-server-nbmodel
    @jupyter/docprovider-extension @jupyter/collaboration-extension)
  for ext in jupyter_server_documents jupyter_server_ydoc jupyter_server_nbmodel jupyter_mcp_server; do
    jupyter server extension disable --sys-prefix "$ext"
  done
  jupyter labextension disable --level=sys_prefix "${labext[@]}"
  # Not locked: a lab that wants them (ui-tests/lab_support.py) switches them on in its own config.
  jupyter labextension unlock --level=sys_prefix "${labext[@]}"
}

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
# Skipped while its stamp (pyproject, the labextension's package.json and yarn.lock, Python's
# version) matches and the build is there: a second run (the demo's every start) reinstalls
# nothing.
venv_stamp=".venv/.prod-discovery-stamp"
venv_want="$(cat pyproject.toml labextension/package.json labextension/yarn.lock | sha256sum | cut -d' ' -f1) $(python -c 'import sys; print(sys.version)')"
if [ "$(cat "$venv_stamp" 2>/dev/null)" != "$venv_want" ] || ! python -c 'import jupyter_prod_discovery' 2>/dev/null \
  || [ ! -f jupyter_prod_discovery/labextension/package.json ]; then
  log "pip install (the package, its test and dev extras, the labextension build; log: $LOGS/pip.log)"
  quiet pip python -m pip install -U pip wheel
  quiet pip-project python -m pip install -e ".[test,dev,export,ner,demo]"
  # The test extras bring RTC and execution extensions (jupyter-server-documents,
  # jupyter-collaboration, jupyter-server-nbmodel, jupyter-mcp-server) that enable themselves on
  # install; jupyter-server-documents' kernel websocket speaks only the v1 protocol. Servers started
  # from this venv (the demo, JupyterHub's, the UI tests') run plain JupyterLab as before; the tests
  # of those paths enable them explicitly (tests/test_paths_*.py, ui-tests/test_lab_paths.py).
  log "plain JupyterLab by default (RTC/execution extensions off at sys-prefix; log: $LOGS/extensions-off.log)"
  quiet extensions-off extensions_off
  printf '%s' "$venv_want" >"$venv_stamp"
fi

# configurable-http-proxy for the JupyterHub tests, from the npm registry into .ci/chp.
if [ "$FOR_DEMO" = 0 ] && [ -f .ci/chp/package.json ] && [ ! -x .ci/chp/node_modules/.bin/configurable-http-proxy ]; then
  log "npm install configurable-http-proxy (.ci/chp)"
  quiet npm-chp bash -c 'cd .ci/chp && npm ci --no-audit --no-fund'
fi

# The isolated Airflow venv of the export tests, in this checkout (or PROD_DISCOVERY_AIRFLOW_VENV);
# scripts/test.sh hands the tests its interpreter as PROD_DISCOVERY_AIRFLOW_PYTHON.
AIRFLOW_VENV="${PROD_DISCOVERY_AIRFLOW_VENV:-$PWD/.venv-airflow}"
if [ "$FOR_DEMO" = 0 ] && [ -f .ci/airflow-venv.sh ] && ! "$AIRFLOW_VENV/bin/python" -c "import airflow, papermill, hvac" 2>/dev/null; then
  log "Airflow virtualenv $AIRFLOW_VENV (for the export tests; about a minute; log: $LOGS/airflow.log)"
  quiet airflow bash .ci/airflow-venv.sh "$AIRFLOW_VENV"
fi

# The venv that other OS users run (tests/test_boundary_*.py start servers, kernels and terminals
# as real, different users). The image's Python lives in /root (mode 700), which they cannot
# enter, so this one is built from Debian's /usr/bin/python3 in a world-readable directory, with
# the project installed editable (the users need /work/main readable, not writable: the code they
# run must not be theirs to change). Skipped while its stamp matches pyproject.toml, the spec and
# the checkout it points at.
USERS_VENV="${PROD_DISCOVERY_USERS_VENV:-$PWD/.venv-users}"
users_spec=(-e "$PWD[demo,export]" "jupyterhub>=5" "jupyter_server_terminals" "ipykernel")
users_stamp="$USERS_VENV/.prod-discovery-stamp"
users_want="$(sha256sum pyproject.toml | cut -d' ' -f1) $PWD ${users_spec[*]}"
if [ ! -x "$USERS_VENV/bin/jupyter-server" ] || [ "$(cat "$users_stamp" 2>/dev/null)" != "$users_want" ]; then
  log "users venv $USERS_VENV (Debian python3, for the tests that run as other OS users)"
  [ -x /usr/bin/python3 ] || apt_install python3
  # Debian moves ensurepip into python3-venv; without it `python3 -m venv` fails half-way.
  /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv
  (
    umask 022  # whatever the caller's umask, other users must read and run it
    # --clear: a venv whose interpreter no longer runs (Debian's python3 moved on) starts afresh.
    "$USERS_VENV/bin/python" -c '' >/dev/null 2>&1 || /usr/bin/python3 -m venv --clear "$USERS_VENV"
    printf '*\n' >"$USERS_VENV/.gitignore"
    quiet users-venv "$USERS_VENV/bin/python" -m pip install -U pip wheel
    # The labextension was built into the checkout by the .venv install above and is shared by an
    # editable install; building it again here would only cost a minute of Node.
    SKIP_JUPYTER_BUILDER=1 quiet users-venv-project "$USERS_VENV/bin/python" -m pip install "${users_spec[@]}"
    chmod -R a+rX "$USERS_VENV"
  )
  printf '%s' "$users_want" >"$users_stamp"
fi
# Every directory above the venv and the checkout must be enterable by other users: the
# boundary tests run the checkout's code as them. A checkout in a private directory (mktemp -d
# is 0700) gets the search bit only (o+x: enter, not list) on the directories in the way, when
# we are root (CI, sessions); otherwise this only warns.
for d in "$USERS_VENV" "$PWD"; do
  while [ "$d" != "/" ]; do
    if (( (0$(stat -c %a "$d") & 1) == 0 )); then  # no search bit for others
      if [ "$(id -u)" -eq 0 ] && [ "$(stat -c %u "$d")" -eq 0 ]; then
        chmod o+x "$d"
        echo "note: made $d enterable (o+x) for the tests that run as other OS users" >&2
      else
        echo "warning: $d is not enterable by other users: the boundary tests cannot run from here" >&2
        break
      fi
    fi
    d="$(dirname "$d")"
  done
done
log "installed"
