"""JupyterHub with the trusted service as a hub-managed service: single-user servers are its
clients and hold no secret of the trusted side. Real hub, proxy, OpenBao and PostgreSQL.

Eight servers audit at once into the one ledger: nothing lost, nothing mixed, one signed chain
that verifies with the public key alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from hub_support import HubWorld, _descendants

from jupyter_prod_discovery.audit.signed_chain import verify_signed
from jupyter_prod_discovery.pytest_plugin import require
from jupyter_prod_discovery.service.ledger import read_checkpoints, read_lines
from jupyter_prod_discovery.service.signing import PublicKeys

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Real OS users (created): every server runs as its user's own uid, the service as pdsvc.
TOPOLOGY_USERS = {"pdhalice": ["analysts"], "pdhcarol": []}
LOAD_USERS = {f"pdhload{i}": ["analysts"] for i in range(8)}
REQUESTS = 500


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubWorld]:
    from hub_support import CHP

    require(CHP.exists(), "configurable-http-proxy missing: run bash scripts/install.sh")
    import os

    dsn = os.environ.get("PROD_DISCOVERY_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    world = HubWorld(
        tmp_path_factory.mktemp("hubsvc"),
        dsn,
        trusted=True,
        users={**TOPOLOGY_USERS, **LOAD_USERS},
        os_users=True,
    )
    try:
        world.start()
    except Exception:
        world.stop()
        raise
    try:
        yield world
    finally:
        world.stop()


def _token(world: HubWorld, user: str) -> str:
    world.start_server(user)
    return world.user_token(user)


def _server_pid(world: HubWorld, user: str) -> int:
    for pid in _descendants(world.hub.pid if world.hub else 0):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"jupyterhub-singleuser" in part for part in cmdline) and (
            f"JUPYTERHUB_USER={user}".encode() in environ
        ):
            return pid
    raise AssertionError(f"no server process of {user}")


def test_singleuser_environment_holds_no_secret_of_the_trusted_side(world: HubWorld) -> None:
    _token(world, "pdhalice")
    pid = _server_pid(world, "pdhalice")
    env = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_text(errors="replace").split("\0")
        if "=" in item
    )
    import pwd

    # The server runs as its user's own uid, and the service as another one.
    uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
    assert uid == pwd.getpwnam("pdhalice").pw_uid
    service_uids = {
        int(Path(f"/proc/{p}/status").read_text().split("Uid:")[1].split()[0])
        for p in _descendants(world.hub.pid if world.hub else 0)
        if b"service" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
    }
    assert service_uids == {pwd.getpwnam("pdsvc").pw_uid}
    trusted = json.loads((world.dir / "settings.json").read_text())["trusted"]
    values = "\n".join(env.values())
    assert trusted["vault_token"] not in values
    assert trusted["dsn"] not in values
    assert "VAULT_TOKEN" not in env and "PROD_DISCOVERY_AUDIT_KEY" not in env
    assert "PROD_DISCOVERY_AUDIT_DSN" not in env
    assert env["PROD_DISCOVERY_SERVICE_URL"].endswith("/services/prod-discovery/")


def test_kernel_credentials_by_hub_group_through_the_service(world: HubWorld) -> None:
    token = _token(world, "pdhalice")
    resp = world.server("pdhalice", "POST", "/api/kernels", token, json={"name": "python3"})
    assert resp.status_code == 201, resp.text
    listing = world.server("pdhalice", "GET", "/prod-discovery/api/credentials", token).json()
    (kernel,) = listing["kernels"]
    assert kernel["profiles"] == ["warehouse-ro"]
    world.server("pdhalice", "DELETE", f"/api/kernels/{resp.json()['id']}", token)

    carol = _token(world, "pdhcarol")
    denied = world.server("pdhcarol", "POST", "/api/kernels", carol, json={"name": "python3"})
    assert denied.status_code == 503
    assert "no credential profile applies to user 'pdhcarol'" in denied.text


def test_service_accepts_only_a_servers_own_token(world: HubWorld) -> None:
    anonymous = requests.get(f"{world.service_url}/api/status", timeout=10)
    assert anonymous.status_code in (401, 403)
    personal = requests.get(
        f"{world.service_url}/api/status",
        headers={"Authorization": f"token {world.user_token('pdhalice')}"},
        timeout=10,
    )
    assert personal.status_code == 403
    key = requests.get(f"{world.service_url}/api/audit/public-key", timeout=10)
    assert key.status_code == 200 and "BEGIN PUBLIC KEY" in key.json()["public_key_pem"]


def test_eight_servers_audit_at_once_nothing_lost_or_mixed(world: HubWorld) -> None:
    users = sorted(LOAD_USERS)
    with ThreadPoolExecutor(8) as pool:
        tokens = dict(zip(users, pool.map(lambda u: _token(world, u), users), strict=True))

    def load(user: str) -> int:
        token = tokens[user]
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"
        ok = 0
        for i in range(REQUESTS):
            resp = session.get(f"{world.url}/user/{user}/api/contents/", timeout=60)
            ok += resp.status_code == 200
            if i == 0:
                assert resp.status_code == 200, resp.text
        return ok

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answered = dict(zip(users, pool.map(load, users), strict=True))
    elapsed = time.monotonic() - started
    assert all(n == REQUESTS for n in answered.values()), answered

    def contents_of(user: str, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in recs if r["kind"] == "contents" and r["principal"]["username"] == user]

    deadline = time.monotonic() + 60
    while True:
        recs = [json.loads(line) for line in read_lines(world.db_dsn)]
        if all(len(contents_of(u, recs)) >= REQUESTS for u in users) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for user in users:
        mine = contents_of(user, recs)
        assert len(mine) >= REQUESTS, (user, len(mine))
        # Nothing mixed: every record of this principal was reported by this user's server.
        assert {r["data"]["user"]["username"] for r in mine} == {user}
        assert {r["principal"]["via"] for r in mine} == {"hub-token"}
    assert not [r for r in recs if r["kind"] == "alert"], "a stream had a gap"
    key = requests.get(f"{world.service_url}/api/audit/public-key", timeout=10).json()
    head = requests.get(f"{world.service_url}/api/audit/head", timeout=10).json()
    result = verify_signed(
        read_lines(world.db_dsn),
        read_checkpoints(world.db_dsn),
        PublicKeys([key["public_key_pem"]]),
        chain="main",
        head=head,
    )
    assert result.ok, result.summary()
    print(f"8 servers x {REQUESTS} audited reads in {elapsed:.1f} s; {result.summary()}")
