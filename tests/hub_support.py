"""A real JupyterHub for the hub tests: configurable-http-proxy, local-process spawner, OpenBao.

``HubWorld`` starts OpenBao (dev server), configures it with ``setup_vault`` and the database
engine on a throw-away PostgreSQL database, writes a ``jupyterhub_config.py`` that calls
``configure_hub``, and starts ``jupyterhub`` in its own process group. ``stop()`` stops the hub
(which stops the single-user servers it spawned), then kills whatever is left of the process
groups it started, so no process survives the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import hvac
import psycopg
import requests
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jupyter_prod_discovery.credentials.seeding import configure_database_engine
from jupyter_prod_discovery.demo.openbao import DevServer
from jupyter_prod_discovery.hub.issuer import JWTIssuer
from jupyter_prod_discovery.hub.vault_setup import HUB_POLICY, setup_vault

ROOT = Path(__file__).resolve().parent.parent
CHP = ROOT / ".ci" / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"
VENV_BIN = Path(sys.executable).parent
PASSWORD = "hub-test-password"  # DummyAuthenticator's shared password (test only)
USERS = {"alice": ["analysts"], "bob": ["fraud"], "carol": [], "ada": []}
ADMINS = ["ada"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HUB_CONFIG = """\
import json
from jupyter_prod_discovery.hub.config import configure_hub

