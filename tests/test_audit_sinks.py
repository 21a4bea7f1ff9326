"""One contract suite for every AuditSink, against the real file system and real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from audit_support import writer_role

from jupyter_prod_discovery.audit.chain import Chain, verify
from jupyter_prod_discovery.audit.sinks import AuditSink, JSONLSink, PostgresSink, SinkUnavailable

KEY = b"contract-key-0123456789"


@pytest.fixture(params=["jsonl", "postgres"])
def sink(request: Any, tmp_path: Path) -> Iterator[AuditSink]:
    if request.param == "jsonl":
        s: AuditSink = JSONLSink(
            path=str(tmp_path / "log" / "audit.jsonl"),
            checkpoint_path=str(tmp_path / "elsewhere" / "cp.jsonl"),
            max_bytes=4000,
        )
        s.open()
        yield s
        s.close()
        return
    database = request.getfixturevalue("postgres_database")
    with writer_role(database) as dsn:
        s = PostgresSink(dsn=dsn, create_tables=False)
        s.open()
        yield s
        s.close()


def lines_of(n: int, chain: Chain | None = None) -> list[str]:
    chain = chain or Chain(KEY)
    return [
        chain.seal({"kind": "contents", "data": {"path": f"p{i}", "user": {"username": "ann"}}})
        for i in range(n)
    ]


def test_write_sink_reads_back_in_order(sink: AuditSink) -> None:
    chain = Chain(KEY)
    lines = lines_of(30, chain)
    for i in range(0, 30, 7):
        sink.write(lines[i : i + 7])
    sink.sync()
    got = list(sink.read_lines())
    assert [json.loads(x)["seq"] for x in got] == list(range(1, 31))
    assert verify(got, KEY).ok
    tail = sink.tail()
    assert tail is not None
    assert tail["seq"] == 30


def test_write_sink_replay_does_not_duplicate(sink: AuditSink) -> None:
    lines = lines_of(5)
    sink.write(lines[:3])
    if isinstance(sink, JSONLSink):
        sink._dirty = True  # as after a failed write
    sink.write(lines)
    assert [json.loads(x)["seq"] for x in sink.read_lines()] == [1, 2, 3, 4, 5]


def test_write_sink_checkpoints(sink: AuditSink) -> None:
    chain = Chain(KEY)
    sink.write(lines_of(4, chain))
    cp = chain.checkpoint()
    sink.write_checkpoint(cp)
    assert sink.read_checkpoints()[-1] == cp
    assert verify(sink.read_lines(), KEY, sink.read_checkpoints()).ok


def test_tail_sink_empty(sink: AuditSink) -> None:
    assert sink.tail() is None
    assert list(sink.read_lines()) == []


def test_rotate_jsonl_sink_keeps_every_segment(tmp_path: Path) -> None:
    sink = JSONLSink(path=str(tmp_path / "a.jsonl"), max_bytes=1000)
    sink.open()
    chain = Chain(KEY)
    for _ in range(10):
        sink.write(lines_of(3, chain))
    sink.close()
    assert len(list(tmp_path.glob("a.jsonl.*"))) > 2
    assert verify(sink.read_lines(), KEY, [chain.checkpoint()]).records == 30


class _ShortWrites:
    """A file that takes at most ``step`` bytes per write (as a signal or a quota can make a
    regular file do), or none at all once ``stall`` writes were made."""

    def __init__(self, real: Any, step: int, stall: int = 10**9) -> None:
        self.real, self.step, self.stall, self.calls = real, step, stall, 0

    def write(self, data: Any) -> int:
        self.calls += 1
        if self.calls > self.stall:
            return 0
        return int(self.real.write(bytes(data[: self.step])))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_write_jsonl_sink_completes_short_writes(tmp_path: Path) -> None:
    sink = JSONLSink(path=str(tmp_path / "a.jsonl"))
    sink.open()
    sink._file = _ShortWrites(sink._file, step=7)  # type: ignore[assignment]
    chain = Chain(KEY)
    lines = lines_of(3, chain)
    sink.write(lines)
    assert sink._file.calls > 3  # type: ignore[union-attr]
    sink.close()
    assert list(sink.read_lines()) == lines
    assert verify(sink.read_lines(), KEY, [chain.checkpoint()]).ok


def test_write_jsonl_sink_without_progress_is_unavailable(tmp_path: Path) -> None:
    sink = JSONLSink(path=str(tmp_path / "a.jsonl"))
    sink.open()
    sink._file = _ShortWrites(sink._file, step=5, stall=2)  # type: ignore[assignment]
    with pytest.raises(SinkUnavailable, match="no progress"):
        sink.write(lines_of(2))
    # The cut line is set aside when the sink opens again: what follows chains cleanly.
    sink.open()
    chain = Chain(KEY)
    sink.write(lines_of(2, chain))
    sink.close()
    assert verify(sink.read_lines(), KEY, [chain.checkpoint()]).records == 2


def test_open_jsonl_sink_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    sink = JSONLSink(path=str(blocker / "audit.jsonl"))
    with pytest.raises(SinkUnavailable):
        sink.open()
    with pytest.raises(SinkUnavailable):
        sink.write(lines_of(1))


def test_write_postgres_sink_refuses_update_delete_truncate(postgres_database: str) -> None:
    with writer_role(postgres_database) as dsn:
        sink = PostgresSink(dsn=dsn, create_tables=False)
        sink.open()
        sink.write(lines_of(2))
        sink.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for stmt in (
                "UPDATE prod_discovery_audit SET record = 'x'",
                "DELETE FROM prod_discovery_audit",
                "TRUNCATE prod_discovery_audit",
                "DELETE FROM prod_discovery_audit_checkpoints",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(stmt)
        # Even the owner is stopped by the append-only trigger.
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.RaiseException):
                conn.execute("UPDATE prod_discovery_audit SET record = 'x'")
            with pytest.raises(psycopg.errors.RaiseException):
                conn.execute("DELETE FROM prod_discovery_audit")


def test_open_postgres_sink_unreachable() -> None:
    from audit_support import closed_port_dsn

    sink = PostgresSink(dsn=closed_port_dsn("postgresql://postgres@127.0.0.1/postgres"))
    with pytest.raises(SinkUnavailable):
        sink.open()
    with pytest.raises(SinkUnavailable):
        sink.write(lines_of(1))


def test_validate_postgres_sink_table() -> None:
    from traitlets import TraitError

    with pytest.raises(TraitError, match=r"PostgresSink\.table"):
        PostgresSink(table="x; drop table y")


def test_validate_jsonl_sink_fsync_interval(tmp_path: Path) -> None:
    from traitlets import TraitError

    with pytest.raises(TraitError, match=r"JSONLSink\.fsync_interval"):
        JSONLSink(fsync_interval=-1)
    strict = JSONLSink(path=str(tmp_path / "s.jsonl"), fsync_interval=0)
    strict.open()
    strict.write(lines_of(2))
    assert not strict._unsynced  # fsynced before write returned
    strict.close()


def test_open_jsonl_sink_sets_aside_cut_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    chain = Chain(KEY)
    lines = lines_of(3, chain)
    path.write_text("\n".join(lines) + "\n" + lines_of(1, chain)[0][:40])
    sink = JSONLSink(path=str(path))
    sink.open()
    tail = sink.tail()
    assert tail is not None
    assert tail["seq"] == 3
    sink.close()
    assert path.read_text() == "\n".join(lines) + "\n"
    assert len(list(tmp_path.glob("audit.jsonl.partial-*"))) == 1
    assert verify(sink.read_lines(), KEY).ok


def test_sync_jsonl_sink_defers_fsync_to_interval(tmp_path: Path) -> None:
    sink = JSONLSink(path=str(tmp_path / "d.jsonl"), fsync_interval=3600)
    assert sink.inline
    sink.open()
    chain = Chain(KEY)
    sink.write(lines_of(1, chain))
    assert sink._unsynced  # write() never fsyncs with an interval
    sink.sync()  # first sync: due
    assert not sink._unsynced
    sink.write(lines_of(1, chain))
    sink.sync()  # within the interval: deferred
    assert sink._unsynced
    sink.close()  # closing makes everything durable
    assert not sink._unsynced
    assert [json.loads(x)["seq"] for x in sink.read_lines()] == [1, 2]


def test_write_postgres_sink_conflict_with_another_writer_is_an_error(
    postgres_database: str,
) -> None:
    """Two servers configured with one table: the second one's records at the same seqs are an
    error (kept spooled by the trail and retried), never silently dropped."""
    with writer_role(postgres_database) as dsn:
        first = PostgresSink(dsn=dsn, create_tables=False)
        second = PostgresSink(dsn=dsn, create_tables=False)
        first.open()
        second.open()
        try:
            first.write(lines_of(3, Chain(KEY)))
            theirs = [Chain(KEY).seal({"kind": "contents", "data": {"path": "bob", "user": {}}})]
            with pytest.raises(SinkUnavailable, match="another writer"):
                second.write(theirs)
            first.write(lines_of(3, Chain(KEY)))  # a replay of the same records: fine
        finally:
            first.close()
            second.close()
