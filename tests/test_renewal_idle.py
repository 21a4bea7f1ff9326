"""The renewal pass runs only while the broker holds something, and wakes when it does.

Why it matters: a sleeping timer of ours at the top of the event loop's heap makes every
request's cancelled timeouts pile up under it, and anyio walks every live task at each hand-off
to a worker thread (see ``LeaseRenewal._loop``). These tests fail if an idle broker keeps a task
or a timer, or if the pass does not run for what it must renew, reap or retry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from credentials_support import eventually
from traitlets.config import Config

from jupyter_prod_discovery.credentials.broker import CredentialBroker
from jupyter_prod_discovery.credentials.records import Lease

INTERVAL = 0.02


def _broker(tmp_path: Path) -> tuple[CredentialBroker, list[float]]:
    app = SimpleNamespace(
        vault=SimpleNamespace(url="http://127.0.0.1:1"),
        serverapp=SimpleNamespace(runtime_dir=str(tmp_path), kernel_manager=None),
    )
    config = Config({"CredentialBroker": {"check_interval": INTERVAL, "state_dir": str(tmp_path)}})
    broker = CredentialBroker(app=app, config=config)  # type: ignore[arg-type]
    ticks: list[float] = []

    async def tick() -> None:
        ticks.append(asyncio.get_running_loop().time())

    broker._tick = tick  # type: ignore[method-assign]
    return broker, ticks


def _lease(lease_id: str = "database/creds/r/abc") -> Lease:
    return Lease("warehouse", "lease", lease_id, "req", 60, True, 0.0)


def _idle(broker: CredentialBroker) -> bool:
    """No task of the pass alive, and no live timer in the loop (asyncio's own heap)."""
    loop: Any = asyncio.get_running_loop()
    timers = [h for h in loop._scheduled if not h.cancelled()]
    return (broker._task is None or broker._task.done()) and not timers


async def _stop(broker: CredentialBroker) -> None:
    broker._running = False
    task, broker._task = broker._task, None
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    broker._remove_state()


async def test_idle_pass_waits_without_a_timer_and_wakes_for_a_kernel(tmp_path: Path) -> None:
    broker, ticks = _broker(tmp_path)
    broker.start()
    try:
        await asyncio.sleep(INTERVAL * 10)
        assert ticks == []
        assert _idle(broker)
        broker.adopt("k1", "alice", _lease())  # a kernel holding a lease: work to do
        await eventually(lambda: len(ticks) >= 3, timeout=200 * INTERVAL, what="a renewal pass")
        assert len(ticks) >= 3
    finally:
        await _stop(broker)


async def test_pass_goes_idle_again_once_the_kernel_is_gone(tmp_path: Path) -> None:
    broker, ticks = _broker(tmp_path)
    broker.adopt("k1", "alice", _lease())
    broker.start()
    try:
        await eventually(lambda: ticks, timeout=200 * INTERVAL, what="a renewal pass")
        assert ticks
        broker._kernels.clear()
        await asyncio.sleep(INTERVAL * 3)
        seen = len(ticks)
        await asyncio.sleep(INTERVAL * 10)
        assert len(ticks) == seen
        assert _idle(broker)
        broker.adopt("k2", "bob", _lease("database/creds/r/def"))  # and runs again
        await eventually(lambda: len(ticks) > seen, timeout=200 * INTERVAL, what="a renewal pass")
        assert len(ticks) > seen
    finally:
        await _stop(broker)


async def test_a_failed_revocation_wakes_the_pass_to_retry_it(tmp_path: Path) -> None:
    broker, ticks = _broker(tmp_path)

    async def fail(leases: Any) -> dict[str, str]:
        return {lease.lease_id: "vault down" for lease in leases}

    broker._revoke_in_vault = fail  # type: ignore[method-assign]
    broker.app.audit = SimpleNamespace(record=lambda *a, **k: 0)  # type: ignore[attr-defined]
    broker.start()
    try:
        await asyncio.sleep(INTERVAL * 5)
        assert ticks == []
        await broker._revoke_leases("k1", [_lease()], None)
        assert broker._pending_revoke
        await eventually(lambda: ticks, timeout=200 * INTERVAL, what="a renewal pass")
        assert ticks
    finally:
        await _stop(broker)


async def test_a_stopped_broker_does_not_start_the_pass_again(tmp_path: Path) -> None:
    broker, ticks = _broker(tmp_path)
    broker.start()
    broker._running = False  # what stop() does first, before it revokes
    broker.adopt("k1", "alice", _lease())
    await asyncio.sleep(INTERVAL * 5)
    assert ticks == [] and broker._task is None
    broker._remove_state()
