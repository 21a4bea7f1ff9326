"""A real JupyterHub (CHP, local-process spawner, dummy authenticator), OpenBao and PostgreSQL.

alice is in the hub group "analysts" (read-only warehouse), bob in "fraud" (the PII table),
carol in no group, ada is a hub admin. Every single-user server runs the extension, logs in to
Vault with a JWT from the hub's JWT service and issues per-kernel credentials by hub group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import psycopg
import pytest
from hub_support import CHP, HubWorld
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_prod_discovery.pytest_plugin import DEFAULT_DSN, require

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

PROBE = """\
import hashlib, json, os, psycopg
pguser = os.environ.get("PGUSER", "")
# The output guard redacts the issued user name itself: print a prefix and a digest.
out = {
    "pguser_prefix": pguser[:9],
    "pguser_sha": hashlib.sha256(pguser.encode()).hexdigest(),
    "vault_token": "VAULT_TOKEN" in os.environ,
    "pid": os.getpid(),
}
for table in ("sales", "customers"):
    try:
        with psycopg.connect("") as conn:
            conn.execute(f"select count(*) from {table}").fetchone()
        out[table] = "ok"
    except Exception as exc:
        out[table] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubWorld]:
    dsn = os.environ.get("PROD_DISCOVERY_TEST_DSN", DEFAULT_DSN)
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        require(False, f"PostgreSQL at {dsn} is unreachable: {exc.__class__.__name__}")
    require(CHP.exists(), f"configurable-http-proxy missing at {CHP}: run scripts/install.sh")
    base = tmp_path_factory.mktemp("hub")
    hub = HubWorld(base, dsn)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


def _ready(world: HubWorld, user: str) -> str:
    """Start ``user``'s server if needed; return an API token of ``user``."""
    model = world.api("GET", f"/users/{user}").json()
    if not (model.get("servers", {}).get("") or {}).get("ready"):
        world.start_server(user)
    return world.user_token(user)


def _start_kernel(world: HubWorld, user: str, token: str) -> Any:
    return world.server(user, "POST", "/api/kernels", token, json={"name": "python3"})


async def _execute(world: HubWorld, user: str, token: str, kernel_id: str, code: str) -> str:
    """Run ``code`` in the kernel over the websocket; return its stdout."""
    url = f"ws://127.0.0.1:{world.port}/user/{user}/api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(
        HTTPRequest(url, headers={"Authorization": f"token {token}"}, connect_timeout=30)
    )
    msg_id = uuid.uuid4().hex
    conn.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": user,
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": True},
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    out: list[str] = []
    try:
        while True:
            raw = await asyncio.wait_for(conn.read_message(), 60)
            assert raw is not None, "the kernel websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(msg["content"]["ename"])
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        conn.close()


def _probe(world: HubWorld, user: str) -> tuple[str, dict[str, Any]]:
    token = _ready(world, user)
    resp = _start_kernel(world, user, token)
    assert resp.status_code == 201, resp.text
    kernel_id = resp.json()["id"]
    out = asyncio.run(_execute(world, user, token, kernel_id, PROBE))
    return kernel_id, json.loads(out.strip().splitlines()[-1])


def _records(world: HubWorld, user: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in world.audit_records(user) if r.get("kind") == kind]


def _event(record: dict[str, Any]) -> dict[str, Any]:
    data = record.get("data", record)
    return data if isinstance(data, dict) else {}


def test_start_server_logs_in_to_vault_as_hub_user(world: HubWorld) -> None:
    for user in ("alice", "bob"):
        token = _ready(world, user)
        status = world.server(user, "GET", "/prod-discovery/api/status", token).json()
        vault = status["vault"]
        assert vault["auth_method"] == "jwt"
        assert vault["authenticated"], vault
        assert vault["identity"]["display_name"] == f"jupyterhub-{user}"
        assert status["guards"]["credentials"] is True


def test_issue_kernel_credentials_by_hub_group(world: HubWorld) -> None:
    _, alice = _probe(world, "alice")
    assert alice["pguser_prefix"] == "pdhub_ana"  # analysts-ro
    assert alice["sales"] == "ok"
    assert alice["customers"] == "InsufficientPrivilege"
    assert alice["vault_token"] is False  # the server's own Vault token never reaches a kernel
    _, bob = _probe(world, "bob")
    assert bob["customers"] == "ok"
    assert bob["sales"] == "InsufficientPrivilege"
    assert bob["pguser_prefix"] == "pdhub_fra"  # fraud-pii


def test_start_kernel_without_profile_is_denied(world: HubWorld) -> None:
    token = _ready(world, "carol")
    resp = _start_kernel(world, "carol", token)
    assert resp.status_code == 503
    message = resp.json()["message"]
    assert "no credential profile applies to user 'carol'" in message
    assert "groups: none" in message


def test_record_hub_user_for_contents_and_leases(world: HubWorld) -> None:
    token = _ready(world, "alice")
    assert world.server("alice", "GET", "/api/contents/", token).status_code == 200
    kernel_id, _ = _probe(world, "alice")
    contents = [_event(r) for r in _records(world, "alice", "contents")]
    assert contents, "no contents event recorded"
    for event in contents:
        assert event["user"]["username"] == "alice"
        assert event["user"]["groups"] == ["analysts"]
        assert event["user"]["admin"] is False
        assert event["user"]["server_owner"] == "alice"
    issued = [
        _event(r)
        for r in _records(world, "alice", "credential")
        if _event(r).get("action") == "issue" and _event(r).get("kernel_id") == kernel_id
    ]
    assert [e["profile"] for e in issued] == ["warehouse-ro"]
    assert issued[0]["user"]["username"] == "alice"
    assert issued[0]["user"]["groups"] == ["analysts"]


