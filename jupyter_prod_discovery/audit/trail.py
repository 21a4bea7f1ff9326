"""AuditTrail: the real recorder behind ``app.audit``.

Flow of one event: ``record()`` (request thread, microseconds) builds the envelope. When every
sink is ``inline`` (a local file whose fsync is deferred) and nothing is queued before it, the
event is checked (schema validation; the redaction modifier only when its data holds a live
secret), chained (seq, prev, hash, MAC) and appended on that thread, under the same lock as the
writer, and is on its way to disk as soon as it reached the OS: two thread hops (to the writer
and back to the event loop) would cost several times the ~13 us of the write itself. Otherwise it
is put on a queue with a ticket number; one writer thread drains the queue in batches and does
the same per event, appending each batch to every sink. The writer also fsyncs when due and
periodically writes a checkpoint (seq + head hash) to the sinks that keep them.

A sink with a stream (``AuditSink.stream``: the trusted service's audit channel) takes the
records of the event loop the same way, sealed on the loop and sent at once, but acknowledged
later, asynchronously; a request waits for that acknowledgment. What the stream has not
acknowledged when it breaks (or at a flush or stop) the writer writes through the sink or its
spool, before anything newer, and resolves the waiters: the stream only saves thread hops and
HTTP requests, the order and the durability policy below are the writer's.

Durability policy
-----------------
- A batch is acknowledged when every sink has written it (file: written to the OS, which
  survives a crash or SIGKILL of the server, and fsynced at most ``JSONLSink.fsync_interval``
  seconds later, default 1 s, or before the acknowledgment with ``fsync_interval = 0``;
  PostgreSQL: committed) or, for a sink that is down, when it is appended and fsynced to that
  sink's local spool file. Spools are replayed in order when the sink returns; nothing is
  dropped. A power loss may thus lose the last second of the file sink by default.
- Requests that touch data (contents, /files/, kernels) wait for their record's acknowledgment
  before they are answered (``wait_for_write``), so every answered request is on disk even if the
  server is SIGKILLed right after answering.
- With ``fail_closed`` on, data access is refused (503) while any sink is down or the writer is
  not running, and such a request is itself recorded as ``denied``.
- Checkpoints are written every ``checkpoint_interval`` seconds when the head moved, and on stop.
  A truncation of the tail after the last checkpoint cannot be detected: keep the interval short.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml
from jupyter_core.paths import jupyter_data_dir
from jupyter_events import EventLogger
from traitlets import Bool, Enum, Float, Int, List, Type, Unicode, default, observe, validate
from traitlets import TraitError as _TraitError
from traitlets.config import LoggingConfigurable

from . import vault_checkpoints
from .chain import Chain, VerifyResult, canonical, sealed_with, verify
from .recorder import AUDIT_KINDS
from .redaction import RedactionModifier
from .sinks import AuditSink, JSONLSink, SinkUnavailable
from .sinks.base import RecordStream
from .sinks.jsonl import append_checkpoint, read_checkpoint_file
from .spool import Spool

__all__ = ["SCHEMA_DIR", "AuditTrail", "schema_id", "user_info"]

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "event_schemas"
KEY_ENV = "PROD_DISCOVERY_AUDIT_KEY"
_STOP = object()
_WAKE = object()  # the writer has something to settle (a stream broke, a flush)


def schema_id(kind: str) -> str:
    return f"https://events.prod-discovery.dev/{kind}/v1"


def user_info(user: Any) -> dict[str, Any] | None:
    """The identity provider's view of a user: username, display name, JupyterHub groups."""
    if user is None:
        return None
    if isinstance(user, str):
        return {"username": user}
    if isinstance(user, dict):
        return {k: user[k] for k in ("username", "name", "groups") if k in user}
    out: dict[str, Any] = {"username": str(getattr(user, "username", user))}
    name = getattr(user, "name", None)
    if name:
        out["name"] = str(name)
    hub = getattr(user, "hub_user", None)
    if isinstance(hub, dict) and isinstance(hub.get("groups"), list):
        out["groups"] = [str(g) for g in hub["groups"]]
    # --- hub identity (hub/): admin flag, and whose server it is when someone else acts ---
    if isinstance(hub, dict):
        if "admin" in hub:
            out["admin"] = bool(hub["admin"])
        owner = os.environ.get("JUPYTERHUB_USER")
        if owner:
            out["server_owner"] = owner
    return out


