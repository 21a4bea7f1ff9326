"""Kernels started through the REST API get their own database credentials and lose them on
every kind of stop. Real OpenBao, real PostgreSQL, real kernels."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
from credentials_support import (
    QUERY,
    ListRecorder,
    Warehouse,
    eventually,
    run_code,
)
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.credentials.statefile import read_state


@pytest.fixture
def extra_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def prod_discovery_extension_config(
    vault_config: dict[str, Any], warehouse: Warehouse, tmp_path: Path, extra_config: dict[str, Any]
) -> dict[str, Any]:
    broker = {
        "profiles": warehouse.profiles(),
        "state_dir": str(tmp_path / "state"),
        "check_interval": 0.2,
        **extra_config.get("CredentialBroker", {}),
    }
    rest = {k: v for k, v in extra_config.items() if k != "CredentialBroker"}
    return {**vault_config, "CredentialBroker": broker, **rest}


def app_of(serverapp: Any) -> Any:
    return serverapp.web_app.settings["prod_discovery"]


async def start_kernel(jp_fetch: Any) -> str:
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    return str(json.loads(response.body)["id"])


async def credentials(jp_fetch: Any) -> dict[str, Any]:
    response = await jp_fetch("prod-discovery", "api", "credentials")
    return dict(json.loads(response.body))


def leases_of(app: Any, kernel_id: str) -> dict[str, str]:
    record = app.broker.get(kernel_id)
    return {lease.profile: lease.lease_id for lease in record.leases} if record else {}


async def test_start_kernel_injects_credentials_and_delete_revokes(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse, tmp_path: Path
) -> None:
    app = app_of(jp_serverapp)
    kid = await start_kernel(jp_fetch)
    out = await run_code(jp_serverapp, kid, QUERY)
    count, user, token_head = out.split()
    assert count == "3"
    assert warehouse.roles() == {user}
    assert token_head == "s." or token_head.startswith(("s.", "hvs"))
    leases = leases_of(app, kid)
    assert warehouse.lease_alive(leases["warehouse"])
    assert warehouse.accessor_alive(leases["vault"])

    listing = await credentials(jp_fetch)
    (kernel,) = listing["kernels"]
    assert kernel["kernel_id"] == kid
    assert kernel["profiles"] == ["warehouse", "vault"]
    by_profile = {lease["profile"]: lease for lease in kernel["leases"]}
    assert by_profile["warehouse"]["lease_id"] == leases["warehouse"]
    assert 0 < by_profile["warehouse"]["ttl_left"] <= 600
    assert by_profile["warehouse"]["renewable"] is True
    secrets = app.secrets.get(kid)
    assert secrets  # the output guard gets the exact values
    state_text = "".join(p.read_text() for p in (tmp_path / "state").glob("*.jsonl"))
    assert leases["warehouse"] in state_text
    for secret in secrets:
        assert secret not in json.dumps(listing)
        assert secret not in state_text
    mode = next((tmp_path / "state").glob("*.jsonl")).stat().st_mode & 0o777
    assert mode == 0o600

    renewed = await jp_fetch(
        "prod-discovery", "api", "credentials", kid, "renew", method="POST", body=""
    )
    assert json.loads(renewed.body)["kernel_id"] == kid

    await jp_fetch("api", "kernels", kid, method="DELETE")
    assert warehouse.roles() == set()
    assert not warehouse.lease_alive(leases["warehouse"])
    assert not warehouse.accessor_alive(leases["vault"])
    assert warehouse.leases() == []
    assert app.secrets.get(kid) == frozenset()
    # The journal lists nothing live any more (it is removed at server stop).
    assert [read_state(p)["leases"] for p in (tmp_path / "state").glob("*.jsonl")] == [[]]
    assert (await credentials(jp_fetch))["kernels"] == []


async def test_get_credentials_refuses_anonymous(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("prod-discovery", "api", "credentials", headers={"Authorization": ""})
    assert err.value.code == 403


async def test_renew_credentials_unknown_kernel_is_404(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "prod-discovery",
            "api",
            "credentials",
            "no-such-kernel",
            "renew",
            method="POST",
            body="",
        )
    assert err.value.code == 404


async def test_restart_kernel_issues_new_credentials_and_revokes_old(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse
) -> None:
    app = app_of(jp_serverapp)
    kid = await start_kernel(jp_fetch)
    first_user = (await run_code(jp_serverapp, kid, QUERY)).split()[1]
    first = leases_of(app, kid)
    await jp_fetch("api", "kernels", kid, "restart", method="POST", body="")
    second_user = (await run_code(jp_serverapp, kid, QUERY)).split()[1]
    assert second_user != first_user
    assert warehouse.roles() == {second_user}
    assert not warehouse.lease_alive(first["warehouse"])
    assert not warehouse.accessor_alive(first["vault"])
    await jp_fetch("api", "kernels", kid, method="DELETE")
    assert warehouse.roles() == set()
    assert warehouse.leases() == []


async def test_crash_kernel_autorestart_revokes_old_credentials(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse
) -> None:
    app = app_of(jp_serverapp)
    kid = await start_kernel(jp_fetch)
    out = await run_code(jp_serverapp, kid, "import os; print(os.getpid())")
    first = leases_of(app, kid)
    os.kill(int(out.strip()), signal.SIGKILL)
    await eventually(
        lambda: leases_of(app, kid) and leases_of(app, kid) != first, what="auto-restart"
    )
    assert not warehouse.lease_alive(first["warehouse"])
    new_user = (await run_code(jp_serverapp, kid, QUERY)).split()[1]
    assert warehouse.roles() == {new_user}
    await jp_fetch("api", "kernels", kid, method="DELETE")
    assert warehouse.roles() == set()


@pytest.mark.parametrize(
    "extra_config",
    [{"MappingKernelManager": {"cull_idle_timeout": 2, "cull_interval": 1}}],
)
async def test_cull_idle_kernel_revokes_credentials(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse
) -> None:
    app = app_of(jp_serverapp)
    kid = await start_kernel(jp_fetch)
    await run_code(jp_serverapp, kid, QUERY)
    lease = leases_of(app, kid)["warehouse"]
    await eventually(lambda: kid not in jp_serverapp.kernel_manager, what="culling")
    await eventually(lambda: not warehouse.roles(), what="role dropped")
    assert not warehouse.lease_alive(lease)
    assert app.broker.outstanding() == 0


async def test_stop_extension_revokes_every_kernel(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse
) -> None:
    app = app_of(jp_serverapp)
    kids = [await start_kernel(jp_fetch) for _ in range(2)]
    assert len(warehouse.roles()) == 2
    await app.broker.stop()  # what stop_extension does first on server stop
    assert warehouse.roles() == set()
    assert warehouse.leases() == []
    for kid in kids:
        await jp_fetch("api", "kernels", kid, method="DELETE")


async def test_start_kernel_fails_closed_when_vault_down(
    jp_fetch: Any, jp_serverapp: Any, openbao: Any
) -> None:
    openbao.stop()
    with pytest.raises(HTTPClientError) as err:
        await start_kernel(jp_fetch)
    assert err.value.code == 503
    body = json.loads(err.value.response.body)
    assert "unreachable" in body["message"]
    assert openbao.address in body["message"]
    # The server stays up and holds no half-started kernel.
    kernels = json.loads((await jp_fetch("api", "kernels")).body)
    assert kernels == []
    status = json.loads((await jp_fetch("prod-discovery", "api", "status")).body)
    assert status["vault"]["reachable"] is False


@pytest.mark.parametrize(
    "extra_config", [{"CredentialBroker": {"start_without_credentials": True}}]
)
async def test_start_kernel_without_credentials_when_configured(
    jp_fetch: Any, jp_serverapp: Any, openbao: Any
) -> None:
    openbao.stop()
    recorder = ListRecorder(app_of(jp_serverapp).audit)
    app_of(jp_serverapp).audit = recorder
    kid = await start_kernel(jp_fetch)
    out = await run_code(
        jp_serverapp,
        kid,
        "import os; print(repr(os.environ.get('PGUSER')), 'VAULT_TOKEN' in os.environ)",
    )
    assert out.split() == ["None", "False"]
    assert recorder.actions("failure")
    await jp_fetch("api", "kernels", kid, method="DELETE")


async def test_random_kernel_lifecycles_leave_no_lease(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse
) -> None:
    import asyncio

    app = app_of(jp_serverapp)
    rng = random.Random(20261121)
    peak = 0

    async def life(index: int) -> None:
        nonlocal peak
        kid = await start_kernel(jp_fetch)
        peak = max(peak, app.broker.outstanding())
        for _ in range(rng.randint(0, 2)):
            await jp_fetch("api", "kernels", kid, "restart", method="POST", body="")
        if rng.random() < 0.8:
            await jp_fetch("api", "kernels", kid, method="DELETE")
        # the others stay up until the server stops

    for batch in range(5):
        await asyncio.gather(*(life(batch * 10 + i) for i in range(10)))
    assert peak > 0
    await app.broker.stop()
    assert app.broker.outstanding() == 0
    assert warehouse.leases() == []
    assert warehouse.roles() == set()
    for kid in list(jp_serverapp.kernel_manager.list_kernel_ids()):
        await jp_fetch("api", "kernels", kid, method="DELETE")


async def test_expiring_lease_warns_in_notebook_and_audits(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse
) -> None:
    from jupyter_prod_discovery.credentials.seeding import configure_database_engine

    configure_database_engine(
        warehouse.client,
        warehouse.dsn,
        role="brief",
        tables=["customers"],
        username_prefix=warehouse.prefix,
        # Capped from the start (max TTL = TTL) and within warn_before (60 s): the warning is
        # due at once, and the lease outlives the test even on a loaded machine.
        default_ttl="45s",
        max_ttl="45s",
    )
    # pytest-jupyter does not run the server's post-start hook: start the renewal task here.
    await jp_serverapp.extension_manager.start_all_extensions()
    app = app_of(jp_serverapp)
    recorder = ListRecorder(app.audit)
    app.audit = recorder
    app.broker.profiles = [
        {"name": "brief", "type": "database", "role": "brief", "env": {"PGUSER": "{username}"}}
    ]
    kid = await start_kernel(jp_fetch)
    await run_code(jp_serverapp, kid, "1")
    issued_values = set(app.secrets.get(kid))
    assert issued_values
    (issued,) = recorder.actions("issue")
    assert issued["profile"] == "brief" and issued["request_id"]
    await eventually(lambda: recorder.actions("expiring"), what="expiry warning")
    (expiring,) = recorder.actions("expiring")
    assert expiring["lease_id"] == issued["lease_id"]
    out = await run_code(jp_serverapp, kid, "print('next cell')")
    assert "[Prod Discovery] The credentials of profile(s) brief expire" in out
    assert "next cell" in out
    await jp_fetch("api", "kernels", kid, method="DELETE")
    await eventually(lambda: not warehouse.roles(), what="role dropped")
    secrets = app.secrets.all() | {issued_secret for issued_secret in issued_values}
    for _kind, data in recorder.events:
        for secret in secrets:
            assert secret not in json.dumps(data)
    # Every credential event fits the audit schema (the trail counts those that do not).
    trail = recorder.inner
    if hasattr(trail, "wait_written"):
        assert await trail.wait_written(recorder.last_ticket)
        assert trail.invalid_events == 0


@pytest.mark.parametrize("extra_config", [{"KernelRestarter": {"restart_limit": 0}}])
async def test_dead_kernel_after_restart_limit_revokes_credentials(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse
) -> None:
    app = app_of(jp_serverapp)
    kid = await start_kernel(jp_fetch)
    pid = int((await run_code(jp_serverapp, kid, "import os; print(os.getpid())")).strip())
    lease = leases_of(app, kid)["warehouse"]
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: kid not in jp_serverapp.kernel_manager, what="kernel dropped")
    await eventually(lambda: not warehouse.roles(), what="role dropped")
    assert not warehouse.lease_alive(lease)
    assert app.broker.outstanding() == 0


@pytest.mark.parametrize("extra_config", [{"CredentialBroker": {"issue_timeout": 1.0}}])
async def test_start_kernel_fails_closed_when_vault_hangs(
    jp_fetch: Any, jp_serverapp: Any, openbao: Any
) -> None:
    import socket

    port = openbao.port
    openbao.stop()
    # Something accepts connections on Vault's address but never answers.
    with socket.socket() as silent:
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", port))
        silent.listen(8)
        with pytest.raises(HTTPClientError) as err:
            await start_kernel(jp_fetch)
    assert err.value.code == 503
    message = json.loads(err.value.response.body)["message"]
    assert "did not issue the kernel's credentials within 1 s" in message
    assert json.loads((await jp_fetch("api", "kernels")).body) == []


async def test_start_kernel_fails_when_vault_refuses_naming_profile(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse
) -> None:
    app = app_of(jp_serverapp)
    app.broker.profiles = [
        *warehouse.profiles(),
        {"name": "missing", "type": "database", "role": "nope", "env": {"X": "{username}"}},
    ]
    with pytest.raises(HTTPClientError) as err:
        await start_kernel(jp_fetch)
    assert err.value.code == 503
    message = json.loads(err.value.response.body)["message"]
    assert "credential profile 'missing'" in message
    # What was issued before the refusal (warehouse, vault) is revoked again.
    assert warehouse.roles() == set()
    assert warehouse.leases() == []
    assert app.broker.outstanding() == 0


async def test_start_kernel_with_several_failing_profiles_names_them_all(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    app = app_of(jp_serverapp)
    app.broker.profiles = [
        *warehouse.profiles(),
        {"name": "missing", "type": "database", "role": "nope", "env": {"X": "{username}"}},
        {"name": "absent", "type": "database", "role": "nada", "env": {"Y": "{username}"}},
    ]
    with pytest.raises(HTTPClientError) as err:
        await start_kernel(jp_fetch)
    assert err.value.code == 503
    message = json.loads(err.value.response.body)["message"]
    assert "2 credential profiles failed" in message
    assert "credential profile 'missing'" in message
    assert "credential profile 'absent'" in message
    assert warehouse.roles() == set()
    assert app.broker.outstanding() == 0
    # Both errors were taken up: none is left for the collector to log.
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_issue_profile_finishing_after_the_start_gave_up_revokes_its_lease(
    jp_serverapp: Any, warehouse: Warehouse
) -> None:
    import asyncio

    from jupyter_prod_discovery.credentials.records import CredentialError

    app = app_of(jp_serverapp)
    recorder = ListRecorder(app.audit)
    app.audit = recorder
    broker = app.broker
    profile = next(p for p in broker._profiles if p.type == "database")
    abandoned = asyncio.Event()
    abandoned.set()  # the start timed out while this call was in flight
    issued: list[Any] = []
    with pytest.raises(CredentialError, match="gave up"):
        await broker._issue_profile(
            app.vault.transport, profile, "late-kernel", "alice", issued, abandoned
        )
    assert issued == []
    assert warehouse.leases() == []
    assert warehouse.roles() == set()
    assert broker.outstanding() == 0
    # Audited like every revocation (lease id, profile), never left unrecorded.
    revoked = recorder.actions("revoke")
    assert [(e["kernel_id"], e["profile"]) for e in revoked] == [("late-kernel", profile.name)]


@pytest.mark.parametrize("cancel_when", ["calls_sent", "role_created"])
async def test_cancelled_start_leaves_nothing_issued(
    jp_serverapp: Any,
    warehouse: Warehouse,
    cancel_when: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A start cancelled while its Vault calls are in flight (the client went away, the server
    # is stopping): what was issued is revoked, and calls still running revoke their own.
    import asyncio
    import gc

    broker = app_of(jp_serverapp).broker
    release = asyncio.Event()
    issue_one = broker._issue_one

    async def token_call_held(vault: Any, profile: Any, *args: Any) -> Any:
        if profile.type == "token":  # still in flight when the start is cancelled
            await release.wait()
        return await issue_one(vault, profile, *args)

    monkeypatch.setattr(broker, "_issue_one", token_call_held)
    start = asyncio.ensure_future(broker.issue("cancelled-kernel", "python3", "alice"))
    await asyncio.sleep(0)  # every call task created
    if cancel_when == "role_created":  # the database profile's lease is issued
        await eventually(warehouse.roles, what="database user created")
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    release.set()  # the held call now issues a child token, after the start gave up
    await eventually(lambda: not broker._background, what="late calls finished")
    await eventually(lambda: not warehouse.roles(), what="roles dropped")
    assert warehouse.leases() == []
    assert broker.outstanding() == 0
    # The late call's outcome ("gave up") was taken up, not left for the collector to log.
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_start_kernel_failing_after_issue_revokes_what_was_issued(
    jp_fetch: Any, jp_serverapp: Any, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Credentials are issued before the kernel's ports are chosen; when choosing them (or
    # writing the connection file) fails, the start fails and nothing stays issued.
    from jupyter_client.provisioning import LocalProvisioner

    app = app_of(jp_serverapp)

    async def no_ports(self: Any, **kwargs: Any) -> Any:
        raise OSError("no free port")

    monkeypatch.setattr(LocalProvisioner, "pre_launch", no_ports)
    with pytest.raises(HTTPClientError):
        await start_kernel(jp_fetch)
    assert warehouse.roles() == set()
    assert warehouse.leases() == []
    assert app.broker.outstanding() == 0
