"""The ledger's per-event work: a record's canonical text, its hash and its row of the COPY.

Why this is not ``canonical()`` of a dict and ``copy.write_row`` per record: this is the part of
the service that runs once per audited event, tens of thousands of times a second (issue 15).
A record's keys are fixed (the server's fields, the service's chain fields), so its canonical
text is formatted around the one part that needs an encoder, ``canonical(data)``, in the key
order ``canonical()`` sorts them into; the record's row is one line of COPY text, its
per-stream columns formatted once per request, and the round is written with one
``copy.write``. Measured (``python -m benchmarks.ledger_ingest``, 8 x 5,000 events, alternated
with the code before on the same loaded 2-core VM): the writer's CPU per event 15.7 and 20.4 us
before, 11.6 and 11.8 us with this (the seal check, chaining, hashing and the COPY included).

Every value goes through the same string encoder as ``canonical()`` (``json_value``), so the
text is byte for byte what ``canonical()`` gives for the same record: the verifier recomputes it
from the stored record and would otherwise report it modified. ``tests/test_service_sealing.py``
checks that on awkward values (escapes, non-ASCII, missing and non-string fields).

Column values (``acting_user``, ``kernel_id``, ``path``, ``ts``) are a server's report, copied
out of the record for queries: any JSON value is turned into text PostgreSQL takes (a non-string
as its JSON, a NUL as U+FFFD), so that no event's content can fail the COPY of a whole round of
every server's events. The record itself keeps the exact value.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..audit.chain import canonical

__all__ = ["COPY_COLUMNS", "RECORDED_KEYS", "RoundSealer", "copy_field", "json_value"]

# The string encoder canonical() uses (ensure_ascii=False): C where available.
_STR = json.encoder.encode_basestring
_MISSING: Any = object()
_NULL = "\\N"  # NULL in COPY text
# What a record keeps of an event's own fields (RoundSealer.seal); the chain adds the rest.
RECORDED_KEYS = ("data", "event_id", "kind", "schema", "ts", "version")
# The order of the fields in each COPY line: the per-stream ones first, formatted once per request.
COPY_COLUMNS = (
    "chain, received, username, server_id, seq, server_seq, ts, kind, acting_user, kernel_id, "
    "path, record"
)
_COPY_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\ufffd"}
)


def json_value(value: Any) -> str:
    """``value`` as ``canonical()`` writes it inside a record."""
    kind = type(value)
    if kind is str:
        return _STR(value)
    if kind is int:  # not bool (a subclass): canonical() writes true/false
        return int.__repr__(value)
    return canonical(value)


def copy_field(value: Any) -> str:
    """``value`` as one field of a COPY text line (None: NULL)."""
    if value is None:
        return _NULL
    text = value if type(value) is str else json_value(value)
    # isprintable() is False for every character the format needs escaped (tab, newline,
    # carriage return, NUL) and a few more that translate() then leaves alone.
    if "\\" in text or not text.isprintable():
        text = text.translate(_COPY_ESCAPES)
    return text


class RoundSealer:
    """Chains one round's records after ``head``: their hashes and their COPY text.

    Not thread-safe; one per commit attempt (a retried round starts again from the head).
    """

    def __init__(self, chain: str, seq: int, head: str, received: str) -> None:
        self.seq = seq
        self.head = head
        self.hashes: list[str] = []
        self.rows: list[str] = []
        self._chain = json_value(chain)
        self._received = json_value(received)
        self._copy_round = f"{copy_field(chain)}\t{copy_field(received)}\t"
        self._middle = self._server = self._copy_stream = ""
        self.stream({"username": "", "via": "service"}, "")

    def stream(self, principal: dict[str, Any], server_id: str) -> None:
        """The stream the next records belong to: who the service authenticated (``username``
        and how), and the server's id ("" for the service's own records)."""
        self._middle = f',"principal":{canonical(principal)},"received":{self._received}'
        self._server = f',"server_id":{json_value(server_id)}'
        self._copy_stream = (
            f"{self._copy_round}{copy_field(principal['username'])}\t"
            f"{copy_field(server_id or None)}\t"
        )

    def seal(self, fields: dict[str, Any], server_seq: int | None) -> None:
        """Chain the next record: ``fields``' data, event_id, kind, schema, ts and version (any
        other key is not recorded; ``data`` and ``kind`` are required), the stream's
        ``server_seq`` (None: the service's own record)."""
        self.seq += 1
        data = fields["data"]
        kind = fields["kind"]
        event_id = fields.get("event_id", _MISSING)
        schema = fields.get("schema", _MISSING)
        ts = fields.get("ts", _MISSING)
        version = fields.get("version", _MISSING)
        seq = self.seq
        # The keys in canonical() order: chain data event_id kind prev principal received
        # schema seq server_id server_seq ts version.
        stream_seq = "" if server_seq is None else f',"server_seq":{server_seq}'
        if (
            type(event_id) is str
            and type(kind) is str
            and type(schema) is str
            and type(ts) is str
            and type(version) is int
        ):
            # Every event a server's trail writes and every alert: one format, no calls per key.
            text = (
                f'{{"chain":{self._chain},"data":{canonical(data)},"event_id":{_STR(event_id)},'
                f'"kind":{_STR(kind)},"prev":"{self.head}"{self._middle},"schema":{_STR(schema)},'
                f'"seq":{seq}{self._server}{stream_seq},"ts":{_STR(ts)},"version":{version}}}'
            )
        else:
            text = "".join(
                (
                    '{"chain":',
                    self._chain,
                    ',"data":',
                    canonical(data),
                    "" if event_id is _MISSING else ',"event_id":' + json_value(event_id),
                    ',"kind":',
                    json_value(kind),
                    ',"prev":"',
                    self.head,
                    '"',
                    self._middle,
                    "" if schema is _MISSING else ',"schema":' + json_value(schema),
                    f',"seq":{seq}',
                    self._server,
                    stream_seq,
                    "" if ts is _MISSING else ',"ts":' + json_value(ts),
                    "" if version is _MISSING else ',"version":' + json_value(version),
                    "}",
                )
            )
        digest = hashlib.sha256(text.encode()).hexdigest()
        self.head = digest
        self.hashes.append(digest)
        # The stored line: the canonical text and its hash. JSON text holds no tab, newline or
        # NUL (the encoder escapes them), only backslashes the COPY format must double.
        record = f'{text[:-1]},"hash":"{digest}"}}'
        if "\\" in record:
            record = record.replace("\\", "\\\\")
        user = data.get("user") if type(data) is dict else None
        acting = user.get("username") if type(user) is dict else None
        kernel_id = data.get("kernel_id") if type(data) is dict else None
        path = data.get("path") if type(data) is dict else None
        self.rows.append(
            f"{self._copy_stream}{seq}\t{_NULL if server_seq is None else server_seq}\t"
            f"{copy_field(None if ts is _MISSING else ts)}\t{copy_field(kind)}\t"
            f"{copy_field(acting)}\t{copy_field(kernel_id)}\t{copy_field(path)}\t{record}\n"
        )
