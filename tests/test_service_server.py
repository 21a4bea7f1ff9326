"""A Jupyter server as a client of the trusted service: credentials issued, renewed and revoked by
the service with a least-privilege token, audit records shipped and sealed there, and what
happens when the service is down. Real service process, OpenBao, PostgreSQL and kernels."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from credentials_support import QUERY, Warehouse, eventually, run_code
from service_support import ServiceProcess, service_token, start_service
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.service.ledger import read_lines


@pytest.fixture
def ledger_dsn(postgres_database: str) -> str:
    """The service's store (beside the warehouse's table in the test's throw-away database)."""
    return postgres_database


def service_for(
    tmp: Path, dsn: str, openbao: Any, profiles: list[dict[str, Any]], *args: str
) -> ServiceProcess:
    """A service over ``dsn`` with ``profiles`` and a least-privilege token of its own (started
    afresh, or again over the same store and state after the first one was killed)."""
    return start_service(
        tmp,
        dsn,
        vault_addr=openbao.address,
        vault_token=service_token(openbao, profiles),
        profiles=profiles,
        args=args,
    )


@pytest.fixture
def service(
    tmp_path: Path, openbao: Any, warehouse: Warehouse, ledger_dsn: str
) -> Iterator[ServiceProcess]:
    svc = service_for(tmp_path, ledger_dsn, openbao, warehouse.profiles())
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def prod_discovery_extension_config(service: ServiceProcess, tmp_path: Path) -> dict[str, Any]:
    return {
        "ProdDiscoveryApp": {"service_url": service.url},
        "AuditTrail": {"spool_dir": str(tmp_path / "spool"), "retry_interval": 0.2},
        "RemoteCredentialBroker": {"heartbeat_interval": 0.5},
    }


@pytest.fixture
def started(jp_serverapp: Any, jp_asyncio_loop: Any) -> Any:
    """The extension's start hook (pytest-jupyter never runs it): writer, heartbeat."""
    app = jp_serverapp.web_app.settings["prod_discovery"]
    jp_asyncio_loop.run_until_complete(app._start_jupyter_server_extension(jp_serverapp))
    return app


def records(dsn: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_lines(dsn)]


async def start_kernel(jp_fetch: Any) -> str:
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    return str(json.loads(response.body)["id"])


async def test_kernel_credentials_come_from_the_service_and_go_back(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse, service: ServiceProcess, started: Any
) -> None:
    app = started
    assert app.vault.configured is False or app.service_client is not None
    kid = await start_kernel(jp_fetch)
    out = await run_code(jp_serverapp, kid, QUERY)
    count, user, token_head = out.split()
    assert count == "3" and warehouse.roles() == {user}
    assert token_head.startswith(("s.", "hvs"))
    # The panel shows the service's lease ids, never a value.
    listing = json.loads((await jp_fetch("prod-discovery", "api", "credentials")).body)
    (kernel,) = listing["kernels"]
    assert kernel["kernel_id"] == kid and set(kernel["profiles"]) == {"warehouse", "vault"}
    lease_id = next(x["lease_id"] for x in kernel["leases"] if x["profile"] == "warehouse")
    assert warehouse.lease_alive(lease_id)
    # The issued password is redacted by the server's guard: it knows the values it injected.
    assert any(len(s) >= 6 for s in app.secrets.get(kid))

    await jp_fetch("api", "kernels", kid, method="DELETE")
    await eventually(lambda: not warehouse.lease_alive(lease_id), what="lease revoked")
    assert warehouse.roles() == set()
    # The service recorded issue and revoke under its own chain; the server's events arrive
    # with the principal the service authenticated (this test runs as root).
    await eventually(
        lambda: any(r["kind"] == "kernel" for r in records(service.dsn)), what="kernel events"
    )
    recs = records(service.dsn)
    actions = [r["data"]["action"] for r in recs if r["kind"] == "credential"]
    assert "issue" in actions or "issued" in actions, actions
    assert any(a.startswith("revok") for a in actions), actions
    served = [r for r in recs if r["kind"] == "kernel"]
    assert all(r["principal"]["username"] == "root" for r in served)


