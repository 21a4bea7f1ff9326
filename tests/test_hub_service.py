"""JupyterHub with the trusted service as a hub-managed service: single-user servers are its
clients and hold no secret of the trusted side. Real hub, proxy, OpenBao and PostgreSQL.

Eight servers audit at once into the one ledger: nothing lost, nothing mixed, one signed chain
that verifies with the public key alone.

The attacker suite under this topology (``test_hub_*``): code as pdhalice, in the kernel and the
terminal of the very server the hub spawned for her (``HubServer``: the harness of
``boundary_support`` through the proxy), obtains no secret of the trusted side (the service's
Vault token, DSN password, hub token and signing key, OpenBao's root token, the hub's admin
token, cookie secret and proxy token) nor pdhload0's server token, and opens no other user's
process; the token her server holds is her server's identity at the hub, the proxy and the
service, and no more; her kernel holds no Vault token and its login reads only her group's
table. Positive controls: the same probe as pdsvc finds the service's secrets, and each probe
finds a decoy of hers.
"""

from __future__ import annotations

import contextlib
import json
import pwd
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from boundary_service_support import (
    Side,
    environ_of,
    marked_json,
    signing_key_needle,
    vault_token_needle,
)
from boundary_support import (
    SecretHolder,
    by_name,
    foreign_access,
    leaks,
    misses,
    needle,
    probe_as,
    probe_config,
)
from hub_boundary_support import KERNEL_HOLDINGS, HubServer, hub_token_needle
from hub_support import HubWorld, _descendants
from psycopg.conninfo import conninfo_to_dict

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


# --------------------------------------------------------------------------------------------
# the attacker suite under the hub: code as pdhalice, in her hub-spawned server

ALICE, OTHER, SERVICE_USER = "pdhalice", "pdhload0", "pdsvc"
#: The probe's whole run from a kernel or a terminal (about a second here).
PROBE_BUDGET_S = 20.0
#: Needles of the hub side: the service is never handed them (the pdsvc control checks it).
HUB_SIDE = ("openbao:root_token", "hub:tester_token", "hub:cookie_secret", "proxy:auth_token")


@dataclass
class Attack:
    """What pdhalice attacks and what she attacks it from (built once, as root)."""

    alice: HubServer
    decoy: SecretHolder  # pdhalice's own: the positive control of every probe
    trusted: Side  # every secret of the trusted side and of pdhload0, by label
    pids: dict[str, int]  # service, openbao, hub, proxy, pdhload0's server
    paths: list[str]
    tcp: list[dict[str, Any]]
    state_dir: Path
    server_token: str  # the JUPYTERHUB_API_TOKEN of her server, read as root
    alice_token: str  # her personal token
    other_token: str  # pdhload0's personal token (controls)

    def config(self) -> dict[str, Any]:
        """Every needle, process, path and port pdhalice attacks, her decoy's included."""
        return probe_config(
            {**self.trusted.needles(), **self.decoy.needles()},
            pids=[self.decoy.pid, *self.pids.values()],
            paths=[*self.paths, *self.decoy.paths()],
            unix=self.decoy.unix(),
            tcp=[*self.tcp, *self.decoy.tcp()],
        )


def _service_pid(world: HubWorld) -> int:
    """The hub-managed service: the hub's descendant running ``... cli service`` as pdsvc."""
    uid = pwd.getpwnam(SERVICE_USER).pw_uid
    for pid in _descendants(world.hub.pid if world.hub else 0):
        with contextlib.suppress(OSError):
            if b"service" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") and (
                Path(f"/proc/{pid}/environ").stat().st_uid == uid
            ):
                return pid
    raise AssertionError("no service process under the hub")


def _http(path: str) -> str:
    return f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode().hex()


