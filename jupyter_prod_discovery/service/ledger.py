"""The service's audit ledger: events from many servers, sealed in one order, signed, stored.

Why group commit: hundreds of servers ship small batches at once. Each request's events wait in
a queue; one writer takes everything waiting, seals it into the chain, writes it with one COPY
and one signed checkpoint in one PostgreSQL transaction, and answers all those requests. One
transaction and one signature per round instead of per request is what lets two cores seal
tens of thousands of events a second.

Streams. Each server numbers what it ships (``server_seq``, its local chain's seq). The ledger
keeps the last number per (principal, server) stream: a replay after a lost answer is
acknowledged without a second copy, and a jump is recorded as an ``alert`` record naming the
missing numbers. The uniqueness of (chain, seq) and of (chain, user, server, server_seq) is
enforced by PostgreSQL: a conflict (another writer on the same chain) is an error that reloads
the state, is retried once, and is logged as an alert; it is never ignored.

Per event (issue 15: 20,000 events/s from 8 servers on two cores, the service sharing them
with PostgreSQL): the line is decoded once (``_parse``, on the event loop, with the checks that
can refuse one request alone), and the writer checks the server's seal and seals the record
(``sealing.RoundSealer``: the record's canonical text formatted around ``canonical(data)``, its
COPY line formatted, no dict copied per event). An event's content must not fail the round of
every server's events committed with it: a ts that is no ISO time and a lone surrogate (no
UTF-8 holds one) are refused for their own request; a column's value of any JSON type (a
dict, a NUL) is made into text PostgreSQL takes.

Nothing here trusts the server: the principal is the identity the service authenticated, and
the events' own ``user`` is kept as what the server reported. State lives in PostgreSQL: a
restarted service resumes the chain and the streams from the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from traitlets import Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..audit.chain import GENESIS, canonical
from ..audit.recorder import AUDIT_KINDS
from ..audit.signed_chain import checkpoint_message, head_message, record_hash
from .sealing import COPY_COLUMNS, RECORDED_KEYS, RoundSealer
from .signing import AuditSigner

__all__ = ["AuditLedger", "LedgerError", "LedgerUnavailable", "Principal", "read_data_sources"]

ALERT_SCHEMA = "https://events.prod-discovery.dev/alert/v1"
# How a server's chain ends each line (audit/chain.py Chain._close): ,"hash":"<64>","mac":"<64>"}
_SEAL = re.compile(r',"hash":"[0-9a-f]{64}","mac":"[0-9a-f]{64}"\}')
_SEAL_SUFFIX = 148
# json.loads less its two Python frames (loads, decode) per line: the same decoder and checks.
_DECODE = json.JSONDecoder().decode
# Its scanner: a line that is one object and nothing else (what servers send) is decoded by it
# alone, less decode()'s whitespace matching and frames; anything else goes through _DECODE.
_SCAN: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class LedgerError(ValueError):
    """What a server shipped cannot be taken (a client bug, or a forgery attempt): 400."""


class LedgerUnavailable(Exception):
    """The store cannot be written now: the server keeps its spool and retries (503)."""


@dataclass(frozen=True)
class Principal:
    """Who the service authenticated: never a name taken from the request body."""

    username: str
    server: str = ""
    groups: tuple[str, ...] = ()
    via: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"username": self.username, "server": self.server, "via": self.via}


@dataclass(slots=True)
class _Event:
    """One event to seal: the fields it came with and what the server's seal said of it."""

    fields: dict[str, Any]  # the decoded line (RoundSealer.seal records the known keys only)
    server_seq: int | None  # None: the service's own event
    sealed: str | None = None  # the exact text the server hashed; None: not in sealed form
    digest: Any = None  # the line's hash and MAC (any JSON value: the server's claim)
    mac: Any = None


@dataclass
class _Request:
    principal: Principal | None  # None: the service's own event
    server_id: str
    events: list[_Event]
    future: asyncio.Future[dict[str, Any]] | None
    result: dict[str, Any] = field(default_factory=dict)


