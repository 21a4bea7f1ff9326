"""The hash chain: sealing records and verifying a sequence of them.

Every record carries ``seq`` (1, 2, 3, ...), ``prev`` (the previous record's ``hash``), ``hash``
(sha256 over the canonical JSON of the record without ``hash`` and ``mac``) and ``mac``
(HMAC-SHA256 of ``hash`` under a key that is never stored beside the log). Anyone can recompute
the hashes, so the hash alone proves nothing against an attacker who rewrites the whole tail; the
MAC does, because forging it needs the key. Checkpoints (``seq`` + head ``hash``, MACed) kept in a
second place make truncation of the tail detectable: the log must reach every checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GENESIS",
    "Chain",
    "Problem",
    "VerifyResult",
    "canonical",
    "checkpoint_mac",
    "sealed_with",
    "verify",
]

GENESIS = "0" * 64


# One encoder for every record: json.dumps with non-default options builds a new encoder per
# call, a measurable share of an audited request. Where CPython's C encoder is available it is
# called directly (what JSONEncoder.encode does, less two Python frames and a new C encoder per
# call); the output is the same (test_audit_chain checks it).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_MAKE = getattr(json.encoder, "c_make_encoder", None)
# Arguments: markers (None: no cycle check), default, string encoder, indent, key and item
# separators, sort_keys, skipkeys, allow_nan, as JSONEncoder.iterencode passes them.
_C_ENCODER = (
    _MAKE(None, str, json.encoder.encode_basestring, None, ":", ",", True, False, True)
    if _MAKE is not None
    else None
)


def canonical(obj: Any) -> str:
    """The one serialisation hashes are computed over: sorted keys, no spaces, UTF-8."""
    if _C_ENCODER is not None and isinstance(obj, dict):
        return "".join(_C_ENCODER(obj, 0))
    return _ENCODER.encode(obj)


def _hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def _mac(key: bytes, digest: str) -> str:
    return hmac.digest(key, digest.encode(), "sha256").hex()


def checkpoint_mac(key: bytes, seq: int, head: str) -> str:
    """MAC of a checkpoint, so that a forged checkpoint cannot hide a truncation."""
    return _mac(key, f"checkpoint:{seq}:{head}")


def sealed_with(record: dict[str, Any], key: bytes) -> bool:
    """Whether ``record`` (a parsed line) carries a valid MAC under ``key``.

    Why: a trail resumes the chain from the stored tail only when the tail was sealed with the
    trail's own key; otherwise the file belongs to another chain (another server's key, or an
    earlier run's random one) and appending to it would make it unverifiable with either key.
    """
    mac, digest = record.get("mac"), record.get("hash")
    if not isinstance(mac, str) or not isinstance(digest, str):
        return False
    return hmac.compare_digest(_mac(key, digest), mac)


class Chain:
    """Assigns seq/prev/hash/mac. Not thread-safe: exactly one writer thread owns it."""

    def __init__(self, key: bytes, seq: int = 0, head: str = GENESIS) -> None:
        self._key = key
        keyed = hmac.new(key, digestmod=hashlib.sha256)
        # Copied for each record's MAC (no key setup per record); the keyed OpenSSL object under
        # it where there is one, which skips a Python frame and an object per copy.
        self._keyed: Any = getattr(keyed, "_hmac", None) or keyed
        self.seq = seq
        self.head = head

    def seal(self, body: dict[str, Any]) -> str:
        """Chain ``body`` (mutated: chain fields added) and return its canonical JSON line."""
        body["seq"] = self.seq + 1
        body["prev"] = self.head
        body.pop("hash", None)
        body.pop("mac", None)
        line, body["hash"], body["mac"] = self._close(canonical(body))
        return line

    def seal_event(self, ts: str, event_id: str, kind: str, schema: str, data_json: str) -> str:
        """The line of one event, as :meth:`seal` would give for its body, built around the
        already canonical ``data_json`` (the trail's envelope, one record per audited request).

        Why not ``seal``: the envelope's keys and their order are fixed, so the canonical text
        is formatted directly around the data instead of building a dict and encoding it again
        (a measurable share of every audited request). ``ts``, ``event_id``, ``kind`` and
        ``schema`` must be values JSON does not escape (a timestamp, hex, a known kind, a schema
        URL); test_audit_chain checks the line equals ``seal`` of the same body.
        """
        text = (
            f'{{"data":{data_json},"event_id":"{event_id}","kind":"{kind}",'
            f'"prev":"{self.head}","schema":"{schema}","seq":{self.seq + 1},"ts":"{ts}",'
            '"version":1}'
        )
        return self._close(text)[0]

    def _close(self, text: str) -> tuple[str, str, str]:
        """Hash and MAC the canonical text of the next record and make it the head; returns
        its line, hash and MAC. The chain moves only here, once the text exists."""
        digest = hashlib.sha256(text.encode()).hexdigest()
        keyed = self._keyed.copy()  # the same MAC as _mac(key, digest), without the key setup
        keyed.update(digest.encode())
        mac = keyed.hexdigest()
        self.seq += 1
        self.head = digest
        # Appending the two fields to the canonical text keeps it canonical-ish and valid JSON
        # without a second full serialisation (the verifier re-serialises anyway).
        return f'{text[:-1]},"hash":"{digest}","mac":"{mac}"}}', digest, mac

    def checkpoint(self) -> dict[str, Any]:
        """The current head as a MACed checkpoint."""
        mac = checkpoint_mac(self._key, self.seq, self.head)
        return {"seq": self.seq, "head": self.head, "mac": mac}


#: Problems that are not tampering: the records are consistent, but not one chain under this key.
FOREIGN = ("other chain", "other key")
#: Nothing in the input is a chained audit record (a wrong file).
NOT_A_LOG = "not an audit log"


@dataclass
class Problem:
    """The first broken record: where, what broke and why."""

    index: int
    seq: int | None
    what: str  # modified | deleted | inserted | reordered | truncated | FOREIGN | NOT_A_LOG
    detail: str

    @property
    def foreign(self) -> bool:
        """Another chain or another key, not a sign of tampering by itself."""
        return self.what in FOREIGN

    def __str__(self) -> str:
        return f"record #{self.index} (seq {self.seq}): {self.what}: {self.detail}"


@dataclass
class VerifyResult:
    """Outcome of :func:`verify`."""

    records: int = 0
    last_seq: int = 0
    head: str = GENESIS
    checkpoints: int = 0
    problem: Problem | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is None:
            return (
                f"intact: {self.records} records, last seq {self.last_seq}, "
                f"{self.checkpoints} checkpoints matched"
            )
        if self.problem.what == NOT_A_LOG:
            return f"NOT AN AUDIT LOG: {self.problem.detail}"
        if self.problem.foreign:
            verified = f"{self.records} records before it verified; " if self.records else ""
            return f"DIFFERENT CHAIN OR KEY (not a sign of tampering by itself): {verified}{self.problem}"
        return f"BROKEN: {self.problem}"


def _parse(line: str) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    if not isinstance(rec.get("seq"), int) or not all(
        isinstance(rec.get(k), str) for k in ("prev", "hash", "mac")
    ):
        return None
    return rec


def _seq_of(line: str | None) -> int | None:
    if line is None:
        return None
    rec = _parse(line)
    return None if rec is None else rec["seq"]


def verify(
    lines: Iterable[str],
    key: bytes,
    checkpoints: Sequence[dict[str, Any]] = (),
) -> VerifyResult:
    """Verify a chain given as JSON lines in storage order; stop at the first broken record.

    The classification is the most likely explanation of the first inconsistency:
    ``modified`` (hash or MAC wrong, unparsable, or a broken link), ``deleted`` (a seq is
    missing and does not appear later), ``reordered`` (a seq appears out of order),
    ``inserted`` (a record with an invalid MAC or a replayed copy squeezed between valid ones),
    ``truncated`` (the log ends before a MACed checkpoint, or its last line is cut).
    """
    items = [ln for ln in (raw.rstrip("\n") for raw in lines) if ln.strip()]
    result = VerifyResult()
    seen: dict[int, str] = {}
    later_seqs: list[int | None] | None = None
    expected, head = 1, GENESIS

    def fail(i: int, seq: int | None, what: str, detail: str) -> VerifyResult:
        result.problem = Problem(i + 1, seq, what, detail)
        return result

    if items and not any(_parse(line) is not None for line in items[:1000]):
        return fail(0, None, NOT_A_LOG, "no line is a chained JSON record (seq, prev, hash, mac)")
    for i, line in enumerate(items):
        rec = _parse(line)
        if rec is None:
            if i == len(items) - 1:
                return fail(i, None, "truncated", "the last record is cut off")
            return fail(i, None, "modified", "not a valid chained JSON record")
        seq = rec["seq"]
        body = {k: v for k, v in rec.items() if k not in ("hash", "mac")}
        digest = _hash(body)
        nxt = _seq_of(items[i + 1]) if i + 1 < len(items) else None
        if digest == rec["hash"]:
            restart = i and seq == 1 and rec["prev"] == GENESIS and seen.get(1) != digest
            if restart:
                return fail(i, seq, "other chain", _other_chain(items, i, key))
            if not sealed_with(rec, key) and _key_changed(items, i, rec):
                return fail(i, seq, "other key", _other_key(i))
        if digest != rec["hash"] or not hmac.compare_digest(_mac(key, rec["hash"]), rec["mac"]):
            inserted = seq < expected or nxt == seq
            what = "inserted" if inserted else "modified"
            why = "content does not match its hash" if digest != rec["hash"] else "MAC invalid"
            return fail(i, seq, what, why)
        if seq > expected:
            if later_seqs is None:
                later_seqs = [_seq_of(x) for x in items]
            later = set(later_seqs[i + 1 :])
            if seq in later:
                return fail(i, seq, "inserted", f"seq {seq} appears again later")
            if any(s in later for s in range(expected, seq)):
                return fail(i, seq, "reordered", f"seq {seq} appears before seq {expected}")
            return fail(i, seq, "deleted", f"seq {expected}..{seq - 1} missing")
        if seq < expected:
            if seen.get(seq) == rec["hash"]:
                return fail(i, seq, "inserted", f"seq {seq} appears a second time")
            return fail(i, seq, "reordered", f"seq {seq} appears after seq {expected - 1}")
        if rec["prev"] != head:
            return fail(i, seq, "modified", "prev does not match the previous record's hash")
        seen[seq] = digest
        head, expected = digest, seq + 1
        result.records += 1
    result.last_seq, result.head = expected - 1, head
    for cp in sorted(checkpoints, key=lambda c: int(c.get("seq", 0))):
        cseq, chead = int(cp.get("seq", 0)), str(cp.get("head", ""))
        if not hmac.compare_digest(checkpoint_mac(key, cseq, chead), str(cp.get("mac", ""))):
            result.warnings.append(f"checkpoint at seq {cseq} has an invalid MAC: ignored")
            continue
        result.checkpoints += 1
        if cseq > result.last_seq:
            return fail(
                len(items) - 1 if items else 0,
                result.last_seq,
                "truncated",
                f"log ends at seq {result.last_seq} but a checkpoint vouches for seq {cseq}",
            )
        if cseq and seen.get(cseq) != chead:
            return fail(cseq - 1, cseq, "modified", f"record {cseq} differs from its checkpoint")
    return result


def _server(rec: dict[str, Any]) -> Any:
    data = rec.get("data")
    return data.get("server_id") if isinstance(data, dict) else None


def _key_changed(items: list[str], start: int, rec: dict[str, Any]) -> bool:
    """Whether the chain goes on from record ``start`` under another key, as when a server
    started with another key appended to the file (what servers did before they moved such a
    file aside): the records from there on are well formed and linked, and the first of them
    comes from another server process than the record before (a process's key never changes
    while it runs). A record of the same process with a bad MAC is tampering instead."""
    if start and _server(rec) == _server(_parse(items[start - 1]) or {}):
        return False
    return _consistent(items, start)


def _consistent(items: list[str], start: int) -> bool:
    """Whether the records from ``start`` on are one well-formed chain (each parses, matches
    its hash and links to the previous one by prev and seq) of which none is sealed with the
    verifier's key: what a chain written with another key looks like (checked by the caller
    for the first of them; every later MAC is assumed foreign, not checked, to stay linear)."""
    prev: dict[str, Any] | None = None
    for line in items[start:]:
        rec = _parse(line)
        if rec is None:
            return False
        body = {k: v for k, v in rec.items() if k not in ("hash", "mac")}
        if _hash(body) != rec["hash"]:
            return False
        if prev is not None and (rec["prev"] != prev["hash"] or rec["seq"] != prev["seq"] + 1):
            return False
        prev = rec
    return prev is not None


def _other_chain(items: list[str], start: int, key: bytes) -> str:
    rec = _parse(items[start])
    keyed = (
        "sealed with this key"
        if rec is not None and sealed_with(rec, key)
        else ("sealed with a different key")
    )
    return (
        f"another chain starts here (seq 1, {keyed}): the log holds more than one chain; "
        "since this version a server that finds another key's chain moves it aside instead "
        "of appending (verify each file with its own key)"
    )


def _other_key(start: int) -> str:
    where = "every record" if start == 0 else f"the records from #{start + 1} on"
    return (
        f"{where} form a consistent chain (hashes and links) but none is sealed with this "
        "key: the log was written with a different key (a server started with another key "
        "or a random one), or rewritten from here by someone without this key; verify with "
        "the key the writing server used"
    )


def iter_lines(paths: Iterable[str]) -> Iterator[str]:
    """Lines of several files in order (rotated segments first, then the active file)."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            yield from f
