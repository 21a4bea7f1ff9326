from __future__ import annotations

import json
import random

from jupyter_prod_discovery.audit.chain import Chain, checkpoint_mac, verify

KEY = b"k" * 32


def make_log(n: int, seed: int = 0) -> tuple[list[str], list[dict[str, object]]]:
    rng = random.Random(seed)
    chain = Chain(KEY)
    lines = [
        chain.seal(
            {
                "ts": f"2026-01-01T00:00:{i % 60:02d}Z",
                "kind": "contents",
                "data": {"path": f"f{rng.randrange(1000)}.csv", "user": {"username": "u"}},
            }
        )
        for i in range(n)
    ]
    return lines, [chain.checkpoint()]


def forge(line: str, key: bytes = b"not the key" * 3) -> str:
    """An attacker's rewrite: valid JSON, hash recomputed, MAC made with a guessed key."""
    c = Chain(key)
    rec = json.loads(line)
    body = {k: v for k, v in rec.items() if k not in ("hash", "mac", "seq", "prev")}
    c.seq, c.head = rec["seq"] - 1, rec["prev"]
    return c.seal(body)


def tamper(lines: list[str], rng: random.Random) -> tuple[list[str], set[str]]:
    out = list(lines)
    n = len(out)
    op = rng.choice(
        ["edit", "edit_rehash", "delete", "insert_copy", "insert_forged", "swap", "cut"]
    )
    if op == "edit":
        i = rng.randrange(n)
        rec = json.loads(out[i])
        rec["data"]["path"] = rec["data"]["path"] + "x"
        out[i] = json.dumps(rec)
        return out, {"modified"}
    if op == "edit_rehash":
        i = rng.randrange(n)
        rec = json.loads(out[i])
        rec["data"]["user"]["username"] = "mallory"
        out[i] = forge(json.dumps(rec))
        return out, {"modified"}
    if op == "delete":
        i = rng.randrange(n)
        del out[i]
        return out, {"truncated"} if i == n - 1 else {"deleted"}
    if op == "insert_copy":
        src, dst = rng.randrange(n), rng.randrange(n + 1)
        out.insert(dst, lines[src])
        return out, {"inserted"}
    if op == "insert_forged":
        dst = rng.randrange(n)
        out.insert(dst, forge(lines[dst]))
        return out, {"inserted"}
    if op == "swap":
        i, j = sorted(rng.sample(range(n), 2))
        out[i], out[j] = out[j], out[i]
        return out, {"reordered"}
    k = rng.randrange(1, n)
    out = out[: n - k]
    if rng.random() < 0.5:
        last = lines[n - k]
        out.append(last[: rng.randrange(1, len(last) - 1)])
    return out, {"truncated"}


def test_verify_chain_intact() -> None:
    for seed in range(5):
        lines, cps = make_log(50 + seed, seed)
        result = verify(lines, KEY, cps)
        assert result.ok, result.summary()
        assert result.records == 50 + seed
        assert result.checkpoints == 1


def test_verify_chain_detects_1000_random_tamperings() -> None:
    rng = random.Random(20261121)
    lines, cps = make_log(60)
    counts: dict[str, int] = {}
    for _ in range(1000):
        tampered, expected = tamper(lines, rng)
        result = verify(tampered, KEY, cps)
        assert result.problem is not None, "tampering not detected"
        assert result.problem.what in expected, (result.problem, expected)
        counts[result.problem.what] = counts.get(result.problem.what, 0) + 1
    assert set(counts) == {"modified", "deleted", "inserted", "reordered", "truncated"}


def test_verify_chain_rejects_wrong_key() -> None:
    lines, cps = make_log(3)
    result = verify(lines, b"x" * 32, cps)
    assert result.problem is not None
    assert result.problem.index == 1


def test_verify_chain_ignores_forged_checkpoint() -> None:
    lines, _ = make_log(5)
    forged = {"seq": 9, "head": "ab", "mac": checkpoint_mac(b"y" * 32, 9, "ab")}
    result = verify(lines, KEY, [forged])
    assert result.ok
    assert result.warnings


def test_verify_chain_detects_tail_truncation_only_with_checkpoint() -> None:
    lines, cps = make_log(10)
    assert verify(lines[:7], KEY, []).ok  # documented limit: no checkpoint, no proof
    result = verify(lines[:7], KEY, cps)
    assert result.problem is not None
    assert result.problem.what == "truncated"


def test_canonical_chain_direct_encoder_equals_json_encoder() -> None:
    from jupyter_prod_discovery.audit.chain import _C_ENCODER, canonical

    assert _C_ENCODER is not None  # CPython: the fast path is the one in use
    reference = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode
    samples: list[object] = [
        {"b": 1, "a": [1, 2.5, None, True, False, float("inf")], "c": {"z": 'ü\n"q"\\', "y": {}}},
        {"code": "\x00\x1f\u2028 é 𝄞", "n": -0.0, "big": 10**30, "when": object.__new__(object)},
        {},
        "plain string",
        [1, {"b": 2, "a": 1}],
    ]
    for sample in samples:
        assert canonical(sample) == reference(sample)


def test_seal_event_chain_equals_seal_of_the_body() -> None:
    # The trail formats the envelope around the canonical data instead of encoding a dict:
    # the line, the chain fields and the verifier's view must be exactly those of seal().
    from jupyter_prod_discovery.audit.chain import canonical

    rng = random.Random(7)
    alphabet = 'aZ09 "\\\n\t\x00\x1f/é€𝄞\u2028<>'
    direct, reference = Chain(KEY), Chain(KEY)
    lines = []
    for i in range(300):
        data = {
            rng.choice(["path", "code", "é", "a b", "z"]): "".join(
                rng.choice(alphabet) for _ in range(rng.randrange(12))
            ),
            "size": rng.randrange(-(10**12), 10**12),
            "ratio": rng.random(),
            "ok": rng.random() < 0.5,
            "none": None,
            "user": {"username": f"u{i}", "groups": ["g", "é"][: rng.randrange(3)]},
        }
        ts, eid, kind = f"2026-11-21T10:00:{i % 60:02d}.000001Z", f"{i:032x}", "contents"
        schema = "https://events.prod-discovery.dev/contents/v1"
        line = direct.seal_event(ts, eid, kind, schema, canonical(data))
        body = {
            "ts": ts,
            "event_id": eid,
            "kind": kind,
            "schema": schema,
            "version": 1,
            "data": data,
        }
        assert line == reference.seal(body)
        assert (direct.seq, direct.head) == (reference.seq, reference.head)
        lines.append(line)
    assert verify(lines, KEY, [direct.checkpoint()]).ok