def _ddl(table: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
            chain text NOT NULL, seq bigint NOT NULL, ts timestamptz, received timestamptz,
            username text, acting_user text, server_id text, server_seq bigint, kind text,
            kernel_id text, path text, record text NOT NULL, PRIMARY KEY (chain, seq),
            UNIQUE (chain, username, server_id, server_seq))""",
        f"CREATE INDEX IF NOT EXISTS {table}_user_ts ON {table} (username, ts)",
        f"""CREATE TABLE IF NOT EXISTS {table}_checkpoints (
            chain text NOT NULL, first_seq bigint NOT NULL, last_seq bigint NOT NULL,
            head text NOT NULL, hashes text NOT NULL, key_id text NOT NULL, sig text NOT NULL,
            PRIMARY KEY (chain, first_seq))""",
        f"""CREATE TABLE IF NOT EXISTS {table}_sessions (
            chain text NOT NULL, username text NOT NULL, server_id text NOT NULL,
            key text NOT NULL, PRIMARY KEY (chain, username, server_id))""",
    ]


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or name[0].isdigit():
        raise ValueError(f"invalid SQL identifier {name!r}")
    return name


def _q(text: str, table: str) -> Any:
    """A statement on ``table`` (``{t}``), its checkpoints (``{cp}``) and stream keys
    (``{sessions}``), identifiers quoted."""
    from psycopg import sql

    return sql.SQL(text).format(
        t=sql.Identifier(table),
        cp=sql.Identifier(f"{table}_checkpoints"),
        sessions=sql.Identifier(f"{table}_sessions"),
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLedger(LoggingConfigurable):
    """Seals and stores every server's audit events in one signed chain (PostgreSQL)."""

    dsn = Unicode(
        config=True,
        help="""PostgreSQL DSN of the audit store, used by the service only (never given to
        single-user servers). Default: the PROD_DISCOVERY_SERVICE_DSN environment variable.""",
    )
    table = Unicode(
        "prod_discovery_service_audit",
        config=True,
        help="Table of sealed records (checkpoints in <table>_checkpoints). Default "
        "'prod_discovery_service_audit'.",
    )
    chain = Unicode(
        "main",
        config=True,
        help="""Name of this service's chain. One service instance writes one chain; a second
        instance on the same table needs a name of its own. Default 'main'.""",
    )
    max_batch = Int(
        20000,
        config=True,
        help="Most events sealed in one transaction (one signed checkpoint). Default 20000.",
    )

    @default("dsn")
    def _dsn_default(self) -> str:
        return os.environ.get("PROD_DISCOVERY_SERVICE_DSN", "")

    def __init__(self, signer: AuditSigner, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signer = signer
        self._table = _ident(self.table)
        self._conn: Any = None
        self.seq = 0
        self.head = GENESIS
        self._streams: dict[tuple[str, str], int] = {}
        self._foreign: tuple[int, int] | None = None  # rows found that this service did not sign
        self._session_keys: dict[tuple[str, str], bytes] = {}
        self._keyed: dict[bytes, Any] = {}  # session key -> its keyed HMAC, to copy per event
        self._waiting: list[_Request] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # the writer thread vs. a synchronous local record
        self.alerts = 0
        self.committed = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, create the tables when missing and resume chain and streams."""
        import psycopg

        if not self.dsn:
            raise LedgerUnavailable(
                "no audit store: set AuditLedger.dsn or PROD_DISCOVERY_SERVICE_DSN"
            )
        try:
            self._conn = psycopg.connect(self.dsn, autocommit=False, connect_timeout=5)
            with self._conn.transaction():
                for stmt in _ddl(self._table):
                    self._conn.execute(stmt)
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"audit store unreachable: {exc}") from None
        self._reload()

    def _reload(self) -> None:
        """Resume from what this service signed, never from a row it merely finds.

        Why not the table's last row: whoever can write the table (a misconfigured DSN, trust
        auth) could insert a row at the next seq, which would become the head the next batch
        chains to; or raise a stream's ``server_seq`` column so that the service dropped that
        server's next events as replays. The head comes from the newest checkpoint that this
        service's key signed; rows beyond it are recorded as an ``alert`` with the next batch,
        and each stream's position is the highest ``server_seq`` of a record a signed
        checkpoint lists (checked per stream: one checkpoint lookup each).
        """
        from .signing import PublicKeys

        check = PublicKeys([self.signer.public_key_pem()])
        t = self._table
        with self._conn.transaction():
            top = self._conn.execute(
                _q("SELECT max(seq) FROM {t} WHERE chain = %s", t), (self.chain,)
            ).fetchone()
            checkpoints = self._conn.execute(
                _q(
                    "SELECT first_seq, last_seq, head, hashes, key_id, sig FROM {cp} "
                    "WHERE chain = %s ORDER BY last_seq DESC LIMIT 50",
                    t,
                ),
                (self.chain,),
            ).fetchall()
            sessions = self._conn.execute(
                _q("SELECT username, server_id, key FROM {sessions} WHERE chain = %s", t),
                (self.chain,),
            ).fetchall()
            streams = self._conn.execute(
                _q(
                    "SELECT username, server_id, max(server_seq) FROM {t} "
                    "WHERE chain = %s AND server_seq IS NOT NULL GROUP BY username, server_id",
                    t,
                ),
                (self.chain,),
            ).fetchall()
        self._session_keys = {(u, sid): bytes.fromhex(k) for u, sid, k in sessions}
        signed_seq, head = 0, GENESIS
        for first, last, cp_head, hashes, key_id, sig in checkpoints:
            hash_list = json.loads(hashes)
            msg = checkpoint_message(self.chain, int(first), int(last), cp_head, hash_list)
            if check(msg, sig, key_id):
                signed_seq, head = int(last), cp_head
                break
        highest = int(top[0]) if top and top[0] is not None else 0
        self.seq, self.head = max(highest, signed_seq), head
        self._foreign = (signed_seq + 1, highest) if highest > signed_seq else None
        if self._foreign:
            self.alerts += 1
            self.log.error(
                "ALERT audit store: records %d..%d of chain %r were not signed by this service",
                *self._foreign,
                self.chain,
            )
        self._streams = {}
        with self._conn.transaction():  # autocommit is off: never leave a transaction open
            for user, server, n in streams:
                position = self._signed_position(check, user, server, int(n))
                self._streams[(user, server)] = position

    def _signed_position(self, check: Any, user: str, server: str, claimed: int) -> int:
        """The highest server_seq of ``(user, server)`` that a signed record vouches for."""
        t = self._table
        rows = self._conn.execute(
            _q(
                "SELECT seq, record FROM {t} WHERE chain = %s AND username = %s AND "
                "server_id = %s AND server_seq <= %s ORDER BY server_seq DESC LIMIT 20",
                t,
            ),
            (self.chain, user, server, claimed),
        ).fetchall()
        for seq, record in rows:
            cp = self._conn.execute(
                _q(
                    "SELECT first_seq, last_seq, head, hashes, key_id, sig FROM {cp} "
                    "WHERE chain = %s AND first_seq <= %s AND last_seq >= %s",
                    t,
                ),
                (self.chain, seq, seq),
            ).fetchone()
            if cp is None:
                continue
            hashes = json.loads(cp[3])
            message = checkpoint_message(self.chain, int(cp[0]), int(cp[1]), cp[2], hashes)
            rec = json.loads(record)
            if (
                check(message, cp[5], cp[4])
                and hashes[int(seq) - int(cp[0])] == record_hash(rec)
                and rec.get("principal", {}).get("username") == user
                and rec.get("server_id") == server
            ):
                if int(rec["server_seq"]) != claimed:
                    self.alerts += 1
                    self.log.error(
                        "ALERT audit store: stream %s/%s claims server_seq %d, signed %d",
                        user,
                        server,
                        claimed,
                        rec["server_seq"],
                    )
                return int(rec["server_seq"])
        return 0

    async def session_key(self, principal: Principal, server_id: str) -> bytes:
        """The MAC key of ``principal``'s stream ``server_id``: issued on first request, kept
        in the store (a restarted service still checks a replayed spool)."""
        if not server_id or len(server_id) > 200:
            raise LedgerError("the server id (X-Prod-Discovery-Server) is missing or too long")
        key = self._session_keys.get((principal.username, server_id))
        if key is None:
            key = await asyncio.to_thread(self._store_session_key, principal.username, server_id)
            self._session_keys[(principal.username, server_id)] = key
        return key

    def _store_session_key(self, user: str, server_id: str) -> bytes:
        import psycopg

        fresh = os.urandom(32).hex()
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:  # not the writer's
                row = conn.execute(
                    _q(
                        "INSERT INTO {sessions} AS s VALUES (%s, %s, %s, %s) ON CONFLICT "
                        "(chain, username, server_id) DO UPDATE SET key = s.key "
                        "RETURNING key",
                        self._table,
                    ),
                    (self.chain, user, server_id, fresh),
                ).fetchone()
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"audit store unreachable: {exc}") from None
        if row is None:  # RETURNING always gives the row; a store that does not is broken
            raise LedgerUnavailable("the audit store returned no session key")
        return bytes.fromhex(row[0])

    def _keyed_mac(self, key: bytes) -> Any:
        """The stream's keyed HMAC, copied per event (no key setup per event)."""
        keyed = self._keyed.get(key)
        if keyed is None:
            hm = hmac.new(key, digestmod=hashlib.sha256)
            keyed = self._keyed[key] = getattr(hm, "_hmac", None) or hm
        return keyed

    @staticmethod
    def _check_sealed(keyed: Any, event: _Event) -> str | None:
        """Why the server's seal of ``event`` does not hold under the stream's keyed MAC, or
        None. Reads, never consumes: a commit retried after a conflict checks it again."""
        if event.sealed is None:
            return "not in the form the server seals (hash and MAC last)"
        if hashlib.sha256(event.sealed.encode()).hexdigest() != event.digest:
            return "content does not match the hash the server sealed"
        expected = keyed.copy()
        expected.update(event.digest.encode())  # a str: it equals the hexdigest above
        if not hmac.compare_digest(expected.hexdigest(), str(event.mac)):
            return "MAC invalid under the stream's key"
        return None

    async def start(self) -> None:
        await asyncio.to_thread(self.open)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            if self._wake is not None:
                self._wake.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._waiting:  # whatever arrived last is still committed
            await asyncio.to_thread(self._commit_all, self._take())
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- appending -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether appends are taken (started and not stopped)."""
        return self._task is not None and self._wake is not None

    def stream_position(self, principal: Principal, server_id: str) -> int:
        """The last server_seq stored for this stream (0: none): where a server resumes."""
        return self._streams.get((principal.username, server_id), 0)

    async def append(
        self, principal: Principal, server_id: str, lines: list[str]
    ) -> dict[str, Any]:
        """Seal and store what a server shipped; returns once committed (or raises)."""
        events = [self._parse(line) for line in lines if line.strip()]
        if not server_id or len(server_id) > 200:
            raise LedgerError("the server id (X-Prod-Discovery-Server) is missing or too long")
        if self._task is None or self._wake is None:  # not self.running: mypy narrows this
            raise LedgerUnavailable("the ledger is not running")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Request(principal, server_id, events, fut))
        self._wake.set()
        return await fut

    def record_local(self, kind: str, data: dict[str, Any]) -> None:
        """The service's own event (credential issued or revoked by the service): queued."""
        try:
            canonical(data).encode()
        except UnicodeEncodeError:  # a lone surrogate (from a request's JSON) would fail the
            # whole round it is committed in: kept as text, the surrogate replaced
            data = json.loads(canonical(data).encode("utf-8", "replace"))
        event = {
            "data": data,
            "event_id": os.urandom(16).hex(),
            "kind": kind,
            "schema": f"https://events.prod-discovery.dev/{kind}/v1",
            "ts": _now(),
            "version": 1,
        }
        self._waiting.append(_Request(None, "", [_Event(event, None)], None))
        if self._wake is not None:
            self._wake.set()

    @staticmethod
    def _parse(line: str) -> _Event:
        try:
            rec, end = _SCAN(line, 0) if line[:1] == "{" else (None, 0)
            if end != len(line):  # whitespace around it, more after it, or not JSON
                rec = _DECODE(line)
        except (ValueError, StopIteration):
            raise LedgerError("an event is not JSON") from None
        if not isinstance(rec, dict):
            raise LedgerError("an event has no positive integer seq")
        seq = rec.get("seq")
        if type(seq) is not int or seq < 1:  # not bool: true is no number
            raise LedgerError("an event has no positive integer seq")
        if rec.get("kind") not in AUDIT_KINDS or not isinstance(rec.get("data"), dict):
            raise LedgerError(f"unknown event kind {rec.get('kind')!r}")
        # Checked here, for this request alone: a value PostgreSQL refuses would otherwise fail
        # the whole round of every server's events committed with it.
        try:
            datetime.fromisoformat(str(rec.get("ts")))
        except ValueError:
            raise LedgerError(f"an event's ts is not an ISO 8601 time: {rec.get('ts')!r}") from None
        if "\\ud" in line or "\\uD" in line:  # for the same reason: no UTF-8 has a lone
            try:  # surrogate, and a JSON escape can make one
                canonical([rec.get(k) for k in RECORDED_KEYS]).encode()
            except UnicodeEncodeError:
                raise LedgerError("an event holds a lone surrogate (\\ud800-\\udfff)") from None
        # What the server's own chain said of it, checked against the stream's session key:
        # the exact text it hashed (the line less its fixed-size hash and MAC suffix: no
        # re-encoding), the hash and the MAC.
        suffix = line[-_SEAL_SUFFIX:]
        sealed = line[:-_SEAL_SUFFIX] + "}" if _SEAL.fullmatch(suffix) else None
        return _Event(rec, seq, sealed, rec.get("hash"), rec.get("mac"))

    def _take(self) -> list[_Request]:
        taken: list[_Request] = []
        count = 0
        while self._waiting and (
            not taken or count + len(self._waiting[0].events) <= self.max_batch
        ):
            req = self._waiting.pop(0)
            taken.append(req)
            count += len(req.events)
        return taken

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                taken = self._take()
                try:
                    await asyncio.to_thread(self._commit_all, taken)
                except Exception as exc:  # the store failed: every request of the round fails
                    err = exc if isinstance(exc, LedgerUnavailable) else LedgerUnavailable(str(exc))
                    self.log.error("Audit store write failed: %s", exc)
                    for req in taken:
                        if req.future is not None and not req.future.done():
                            req.future.set_exception(err)
                    break
                for req in taken:
                    if req.future is not None and not req.future.done():
                        req.future.set_result(req.result)

    def _commit_all(self, taken: list[_Request]) -> None:
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                try:
                    self._commit(taken)
                    return
                except psycopg.errors.UniqueViolation as exc:
                    self.alerts += 1
                    self.log.error(
                        "ALERT audit store conflict on chain %r (another writer?): %s; reloading "
                        "the chain and retrying (attempt %d)",
                        self.chain,
                        exc,
                        attempt,
                    )
                    self._conn.rollback()
                    self._reload()
                except psycopg.Error as exc:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.rollback()
                    if self._conn.closed:
                        with contextlib.suppress(LedgerUnavailable):
                            self.open()
                    raise LedgerUnavailable(f"audit store write failed: {exc}") from None
            raise LedgerUnavailable("audit store conflict persisted after reloading the chain")

    def _commit(self, taken: list[_Request]) -> None:
        """Seal every event of ``taken`` in order and store them with one signed checkpoint."""
        received = _now()
        sealer = RoundSealer(self.chain, self.seq, self.head, received)
        streams = dict(self._streams)
        alerts = 0

        def alert(data: dict[str, Any]) -> dict[str, Any]:
            return {
                "data": data,
                "event_id": os.urandom(16).hex(),
                "kind": "alert",
                "schema": ALERT_SCHEMA,
                "ts": received,
                "version": 1,
            }

        if self._foreign is not None:  # sealed as the service's own, before anything else
            first_alien, last_alien = self._foreign
            what = {"what": "foreign_records", "missing_from": first_alien}
            sealer.seal(alert({**what, "missing_to": last_alien}), None)
        for req in taken:
            if req.principal is None:  # the service's own events
                sealer.stream({"username": "", "via": "service"}, "")
                for event in req.events:
                    sealer.seal(event.fields, None)
                req.result = {
                    "acknowledged": len(req.events),
                    "duplicates": 0,
                    "last_server_seq": 0,
                }
                continue
            sealer.stream(req.principal.to_json(), req.server_id)
            key = (req.principal.username, req.server_id)
            session_key = self._session_keys.get(key)
            # None: a stream whose server never got a key (it started while we were down)
            keyed = self._keyed_mac(session_key) if session_key is not None else None
            last = streams.get(key, 0)
            acked = dups = 0
            for event in req.events:
                n = event.server_seq
                assert n is not None  # a server's event (_parse)
                if n <= last:
                    dups += 1  # a replay of what is stored: acknowledged, not stored twice
                    continue
                if n > last + 1 and last:
                    alerts += 1
                    gap = {"what": "gap", "server_id": req.server_id, "missing_from": last + 1}
                    sealer.seal(alert({**gap, "missing_to": n - 1}), None)
                why = self._check_sealed(keyed, event) if keyed is not None else None
                if why is not None:  # kept as evidence, flagged first
                    alerts += 1
                    altered = {"what": "altered", "server_id": req.server_id, "server_seq": n}
                    sealer.seal(alert({**altered, "why": why}), None)
                sealer.seal(event.fields, n)
                last = n
                acked += 1
            streams[key] = last
            req.result = {"acknowledged": acked, "duplicates": dups, "last_server_seq": last}
        if not sealer.rows:
            return
        seq, head = sealer.seq, sealer.head
        first = seq - len(sealer.rows) + 1
        sig = self.signer.sign(checkpoint_message(self.chain, first, seq, head, sealer.hashes))
        t = self._table
        with self._conn.transaction(), self._conn.cursor() as cur:
            with cur.copy(_q(f"COPY {{t}} ({COPY_COLUMNS}) FROM STDIN", t)) as copy:
                copy.write("".join(sealer.rows))
            cur.execute(
                _q("INSERT INTO {cp} VALUES (%s, %s, %s, %s, %s, %s, %s)", t),
                (self.chain, first, seq, head, json.dumps(sealer.hashes), self.signer.key_id, sig),
            )
        self.seq, self.head, self._streams = seq, head, streams
        self._foreign = None
        self.committed += len(sealer.rows)
        self.alerts += alerts  # counted once committed (a retried round flags them again)

    # -- reading (own connections: psycopg shares one connection's transaction between threads) -

    def signed_head(self) -> dict[str, Any]:
        """The current head, signed now: what ``audit verify`` judges truncation against."""
        ts = _now()
        sig = self.signer.sign(head_message(self.chain, self.seq, self.head, ts))
        return {
            "chain": self.chain,
            "seq": self.seq,
            "head": self.head,
            "ts": ts,
            "key_id": self.signer.key_id,
            "sig": sig,
        }

    def status(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "seq": self.seq,
            "alerts": self.alerts,
            "waiting": sum(len(r.events) for r in self._waiting),
            "up": self._conn is not None and not self._conn.closed,
        }