def test_record_hub_user_for_executions(world: HubWorld) -> None:
    kernel_id, _ = _probe(world, "alice")
    executions = [
        _event(r)
        for r in _records(world, "alice", "execution")
        if _event(r).get("kernel_id") == kernel_id
    ]
    assert executions, "no execution event recorded"
    assert {e["user"]["username"] for e in executions} == {"alice"}
    assert {tuple(e["user"]["groups"]) for e in executions} == {("analysts",)}
    # ada (admin) runs code in alice's kernel: recorded as ada, on alice's server.
    asyncio.run(_execute(world, "alice", world.user_token("ada"), kernel_id, "print(1)"))
    by_ada = [
        _event(r)
        for r in _records(world, "alice", "execution")
        if _event(r).get("kernel_id") == kernel_id and _event(r)["user"]["username"] == "ada"
    ]
    assert by_ada, "the admin's execution in alice's kernel was not recorded as the admin"
    assert {(e["user"]["admin"], e["user"]["server_owner"]) for e in by_ada} == {(True, "alice")}


def test_record_admin_acting_on_other_users_server(world: HubWorld) -> None:
    _ready(world, "alice")
    ada = world.user_token("ada")
    resp = world.server("alice", "GET", "/api/contents/", ada)
    assert resp.status_code == 200
    by_ada = [
        _event(r)
        for r in _records(world, "alice", "contents")
        if _event(r)["user"]["username"] == "ada"
    ]
    assert by_ada, "the admin's access to alice's server was not recorded as the admin"
    assert by_ada[-1]["user"]["admin"] is True
    assert by_ada[-1]["user"]["server_owner"] == "alice"


def test_issue_jwt_only_for_server_token(world: HubWorld) -> None:
    """Only a server's hub token gets a JWT, for its owner; a user or service token does not."""
    import requests

    url = f"http://127.0.0.1:{world.service_port}/services/prod-discovery-jwt/token"
    for token in (world.user_token("alice"), world.tester_token):
        resp = requests.post(url, headers={"Authorization": f"token {token}"}, timeout=10)
        assert resp.status_code == 403, resp.text
    assert requests.post(url, timeout=10).status_code == 401
    resp = requests.post(url, headers={"Authorization": "token not-a-token"}, timeout=10)
    assert resp.status_code == 403
    # A token scoped to exactly bob's server, as the hub gives each server: bob's JWT, only his.
    resp = world.api("POST", "/users/bob/tokens", json={"scopes": ["access:servers!server=bob/"]})
    resp.raise_for_status()
    bob_server_token = resp.json()["token"]
    resp = requests.post(url, headers={"Authorization": f"token {bob_server_token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert world.issuer is not None
    claims = world.issuer.verify(resp.json()["jwt"])
    assert (claims["sub"], claims["groups"], claims["admin"]) == ("bob", ["fraud"], False)
    assert claims["server_name"] == ""
    assert claims["exp"] - claims["iat"] == 300


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stop_killed_server_revokes_leases_from_hub(world: HubWorld) -> None:
    """The server is SIGKILLed (no cleanup at all): the hub's stop hook still revokes."""
    kernel_id, probe = _probe(world, "alice")
    leases = [
        _event(r)["lease_id"]
        for r in _records(world, "alice", "credential")
        if _event(r).get("action") == "issue" and _event(r).get("kernel_id") == kernel_id
    ]
    assert leases
    root = hvac.Client(url=world.bao.address, token=world.bao.root_token)
    assert root.sys.read_lease(leases[0])["data"]["id"] == leases[0]
    state = world.api("GET", "/users/alice").json()["servers"][""]["state"]
    server_pid = int(state["pid"])
    try:
        os.kill(server_pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        world.stop_server("alice")
        for lease_id in leases:
            with pytest.raises(hvac.exceptions.InvalidRequest):
                root.sys.read_lease(lease_id)
        assert "Revoked 1 Vault token(s) of alice's server" in world.log_tail(200_000)
    finally:
        # The killed server could not stop its kernel: do it here, no orphan survives.
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(probe["pid"]), signal.SIGKILL)


def _fraud_roles(world: HubWorld) -> int:
    with psycopg.connect(world.pg_admin_dsn) as conn:
        row = conn.execute("select count(*) from pg_roles where rolname like 'pdhub_fraud-pii_%'")
        return int(row.fetchone()[0])  # type: ignore[index]


def test_stop_server_revokes_all_users_leases(world: HubWorld) -> None:
    _probe(world, "bob")
    _probe(world, "bob")  # two kernels: two leases
    leases = [
        _event(r)["lease_id"]
        for r in _records(world, "bob", "credential")
        if _event(r).get("action") == "issue"
    ]
    assert len(leases) >= 2
    assert _fraud_roles(world) >= 2
    root = hvac.Client(url=world.bao.address, token=world.bao.root_token)
    assert root.sys.read_lease(leases[-1])["data"]["id"] == leases[-1]
    world.stop_server("bob")
    for lease_id in leases:
        with pytest.raises(hvac.exceptions.InvalidRequest):
            root.sys.read_lease(lease_id)
    assert _fraud_roles(world) == 0  # bob is the only member of "fraud"
    assert "Revoked 1 Vault token(s) of bob's server" in world.log_tail(200_000)
    assert Path(world.dir / "home" / "bob").is_dir()
