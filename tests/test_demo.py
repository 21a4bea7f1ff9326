"""The one-command demo: seeding on real OpenBao and PostgreSQL, and the demo process end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import hvac
import psutil
import psycopg
import pytest
import requests

from jupyter_prod_discovery.demo.binder import write_user_config
from jupyter_prod_discovery.demo.openbao import DevServer
from jupyter_prod_discovery.demo.process import DemoProcess
from jupyter_prod_discovery.demo.seed import (
    drop_leftover_roles,
    generate_customers,
    revoke_database_leases,
    seed_vault,
)

SSN = re.compile(r"^(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def roles_with_prefix(dsn: str, prefix: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select rolname from pg_roles where starts_with(rolname, %s)", (prefix,)
        ).fetchall()
    return [r[0] for r in rows]


# --- seeding ---------------------------------------------------------------------------------


def test_generate_customers_realistic_and_deterministic() -> None:
    rows = list(generate_customers(200))
    assert rows == list(generate_customers(200))
    assert len({r["email"] for r in rows}) == 200
    for r in rows:
        assert SSN.match(r["ssn"]), r["ssn"]
        assert r["ssn"] not in ("078-05-1120", "123-45-6789")
        assert re.match(r"^\(\d{3}\) \d{3}-\d{4}$", r["phone"])
        assert "@" in r["email"]


def test_seed_vault_without_postgres(openbao: DevServer) -> None:
    port = free_port()  # nothing listens there
    dsn = f"postgresql://postgres:pw-not-shown@127.0.0.1:{port}/postgres"
    result = seed_vault(openbao.client(), dsn=dsn)
    assert not result.has_database
    assert any("unreachable" in n for n in result.notes)
    secret = openbao.client().secrets.kv.v2.read_secret_version(
        path=result.kv_path, mount_point=result.kv_mount, raise_on_deleted_version=True
    )
    assert set(secret["data"]["data"]) == set(result.kv_keys)
    assert [p["type"] for p in result.profiles()] == ["token", "kv"]
    assert "pw-not-shown" not in repr(result)


def test_seed_vault_database_creds_revoked(openbao: DevServer, postgres_dsn: str) -> None:
    client = openbao.client()
    result = seed_vault(client, dsn=postgres_dsn)
    assert result.has_database and result.role_prefix and result.customers >= 200
    creds = client.read(f"{result.database_mount}/creds/{result.database_role}")
    user, password = creds["data"]["username"], creds["data"]["password"]
    assert user.startswith(result.role_prefix)
    assert creds["lease_duration"] <= 600
    # The analyst policy grants exactly what the profiles read.
    analyst = client.auth.token.create(policies=result.policies, ttl="5m")["auth"]["client_token"]
    scoped = hvac.Client(url=openbao.address, token=analyst)
    assert scoped.read(f"{result.database_mount}/creds/{result.database_role}")["data"]
    with pytest.raises(hvac.exceptions.Forbidden):
        scoped.sys.list_mounted_secrets_engines()
    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    host, port = params.get("host", "127.0.0.1"), params.get("port", 5432)
    session = psycopg.connect(
        f"postgresql://{user}:{password}@{host}:{port}/{result.database}", autocommit=True
    )
    try:
        row = session.execute("select count(*), min(ssn) from customers").fetchone()
        assert row is not None and row[0] >= 200
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute("delete from customers")
        revoke_database_leases(client, result.database_mount or "database")
        # Revocation terminated the open session and dropped the role.
        with pytest.raises(psycopg.OperationalError):
            session.execute("select 1")
    finally:
        session.close()
    assert roles_with_prefix(postgres_dsn, result.role_prefix) == []


def test_drop_leftover_roles_after_server_lost(postgres_dsn: str) -> None:
    server = DevServer().start()
    try:
        result = seed_vault(server.client(), dsn=postgres_dsn)
        assert result.role_prefix
        server.client().read("database/creds/analyst")
    finally:
        server.stop()  # leases outstanding: the role stays behind in PostgreSQL
    assert len(roles_with_prefix(postgres_dsn, result.role_prefix)) == 1
    assert len(drop_leftover_roles(postgres_dsn, result.role_prefix)) == 1
    assert roles_with_prefix(postgres_dsn, result.role_prefix) == []


def test_drop_leftover_roles_refuses_broad_prefix(postgres_dsn: str) -> None:
    for prefix in ("", "v-", "postgres", "v-p"):
        with pytest.raises(ValueError, match="broad prefix"):
            drop_leftover_roles(postgres_dsn, prefix)


# --- the demo process ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoProcess]:
    proc = DemoProcess(free_port())
    try:
        yield proc.start(timeout=30)  # acceptance: JupyterLab serves within 30 s
    finally:
        proc.cleanup()


def test_serve_demo_status_vault_connected(demo: DemoProcess) -> None:
    r = requests.get(
        f"{demo.url}/prod-discovery/api/status",
        headers={"Authorization": f"token {demo.token}"},
        timeout=10,
    )
    assert r.status_code == 200
    vault = r.json()["vault"]
    assert vault["configured"] and vault["reachable"] and vault["authenticated"]
    assert r.json()["environment"]["name"] == "Prod Discovery (demo)"
    assert demo.token not in r.text


def test_serve_demo_refuses_without_token(demo: DemoProcess) -> None:
    r = requests.get(f"{demo.url}/prod-discovery/api/status", timeout=10)
    assert r.status_code == 403


def run_in_kernel(demo: DemoProcess, code: str) -> str:
    """Start a kernel in the demo, run ``code``, return its stdout (legacy JSON websocket)."""
    import uuid

    import websocket

    headers = {"Authorization": f"token {demo.token}"}
    r = requests.post(
        f"{demo.url}/api/kernels", json={"name": "python3"}, headers=headers, timeout=60
    )
    assert r.status_code == 201
    kid = r.json()["id"]
    ws = websocket.create_connection(
        f"ws://{demo.url.removeprefix('http://')}/api/kernels/{kid}/channels",
        header=[f"Authorization: token {demo.token}"],
        timeout=60,
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": uuid.uuid4().hex,
                        "username": "test",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False},
                    "channel": "shell",
                }
            )
        )
        out = []
        while True:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError(msg["content"]["evalue"])
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()
        requests.delete(f"{demo.url}/api/kernels/{kid}", headers=headers, timeout=60)


def test_run_demo_kernel_never_sees_root_token(demo: DemoProcess) -> None:
    # DevServer root tokens start with "root-"; a kernel gets at most a child token.
    out = run_in_kernel(demo, "import os; print(os.environ.get('VAULT_TOKEN', '')[:5])")
    assert out.strip() != "root-"


def test_run_demo_kernel_reads_customers_with_injected_env(demo: DemoProcess) -> None:
    """The README's first step: libpq needs nothing but the kernel's injected environment."""
    out = run_in_kernel(
        demo,
        "import os, psycopg\n"
        "row = psycopg.connect('').execute('select count(*), current_user from customers')"
        ".fetchone()\n"
        "print(row[0], row[1].startswith('v-'), os.environ['PGUSER'] == row[1])",
    )
    assert out.split() == ["200", "True", "True"]


def test_stop_demo_leaves_nothing(demo: DemoProcess, postgres_dsn: str) -> None:
    """Ctrl-C with a kernel running: no process of the demo, no role of its database engine."""
    headers = {"Authorization": f"token {demo.token}"}
    r = requests.post(
        f"{demo.url}/api/kernels", json={"name": "python3"}, headers=headers, timeout=30
    )
    assert r.status_code == 201
    assert demo.bao_port is not None
    assert demo.stop() == 0
    assert demo.leftover_processes() == []
    assert "stopped: no processes" in demo.output
    if demo.role_prefix:
        assert roles_with_prefix(postgres_dsn, demo.role_prefix) == []


def test_run_demo_without_postgres() -> None:
    """Binder has no PostgreSQL: the demo still serves, with KV and token credentials."""
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    proc = DemoProcess(free_port(), ["--dsn", dead])
    try:
        proc.start(timeout=60)
        assert "unreachable" in proc.output
        assert proc.role_prefix is None
        r = requests.get(
            f"{proc.url}/prod-discovery/api/status",
            headers={"Authorization": f"token {proc.token}"},
            timeout=10,
        )
        assert r.json()["vault"]["authenticated"] is True
        assert proc.stop() == 0
        assert proc.leftover_processes() == []
    finally:
        proc.cleanup()


def test_run_demo_port_taken_fails_cleanly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = DemoProcess(port)
        try:
            with pytest.raises(RuntimeError, match="exited with 1"):
                proc.start(timeout=60)
            assert "JupyterLab exited" in proc.output
            assert proc.wait(30) == 1
            assert proc.leftover_processes() == []
        finally:
            proc.cleanup()


def test_run_demo_help() -> None:
    out = subprocess.run(
        ["jupyter", "prod-discovery", "demo", "--help"], capture_output=True, text=True, check=True
    )
    assert "--port" in out.stdout


# --- binder ----------------------------------------------------------------------------------


def test_run_binder_vault_exports_and_config(tmp_path: Path) -> None:
    """binder/start's helper: OpenBao outlives it, only the env gets the token."""
    config_dir = tmp_path / "jupyter"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(
        '{"ServerApp": {"port": 9999, "jpserver_extensions": {"x": true}}}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update({"HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(config_dir)})
    env.pop("PROD_DISCOVERY_DEMO_DSN", None)
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_prod_discovery.demo.binder"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    pid = int((tmp_path / ".prod-discovery" / "openbao.pid").read_text())
    try:
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines()
        )
        assert set(exports) == {"VAULT_ADDR", "VAULT_TOKEN"}
        client = hvac.Client(url=exports["VAULT_ADDR"], token=exports["VAULT_TOKEN"])
        assert client.is_authenticated()
        written = (config_dir / "jupyter_server_config.json").read_text()
        assert exports["VAULT_TOKEN"] not in written
        config = json.loads(written)
        assert config["ServerApp"]["port"] == 9999  # merged, not clobbered
        assert config["ServerApp"]["jpserver_extensions"] == {
            "x": True,
            "jupyter_prod_discovery": True,
        }
    finally:
        os.kill(pid, signal.SIGTERM)
    psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=10)


def test_write_user_config_rejects_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "jupyter_server_config.json").write_text("{not json")
    with pytest.raises(SystemExit, match="not valid JSON"):
        write_user_config(tmp_path, {"ServerApp": {}})


def test_start_openbao_token_not_on_command_line(openbao: DevServer) -> None:
    assert openbao.process is not None
    cmdline = " ".join(psutil.Process(openbao.process.pid).cmdline())
    assert "-dev-no-store-token" in cmdline
    assert openbao.root_token not in cmdline
    assert openbao.client().is_authenticated()
