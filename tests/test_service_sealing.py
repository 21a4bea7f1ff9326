"""The ledger's record text is canonical() of the record, and its COPY line holds any value."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from jupyter_prod_discovery.audit.chain import GENESIS, canonical
from jupyter_prod_discovery.service.sealing import RoundSealer, copy_field, json_value

RECEIVED = "2026-12-06T03:00:00.000000Z"
WHO = {"username": "alice", "server": "", "via": "peer-uid"}
AWKWARD: list[Any] = [
    "plain",
    'quote " backslash \\ tab \t newline \n nul \x00 bell \x07',
    "non-ASCII: é 中文 \u2028 😀",
    0,
    -12345678901234567890123,
    1.5,
    1e16,
    True,
    False,
    None,
    [1, "two", {"b": 1, "a": [None]}],
    {"z": 1, "a": {"y": "\\", "b": "\n"}},
]


def expected(fields: dict[str, Any], seq: int, prev: str, server_seq: int | None) -> str:
    rec = {
        k: fields[k] for k in ("data", "event_id", "kind", "schema", "ts", "version") if k in fields
    }
    rec.update(chain="main", seq=seq, prev=prev, received=RECEIVED, server_id="srv", principal=WHO)
    if server_seq is not None:
        rec["server_seq"] = server_seq
    return canonical(rec)


def unescape(field: str) -> str:
    return (
        field.replace("\\\\", "\x00")
        .replace("\\t", "\t")
        .replace("\\n", "\n")
        .replace("\\r", "\r")
        .replace("\x00", "\\")
    )


@pytest.mark.parametrize("value", AWKWARD)
def test_seal_gives_canonical_text_for_any_value(value: Any) -> None:
    sealer = RoundSealer("main", 41, GENESIS, RECEIVED)
    sealer.stream(WHO, "srv")
    full = {
        "data": {"path": value, "user": {"username": value}, "kernel_id": value, "x": [value]},
        "event_id": value,
        "kind": "contents",
        "schema": value,
        "ts": value,
        "version": value,
        "prev": "ignored",
        "hash": "ignored",
        "extra": "not recorded",
    }
    sealer.seal(full, 7)
    sparse = {"data": {}, "kind": "contents"}  # the optional fields missing
    sealer.seal(sparse, None)
    first = expected(full, 42, GENESIS, 7)
    first_hash = hashlib.sha256(first.encode()).hexdigest()
    second = expected(sparse, 43, first_hash, None)
    assert sealer.hashes == [first_hash, hashlib.sha256(second.encode()).hexdigest()]
    assert (sealer.seq, sealer.head) == (43, sealer.hashes[-1])
    for row, text, digest in zip(sealer.rows, (first, second), sealer.hashes, strict=True):
        assert row.endswith("\n") and row.count("\n") == 1
        fields = row[:-1].split("\t")
        assert len(fields) == 12
        assert json.loads(unescape(fields[-1])) == {**json.loads(text), "hash": digest}


def test_copy_field_escapes_what_the_format_needs() -> None:
    assert copy_field(None) == "\\N"
    assert copy_field("a\\b\tc\nd\re\x00f") == "a\\\\b\\tc\\nd\\re\ufffdf"
    assert copy_field("é 中文") == "é 中文"
    assert copy_field({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert copy_field(5) == "5"
    assert json_value(True) == "true" and json_value("\n") == '"\\n"'