s = json.load(open({settings!r}))
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = s["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s["hub_port"]
c.JupyterHub.db_url = "sqlite:///" + s["dir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = s["dir"] + "/cookie_secret"
c.JupyterHub.cleanup_servers = True
c.ConfigurableHTTPProxy.command = [s["chp"]]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % s["proxy_api_port"]
c.ConfigurableHTTPProxy.pid_file = s["dir"] + "/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = s["password"]
c.Authenticator.allowed_users = set(s["users"])
c.Authenticator.admin_users = set(s["admins"])
c.JupyterHub.load_groups = {{g: {{"users": us}} for g, us in s["groups"].items()}}
c.JupyterHub.services = [{{"name": "tester", "api_token": s["tester_token"]}}]
c.JupyterHub.load_roles = [
    {{
        "name": "tester",
        "scopes": ["admin:users", "admin:servers", "tokens", "read:users"],
        "services": ["tester"],
    }}
]
if s.get("os_users"):  # each user's server runs as that user's OS account
    c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
    c.Spawner.cmd = [s["singleuser"]]
    c.Spawner.args = []
else:
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = s["dir"] + "/home/{{username}}"
    c.Spawner.cmd = [s["singleuser"]]
    c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.interrupt_timeout = 20
c.Spawner.environment = s["env"]
if s.get("trusted"):
    from jupyter_prod_discovery.hub.config import configure_trusted_service

    configure_trusted_service(c, **s["trusted"])
else:
    configure_hub(
        c,
        vault_addr=s["vault_addr"],
        service_port=s["service_port"],
        key_file=s["dir"] + "/jwt-key.pem",
        hub_vault_token=s["hub_vault_token"],
    )
"""


class HubWorld:
    """Everything the hub tests need, started once per module (see the module docstring)."""

    def __init__(
        self,
        base: Path,
        postgres_dsn: str,
        *,
        trusted: bool = False,
        users: dict[str, list[str]] | None = None,
        os_users: bool = False,
    ) -> None:
        """``trusted``: the topology of the trusted service (servers are its clients, hold no
        Vault token, DSN or audit key) instead of the JWT login of each server to Vault.
        ``os_users``: every user's server runs as a real OS user of that name (created), from
        the venv other users can run, and the service as the OS user ``pdsvc``; ``base`` is then
        replaced by a world-readable directory (theirs must be readable by those users)."""
        self.trusted = trusted
        self.users = dict(users or USERS)
        self.os_users = os_users
        if os_users:
            from boundary_support import ensure_user, users_python

            self.users_bin = Path(users_python()).parent
            for name in [*self.users, "pdsvc"]:
                ensure_user(name)
            # What the users and the service must read (their configs, the service's state
            # dir) lives apart from the hub's own state (its database, cookie secret, the test's
            # settings with every token), which stays root's alone (mkdtemp: 0700).
            shared = Path(tempfile.mkdtemp(prefix="pd-hub-shared-", dir="/tmp"))
            shared.chmod(0o755)
            base = Path(tempfile.mkdtemp(prefix="pd-hub-", dir="/tmp"))
        self.dir = base
        self.shared = shared if os_users else base
        self.pg_admin_dsn = postgres_dsn
        self.dbname = "pd_hub_" + uuid.uuid4().hex[:10]
        self.bao = DevServer()
        self.hub: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tester_token = uuid.uuid4().hex
        self.audit_key = "hub-test-audit-key-" + uuid.uuid4().hex
        self.log_path = base / "hub.log"
        self.issuer: JWTIssuer | None = None
        self.vault_setup: dict[str, Any] = {}
        self.service_port = 0
        self.dsn_password = ""  # the password in the trusted service's DSN (os_users mode)

    # -- setup ----------------------------------------------------------------------------------

    @property
    def db_dsn(self) -> str:
        params = conninfo_to_dict(self.pg_admin_dsn)
        params["dbname"] = self.dbname
        return make_conninfo(**params)  # type: ignore[arg-type]

    def _database(self) -> None:
        with psycopg.connect(self.pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        with psycopg.connect(self.db_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE sales (region text, amount int)")
            conn.execute("INSERT INTO sales VALUES ('north', 10), ('south', 20)")
            conn.execute("CREATE TABLE customers (name text, ssn text)")
            conn.execute("INSERT INTO customers VALUES ('Jane Roe', '219-09-9999')")

    def _vault(self) -> None:
        root = hvac.Client(url=self.bao.address, token=self.bao.root_token)
        configure_database_engine(
            root, self.db_dsn, role="analysts-ro", tables=["sales"], username_prefix="pdhub"
        )
        configure_database_engine(
            root, self.db_dsn, role="fraud-pii", tables=["customers"], username_prefix="pdhub"
        )
        self.issuer = JWTIssuer(key_file=str(self.dir / "jwt-key.pem"))
        self.vault_setup = setup_vault(
            root,
            public_key_pem=self.issuer.public_pem(),
            groups={
                "analysts": ["database/creds/analysts-ro"],
                "fraud": ["database/creds/fraud-pii"],
            },
        )
        hub_token = root.auth.token.create(policies=[HUB_POLICY], ttl="1h")
        self.hub_vault_token = hub_token["auth"]["client_token"]

    def _server_config(self) -> Path:
        profiles = [
            {
                "name": "warehouse-ro",
                "type": "database",
                "role": "analysts-ro",
                "groups": ["analysts"],
                "env": {"PGUSER": "{username}", "PGPASSWORD": "{password}"},
            },
            {
                "name": "fraud-pii",
                "type": "database",
                "role": "fraud-pii",
                "groups": ["fraud"],
                "env": {"PGUSER": "{username}", "PGPASSWORD": "{password}"},
            },
        ]
        self.profiles = profiles
        config: dict[str, Any] = {
            "ServerApp": {"jpserver_extensions": {"jupyter_prod_discovery": True}},
            "CredentialBroker": {"profiles": profiles, "deny_without_profile": True},
            # The warehouse's address, set for every server: not secret, passed on to kernels.
            "KernelEnvironment": {"pass_through": ["PGHOST", "PGPORT", "PGDATABASE"]},
        }
        if self.trusted:  # the profiles are the service's business, not the servers'
            config = {
                "ServerApp": {"jpserver_extensions": {"jupyter_prod_discovery": True}},
                "AuditTrail": {"fail_closed": True},
                "KernelEnvironment": {"pass_through": ["PGHOST", "PGPORT", "PGDATABASE"]},
            }
        cfg_dir = self.shared / "jupyter-config"
        cfg_dir.mkdir(exist_ok=True)
        (cfg_dir / "jupyter_server_config.json").write_text(json.dumps(config))
        return cfg_dir

    def start(self) -> None:
        self._database()
        self.bao.start()
        self._vault()
        params = conninfo_to_dict(self.db_dsn)
        self.service_port = free_port()
        settings = {
            "dir": str(self.dir),
            "port": self.port,
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "service_port": self.service_port,
            "chp": str(CHP),
            "password": PASSWORD,
            "users": list(self.users),
            "admins": ADMINS,
            "groups": {
                g: [u for u, gs in self.users.items() if g in gs] for g in ("analysts", "fraud")
            },
            "tester_token": self.tester_token,
            "singleuser": str(
                (self.users_bin if self.os_users else VENV_BIN) / "jupyterhub-singleuser"
            ),
            "os_users": self.os_users,
            "vault_addr": self.bao.address,
            "hub_vault_token": self.hub_vault_token,
            "env": {
                # Users cannot write there: a read-only path, not their config dir.
                ("JUPYTER_CONFIG_PATH" if self.os_users else "JUPYTER_CONFIG_DIR"): str(
                    self._server_config()
                ),
                "PROD_DISCOVERY_AUDIT_KEY": self.audit_key,
                "PGHOST": str(params.get("host", "127.0.0.1")),
                "PGPORT": str(params.get("port", 5432)),
                "PGDATABASE": self.dbname,
                "PATH": f"{self.users_bin if self.os_users else VENV_BIN}:"
                + ("/usr/local/bin:/usr/bin:/bin" if self.os_users else os.environ.get("PATH", "")),
            },
        }
        if self.trusted:
            settings["env"].pop("PROD_DISCOVERY_AUDIT_KEY")
            settings["trusted"] = self._trusted_service()
        settings_path = self.dir / "settings.json"
        settings_path.write_text(json.dumps(settings))
        config_path = self.dir / "jupyterhub_config.py"
        config_path.write_text(HUB_CONFIG.format(settings=str(settings_path)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "JUPYTERHUB_"))}
        log = self.log_path.open("wb")
        self.hub = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(config_path)],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.hub.poll() is not None:
                raise RuntimeError(f"jupyterhub exited: {self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"jupyterhub did not answer within 60 s: {self.log_tail()}")

    def _trusted_service(self) -> dict[str, Any]:
        """The service's settings: a least-privilege Vault token, its store and profiles."""
        from jupyter_prod_discovery.credentials.profiles import parse_profiles
        from jupyter_prod_discovery.service.vault_policy import install_policies

        root = hvac.Client(url=self.bao.address, token=self.bao.root_token)
        policies = install_policies(root, parse_profiles(self.profiles))
        token = root.auth.token.create(policies=policies, ttl="2h")
        config = self.shared / "service_config.json"
        config.write_text(
            json.dumps(
                {"CredentialBroker": {"profiles": self.profiles, "deny_without_profile": True}}
            )
        )
        self.trusted_port = free_port()
        state = self.shared / "service-state"
        extra: dict[str, Any] = {}
        dsn = self.db_dsn
        if self.os_users:  # the service under an OS user of its own, which owns its state
            import pwd

            svc = pwd.getpwnam("pdsvc")
            state.mkdir(mode=0o700)
            os.chown(state, svc.pw_uid, svc.pw_gid)
            extra = {"user": "pdsvc", "python": str(self.users_bin / "python")}
            # The DSN's secret is a needle of the attacker suite: without a password of its
            # own, a distinctive fake one (trust auth ignores it).
            password = conninfo_to_dict(dsn).get("password")
            if not password:
                password = f"svcdsn-{uuid.uuid4().hex}"
                dsn = make_conninfo(dsn, password=password)
            self.dsn_password = str(password)
        return {
            **extra,
            "port": self.trusted_port,
            "dsn": dsn,
            "vault_addr": self.bao.address,
            "vault_token": token["auth"]["client_token"],
            "config_file": str(config),
            "state_dir": str(state),
        }

    @property
    def service_url(self) -> str:
        """The trusted service through the hub's proxy."""
        return f"{self.url}/services/prod-discovery"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- hub API --------------------------------------------------------------------------------

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {token or self.tester_token}"}
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kw
        )

    def user_token(self, user: str) -> str:
        resp = self.api("POST", f"/users/{user}/tokens", json={"note": "hub test"})
        resp.raise_for_status()
        return str(resp.json()["token"])

    def start_server(self, user: str, timeout: float = 90) -> None:
        resp = self.api("POST", f"/users/{user}/server")
        if resp.status_code not in (201, 202, 400):
            raise RuntimeError(
                f"starting {user}'s server: {resp.status_code} {resp.text}\n{self.log_tail()}"
            )
        self.wait_server(user, ready=True, timeout=timeout)

    def stop_server(self, user: str, timeout: float = 60) -> None:
        resp = self.api("DELETE", f"/users/{user}/server")
        if resp.status_code not in (202, 204, 400):
            raise RuntimeError(f"stopping {user}'s server: {resp.status_code} {resp.text}")
        self.wait_server(user, ready=False, timeout=timeout)

    def wait_server(self, user: str, ready: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("")
            if ready and server and server.get("ready"):
                return
            if not ready and not server:
                return
            time.sleep(0.3)
        state = "ready" if ready else "stopped"
        raise RuntimeError(f"{user}'s server not {state} in {timeout} s: {self.log_tail()}")

    def server(self, user: str, method: str, path: str, token: str, **kw: Any) -> requests.Response:
        """A request to ``user``'s single-user server through the proxy."""
        headers = {"Authorization": f"token {token}"}
        return requests.request(
            method, f"{self.url}/user/{user}{path}", headers=headers, timeout=60, **kw
        )

    def audit_records(self, user: str) -> list[dict[str, Any]]:
        path = self.dir / "home" / user / ".local/share/jupyter/prod_discovery/audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # -- teardown -------------------------------------------------------------------------------

    def stop(self) -> None:
        pids = _descendants(self.hub.pid) if self.hub is not None else []
        if self.hub is not None and self.hub.poll() is None:
            self.hub.send_signal(signal.SIGTERM)
            try:
                self.hub.wait(timeout=45)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.hub.pid, signal.SIGKILL)
                self.hub.wait(timeout=10)
        # Single-user servers and the proxy run in sessions of their own: make sure they are gone.
        # A hub that died early (a managed service failing at start stops it) no longer has
        # descendants to find: its proxy is found through the pid file it left.
        with contextlib.suppress(OSError, ValueError):
            pids.append(int((self.dir / "proxy.pid").read_text().strip()))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.bao.stop()
        if self.os_users:
            shutil.rmtree(self.dir, ignore_errors=True)
            shutil.rmtree(self.shared, ignore_errors=True)
        with psycopg.connect(self.pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            for (role,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pdhub_%'"
            ).fetchall():
                with contextlib.suppress(psycopg.Error):
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc; no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out