async def test_contents_reads_are_sealed_by_the_service(
    jp_fetch: Any, jp_root_dir: Path, service: ServiceProcess, started: Any
) -> None:
    (jp_root_dir / "extract.csv").write_text("id,name\n1,ada\n")
    for _ in range(3):
        await jp_fetch("api", "contents", "extract.csv", method="GET")
    await jp_fetch("files", "extract.csv", method="GET")

    def extract() -> list[dict[str, Any]]:
        found = [
            r for r in records(service.dsn) if str(r["data"].get("path")).endswith("extract.csv")
        ]
        return found if len(found) >= 4 else []

    recs = await eventually(extract, what="four records of extract.csv")
    assert {r["principal"]["via"] for r in recs} == {"peer-uid"}
    # Sealed by this server with its stream's key: every record checks out at the service.
    assert not [r for r in records(service.dsn) if r["kind"] == "alert"]
    assert [r["server_seq"] for r in recs] == sorted(r["server_seq"] for r in recs)


async def test_service_down_refuses_kernel_start_naming_it(
    jp_fetch: Any, service: ServiceProcess, started: Any
) -> None:
    service.kill()
    started = time.monotonic()
    with pytest.raises(HTTPClientError) as info:
        await start_kernel(jp_fetch)
    elapsed = time.monotonic() - started
    assert info.value.code == 503
    body = info.value.response.body.decode() if info.value.response else ""
    assert "Prod Discovery service" in body and service.socket_path in body
    assert elapsed < 5.0, elapsed


class TestFailClosed:
    @pytest.fixture
    def prod_discovery_extension_config(
        self, service: ServiceProcess, tmp_path: Path
    ) -> dict[str, Any]:
        return {
            "ProdDiscoveryApp": {"service_url": service.url},
            "AuditTrail": {
                "spool_dir": str(tmp_path / "spool"),
                "retry_interval": 0.2,
                "fail_closed": True,
                "ack_timeout": 2.0,
            },
        }

    async def test_data_refused_while_down_and_nothing_lost_after(
        self,
        jp_fetch: Any,
        jp_root_dir: Path,
        service: ServiceProcess,
        tmp_path: Path,
        openbao: Any,
        warehouse: Warehouse,
        started: Any,
    ) -> None:
        (jp_root_dir / "a.txt").write_text("x")
        await jp_fetch("api", "contents", "a.txt", method="GET")
        service.kill()
        refused = 0
        for _ in range(10):
            try:
                await jp_fetch("api", "contents", "a.txt", method="GET")
            except HTTPClientError as exc:
                assert exc.code == 503
                refused += 1
            await asyncio.sleep(0.1)
        assert refused >= 8  # the first may still be answered before the writer notices
        # The service comes back (same store, same key): the spool is replayed, in order.
        again = service_for(tmp_path, service.dsn, openbao, warehouse.profiles())
        try:
            await _served(jp_fetch)
            recs = records(service.dsn)
            denied = [r for r in recs if r["kind"] == "denied"]
            assert len(denied) >= refused
            seqs = [
                r["server_seq"]
                for r in recs
                if r["principal"]["username"] == "root" and r.get("server_id") not in ("", None)
            ]
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
            assert not [r for r in recs if r["kind"] == "alert"], "no gap: nothing lost"
        finally:
            again.stop()


