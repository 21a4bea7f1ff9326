"""The AuditTrail writer: chaining, several sinks, spooling through an outage, redaction."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_support import KEY, closed_port_dsn, writer_role
from traitlets import TraitError
from traitlets.config import Config

from jupyter_prod_discovery.audit.chain import verify
from jupyter_prod_discovery.audit.redaction import MASK
from jupyter_prod_discovery.audit.sinks import JSONLSink, PostgresSink
from jupyter_prod_discovery.audit.trail import AuditTrail


def make_trail(tmp_path: Path, **extra: Any) -> AuditTrail:
    sections: dict[str, Any] = {
        "AuditTrail": {
            "mac_key": KEY,
            "spool_dir": str(tmp_path / "spool"),
            "checkpoint_path": str(tmp_path / "cp" / "checkpoints.jsonl"),
            "retry_interval": 0.05,
            **extra.pop("trail", {}),
        },
        "JSONLSink": {"path": str(tmp_path / "log" / "audit.jsonl")},
    }
    live = frozenset(extra.pop("secrets", {"s3cr3t-value-123"}))
    sections.update(extra)
    secrets = live
    return AuditTrail(config=Config(sections), secrets_provider=lambda: secrets)


@pytest.fixture(params=["fast", "jupyter_events"])
def trail(request: Any, tmp_path: Path) -> Iterator[AuditTrail]:
    t = make_trail(tmp_path, trail={"validation": request.param})
    t.start()
    yield t
    t.stop()


def records(t: AuditTrail, index: int = 0) -> list[dict[str, Any]]:
    return [json.loads(x) for x in t.sinks[index].read_lines()]


def test_record_trail_chains_and_checkpoints(trail: AuditTrail) -> None:
    for i in range(20):
        trail.record("kernel", {"action": "start", "kernel_id": f"k{i}"}, user="ann")
    assert trail.flush()
    trail.stop()
    recs = records(trail)
    assert [r["seq"] for r in recs] == list(range(1, 21))
    assert recs[0]["data"]["user"] == {"username": "ann"}
    assert recs[0]["schema"] == "https://events.prod-discovery.dev/kernel/v1"
    assert recs[0]["ts"].endswith("Z")
    result = trail.verify()
    assert result.ok, result.summary()
    assert result.checkpoints >= 1


def test_record_trail_masks_live_secrets(trail: AuditTrail) -> None:
    trail.record(
        "execution",
        {"phase": "request", "kernel_id": "k", "code": "pw = 's3cr3t-value-123'"},
        user="ann",
    )
    gates = [{"name": "secrets", "passed": False, "reason": "found s3cr3t-value-123"}]
    export = {"action": "export", "gates": gates}
    trail.record("export", export)
    trail.record("denied", {"resource": "s3cr3t-value-123", "action": "read"})
    assert trail.flush()
    assert gates[0]["reason"] == "found s3cr3t-value-123"  # the caller's data is not changed
    text = "\n".join(trail.sinks[0].read_lines())
    assert "s3cr3t-value-123" not in text
    recs = records(trail)
    assert recs[0]["data"]["code"] == f"pw = '{MASK}'"
    assert recs[0]["data"]["code_redacted"] is True


def test_record_trail_masks_secrets_needing_json_escapes_and_keeps_chain(tmp_path: Path) -> None:
    # A secret with a quote and a backslash appears escaped in the sealed line: still found,
    # and the record sealed again after redaction leaves no gap in the chain.
    secret = 'pa"ss\\w0rd-Ünï'
    t = make_trail(tmp_path, secrets={secret, "other-secret-42"})
    t.start()
    try:
        t.record("execution", {"phase": "request", "kernel_id": "k", "code": "x = 1"})
        t.record("execution", {"phase": "request", "kernel_id": "k", "code": f"pw = '{secret}'"})
        t.record("denied", {"resource": "/x/other-secret-42/y", "action": "read"})
        t.record("execution", {"phase": "request", "kernel_id": "k", "code": "y = 2"})
        assert t.flush()
        text = "\n".join(t.sinks[0].read_lines())
        assert secret not in text and json.dumps(secret)[1:-1] not in text
        assert "other-secret-42" not in text
        recs = records(t)
        assert [r["seq"] for r in recs] == [1, 2, 3, 4]
        assert "code_redacted" not in recs[0]["data"] and recs[1]["data"]["code_redacted"]
        assert recs[2]["data"]["resource"] == f"/x/{MASK}/y"
        assert t.verify().ok
    finally:
        t.stop()


def test_record_trail_omits_code_when_configured_off(tmp_path: Path) -> None:
    t = make_trail(tmp_path, trail={"record_code": False})
    t.start()
    t.record("execution", {"phase": "request", "kernel_id": "k", "code": "x", "code_sha256": "h"})
    assert t.flush()
    t.stop()
    assert "code" not in records(t)[0]["data"]


def test_record_trail_rejects_unknown_kind_and_invalid_data(trail: AuditTrail) -> None:
    with pytest.raises(ValueError, match="unknown audit event kind"):
        trail.record("nope", {})
    trail.record("pii", {"source": "live", "entities": {"EMAIL": "ann@example.com"}})
    trail.record("pii", {"source": "live", "entities": {}, "text": "ann@example.com"})
    trail.record("kernel", {"action": "start", "kernel_id": "k"})
    assert trail.flush()
    assert trail.invalid_events == 2
    assert "ann@example.com" not in "\n".join(trail.sinks[0].read_lines())
    assert [r["kind"] for r in records(trail)] == ["kernel"]


def test_start_trail_resumes_chain(tmp_path: Path) -> None:
    for _ in range(2):
        t = make_trail(tmp_path)
        t.start()
        t.record("kernel", {"action": "start", "kernel_id": "k"})
        assert t.flush()
        t.stop()
    assert [r["seq"] for r in records(t)] == [1, 2]
    assert t.verify().ok


def test_validate_trail_mac_key() -> None:
    with pytest.raises(TraitError, match=r"AuditTrail\.mac_key"):
        AuditTrail(mac_key="short")


async def test_wait_written_trail(trail: AuditTrail) -> None:
    ticket = trail.record("kernel", {"action": "start", "kernel_id": "k"})
    assert await trail.wait_written(ticket)
    assert records(trail)[-1]["data"]["kernel_id"] == "k"


async def test_wait_written_trail_stopped(tmp_path: Path) -> None:
    t = make_trail(tmp_path)
    ticket = t.record("kernel", {"action": "start", "kernel_id": "k"})
    assert not await t.wait_written(ticket)
    assert not t.writable


async def test_wait_written_trail_times_out(tmp_path: Path) -> None:
    # fsync before each acknowledgment: records go through the writer, not inline.
    t = make_trail(
        tmp_path,
        trail={"ack_timeout": 0.05},
        JSONLSink={"path": str(tmp_path / "a.jsonl"), "fsync_interval": 0},
    )
    t.start()
    try:
        # Holding the writer's condition keeps it from acknowledging: the wait must give up.
        with t._cond:
            ticket = t.record("kernel", {"action": "start", "kernel_id": "k"})
            assert not await t.wait_written(ticket)
        assert t.flush(10)
        assert await t.wait_written(ticket)
    finally:
        t.stop()


def test_record_trail_postgres_outage_burst(tmp_path: Path, postgres_database: str) -> None:
    """PostgreSQL unreachable for a burst of 1,000 events: all arrive, in order, chain intact."""
    with writer_role(postgres_database) as dsn:
        t = make_trail(
            tmp_path,
            trail={"sink_classes": [JSONLSink, PostgresSink]},
            PostgresSink={"dsn": dsn, "create_tables": False},
        )
        t.start()
        t.record("kernel", {"action": "start", "kernel_id": "before"})
        assert t.flush()
        pg = t.sinks[1]
        assert isinstance(pg, PostgresSink)
        pg.close()
        pg.dsn = closed_port_dsn(dsn)
        for i in range(1000):
            t.record("contents", {"operation": "get", "path": f"f{i}.csv", "status": "ok"})
        assert t.flush(60)
        assert not t.writable
        assert t.status()["sinks"][1]["down"] is True
        pg.dsn = dsn
        t.record("kernel", {"action": "shutdown", "kernel_id": "after"})
        assert t.flush(60)
        for _ in range(600):  # the writer retries every retry_interval (0.05 s)
            if t.writable:
                break
            time.sleep(0.05)
        assert t.writable
        t.stop()
        got = records(t, 1)
        assert [r["seq"] for r in got] == list(range(1, 1003))
        assert [r["data"]["path"] for r in got[1:1001]] == [f"f{i}.csv" for i in range(1000)]
        result = verify(pg.read_lines(), KEY.encode(), pg.read_checkpoints())
        assert result.ok, result.summary()
        assert records(t, 0) == got
        pg.close()


def test_start_trail_replays_spool_left_by_previous_run(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_text("")
    t = make_trail(tmp_path, JSONLSink={"path": str(blocker / "audit.jsonl")})
    t.start()
    t.record("kernel", {"action": "start", "kernel_id": "k1"})
    assert t.flush()
    t.stop()
    assert not (blocker.parent / "log").exists()
    t2 = make_trail(tmp_path)
    t2.start()
    t2.record("kernel", {"action": "start", "kernel_id": "k2"})
    assert t2.flush()
    t2.stop()
    assert [r["data"]["kernel_id"] for r in records(t2)] == ["k1", "k2"]
    assert t2.verify().ok


# --- records written at once on the request's thread (every sink inline) ---------------------


def test_write_now_trail_writes_before_returning(trail: AuditTrail) -> None:
    assert trail.write_now("kernel", {"action": "start", "kernel_id": "now"}, user="ann")
    # On disk already, without the writer thread (nothing was queued or acknowledged).
    assert records(trail)[-1]["data"]["kernel_id"] == "now"
    assert trail._written == 0
    assert trail.verify().ok


def test_record_trail_inline_when_nothing_queued(trail: AuditTrail) -> None:
    # Not acknowledged, yet written at once: cheaper than the hand-off to the writer thread.
    assert trail.record("credential", {"action": "issue", "kernel_id": "k"}, user="ann") == 0
    assert records(trail)[-1]["data"]["kernel_id"] == "k"
    assert trail._written == 0  # the writer never saw it
    trail._set_down(
        trail._states[0], True, "test"
    )  # a sink down: queued for the writer (which spools)
    assert trail.record("credential", {"action": "issue", "kernel_id": "k2"}) > 0
    trail._set_down(trail._states[0], False, None)
    assert trail.flush()
    assert [r["data"]["kernel_id"] for r in records(trail)][-2:] == ["k", "k2"]
    assert trail.verify().ok


async def test_record_acknowledged_trail_inline_then_queued_keep_order(tmp_path: Path) -> None:
    t = make_trail(tmp_path)
    t.start()
    try:
        with t._write_lock:  # the writer cannot write what it takes off the queue
            t._enqueue(
                "kernel", t._payload("kernel", {"action": "start", "kernel_id": "queued"}, None)
            )
            # A record queued before must not be overtaken by one written at once.
            assert not t.write_now("kernel", {"action": "start", "kernel_id": "late"})
        assert await t.record_acknowledged("kernel", {"action": "start", "kernel_id": "late"})
        assert t.flush()
        assert [r["data"]["kernel_id"] for r in records(t)] == ["queued", "late"]
        assert t.write_now("kernel", {"action": "start", "kernel_id": "inline"})
        assert t.verify().ok
    finally:
        t.stop()


async def test_record_acknowledged_trail_through_writer_when_not_inline(tmp_path: Path) -> None:
    # fsync before every acknowledgment must stay off the event loop: the writer does it.
    t = make_trail(tmp_path, JSONLSink={"path": str(tmp_path / "a.jsonl"), "fsync_interval": 0})
    t.start()
    try:
        assert not t.sinks[0].inline
        assert not t.write_now("kernel", {"action": "start", "kernel_id": "k"})
        assert await t.record_acknowledged("kernel", {"action": "start", "kernel_id": "k"})
        assert t._written == 1
        assert records(t)[-1]["data"]["kernel_id"] == "k"
        assert t.record("kernel", {"action": "start", "kernel_id": "k2"}) == 2  # queued too
    finally:
        t.stop()


def test_write_now_trail_refused_while_sink_down_or_stopped(tmp_path: Path) -> None:
    t = make_trail(tmp_path)
    assert not t.write_now("kernel", {"action": "start", "kernel_id": "k"})  # not started
    t.start()
    t._set_down(t._states[0], True, "test")
    assert not t.write_now("kernel", {"action": "start", "kernel_id": "k"})
    t._set_down(t._states[0], False, None)
    assert t.write_now("kernel", {"action": "start", "kernel_id": "k"})
    t.stop()
    assert not t.write_now("kernel", {"action": "start", "kernel_id": "k"})
    assert len(records(t)) == 1


async def test_record_acknowledged_trail_concurrent_with_queued_records(tmp_path: Path) -> None:
    import threading

    t = make_trail(tmp_path)
    t.start()
    try:

        def producer(n: int) -> None:
            for i in range(300):
                t.record("datasource", {"kernel_id": f"p{n}", "kind": "file", "target": str(i)})

        threads = [threading.Thread(target=producer, args=(n,)) for n in range(3)]
        for th in threads:
            th.start()
        for i in range(300):
            assert await t.record_acknowledged("kernel", {"action": "start", "kernel_id": str(i)})
        for th in threads:
            th.join()
        assert t.flush()
        recs = records(t)
        assert len(recs) == 1200
        assert [r["seq"] for r in recs] == list(range(1, 1201))
        for n in range(3):  # each producer's records in its own order
            mine = [r["data"]["target"] for r in recs if r["data"].get("kernel_id") == f"p{n}"]
            assert mine == [str(i) for i in range(300)]
        assert t.verify().ok
    finally:
        t.stop()


def test_record_trail_event_ids_unique_across_pool_refills(trail: AuditTrail) -> None:
    for i in range(600):  # more than two pools of 256 ids
        trail.record("kernel", {"action": "start", "kernel_id": f"k{i}"})
    assert trail.flush()
    ids = [r["event_id"] for r in records(trail)]
    assert len(ids) == 600 and len(set(ids)) == 600
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


async def test_record_acknowledged_trail_keeps_no_request_alive(tmp_path: Path) -> None:
    """A request waiting for its record's acknowledgment leaves nothing of itself behind: the
    timeout timer, cancelled once acknowledged, stays in the loop until its deadline, and must
    not hold the request's context (jupyter_server's handler, its connection) that long."""
    import contextvars
    import gc
    import weakref

    class Handler:
        pass

    class SlowSink(JSONLSink):  # the request surely waits (and arms its timer)
        def write(self, lines: list[str]) -> None:
            time.sleep(0.02)
            super().write(lines)

    current: contextvars.ContextVar[Handler] = contextvars.ContextVar("current")
    t = make_trail(
        tmp_path,
        trail={"sink_classes": [SlowSink]},
        SlowSink={"path": str(tmp_path / "a.jsonl"), "fsync_interval": 0},
    )
    t.start()
    try:

        async def request() -> weakref.ref[Handler]:
            handler = Handler()
            current.set(handler)
            assert await t.record_acknowledged("kernel", {"action": "start", "kernel_id": "k"})
            return weakref.ref(handler)

        # A server always has earlier timers (periodic callbacks): cancelled timers behind one
        # stay in the loop's heap instead of being dropped at once from its head.
        earlier = asyncio.get_running_loop().call_later(5, lambda: None)
        refs = [await asyncio.create_task(request()) for _ in range(5)]
        await asyncio.sleep(0.05)  # the loop lets go of the last finished task
        gc.collect()
        alive = [r for r in refs if r() is not None]
        assert alive == []  # while ack_timeout (10 s) has not passed
        earlier.cancel()
    finally:
        t.stop()


def test_start_trail_with_another_key_starts_a_new_chain(tmp_path: Path) -> None:
    # A server that finds another key's chain in its file sets it aside under a name of its
    # own and starts a new chain: no file holds records of two keys, both verify.
    from jupyter_prod_discovery.audit.chain import verify as verify_lines
    from jupyter_prod_discovery.audit.sinks.jsonl import segments

    other = "another-servers-key-9876543210"
    first = make_trail(tmp_path, trail={"mac_key": other, "checkpoint_path": ""})
    first.start()
    for n in range(3):
        first.record("kernel", {"action": "start", "kernel_id": f"k{n}"})
    assert first.flush()
    first.stop()
    log = tmp_path / "log" / "audit.jsonl"
    second = make_trail(tmp_path, trail={"checkpoint_path": ""})
    second.start()
    second.record("kernel", {"action": "start", "kernel_id": "new"})
    assert second.flush()
    second.stop()
    assert [r["seq"] for r in records(second)] == [1]
    assert second.verify().ok, second.verify().summary()
    moved = [p for p in log.parent.iterdir() if p.name.startswith("audit.jsonl.chain-")]
    assert len(moved) == 1
    old = verify_lines(
        (line for seg in segments(str(moved[0])) for line in Path(seg).read_text().splitlines()),
        other.encode(),
    )
    assert old.ok and old.records == 3, old.summary()
    # The same key again: the chain goes on in the same file.
    third = make_trail(tmp_path, trail={"checkpoint_path": ""})
    third.start()
    third.record("kernel", {"action": "shutdown", "kernel_id": "new"})
    assert third.flush()
    third.stop()
    assert [r["seq"] for r in records(third)] == [1, 2]
    assert len([p for p in log.parent.iterdir() if p.name.startswith("audit.jsonl.chain-")]) == 1