def read_data_sources(
    dsn: str,
    username: str,
    server_id: str,
    since: datetime | None = None,
    chain: str = "main",
    table: str = "prod_discovery_service_audit",
) -> list[dict[str, Any]]:
    """``data`` of every ``datasource`` record of ``username``'s stream ``server_id``, oldest
    first, received at or after ``since`` (None: all), on a connection of its own.

    Selected by the columns the service wrote itself: ``username`` is the principal it
    authenticated when the server shipped the record (never the record's own ``user``), and
    ``received`` its own clock. What a record says it touched is the server's report.
    """
    import psycopg

    t = _ident(table)
    query = (
        "SELECT record FROM {t} WHERE chain = %s AND username = %s AND server_id = %s "
        "AND kind = 'datasource'"
    )
    args: list[Any] = [chain, username, server_id]
    if since is not None:
        query += " AND received >= %s"
        args.append(since)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(_q(query + " ORDER BY seq", t), args).fetchall()
    out = []
    for (record,) in rows:
        data = json.loads(record).get("data")
        if isinstance(data, dict):
            out.append(data)
    return out


def read_lines(
    dsn: str, chain: str = "main", table: str = "prod_discovery_service_audit"
) -> Iterator[str]:
    """Every record of ``chain`` in seq order, on a connection of its own."""
    import psycopg

    t = _ident(table)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor(name="pd_read") as cur:
        conn.autocommit = False
        cur.execute(_q("SELECT record FROM {t} WHERE chain = %s ORDER BY seq", t), (chain,))
        for (record,) in cur:
            yield record


def read_checkpoints(
    dsn: str, chain: str = "main", table: str = "prod_discovery_service_audit"
) -> list[dict[str, Any]]:
    """The signed checkpoints of ``chain``, on a connection of its own."""
    import psycopg

    t = _ident(table)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            _q(
                "SELECT chain, first_seq, last_seq, head, hashes, key_id, sig FROM {cp} "
                "WHERE chain = %s ORDER BY first_seq",
                t,
            ),
            (chain,),
        ).fetchall()
    return [
        {
            "chain": c,
            "first_seq": f,
            "last_seq": la,
            "head": h,
            "hashes": json.loads(hs),
            "key_id": k,
            "sig": s,
        }
        for c, f, la, h, hs, k, s in rows
    ]