# (whole second, its formatted prefix), replaced as one tuple: a thread reading it while another
# moves it to the next second sees either pair whole, never one second's prefix with another's.
_second: tuple[int, str] = (-1, "")


def _now() -> str:
    """UTC now as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; the per-second prefix is formatted once."""
    global _second
    now = time.time()
    sec = int(now)
    cached = _second
    if cached[0] != sec:
        cached = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _second = cached
    return f"{cached[1]}.{int((now - sec) * 1e6):06d}Z"


@dataclass
class _SinkState:
    sink: AuditSink
    spool: Spool
    down: bool = False
    error: str | None = None
    next_retry: float = 0.0


class AuditTrail(LoggingConfigurable):
    """Schema-validated, redacted, chained, MACed audit records in one or more sinks."""

    sink_classes = List(
        Type(klass=AuditSink),
        default_value=[JSONLSink],
        config=True,
        help="""Sinks every record is written to, all at once (classes or import strings of
        AuditSink subclasses). Default [JSONLSink]. Built in: JSONLSink,
        PostgresSink (jupyter_prod_discovery.audit.sinks.PostgresSink). Verification and the
        query API read the first one.""",
    )
    mac_key = Unicode(
        config=True,
        help="""Key of the HMAC-SHA256 on every record and checkpoint (at least 16 characters).
        Default: the PROD_DISCOVERY_AUDIT_KEY environment variable; when unset a random key for
        this process only is used (the trail then cannot be verified after the server stops,
        and a warning says so). Keep it away from the log (a secret store or the
        environment); never logged.""",
    )
    fail_closed = Bool(
        False,
        config=True,
        help="""Refuse data access (contents API and /files/: 503) while the trail cannot be
        written to every sink (a sink down and spooling, or the writer stopped). Default False
        (spool and keep serving).""",
    )
    wait_for_write = Bool(
        True,
        config=True,
        help="""Answer an audited request only after its record is acknowledged (see the
        durability policy). Default True; False answers at once and may lose the last
        batch on a crash.""",
    )
    ack_timeout = Float(
        10.0,
        config=True,
        help="""Seconds a request waits for its record's acknowledgment before it is answered
        anyway (or refused with 503 when fail_closed). Default 10.""",
    )
    batch_size = Int(
        1000,
        config=True,
        help="Most records written per batch. Default 1000; at least 1.",
    )
    checkpoint_interval = Float(
        5.0,
        config=True,
        help="""Seconds between checkpoints (seq + head hash, MACed) to the second place
        (the sinks that keep checkpoints and checkpoint_path). Default 5; one is also written on
        stop.""",
    )
    checkpoint_path = Unicode(
        "",
        config=True,
        help="""File, on other storage than the log, where checkpoints are appended too (the
        second place for file-only setups). Default '' (only sinks keep checkpoints).""",
    )
    checkpoint_vault_path = Unicode(
        "",
        config=True,
        help="""KV v2 secret '<mount>/<path>' in the server's Vault/OpenBao where the newest
        checkpoint is kept too (needs VaultClient configured and a policy allowing create and
        update there). Default '' (not used).""",
    )
    spool_dir = Unicode(
        config=True,
        help="""Directory of the per-sink spool files used while a sink is down. Default
        <jupyter data dir>/prod_discovery/spool.""",
    )
    retry_interval = Float(
        2.0,
        config=True,
        help="Seconds between attempts to reach a sink that is down. Default 2.",
    )
    record_code = Bool(
        True,
        config=True,
        help="""Store executed code in execution events (secrets masked); its sha256 is always
        stored. Default True; False keeps only the hash.""",
    )
    compliance_users = List(
        Unicode(),
        config=True,
        help="""Users who may read the trail through the REST API (in addition to being allowed
        'read' on 'prod_discovery_audit' by the server's authorizer). Default [] (nobody);
        '*' admits every user the authorizer allows.""",
    )
    compliance_groups = List(
        Unicode(),
        config=True,
        help="""JupyterHub groups whose members may read the trail through the REST API (with
        the authorizer's permission too). Default [].""",
    )
    validation = Enum(
        ["fast", "jupyter_events"],
        default_value="fast",
        config=True,
        help="""How each event is checked against its schema where it is chained (the
        request's thread for inline sinks, else the writer thread). 'fast' (default): the same
        schema files compiled with fastjsonschema (~2 us per event), the redaction modifier
        applied only to data holding a live secret. 'jupyter_events': through the trail's
        jupyter_events EventLogger (modifiers, validation, listeners; ~500 us per event, which
        costs throughput and server CPU on every audited request).""",
    )
    kernel_shim = Bool(
        True,
        config=True,
        help="""Load the data-source shim (PEP 578 audit hooks) into every kernel started
        through the credential provisioner and record what it reports as 'datasource' events.
        Default True.""",
    )
    server_id = Unicode(
        config=True,
        help="Identifies this server in every event. Default: '<hostname>:<pid>'.",
    )

    # Plain attributes mirroring traits read for every record (a trait read costs ~1 us).
    @observe("record_code", "server_id", "validation", "fail_closed")
    def _mirror_traits(self, change: Any = None) -> None:
        self._fail_closed = self.fail_closed
        self._record_code = self.record_code
        self._server_id = self.server_id
        self._validation = self.validation

    @default("mac_key")
    def _mac_key_default(self) -> str:
        return os.environ.get(KEY_ENV, "")

    @validate("mac_key")
    def _check_mac_key(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if value and len(value) < 16:
            raise _TraitError("AuditTrail.mac_key must have at least 16 characters")
        return value

    @validate("batch_size")
    def _check_batch(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise _TraitError("AuditTrail.batch_size must be at least 1")
        return int(proposal["value"])

    @default("spool_dir")
    def _spool_default(self) -> str:
        return str(Path(jupyter_data_dir()) / "prod_discovery" / "spool")

    @default("server_id")
    def _server_id_default(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def __init__(
        self,
        secrets_provider: Callable[[], frozenset[str]] | None = None,
        vault_client: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        shipped = all(getattr(cls, "ships_records", False) for cls in self.sink_classes)
        if not self.mac_key:
            if not shipped:  # a service seals and signs shipped records: no local key needed
                self.log.warning(
                    "AuditTrail.mac_key is not set (nor %s): using a random key for this "
                    "process; the trail cannot be verified after the server stops.",
                    KEY_ENV,
                )
            self._key = secrets.token_bytes(32)
        else:
            self._key = self.mac_key.encode()
        self._vault_client = vault_client
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._tickets = itertools.count(1)
        self._last_ticket = 0
        # Not parented: the server's EventLogger config (its handlers) must not apply here. The
        # writer thread emits through it (modifiers + validation cost ~100 us, kept off the
        # request path) and takes the returned capsule; the handler only keeps emit() going.
        self.events = EventLogger(handlers=[logging.NullHandler()])
        self._redact = RedactionModifier(secrets_provider or frozenset)
        self._validators: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self._schema_ids = {kind: schema_id(kind) for kind in AUDIT_KINDS}
        for kind in AUDIT_KINDS:
            path = SCHEMA_DIR / kind / "v1.yaml"
            self.events.register_event_schema(path)
            self.events.add_modifier(schema_id=schema_id(kind), modifier=self._redact)
            self._validators[kind] = fastjsonschema.compile(yaml.safe_load(path.read_text()))
        self.sinks: list[AuditSink] = [cls(parent=self) for cls in self.sink_classes]
        spool = Path(self.spool_dir)
        self._states = [_SinkState(s, Spool(spool / f"{s.name}.jsonl")) for s in self.sinks]
        self._emit_lock = threading.Lock()
        # Held while chaining and writing (writer batches, inline records, replay, checkpoint
        # snapshots): the chain order is the write order. Never held across an fsync.
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._written = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._chain = Chain(self._key)
        self._last_cp = (0, 0.0)
        # Records queued and not yet written: an inline record may not overtake them.
        self._pending = 0
        self._inline = False  # every sink inline (set by start)
        self._inline_up = False  # ... and none of them down (kept by _set_down)
        self._running = False  # the writer thread runs (cheaper to read than is_alive())
        self._ids: tuple[bytes, int] = (b"", 0)  # random bytes for event ids, next offset
        # The only sink's asynchronous way in (the service's channel), set by start.
        self._stream: RecordStream | None = None
        self._settle_now = False  # flush: write what the stream holds without waiting for it
        self._mirror_traits()
        self.invalid_events = 0

    # --- the request side -------------------------------------------------------------------

    def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> int:
        """Record one event; returns its ticket for :meth:`wait_written` (0: written already).

        When every sink is ``inline`` (local files) and nothing is queued, the record is
        checked, chained and appended on the caller's thread (:meth:`_write_inline`: an append
        to the page cache, cheaper than the hand-off to the writer thread, which then only
        fsyncs and checkpoints); otherwise it is queued for the writer and this never touches
        a sink. Unknown kinds raise ValueError (a bug in the caller); data that fails its schema
        is logged and counted in ``invalid_events`` instead of failing the caller's request. The
        identity and timestamp are taken here, at request time.
        """
        payload = self._payload(kind, data, user)
        if self._inline_ready() and self._write_inline(kind, payload):
            return 0
        if self._stream is not None and self._stream_send(kind, payload, False)[0]:
            return 0
        return self._enqueue(kind, payload)

    def _payload(self, kind: str, data: dict[str, Any], user: Any) -> dict[str, Any]:
        if kind not in AUDIT_KINDS:
            raise ValueError(f"unknown audit event kind {kind!r}")
        payload = dict(data)
        if None in payload.values():  # a C scan; most records carry no None to drop
            payload = {k: v for k, v in data.items() if v is not None}
        if kind == "execution" and not self._record_code:
            payload.pop("code", None)
        payload["user"] = user_info(user)
        payload["server_id"] = self._server_id
        return payload

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> int:
        with self._emit_lock:
            ticket = self._last_ticket = next(self._tickets)
            self._pending += 1
            self._queue.put((ticket, kind, _now(), payload))
        return ticket

    async def record_acknowledged(
        self, kind: str, data: dict[str, Any], *, user: Any = None
    ) -> bool:
        """Record one event and return once it is acknowledged (the durability policy).

        Written at once on this thread when that is cheap (:meth:`write_now`), else queued and
        waited for. True when acknowledged; False when it was not within ``ack_timeout`` or the
        writer is not running (fail-closed callers then refuse). With ``wait_for_write`` off it
        only queues and returns True.
        """
        if not self.wait_for_write:
            self.record(kind, data, user=user)
            return True
        if self.write_now(kind, data, user=user):
            return True
        payload = self._payload(kind, data, user)
        if self._stream is not None:
            sent, fut = self._stream_send(kind, payload, True)
            if sent:
                # The stream answers False once ack_timeout has passed (no timer per record).
                return fut is None or await fut
        return await self.wait_written(self._enqueue(kind, payload))

    def _stream_send(
        self, kind: str, payload: dict[str, Any], wait: bool
    ) -> tuple[bool, asyncio.Future[bool] | None]:
        """Seal one record and send it through the sink's stream, on the event loop: (False,
        None) when it must go through the writer instead (the stream is not open, records are
        queued before it, the sink is down, or the writer holds the lock now: never waited
        for, the writer may be waiting for this loop); (True, None) when it failed its schema.
        """
        stream = self._stream
        assert stream is not None
        if self._pending or self._states[0].down or not self._running or not stream.ready():
            return False, None
        if not self._write_lock.acquire(blocking=False):
            return False, None
        try:
            if self._pending or self._states[0].down or not self._running:
                return False, None
            line = self._seal(kind, _now(), payload)
            if line is None:
                return True, None
            return True, stream.send(self._chain.seq, line, wait, self.ack_timeout)
        finally:
            self._write_lock.release()

    def write_now(self, kind: str, data: dict[str, Any], *, user: Any = None) -> bool:
        """Check, chain and append one record on this thread, if every sink is ``inline``.

        Returns False, having recorded nothing, when the record must go through the writer
        (a sink is not inline or is down, records are queued before it, the writer stopped).
        """
        if not self._inline_ready():
            return False
        return self._write_inline(kind, self._payload(kind, data, user))

    def _write_inline(self, kind: str, payload: dict[str, Any]) -> bool:
        """Write one record under the lock if still :meth:`_inline_ready` (callers check first,
        so that a trail going through its writer never waits for the lock the writer holds)."""
        with self._write_lock:
            # Re-checked under the lock: the writer may have taken a batch or found a sink
            # down meanwhile, and the chain order must stay the order of the queue.
            if not self._inline_ready():
                return False
            line = self._seal(kind, _now(), payload)
            if line is not None:
                self._append([line])
        return True

    def _inline_ready(self) -> bool:
        """Nothing queued or in the writer's hands, the writer alive, every sink inline and up."""
        return not self._pending and self._inline_up and self._running

    async def wait_written(self, ticket: int) -> bool:
        """Wait until the record with ``ticket`` (and all before it) is acknowledged.

        Returns False when it was not acknowledged within ``ack_timeout`` or the writer is not
        running.
        """
        if ticket <= self._written:
            return True
        if self._thread is None or not self._thread.is_alive():
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if ticket <= self._written:
                return True
            self._waiters.append((ticket, fut))
        # A plain timer instead of asyncio.wait_for: wait_for wraps the future in more
        # futures and callbacks, a measurable share of every audited request's CPU. In an empty
        # context: a cancelled timer stays in the loop's heap until its deadline, and with the
        # request's context it would keep the request's handler (and connection) alive so long.
        timer = loop.call_later(self.ack_timeout, _time_out, fut, context=_EMPTY_CONTEXT)
        try:
            await fut
        except TimeoutError:
            return False
        finally:
            timer.cancel()
        return True

    def refusing(self) -> bool:
        """Whether data access must be refused now: ``fail_closed`` and the trail not writable."""
        return self._fail_closed and not self.writable

    @property
    def writable(self) -> bool:
        """True when the writer runs and every sink takes writes directly (not spooling)."""
        alive = self._thread is not None and self._thread.is_alive()
        return alive and not any(st.down for st in self._states)

    def is_compliance(self, user: Any) -> bool:
        """Whether ``user`` is in the configured compliance users or groups."""
        info = user_info(user) or {}
        if "*" in self.compliance_users or info.get("username") in self.compliance_users:
            return True
        return bool(set(info.get("groups", ())) & set(self.compliance_groups))

    def status(self) -> dict[str, Any]:
        """For the status endpoint: never the key or DSNs."""
        return {
            "writable": self.writable,
            "fail_closed": self.fail_closed,
            "seq": self._chain.seq,
            "sinks": [{"name": st.sink.name, "down": st.down} for st in self._states],
            "invalid_events": self.invalid_events,
        }

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Open the sinks, resume the chain from the highest stored record, start the writer."""
        if self._thread is not None:
            return
        tails = []
        issued: bytes | None = None
        opened = []
        for st in self._states:
            try:
                st.sink.open()
                issued = issued or st.sink.session_key()
                opened.append(st)
            except SinkUnavailable as exc:
                self._mark_down(st, str(exc))
        if issued is not None:  # the store checks records with the key it issued
            self._key = issued
        for st in self._states:
            if st in opened:  # with the key chosen: another key's chain is set aside
                try:
                    tails.append(self._own_tail(st.sink))
                except SinkUnavailable as exc:
                    self._mark_down(st, str(exc))
            if st.spool.pending():
                self._set_down(st, True, st.error)
                tails.append(st.spool.tail())
        last = max((t for t in tails if t), key=lambda t: t["seq"], default=None)
        if last is not None:
            self._chain = Chain(self._key, last["seq"], last["hash"])
        elif issued is not None:
            self._chain = Chain(self._key)
        self._last_cp = (self._chain.seq, time.monotonic())
        self._inline = all(st.sink.inline for st in self._states)  # configuration: fixed
        self._refresh_inline_up()
        if len(self._states) == 1 and not self._inline:
            try:
                self._stream = self._states[0].sink.stream(self.retry_interval)
            except SinkUnavailable:
                self._stream = None
            if self._stream is not None:
                self._stream.on_break = self._wake_writer
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._running = True
        self._thread.start()

    def _own_tail(self, sink: AuditSink) -> dict[str, Any] | None:
        """The sink's tail when it belongs to this trail's chain (sealed with its key).

        A store whose tail another key sealed holds another chain: it is set aside (a new,
        named segment begins) instead of being continued, so that one file never holds records
        of two keys. Stores that seal with their own issued key (the service) are skipped.
        """
        tail = sink.tail()
        if tail is None or getattr(sink, "ships_records", False) or sealed_with(tail, self._key):
            return tail
        moved = sink.start_new_chain()
        if moved is None:
            self.log.warning(
                "audit sink %s holds a chain sealed with another key (or its last record was "
                "altered) and cannot start a new one: appending; verify reports the key change "
                "at seq %s",
                sink.name,
                tail.get("seq", 0) + 1 if isinstance(tail.get("seq"), int) else "?",
            )
            return tail
        self.log.warning(
            "audit sink %s held a chain sealed with another key (another server's or an earlier "
            "run's random key) or its last record was altered: moved to %s; a new chain starts",
            sink.name,
            moved,
        )
        return sink.tail()

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything recorded so far is acknowledged (tests, CLI, shutdown)."""
        target = self._last_ticket
        deadline = time.monotonic() + timeout
        stream = self._stream
        if stream is not None and stream.outstanding():
            self._settle_now = True  # the loop may be this thread: do not wait for its acks
            self._wake_writer()
        with self._cond:
            while self._written < target or (stream is not None and stream.outstanding()):
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, a final checkpoint, and close the sinks."""
        if self._thread is None:
            return
        self._running = False  # from here on records are queued for the writer's last pass
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None
        if self._stream is not None:
            # A record sent while the writer made its last pass: written (or spooled) here.
            self._settle_stream(force=True)
            self._stream.close()
        with self._write_lock:  # an inline record may be half-way through a write
            for st in self._states:
                st.sink.close()  # closing syncs what the interval deferred

    def verify(self, sink_index: int = 0) -> VerifyResult:
        """Verify one sink's records against every checkpoint the trail knows of."""
        return verify(self.sinks[sink_index].read_lines(), self._key, self.checkpoints())

    def checkpoints(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for sink in self.sinks:
            try:
                found.extend(sink.read_checkpoints())
            except SinkUnavailable:
                continue
        if self.checkpoint_path:
            found.extend(read_checkpoint_file(self.checkpoint_path))
        client = self._vault()
        if client is not None:
            found.extend(vault_checkpoints.read_checkpoint(client, self.checkpoint_vault_path))
        return found

    def _vault(self) -> Any:
        if not self.checkpoint_vault_path or self._vault_client is None:
            return None
        return self._vault_client()

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._write_loop()
        finally:
            self._running = False

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            wait = self.retry_interval if any(st.down for st in self._states) else 1e9
            items: list[Any] = []
            with contextlib.suppress(queue.Empty):
                # Wake at least once a second when idle: deferred fsyncs, checkpoints, retries.
                items.append(self._queue.get(timeout=min(wait, self.checkpoint_interval, 1.0)))
            while items and len(items) < self.batch_size:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if any(x is _STOP for x in items):
                stop = True
            items = [x for x in items if x is not _STOP and x is not _WAKE]
            try:
                if items:
                    self._write_batch(items)
                self._settle_stream(force=stop)
                self._sync_sinks()
                for st in self._states:
                    if st.down:
                        if stop:  # a last attempt, whatever the backoff says
                            st.next_retry = 0.0
                        with self._write_lock:
                            self._replay(st)
                self._checkpoint(force=stop)
            except Exception:  # a bug must not kill the only writer silently
                self.log.exception("audit writer failed on a batch")

    def _write_batch(self, items: list[tuple[int, str, str, dict[str, Any]]]) -> None:
        with self._write_lock:
            try:
                self._write_records(items)
            finally:
                with self._emit_lock:
                    self._pending -= len(items)
        self._acknowledge(items[-1][0])

    def _write_records(self, items: list[tuple[int, str, str, dict[str, Any]]]) -> None:
        """Check, chain and append ``items`` to every sink (spooling for a sink that is down).

        Called with ``_write_lock`` held, by the writer thread or by an inline record.
        """
        seal = self._seal
        lines = [line for _t, kind, ts, payload in items if (line := seal(kind, ts, payload))]
        if lines:
            self._append(lines)

    def _seal(self, kind: str, ts: str, payload: dict[str, Any]) -> str | None:
        """The chained line of one event; None when it fails its schema (counted and logged:
        a caller's bug, not worth a lost batch). Called with ``_write_lock`` held.

        Redaction is decided on the canonical data (one substring search per live secret)
        instead of walking every field of every record; only data that holds a secret is
        redacted and checked again before it is chained.
        """
        try:
            if self._validation == "jupyter_events":
                text = canonical(self._checked(kind, payload))
            else:
                self._validators[kind](payload)
                text = canonical(payload)
                if self._redact.leaks(text):
                    text = canonical(self._checked(kind, payload))
        except Exception as exc:
            self.invalid_events += 1
            self.log.error("audit event %s rejected: %s", kind, str(exc).split("\n")[0])
            return None
        return self._chain.seal_event(ts, self._event_id(), kind, self._schema_ids[kind], text)

    def _append(self, lines: list[str]) -> None:
        """Append chained lines to every sink, or to its spool while it is down.

        Lines the sink's stream holds unacknowledged are older than ``lines``: they are written
        first, in the same call (the store keeps a line it already has once), so that nothing
        the writer writes can overtake them; their waiters are then settled.
        """
        backlog = self._stream.outstanding() if self._stream is not None else []
        if backlog:
            lines = [line for _seq, line in backlog] + lines
        if not lines:
            return
        kept = True
        for st in self._states:
            if st.down:
                self._replay(st)
            if not st.down:
                try:
                    st.sink.write(lines)
                    continue
                except SinkUnavailable as exc:
                    self._mark_down(st, str(exc))
            try:
                st.spool.append(lines)
            except OSError as exc:
                kept = False
                self.log.critical("audit records LOST for sink %s: %s", st.sink.name, exc)
        if backlog:
            assert self._stream is not None
            self._stream.settle(backlog[-1][0], kept)

    def _settle_stream(self, force: bool = False) -> None:
        """Write what a broken (or, with ``force``, any) stream holds unacknowledged."""
        stream = self._stream
        if stream is None:
            return
        force = force or self._settle_now
        self._settle_now = False
        if (stream.healthy() and not force) or not stream.outstanding():
            return
        with self._write_lock:
            if stream.outstanding():
                self._append([])
        with self._cond:
            self._cond.notify_all()

    def _wake_writer(self) -> None:
        self._queue.put(_WAKE)

    def _event_id(self) -> str:
        """128 random bits, hex (called under ``_write_lock``).

        Taken from a pool of 4 KiB refilled from ``os.urandom``: one system call per 256 ids
        instead of one per record.
        """
        pool, at = self._ids
        if at >= len(pool):
            pool, at = os.urandom(4096), 0
        self._ids = (pool, at + 16)
        return pool[at : at + 16].hex()

    def _checked(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Redacted, schema-valid data of one event (raises when invalid)."""
        sid = self._schema_ids[kind]
        if self._validation == "jupyter_events":
            capsule = self.events.emit(schema_id=sid, data=payload)
            assert capsule is not None
            return {k: v for k, v in capsule.items() if not k.startswith("__")}
        data = self._redact(sid, payload)
        self._validators[kind](data)
        return data

    def _sync_sinks(self) -> None:
        """Deferred fsyncs, outside ``_write_lock`` (the sinks decide whether one is due)."""
        for st in self._states:
            if not st.down:
                try:
                    st.sink.sync()
                except SinkUnavailable as exc:
                    self._mark_down(st, str(exc))

    def _acknowledge(self, ticket: int) -> None:
        with self._cond:
            self._written = ticket
            ready = [w for w in self._waiters if w[0] <= ticket]
            self._waiters = [w for w in self._waiters if w[0] > ticket]
            self._cond.notify_all()
        for _, fut in ready:
            fut.get_loop().call_soon_threadsafe(_resolve, fut)

    def _mark_down(self, st: _SinkState, error: str) -> None:
        if not st.down:
            self.log.error("audit sink %s is down, spooling locally: %s", st.sink.name, error)
        self._set_down(st, True, error)
        st.next_retry = time.monotonic() + self.retry_interval

    def _set_down(self, st: _SinkState, down: bool, error: str | None) -> None:
        """Mark a sink down or up; the one place its state changes, so ``_inline_up`` (read
        for every record instead of asking every sink) stays in step."""
        st.down, st.error = down, error
        self._refresh_inline_up()

    def _refresh_inline_up(self) -> None:
        self._inline_up = self._inline and not any(s.down for s in self._states)

    def _replay(self, st: _SinkState) -> None:
        if time.monotonic() < st.next_retry:
            return
        try:
            st.sink.open()
            pending = st.spool.read()
            for i in range(0, len(pending), self.batch_size):
                st.sink.write(pending[i : i + self.batch_size])
            st.spool.clear()
        except SinkUnavailable as exc:
            self._mark_down(st, str(exc))
            return
        self._set_down(st, False, None)
        self.log.warning("audit sink %s is back: replayed %d records", st.sink.name, len(pending))

    def _checkpoint(self, force: bool = False) -> None:
        seq, at = self._last_cp
        if self._chain.seq == seq:
            return
        if not force and time.monotonic() - at < self.checkpoint_interval:
            return
        with self._write_lock:
            cp = self._chain.checkpoint()
        for st in self._states:
            if st.down:
                continue
            try:
                st.sink.write_checkpoint(cp)
            except SinkUnavailable as exc:
                self._mark_down(st, str(exc))
        if self.checkpoint_path:
            try:
                append_checkpoint(self.checkpoint_path, cp)
            except OSError as exc:
                self.log.error("audit checkpoint file not written: %s", exc)
        try:
            client = self._vault()
            if client is not None:
                vault_checkpoints.write_checkpoint(client, self.checkpoint_vault_path, cp)
        except Exception as exc:  # Vault down: the other places still hold checkpoints
            self.log.error("audit checkpoint not written to Vault: %s", type(exc).__name__)
        self._last_cp = (cp["seq"], time.monotonic())


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_EMPTY_CONTEXT = contextvars.Context()


def _time_out(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