async def _served(jp_fetch: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await jp_fetch("api", "contents", "a.txt", method="GET")
            return
        except HTTPClientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_dead_servers_credentials_are_revoked_by_the_service(
    service: ServiceProcess, warehouse: Warehouse
) -> None:
    """A server that stops beating (SIGKILL, OOM, node lost) loses its kernels' credentials
    without ever starting again: the service revokes them after its server_timeout (3 s here)."""
    dead = service.client("dead-server")
    alive = service.client("live-server")
    issued = await dead.issue("k-dead", "python3")
    kept = await alive.issue("k-live", "python3")

    def lease(result: dict[str, Any]) -> str:
        return next(
            x["lease_id"] for x in result["kernel"]["leases"] if x["profile"] == "warehouse"
        )

    dead_lease, live_lease = lease(issued), lease(kept)
    assert warehouse.lease_alive(dead_lease) and warehouse.lease_alive(live_lease)
    deadline = time.monotonic() + 15
    while warehouse.lease_alive(dead_lease):
        await alive.heartbeat()  # the live server keeps beating
        assert time.monotonic() < deadline, "the dead server's lease was not revoked"
        await asyncio.sleep(0.5)
    assert warehouse.lease_alive(live_lease)
    revoked = [
        r["data"]
        for r in records(service.dsn)
        if r["kind"] == "credential" and r["data"].get("reason") == "server_gone"
    ]
    assert revoked and all("dead-server" in d["kernel_id"] for d in revoked)
    await alive.revoke("k-live", "shutdown")
    assert not warehouse.lease_alive(live_lease)
    await dead.aclose()
    await alive.aclose()


async def test_one_server_cannot_revoke_anothers_kernel(
    service: ServiceProcess, warehouse: Warehouse
) -> None:
    """Kernel ids are scoped to the server (and principal) that asked: knowing another
    server's kernel id, from the trail or anywhere, reaches nothing."""
    owner = service.client("owner-server")
    other = service.client("other-server")
    issued = await owner.issue("k-1", "python3")
    lease = next(x["lease_id"] for x in issued["kernel"]["leases"] if x["profile"] == "warehouse")
    await other.revoke("k-1", "shutdown")
    with pytest.raises(Exception, match="holds no credentials"):
        await other.renew("k-1")
    assert warehouse.lease_alive(lease)
    await owner.revoke("k-1", "shutdown")
    assert not warehouse.lease_alive(lease)
    await owner.aclose()
    await other.aclose()


async def test_kernel_token_manages_itself_only(
    service: ServiceProcess, warehouse: Warehouse, openbao: Any
) -> None:
    """Vault's default policy lets any token look up and renew any lease whose id it knows
    (ids are in the trail): the service gives kernel tokens their profile's policies and
    self-management only."""
    import hvac
    import hvac.exceptions

    client = service.client("policy-server")
    mine = await client.issue("k-mine", "python3")
    other = await service.client("other-server").issue("k-other", "python3")
    other_lease = next(
        x["lease_id"] for x in other["kernel"]["leases"] if x["profile"] == "warehouse"
    )
    kernel = hvac.Client(url=openbao.address, token=mine["env"]["VAULT_TOKEN"])
    policies = kernel.auth.token.lookup_self()["data"]["policies"]
    assert "default" not in policies and "prod-discovery-kernel" in policies
    kernel.auth.token.renew_self()
    for attempt in (
        lambda: kernel.sys.read_lease(other_lease),
        lambda: kernel.sys.renew_lease(other_lease),
        lambda: kernel.sys.revoke_lease(other_lease),
    ):
        with pytest.raises(hvac.exceptions.Forbidden):
            attempt()
    assert warehouse.lease_alive(other_lease)


async def test_restarted_service_adopts_and_keeps_renewing(
    service: ServiceProcess, warehouse: Warehouse, openbao: Any, tmp_path: Path
) -> None:
    """A restart of the service (upgrade, crash) does not cut running kernels off their data:
    the new process adopts the leases the old one journaled, renews them, and revokes them when
    their kernel stops."""
    client = service.client("adopting-server")
    issued = await client.issue("k-kept", "python3")
    lease = next(x["lease_id"] for x in issued["kernel"]["leases"] if x["profile"] == "warehouse")
    service.kill()  # SIGKILL: no cleanup at all
    assert warehouse.lease_alive(lease)
    again = service_for(tmp_path, service.dsn, openbao, warehouse.profiles())
    try:
        fresh = again.client("adopting-server")
        # The old client's pooled connection died with the old process: retried afresh once.
        assert [k["kernel_id"] for k in await client.heartbeat()] == ["k-kept"]
        kernels = await fresh.heartbeat()
        assert [k["kernel_id"] for k in kernels] == ["k-kept"]
        renewed = await fresh.renew("k-kept")
        assert any(x["lease_id"] == lease for x in renewed["leases"])
        assert warehouse.lease_alive(lease)
        await fresh.revoke("k-kept", "shutdown")
        assert not warehouse.lease_alive(lease)
        await fresh.aclose()
    finally:
        again.stop()


async def test_policy_refusal_is_403_and_names_the_user(
    tmp_path: Path, openbao: Any, warehouse: Warehouse, ledger_dsn: str
) -> None:
    """A principal no profile selects is refused by policy (403, naming user and groups), not
    reported as a Vault failure."""
    from jupyter_prod_discovery.service.client import ServiceRefused

    profiles = [dict(p, groups=["fraud-only"]) for p in warehouse.profiles()]
    (tmp_path / "deny").mkdir()
    svc = service_for(
        tmp_path / "deny",
        ledger_dsn,
        openbao,
        profiles,
        "--CredentialBroker.deny_without_profile=True",
    )
    try:
        client = svc.client("denied-server")
        with pytest.raises(ServiceRefused) as info:
            await client.issue("k-1", "python3")
        assert info.value.status == 403
        assert "no credential profile applies to user 'root'" in str(info.value)
        assert warehouse.roles() == set()
        await client.aclose()
    finally:
        svc.stop()


async def spooled(tmp_path: Path, at_least: int) -> tuple[Path, list[str]]:
    """The server's spool of the service's sink once it holds ``at_least`` records."""
    spool = tmp_path / "spool" / "ServiceSink.jsonl"
    deadline = time.monotonic() + 10
    while len(spool.read_text().splitlines() if spool.exists() else []) < at_least:
        assert time.monotonic() < deadline, "nothing spooled"
        await asyncio.sleep(0.1)
    return spool, spool.read_text().splitlines()


def alerts(dsn: str, what: str) -> list[dict[str, Any]]:
    return [r for r in records(dsn) if r["kind"] == "alert" and r["data"].get("what") == what]


async def test_records_altered_in_the_spool_are_flagged(
    jp_fetch: Any,
    jp_root_dir: Path,
    service: ServiceProcess,
    started: Any,
    tmp_path: Path,
    openbao: Any,
    warehouse: Warehouse,
) -> None:
    """The server chains its records with a key the service issued for its stream (held in the
    non-dumpable server only): a record the user rewrites in the spool while the service is
    down is stored as evidence, after an alert naming it; untouched ones pass unflagged."""
    (jp_root_dir / "c.txt").write_text("x")
    await jp_fetch("api", "contents", "c.txt", method="GET")
    service.kill()
    for _ in range(4):
        await jp_fetch("api", "contents", "c.txt", method="GET")
    spool, lines = await spooled(tmp_path, 4)
    # Edited in place, hash and MAC kept (the key is the server's only): the form is intact.
    assert '"path":"c.txt"' in lines[1]
    forged_line = lines[1].replace('"path":"c.txt"', '"path":"innocent.txt"')
    forged = json.loads(forged_line)
    spool.write_text("\n".join([lines[0], forged_line, *lines[2:]]) + "\n")
    again = service_for(tmp_path, service.dsn, openbao, warehouse.profiles())
    try:
        (alert,) = await eventually(
            lambda: alerts(service.dsn, "altered"), timeout=20, what="an altered alert"
        )
        assert alert["data"]["server_seq"] == forged["seq"]
        assert "does not match" in alert["data"]["why"]
        paths = [r["data"].get("path") for r in records(service.dsn) if r["kind"] == "contents"]
        assert "innocent.txt" in paths  # stored as evidence, after its alert
    finally:
        again.stop()


async def test_records_removed_from_the_spool_show_as_a_gap(
    jp_fetch: Any,
    jp_root_dir: Path,
    service: ServiceProcess,
    started: Any,
    tmp_path: Path,
    openbao: Any,
    warehouse: Warehouse,
) -> None:
    """While the service is down (and fail_closed is off) the server spools to a file its user
    can edit. Deleting a record there before the replay cannot go unnoticed: the server's
    stream has a gap, which the service seals as an alert naming the missing numbers."""
    (jp_root_dir / "b.txt").write_text("x")
    await jp_fetch("api", "contents", "b.txt", method="GET")
    service.kill()
    for _ in range(5):
        await jp_fetch("api", "contents", "b.txt", method="GET")  # served, spooled
    spool, lines = await spooled(tmp_path, 5)
    removed = json.loads(lines[2])["seq"]
    spool.write_text("\n".join(lines[:2] + lines[3:]) + "\n")  # the user hides one record
    again = service_for(tmp_path, service.dsn, openbao, warehouse.profiles())
    try:
        (alert,) = await eventually(
            lambda: alerts(service.dsn, "gap"), timeout=20, what="a gap alert"
        )
        assert alert["data"]["missing_from"] == removed == alert["data"]["missing_to"]
        assert alert["principal"]["username"] == "root"
    finally:
        again.stop()


class TestExpiryWarning:
    """The service renews, but the notebook is where the user is: when a lease reaches its max
    TTL, the server relays the service's report as a warning printed in the kernel."""

    @pytest.fixture
    def service(
        self, tmp_path: Path, openbao: Any, warehouse: Warehouse, ledger_dsn: str
    ) -> Iterator[ServiceProcess]:
        from jupyter_prod_discovery.credentials.seeding import configure_database_engine

        configure_database_engine(
            warehouse.client,
            warehouse.dsn,
            role="short",
            tables=["customers"],
            username_prefix=warehouse.prefix,
            default_ttl="14s",
            max_ttl="14s",
        )
        profiles = [
            {
                "name": "short",
                "type": "database",
                "role": "short",
                "env": {"PGUSER": "{username}", "PGPASSWORD": "{password}"},
            }
        ]
        svc = service_for(tmp_path, ledger_dsn, openbao, profiles)
        try:
            yield svc
        finally:
            svc.stop()

    async def test_expiring_lease_is_announced_in_the_kernel(
        self, jp_fetch: Any, jp_serverapp: Any, started: Any
    ) -> None:
        kid = await start_kernel(jp_fetch)
        deadline = time.monotonic() + 30
        while not started.broker._warned:  # the service renews at half the TTL, gets less
            assert time.monotonic() < deadline, "no expiry warning relayed"
            await asyncio.sleep(0.2)
        out = await run_code(jp_serverapp, kid, "print('next cell')")
        assert "[Prod Discovery] The credentials of profile(s) short expire in" in out
        assert "next cell" in out
        await jp_fetch("api", "kernels", kid, method="DELETE")


async def test_bad_requests_are_refused_with_a_reason(service: ServiceProcess) -> None:
    """Bad input from a (possibly compromised) server gets a 4xx naming what is wrong, and
    nothing is stored or issued."""
    from jupyter_prod_discovery.service.client import ServiceRefused

    before = len(records(service.dsn))
    good = service.client("good-server")
    bad_id = service.client("a/b")
    cases = [
        (lambda: bad_id.request("POST", "/api/audit/events", content=b"{}"), 400, "server's id"),
        (lambda: good.request("POST", "/api/audit/events", content=b"not json"), 400, "not JSON"),
        (
            lambda: good.request(
                "POST", "/api/audit/events", content=b'{"seq": 1, "kind": "alert", "data": {}}'
            ),
            400,
            "unknown event kind",
        ),
        (
            lambda: good.request("POST", "/api/credentials", json_body={"kernel_id": "x/y"}),
            400,
            "kernel_id",
        ),
        (lambda: good.request("POST", "/api/credentials", content=b"[1]"), 400, "JSON object"),
        (
            lambda: good.request("DELETE", "/api/credentials/k1", params={"reason": "because"}),
            400,
            "reason must be one of",
        ),
        (lambda: good.request("POST", "/api/credentials/nope/renew"), 404, "no credentials"),
    ]
    for call, status, message in cases:
        with pytest.raises(ServiceRefused) as info:
            call()
        assert info.value.status == status, (message, info.value)
        assert message in str(info.value)
    assert len(records(service.dsn)) == before


def sealed(chain: Any, kid: str) -> str:
    from jupyter_prod_discovery.audit.trail import schema_id

    data = json.dumps({"action": "start", "kernel_id": kid}, separators=(",", ":"))
    ts = "2026-12-05T20:00:00.000000Z"
    return str(chain.seal_event(ts, "0" * 32, "kernel", schema_id("kernel"), data))


async def open_channel(service: ServiceProcess, server_id: str) -> Any:
    from jupyter_prod_discovery.service.channel_client import AuditChannel

    channel = AuditChannel(service.client(server_id), timeout=4.0, retry_interval=0.1)
    deadline = time.monotonic() + 10
    while not channel.ready():
        assert time.monotonic() < deadline, f"the channel did not open: {channel.error}"
        await asyncio.sleep(0.02)
    return channel


async def test_audit_channel_stores_in_order_and_acknowledges(service: ServiceProcess) -> None:
    """The kept-open channel: sealed lines in, acknowledgments out, checked with the stream's
    key like shipped ones; a line sent again is acknowledged and not stored twice."""
    from jupyter_prod_discovery.audit.chain import Chain

    key = service.client("chan-server").session_key()
    chain = Chain(key)
    channel = await open_channel(service, "chan-server")
    lines = [sealed(chain, f"k{i}") for i in range(5)]
    futures = [channel.send(i + 1, line, True) for i, line in enumerate(lines)]
    assert await asyncio.wait_for(asyncio.gather(*futures), 10) == [True] * 5
    replay = channel.send(3, lines[2], True)  # sent again: acknowledged, not stored twice
    assert replay is not None and await asyncio.wait_for(replay, 10)
    mine = [r for r in records(service.dsn) if r.get("server_id") == "chan-server"]
    assert [r["server_seq"] for r in mine] == [1, 2, 3, 4, 5]
    assert [r["data"]["kernel_id"] for r in mine] == [f"k{i}" for i in range(5)]
    assert {r["principal"]["via"] for r in mine} == {"peer-uid"}
    assert not [r for r in records(service.dsn) if r["kind"] == "alert"]
    channel.close()


async def test_audit_channel_refuses_bad_lines_and_plain_requests(
    service: ServiceProcess,
) -> None:
    """What the channel cannot take breaks it with the service's reason (the trail then goes
    the HTTP way, which refuses the same line with a 4xx); a request without the upgrade is a
    400 naming the protocol; nothing is stored."""
    from jupyter_prod_discovery.service.client import ServiceRefused

    before = len(records(service.dsn))
    channel = await open_channel(service, "bad-server")
    fut = channel.send(1, "not json", True)
    assert fut is not None
    deadline = time.monotonic() + 10
    while channel.healthy():
        assert time.monotonic() < deadline, "the channel took a line that is not JSON"
        await asyncio.sleep(0.02)
    assert channel.error is not None and "not JSON" in channel.error
    assert channel.outstanding() == [(1, "not json")]  # left for the writer, not acknowledged
    with pytest.raises(ServiceRefused) as info:
        service.client("bad-server").request("GET", "/api/audit/channel")
    assert info.value.status == 400 and "Upgrade" in str(info.value)
    bad_id = service.client("a/b")
    with pytest.raises(ServiceRefused) as info:
        bad_id.request("GET", "/api/audit/channel", headers={"Upgrade": "prod-discovery-audit/1"})
    assert info.value.status == 400 and "server's id" in str(info.value)
    assert len(records(service.dsn)) == before


async def test_contents_records_travel_on_the_channel(
    jp_fetch: Any, jp_root_dir: Path, service: ServiceProcess, started: Any
) -> None:
    """A server as the service's client keeps its channel open and answers a read once the
    service stored its record, with nothing left outstanding and nothing shipped over HTTP
    per record."""
    (jp_root_dir / "d.txt").write_text("x")
    await jp_fetch("api", "contents", "d.txt", method="GET")  # opens the channel
    stream = started.audit._stream
    deadline = time.monotonic() + 10
    while not stream.healthy():
        assert time.monotonic() < deadline, f"no channel: {stream.error}"
        await asyncio.sleep(0.05)
    before = len([r for r in records(service.dsn) if r["kind"] == "contents"])
    client = started.audit.sinks[0].client
    shipped: list[int] = []
    ship = client.ship
    client.ship = lambda lines: (shipped.append(len(lines)), ship(lines))[1]
    for _ in range(5):
        await jp_fetch("api", "contents", "d.txt", method="GET")
        assert not stream.outstanding()  # answered only once acknowledged
    recs = [r for r in records(service.dsn) if r["kind"] == "contents"]
    assert len(recs) == before + 5
    assert not [r for r in records(service.dsn) if r["kind"] == "alert"]
    assert shipped == []  # not one HTTP request per record
