"""The contract every audit sink fulfils (one contract test suite runs against each)."""

from __future__ import annotations

import asyncio
import math
from abc import ABC, ABCMeta, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from traitlets import MetaHasTraits
from traitlets.config import LoggingConfigurable

__all__ = ["AuditSink", "RecordStream", "SinkUnavailable"]


class SinkUnavailable(Exception):
    """The sink cannot take writes right now; the trail spools and replays later."""


class _Meta(ABCMeta, MetaHasTraits):
    pass


class RecordStream(Protocol):
    """A sink's asynchronous way in (the service's audit channel): the event loop sends a sealed
    line and is told when it is stored, with no thread in between. Lines not yet acknowledged
    stay :meth:`outstanding`; when the stream is not :meth:`healthy` the trail's writer writes
    them through the sink (or its spool), in order, and :meth:`settle` resolves their waiters.
    """

    on_break: Callable[[], None]

    def ready(self) -> bool:
        """Whether a line may be sent now (may start connecting); always False when the
        caller is not running on the stream's event loop (another thread goes the writer's
        way)."""

    def send(
        self, seq: int, line: str, wait: bool, timeout: float = math.inf
    ) -> asyncio.Future[bool] | None:
        """Send one line (chain seq ``seq``); with ``wait`` a future of its acknowledgment:
        True once stored (or settled as stored), False when settled as lost or when neither
        happened within ``timeout`` seconds (the stream keeps that deadline, so that a request
        waiting for its record needs no timer of its own)."""

    def healthy(self) -> bool:
        """Open and expected to acknowledge what is outstanding."""

    def outstanding(self) -> list[tuple[int, str]]:
        """(seq, line) sent and not acknowledged, in order (any thread)."""

    def settle(self, upto: int, stored: bool) -> None:
        """Lines up to ``upto`` were written (or spooled) another way: resolve their waiters."""

    def close(self) -> None:
        """Stop sending (what is outstanding is left to the writer)."""


class AuditSink(ABC, LoggingConfigurable, metaclass=_Meta):
    """A store of chained audit records.

    The trail serialises ``open``, ``write`` and ``close`` under one lock, so implementations
    need no locking for writes. ``sync`` and ``write_checkpoint`` are called by the writer
    thread without that lock (they may fsync) and must tolerate a concurrent ``write`` from a
    request's thread when the sink is ``inline``. Readers (verify, query) may run in other
    threads or processes.
    """

    @property
    def inline(self) -> bool:
        """True when ``write`` is cheap local I/O (no network, no fsync) that may run on the
        server's event loop. When every sink is inline the trail writes a record a request
        waits for at once, on the request's thread, instead of handing it to the writer thread
        and waiting to be woken (two thread hops: most of an audited request's overhead).
        Default False: the writer thread does the writing."""
        return False

    @property
    def name(self) -> str:
        """Short, stable name (used for the spool file and in status)."""
        return type(self).__name__

    @abstractmethod
    def open(self) -> None:
        """Prepare for writing (create files/tables). Raise SinkUnavailable when down."""

    @abstractmethod
    def write(self, lines: list[str]) -> None:
        """Append records (canonical JSON lines, in seq order) and make them durable.

        Durability: when this returns, the records survive a crash of the server process
        (file: written and flushed to the OS, fsynced when ``fsync`` is on; PostgreSQL:
        committed). Writing a seq that is already stored must not duplicate it (replay after
        a partial failure). Raise SinkUnavailable when the store cannot be written.
        """

    @abstractmethod
    def read_lines(self) -> Iterator[str]:
        """Every stored record as its JSON line, in storage order (for verify and query)."""

    @abstractmethod
    def tail(self) -> dict[str, Any] | None:
        """The record with the highest seq, or None when empty (to resume the chain)."""

    def stream(self, retry_interval: float) -> RecordStream | None:
        """The sink's :class:`RecordStream`, if it has one (called once, when the trail starts;
        ``retry_interval``: the trail's pause between reconnection attempts). The trail then
        sends the records of the event loop through it while it is open and nothing is queued
        for the writer. Default None: every record goes through ``write``."""
        return None

    def session_key(self) -> bytes | None:
        """A MAC key the store issued for this server's records (after ``open``), which the
        trail then chains with, so that the store can tell a record altered on the way (in the
        server's spool) from one the server sealed. Default None: the trail's own key."""
        return None

    def start_new_chain(self) -> str | None:
        """Set the stored chain aside, so that the next record starts a new chain (seq 1).

        Called (after ``open``) when the stored tail is not sealed with the trail's key: the
        store holds another chain (a server with another key, or an earlier run's random key),
        and appending to it would leave records no single key verifies. Returns where the old
        chain now is (to be named in the server's log), or None when the store cannot keep
        chains apart (default), in which case the trail appends and verify reports the key
        change at that record as "other key", not as tampering.
        """
        return None

    def sync(self) -> None:
        """Make written records durable against power loss if ``write`` deferred that and it is
        due by the sink's own policy (the writer thread calls this after every batch and at
        least once a second; ``close`` makes everything durable). Default: nothing to do."""

    def write_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store a checkpoint (seq, head, mac) in a second place; default: not supported."""

    def read_checkpoints(self) -> list[dict[str, Any]]:
        """Checkpoints stored by this sink (empty when it keeps none)."""
        return []

    def close(self) -> None:
        """Release files and connections."""
