"""Records sealed by the trusted service, and their verification with its public key alone.

Why a second chain format beside :mod:`.chain`: the HMAC of that chain is only as strong as the
secrecy of its key, and a single-user server shares its uid (hence its environment, memory and
files) with the code it controls. The trusted service (``service/``) seals what servers ship to
it instead, and signs with a key only it holds, so that anyone can verify and nobody but the
service can forge.

Format. Every record is one canonical JSON line: the event as the server shipped it (``data``,
``event_id``, ``kind``, ``schema``, ``ts``, ``version``), the ``principal`` the service
authenticated (never what the server claimed), the server's stream (``server_id``,
``server_seq``: idempotent replays, gaps detected), the service's ``received`` time, the chain
fields ``chain``, ``seq``, ``prev`` and ``hash`` (sha256 over the canonical JSON of the record
without ``hash``). Each committed batch gets a *checkpoint* in the same transaction: the chain,
its first and last seq, the head, and the list of the batch's record hashes, signed (ed25519)
over :func:`checkpoint_message`. Listing the hashes (64 bytes a record) is what lets a verifier
name the exact first record that differs from what the service signed, rather than a range.

What verification proves with the public key alone: every record was sealed by the service as
it is (``modified``), none was added (``inserted``: no signed checkpoint lists it), none is
missing between the first and the last signed seq (``deleted``); and, given the service's signed
head (``GET /api/audit/head``), none was cut off the end (``truncated``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .chain import GENESIS, Problem, VerifyResult, canonical

__all__ = [
    "CHECKPOINT_DOMAIN",
    "HEAD_DOMAIN",
    "SignedVerifyResult",
    "checkpoint_message",
    "head_message",
    "record_hash",
    "verify_signed",
]

CHECKPOINT_DOMAIN = b"prod-discovery-audit-checkpoint:v1\n"
HEAD_DOMAIN = b"prod-discovery-audit-head:v1\n"

# (message, signature, key id) -> whether a trusted key signed it.
SignatureCheck = Callable[[bytes, str, str], bool]


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``record`` without its ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def checkpoint_message(
    chain: str, first: int, last: int, head: str, hashes: Sequence[str]
) -> bytes:
    """The bytes a checkpoint's signature covers (domain-separated from heads)."""
    body = {"chain": chain, "first_seq": first, "last_seq": last, "head": head, "hashes": hashes}
    return CHECKPOINT_DOMAIN + canonical(body).encode()


def head_message(chain: str, seq: int, head: str, ts: str) -> bytes:
    """The bytes the service's signed head covers (what ``truncated`` is judged against)."""
    return HEAD_DOMAIN + canonical({"chain": chain, "seq": seq, "head": head, "ts": ts}).encode()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class SignedVerifyResult(VerifyResult):
    """Outcome of :func:`verify_signed`: read like :class:`.chain.VerifyResult`, whose
    ``checkpoints`` here counts checkpoints with a valid signature."""

    def summary(self) -> str:
        if self.problem is None:
            return (
                f"intact: {self.records} records, last seq {self.last_seq}, "
                f"{self.checkpoints} signed checkpoints matched"
            )
        return super().summary()


def _signed_hashes(
    chain: str, checkpoints: Iterable[dict[str, Any]], check: SignatureCheck, warnings: list[str]
) -> tuple[dict[int, str], int]:
    """seq -> hash vouched for by validly signed checkpoints of ``chain``; and their count."""
    signed: dict[int, str] = {}
    count = 0
    for cp in checkpoints:
        try:
            first, last = int(cp["first_seq"]), int(cp["last_seq"])
            hashes = [str(h) for h in cp["hashes"]]
            msg = checkpoint_message(chain, first, last, str(cp["head"]), hashes)
            good = (
                cp.get("chain") == chain
                and len(hashes) == last - first + 1
                and (not hashes or hashes[-1] == cp["head"])
                and check(msg, str(cp["sig"]), str(cp.get("key_id", "")))
            )
        except (KeyError, TypeError, ValueError):
            good = False
        if not good:
            warnings.append(
                f"checkpoint {cp.get('first_seq')}..{cp.get('last_seq')} ignored: "
                "not signed by a trusted key"
            )
            continue
        count += 1
        for i, digest in enumerate(hashes):
            signed[first + i] = digest
    return signed, count


def verify_signed(
    lines: Iterable[str],
    checkpoints: Iterable[dict[str, Any]],
    check: SignatureCheck,
    *,
    chain: str,
    head: dict[str, Any] | None = None,
) -> SignedVerifyResult:
    """Verify service-sealed records (in seq order) against signed checkpoints.

    ``check`` verifies a signature with the service's public key(s). ``head`` is the service's
    signed head (seq, head hash, ts, sig); with it a cut-off tail is ``truncated``. Stops at
    the first broken record and names it.
    """
    result = SignedVerifyResult()
    signed, result.checkpoints = _signed_hashes(chain, checkpoints, check, result.warnings)
    expected, prev = 1, GENESIS

    def fail(i: int, seq: int | None, what: str, detail: str) -> SignedVerifyResult:
        result.problem = Problem(i + 1, seq, what, detail)
        return result

    index = 0
    for index, raw in enumerate(ln for ln in lines if ln.strip()):
        try:
            rec = json.loads(raw)
            seq = int(rec["seq"])
            stored_hash = str(rec["hash"])
        except (ValueError, KeyError, TypeError):
            return fail(index, None, "modified", "not a valid sealed record")
        digest = record_hash(rec)
        vouched = signed.get(seq)
        if seq > expected:
            return fail(index, expected, "deleted", f"seq {expected}..{seq - 1} missing")
        if seq < expected:
            return fail(index, seq, "inserted", f"seq {seq} appears a second time")
        if vouched is None:
            return fail(index, seq, "inserted", "no checkpoint signed by the service lists it")
        if digest != vouched or stored_hash != vouched:
            return fail(index, seq, "modified", "differs from what the service signed")
        if rec.get("prev") != prev or rec.get("chain") != chain:
            return fail(index, seq, "modified", "prev or chain does not match")
        prev, expected = digest, seq + 1
        result.records += 1
    result.last_seq, result.head = expected - 1, prev
    highest = max(signed, default=0)
    if highest > result.last_seq:
        return fail(
            index,
            result.last_seq,
            "truncated",
            f"log ends at seq {result.last_seq}; a signed checkpoint lists seq {highest}",
        )
    if head is not None:
        try:
            msg = head_message(chain, int(head["seq"]), str(head["head"]), str(head["ts"]))
            head_ok = check(msg, str(head["sig"]), str(head.get("key_id", "")))
        except (KeyError, TypeError, ValueError):
            head_ok = False
        if not head_ok:
            result.warnings.append("the service's head is not signed by a trusted key: ignored")
        elif int(head["seq"]) > result.last_seq:
            return fail(
                index,
                result.last_seq,
                "truncated",
                f"log ends at seq {result.last_seq}; the service's head is seq "
                f"{head['seq']} (signed {head['ts']})",
            )
        elif int(head["seq"]) and signed.get(int(head["seq"])) != head["head"]:
            return fail(
                int(head["seq"]) - 1,
                int(head["seq"]),
                "modified",
                "record differs from the service's signed head",
            )
    return result