@pytest.fixture(scope="module")
def attack(world: HubWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    """pdhalice's and pdhload0's servers running, each secret read as root where it is held,
    pdhalice's decoy, and a kernel of hers holding the credentials the service issued."""
    logs = tmp_path_factory.mktemp("hub-attack")  # root's: no user reads these logs
    for user in (ALICE, OTHER):
        world.start_server(user)
    alice_pid, other_pid = _server_pid(world, ALICE), _server_pid(world, OTHER)
    server_token = environ_of(alice_pid)["JUPYTERHUB_API_TOKEN"]
    service_pid = _service_pid(world)
    proxy_pid = int((world.dir / "proxy.pid").read_text())
    assert world.bao.process is not None and world.hub is not None
    state_dir = world.shared / "service-state"
    key_file = state_dir / "audit-signing-key.pem"
    trusted_settings = json.loads((world.dir / "settings.json").read_text())["trusted"]
    password = world.dsn_password
    assert password, "the service's DSN carries no password to look for"
    dsn_needle = password.removeprefix("svcdsn-")[:16]
    assert len(dsn_needle) >= 12, "the DSN's own password is too short to be a needle"
    trusted = Side(
        service_pid,
        {
            "service:vault_token": vault_token_needle(trusted_settings["vault_token"]),
            "service:signing_key": signing_key_needle(key_file),
            "service:dsn_password": dsn_needle,
            "service:hub_token": hub_token_needle(environ_of(service_pid)["JUPYTERHUB_API_TOKEN"]),
            "openbao:root_token": needle(world.bao.root_token.removeprefix("root-")),
            "hub:tester_token": hub_token_needle(world.tester_token),
            "hub:cookie_secret": needle((world.dir / "cookie_secret").read_text().strip()),
            "proxy:auth_token": needle(environ_of(proxy_pid)["CONFIGPROXY_AUTH_TOKEN"]),
            f"{OTHER}:server_token": hub_token_needle(
                environ_of(other_pid)["JUPYTERHUB_API_TOKEN"]
            ),
        },
    )
    home = Path(pwd.getpwnam(ALICE).pw_dir)
    paths = [
        str(world.shared),  # the users' config, the service's config and 0700 state dir
        str(world.dir),  # the hub's own state: settings, cookie secret, database, log
        pwd.getpwnam(SERVICE_USER).pw_dir,
        pwd.getpwnam(OTHER).pw_dir,
        str(home / ".local" / "share" / "jupyter" / "runtime"),
        str(home / ".jupyter"),
    ]
    bao_port = int(world.bao.address.rsplit(":", 1)[1])
    tcp = [
        {"host": "127.0.0.1", "port": world.trusted_port, "request_hex": _http("/api/status")},
        {"host": "127.0.0.1", "port": bao_port, "request_hex": _http("/v1/sys/health")},
        {"host": "127.0.0.1", "port": world.port, "request_hex": _http("/hub/api/")},
    ]
    decoy = SecretHolder(
        ALICE, "decoy", logs / "decoy.log", leak_argv=True, tcp_answers_everyone=True
    )
    alice_token = world.user_token(ALICE)
    alice = HubServer(ALICE, f"{world.url}/user/{ALICE}", alice_token, alice_pid, world.log_path)
    try:
        decoy.start()
        alice.start()
        alice.execute("pass")  # her kernel, with the credentials the service issued
        yield Attack(
            alice=alice,
            decoy=decoy,
            trusted=trusted,
            pids={
                "service": service_pid,
                "openbao": world.bao.process.pid,
                "hub": world.hub.pid,
                "proxy": proxy_pid,
                OTHER: other_pid,
            },
            paths=paths,
            tcp=tcp,
            state_dir=state_dir,
            server_token=server_token,
            alice_token=alice_token,
            other_token=world.user_token(OTHER),
        )
    finally:
        alice.stop()
        decoy.stop()


def assert_hub_boundary_held(report: dict[str, Any], attack: Attack) -> None:
    """Nothing of the trusted side or pdhload0; no other user's process opened; every probe
    able to see (it found each kind of her decoy's secrets and attached to it)."""
    assert report["uid"] == attack.alice.pw.pw_uid
    assert attack.alice.pid in report["ancestors"], "the probe did not run under her server"
    for role, pid in attack.pids.items():
        assert pid in report["foreign"], f"{role} ({pid}) is not another user's process"
    assert report["seconds"] < PROBE_BUDGET_S
    assert leaks(report, attack.trusted) == {}
    assert foreign_access(report, allowed=[attack.decoy.pid]) == {}
    assert misses(report, attack.decoy) == []


@pytest.mark.boundary
def test_hub_probe_finds_service_secrets_as_pdsvc(attack: Attack) -> None:
    """Positive control: without the uid boundary the same probe reaches the service's Vault
    token, DSN password and hub token (environment, memory) and its signing key (state dir), so
    the needles are what the hub-managed service really holds, where it holds it; and none of
    the hub's own secrets was handed to the service."""
    config = probe_config(
        attack.trusted.needles(), pids=[attack.pids["service"]], paths=[str(attack.state_dir)]
    )
    report = probe_as(SERVICE_USER, config)
    probes = by_name(report)
    assert {"service:vault_token", "service:dsn_password", "service:hub_token"} <= set(
        probes["proc_environ"]["found"]
    ), probes["proc_environ"]
    assert "service:vault_token" in probes["proc_mem"]["found"], probes["proc_mem"]
    assert "service:signing_key" in probes["files"]["found"], probes["files"]
    found = {label for p in report["probes"] for label in p["found"]}
    assert found.isdisjoint(HUB_SIDE), found


@pytest.mark.boundary
def test_hub_side_secrets_are_where_alice_would_look(world: HubWorld, attack: Attack) -> None:
    """Positive control for the needles read from a value rather than from where it lives:
    OpenBao's root token is in its environment, the hub's admin token in its settings file."""
    needles = attack.trusted.needles()
    bao_env = Path(f"/proc/{attack.pids['openbao']}/environ").read_bytes()
    assert needles["openbao:root_token"].encode() in bao_env
    assert needles["hub:tester_token"] in (world.dir / "settings.json").read_text()


@pytest.mark.boundary
def test_hub_kernel_obtains_no_trusted_secret(attack: Attack) -> None:
    """pdhalice's notebook kernel, in the server the hub spawned for her, with credentials."""
    assert_hub_boundary_held(attack.alice.probe_in_kernel(attack.config()), attack)


@pytest.mark.boundary
def test_hub_terminal_obtains_no_trusted_secret(attack: Attack) -> None:
    """pdhalice's terminal: no kernel hook sees it, so only the uid boundary holds there."""
    report = attack.alice.probe_in_terminal(attack.config())
    assert_hub_boundary_held(report, attack)
    assert attack.alice.last_exit_status == 0


@pytest.mark.boundary
def test_hub_api_with_her_server_token(world: HubWorld, attack: Attack) -> None:
    """The token her server holds (her code reads it wherever the server is readable to her),
    used against the hub, the proxy and the service: it is her server's identity and no more.

    It lists no users, neither reads, starts nor stops pdhload0's server, mints no token (for
    him, nor a personal one for her), reaches his server through the proxy with neither of her
    tokens, and the service knows it as pdhalice's server whatever headers claim otherwise.
    Controls: his own token reads his server through the same URL, his server is still running
    afterwards, and her personal token, which the hub accepts, is refused by the service (only a
    server's own token is).
    """
    token = attack.server_token

    def hub(method: str, path: str) -> int:
        return world.api(method, path, token).status_code

    assert world.api("GET", "/user", token).json()["name"] == ALICE  # the hub knows the token
    assert hub("GET", "/users") == 403
    denied = {
        "read": hub("GET", f"/users/{OTHER}"),
        "read server": hub("GET", f"/users/{OTHER}/server"),
        "start": hub("POST", f"/users/{OTHER}/server"),
        "stop": hub("DELETE", f"/users/{OTHER}/server"),
        "tokens": hub("GET", f"/users/{OTHER}/tokens"),
        "new token": hub("POST", f"/users/{OTHER}/tokens"),
        "new token of hers": hub("POST", f"/users/{ALICE}/tokens"),
        "groups": hub("GET", "/groups"),
    }
    assert all(code in (403, 404) for code in denied.values()), denied
    assert world.api("GET", f"/users/{OTHER}").json()["servers"][""]["ready"]
    url = f"{world.url}/user/{OTHER}/api/contents"
    for who, tok in (("server token", token), ("personal token", attack.alice_token)):
        resp = requests.get(
            url, headers={"Authorization": f"token {tok}"}, timeout=30, allow_redirects=False
        )
        assert resp.status_code in (302, 303, 403), (who, resp.status_code, resp.text[:200])
    own = requests.get(url, headers={"Authorization": f"token {attack.other_token}"}, timeout=30)
    assert own.status_code == 200, own.text[:200]
    claims = {"X-Prod-Discovery-User": OTHER, "X-Forwarded-User": SERVICE_USER}
    status = requests.get(
        f"{world.service_url}/api/status",
        headers={"Authorization": f"token {token}", **claims},
        timeout=10,
    )
    assert status.status_code == 200, status.text
    assert status.json()["principal"]["username"] == ALICE, status.json()
    personal = requests.get(
        f"{world.service_url}/api/status",
        headers={"Authorization": f"token {attack.alice_token}"},
        timeout=10,
    )
    assert personal.status_code == 403, personal.text


@pytest.mark.boundary
def test_hub_kernel_has_no_vault_token_and_only_its_groups_table(
    world: HubWorld, attack: Attack
) -> None:
    """Vault and the database with everything her kernel holds. The hub's profiles are
    database ones, so her kernel holds no Vault token at all: no ``VAULT_*`` variable, and no
    value of its environment, nor her server's hub token, is accepted by Vault, not even on
    ``lookup-self``. Her database login reads her group's table and not fraud's.

    Controls: fraud's role answers a token whose policy allows it (so 403 is the token's doing,
    not a wrong path); her login really connects (it read ``sales``).
    """
    params = conninfo_to_dict(world.db_dsn)
    db = {"host": params.get("host", "127.0.0.1"), "port": params.get("port", 5432)}
    db["dbname"] = world.dbname
    code = f"VAULT_ADDR = {world.bao.address!r}\nDB = {db!r}\nEXTRA = [{attack.server_token!r}]\n"
    held = marked_json(attack.alice.execute(code + KERNEL_HOLDINGS))
    assert held["vault_names"] == [], held
    assert held["tried"] >= 2, held
    for path, answers in held["vault"].items():
        assert set(answers) == {"403"}, (path, answers)
    assert held["sales"] == ["rows", 2], held
    assert held["customers"][0] == "InsufficientPrivilege", held
    assert "permission denied" in held["customers"][1], held
    assert held["issued_for"] == ["pdhub", "analysts-ro"], held  # a login of her group's role
    # Control: fraud's role is there, for a token whose policy allows it.
    assert world.bao.client().read("database/creds/fraud-pii")["data"]["username"]
