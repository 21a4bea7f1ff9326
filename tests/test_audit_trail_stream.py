"""The trail with a sink that has a stream (the service's audit channel): records of the event
loop go through the stream; what a stream leaves unacknowledged is written by the writer, in
order and before anything newer, or spooled; waiters learn the outcome.

The stream here is a test double driven by the test (ack, break), over an in-memory store that
keeps a seq once, as the service does: what is under test is the trail's ordering and
settling. The real channel against the real service: tests/test_service_channel.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from audit_support import KEY
from traitlets.config import Config

from jupyter_prod_discovery.audit.sinks.base import AuditSink, RecordStream, SinkUnavailable
from jupyter_prod_discovery.audit.trail import AuditTrail

STORE: dict[str, list[str]] = {}


class FakeStream:
    """Holds sent lines until the test acknowledges them (storing them) or breaks it."""

    def __init__(self, store: list[str]) -> None:
        self.store = store
        self.on_break: Callable[[], None] = lambda: None
        self.open = True
        self.sent: list[tuple[int, str, asyncio.Future[bool] | None]] = []
        self.lock = threading.Lock()
        self.timeouts: list[float] = []

    def ready(self) -> bool:
        try:  # as the channel: only from the loop it runs on
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return self.open

    def send(
        self, seq: int, line: str, wait: bool, timeout: float = math.inf
    ) -> asyncio.Future[bool] | None:
        self.timeouts.append(timeout)
        fut = asyncio.get_running_loop().create_future() if wait else None
        if fut is not None and timeout < math.inf:  # as the channel's watchdog
            asyncio.get_running_loop().call_later(timeout, _resolve, fut, False)
        with self.lock:
            self.sent.append((seq, line, fut))
        return fut

    def healthy(self) -> bool:
        return self.open

    def outstanding(self) -> list[tuple[int, str]]:
        with self.lock:
            return [(s, ln) for s, ln, _f in self.sent]

    def ack(self, upto: int) -> None:
        with self.lock:
            done = [x for x in self.sent if x[0] <= upto]
            self.sent = [x for x in self.sent if x[0] > upto]
        for _s, line, fut in done:
            _keep(self.store, [line])
            if fut is not None and not fut.done():
                fut.set_result(True)

    def settle(self, upto: int, stored: bool) -> None:
        with self.lock:
            done = [x for x in self.sent if x[0] <= upto]
            self.sent = [x for x in self.sent if x[0] > upto]
        for _s, _line, fut in done:
            if fut is not None:
                fut.get_loop().call_soon_threadsafe(_resolve, fut, stored)

    def crash(self) -> None:
        self.open = False
        self.on_break()

    def close(self) -> None:
        self.open = False


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


def _keep(store: list[str], lines: list[str]) -> None:
    """As the service: a seq already stored is acknowledged, not stored twice."""
    last = json.loads(store[-1])["seq"] if store else 0
    for line in lines:
        seq = json.loads(line)["seq"]
        if seq > last:
            store.append(line)
            last = seq


class StreamedSink(AuditSink):
    """In-memory store with a stream; ``down`` makes ``write`` fail."""

    down = False
    writes: list[list[str]]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = STORE.setdefault("lines", [])
        self.writes = []
        self.fake = FakeStream(self.store)

    def open(self) -> None:
        if self.down:
            raise SinkUnavailable("down")

    def write(self, lines: list[str]) -> None:
        if self.down:
            raise SinkUnavailable("down")
        self.writes.append(list(lines))
        _keep(self.store, lines)

    def read_lines(self) -> Iterator[str]:
        return iter(list(self.store))

    def tail(self) -> dict[str, Any] | None:
        return json.loads(self.store[-1]) if self.store else None

    def stream(self, retry_interval: float) -> RecordStream | None:
        return self.fake


def make_trail(tmp_path: Path) -> tuple[AuditTrail, StreamedSink, FakeStream]:
    STORE["lines"] = []
    config = Config(
        {
            "AuditTrail": {
                "mac_key": KEY,
                "spool_dir": str(tmp_path / "spool"),
                "retry_interval": 0.05,
                "sink_classes": [StreamedSink],
                "ack_timeout": 5.0,
            }
        }
    )
    trail = AuditTrail(config=config)
    trail.start()
    sink = trail.sinks[0]
    assert isinstance(sink, StreamedSink)
    return trail, sink, sink.fake


def kernel_ids(lines: list[str]) -> list[str]:
    return [json.loads(line)["data"]["kernel_id"] for line in lines]


def start(kid: str) -> dict[str, Any]:
    return {"action": "start", "kernel_id": kid}


async def test_record_acknowledged_stream_carries_loop_records(tmp_path: Path) -> None:
    trail, sink, stream = make_trail(tmp_path)
    try:
        waiter = asyncio.ensure_future(trail.record_acknowledged("kernel", start("a")))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # held until the stream acknowledges
        assert trail.record("kernel", start("b")) == 0  # sent too, nobody waits
        assert [s for s, _l in stream.outstanding()] == [1, 2]
        stream.ack(1)
        assert await waiter
        stream.ack(2)
        assert kernel_ids(sink.store) == ["a", "b"]
        assert sink.writes == []  # the writer wrote nothing
        assert trail.verify().ok
    finally:
        trail.stop()


async def test_record_stream_broken_outstanding_written_first(tmp_path: Path) -> None:
    trail, sink, stream = make_trail(tmp_path)
    try:
        waiter = asyncio.ensure_future(trail.record_acknowledged("kernel", start("a")))
        await asyncio.sleep(0)  # sent
        trail.record("kernel", start("b"))
        stream.crash()  # never acknowledged: the writer writes both, in order
        assert await asyncio.wait_for(waiter, 5)
        assert await trail.record_acknowledged("kernel", start("c"))  # through the writer
        assert trail.flush()
        assert kernel_ids(sink.store) == ["a", "b", "c"]
        assert kernel_ids(sink.writes[0]) == ["a", "b"]
        assert trail.verify().ok
    finally:
        trail.stop()


async def test_record_queued_while_stream_outstanding_keeps_order(tmp_path: Path) -> None:
    """A record from another thread goes through the writer, which writes the stream's older
    unacknowledged lines with it, first; the stream then acknowledges what is stored already."""
    trail, sink, stream = make_trail(tmp_path)
    try:
        first = asyncio.ensure_future(trail.record_acknowledged("kernel", start("loop-1")))
        await asyncio.sleep(0)
        queued = threading.Thread(target=trail.record, args=("kernel", start("thread")))
        queued.start()
        queued.join()
        assert await asyncio.wait_for(first, 5)  # settled by the writer's write
        assert trail.flush()
        stream.ack(10)  # late acknowledgment: nothing stored twice
        assert kernel_ids(sink.store) == ["loop-1", "thread"]
        assert await trail.record_acknowledged("kernel", start("loop-2")) is not None
        stream.ack(3)
        assert kernel_ids(sink.store) == ["loop-1", "thread", "loop-2"]
        assert trail.verify().ok
    finally:
        trail.stop()


async def test_record_stream_broken_sink_down_spooled_in_order(tmp_path: Path) -> None:
    trail, sink, stream = make_trail(tmp_path)
    try:
        waiter = asyncio.ensure_future(trail.record_acknowledged("kernel", start("a")))
        await asyncio.sleep(0)
        sink.down = True
        stream.crash()
        assert await asyncio.wait_for(waiter, 5)  # spooled (fsynced): acknowledged
        assert not trail.writable
        assert await trail.record_acknowledged("kernel", start("b"))  # spooled behind it
        spool = (tmp_path / "spool" / "StreamedSink.jsonl").read_text().splitlines()
        assert kernel_ids(spool) == ["a", "b"]
        sink.down = False
        for _ in range(100):
            if trail.writable:
                break
            await asyncio.sleep(0.05)
        assert trail.writable
        assert kernel_ids(sink.store) == ["a", "b"]
        assert trail.verify().ok
    finally:
        trail.stop()


async def test_flush_trail_writes_what_the_stream_holds(tmp_path: Path) -> None:
    """flush (tests, CLI, shutdown; possibly on the loop itself) does not wait for the stream's
    acknowledgments: the writer writes what it holds."""
    trail, sink, stream = make_trail(tmp_path)
    try:
        trail.record("kernel", start("a"))
        assert stream.outstanding()
        assert trail.flush(timeout=5)
        assert kernel_ids(sink.store) == ["a"]
        assert not stream.outstanding()
    finally:
        trail.stop()


async def test_record_acknowledged_stream_times_out(tmp_path: Path) -> None:
    trail, sink, stream = make_trail(tmp_path)
    trail.ack_timeout = 0.2
    try:
        assert not await trail.record_acknowledged("kernel", start("a"))
        assert stream.timeouts == [0.2]  # the deadline the stream keeps is the trail's
    finally:
        trail.stop()
    assert kernel_ids(sink.store) == ["a"]  # stop writes what the stream still held
