from __future__ import annotations

import pytest
from traitlets import TraitError

from jupyter_prod_discovery.pii import SECRET, Finding, PIIPolicy, Scanner, SecretMatcher, redact
from jupyter_prod_discovery.pii.ner import _chunks
from tests import pii_corpus as C

RECALL_ENTITIES = C.ENTITIES


def _found(policy: PIIPolicy, docs: list[C.Doc]) -> list[list[tuple[str, int, int]]]:
    scanner = policy.scanner()
    return [
        [(f.entity_type, f.start, f.end) for f in policy.decide(scanner.scan(d.text)).findings]
        for d in docs
    ]


def test_scan_recall_on_labeled_set() -> None:
    docs = C.positives()
    recall = C.recall(docs, _found(PIIPolicy(), docs))
    for ent in RECALL_ENTITIES:
        assert recall[ent] >= 0.95, (ent, recall[ent])


def test_scan_recall_at_least_presidio() -> None:
    from benchmarks.pii_scanner import presidio_engine

    docs = C.positives(seed=21, n=60)
    engine = presidio_engine()
    theirs = [
        [
            (r.entity_type, r.start, r.end)
            for r in engine.analyze(d.text, language="en", entities=list(C.ENTITIES))
            if r.score >= 0.5
        ]
        for d in docs
    ]
    ours = C.recall(docs, _found(PIIPolicy(), docs))
    for ent, value in C.recall(docs, theirs).items():
        assert ours[ent] >= value, (ent, ours[ent], value)


def test_scan_negatives_under_one_false_positive_per_100kb() -> None:
    docs = C.negatives()
    chars = sum(len(d.text) for d in docs)
    fps = sum(len(fs) for fs in _found(PIIPolicy(), docs))
    assert fps / chars * 100_000 <= 1.0


def test_scan_finds_each_pattern_entity() -> None:
    text = (
        "mail ann.smith@example.com ssn 536-22-1234 card 4111 1111 1111 1111 "
        "phone (212) 555-0134 iban DE89 3704 0044 0532 0130 00 ip 10.2.3.4 v6 2001:db8::1"
    )
    types = [f.entity_type for f in Scanner().scan(text)]
    assert types == [
        "EMAIL_ADDRESS",
        "US_SSN",
        "CREDIT_CARD",
        "PHONE_NUMBER",
        "IBAN_CODE",
        "IP_ADDRESS",
        "IP_ADDRESS",
    ]


def test_scan_ignores_known_false_positives() -> None:
    scanner = Scanner()
    # UK_NHS-valid 10-digit numbers, date-like numbers and a URL-looking email domain.
    assert scanner.scan("  id    value\n0  4010232137  20261121\n1  9434765919  1.5\n") == []
    assert [f.entity_type for f in scanner.scan("write to jo@mail.example.org")] == [
        "EMAIL_ADDRESS"
    ]
    nhs = scanner.scan("NHS number 401 023 2137")
    assert [f.entity_type for f in nhs] == ["UK_NHS"]


def test_scan_uses_column_header_as_context() -> None:
    table = "   customer     phone\n0       Ann  2125550134\n1       Bob  4155550199\n"
    assert [f.entity_type for f in Scanner().scan(table)] == ["PHONE_NUMBER"] * 2
    plain = "   customer     value\n0       Ann  2125550134\n"
    policy = PIIPolicy()
    assert policy.decide(Scanner().scan(plain)).findings == []


def test_scan_uses_html_header_as_context() -> None:
    html = "<table><thead><tr><th>phone</th></tr></thead><tr><td>2125550134</td></tr></table>"
    assert [f.entity_type for f in Scanner().scan(html)] == ["PHONE_NUMBER"]


def test_scan_caches_by_content() -> None:
    scanner = Scanner()
    text = "contact ann@example.com " * 10
    first = scanner.scan(text)
    assert scanner.scan(text) == first
    assert len(scanner._cache) == 1


def test_scan_respects_allow_list_and_patterns() -> None:
    scanner = PIIPolicy(
        allow_list=["help@example.com"], allow_patterns=[r"10\.\d+\.\d+\.\d+"]
    ).scanner()
    assert scanner.scan("ask help@example.com from 10.0.0.7") == []
    assert len(scanner.scan("ask ann@example.com")) == 1


def test_redact_replaces_spans_with_typed_placeholders() -> None:
    text = "a ann@example.com b 536-22-1234 c"
    assert redact(text, Scanner().scan(text)) == "a <EMAIL_ADDRESS> b <US_SSN> c"
    overlapping = [Finding("X", 0, 4, 1.0), Finding("Y", 2, 6, 1.0)]
    assert redact("abcdefgh", overlapping) == "<X>gh"


def test_decide_picks_most_severe_action() -> None:
    policy = PIIPolicy(actions={"US_SSN": "block", "IP_ADDRESS": "warn"})
    scanner = policy.scanner()
    assert policy.decide(scanner.scan("from 10.1.2.3")).action == "warn"
    verdict = policy.decide(scanner.scan("from 10.1.2.3 ssn 536-22-1234"))
    assert verdict.action == "block"
    assert verdict.entities == {"IP_ADDRESS": 1, "US_SSN": 1}
    assert [f.entity_type for f in policy.to_redact(verdict)] == ["US_SSN"]


def test_decide_applies_thresholds() -> None:
    policy = PIIPolicy(thresholds={"US_SSN": 0.9})
    assert policy.decide(policy.scanner().scan("value 536 22 1234")).action == "allow"


def test_decide_always_redacts_secrets() -> None:
    policy = PIIPolicy(default_action="allow", actions={SECRET: "allow"})
    verdict = policy.decide([Finding(SECRET, 0, 8, 1.0)])
    assert verdict.action == "redact"
    assert policy.to_redact(verdict)


def test_policy_rejects_bad_action_threshold_and_pattern() -> None:
    with pytest.raises(TraitError, match="actions"):
        PIIPolicy(actions={"US_SSN": "shred"})
    with pytest.raises(TraitError, match="thresholds"):
        PIIPolicy(thresholds={"US_SSN": 3})
    with pytest.raises(TraitError, match="allow_patterns"):
        PIIPolicy(allow_patterns=["("])
    with pytest.raises(TraitError, match="unknown policy keys"):
        PIIPolicy.from_dict({"action": {}})


def test_secret_matcher_finds_exact_values() -> None:
    m = SecretMatcher(["s3cr3t-password", "s3cr3t"])
    text = "x s3cr3t-password y s3cr3t"
    assert [(f.start, f.end) for f in m.find(text)] == [(2, 17), (20, 26)]
    assert SecretMatcher([]).find(text) == []
    assert not SecretMatcher([])


def test_ner_finds_person_and_location() -> None:
    policy = PIIPolicy(ner=True)
    found = policy.scanner().scan("Yesterday Barack Obama flew to Paris with his team.")
    types = {f.entity_type for f in found}
    assert {"PERSON", "LOCATION"} <= types


def test_ner_chunks_long_text_at_line_ends() -> None:
    text = ("x" * 99 + "\n") * 250
    chunks = _chunks(text)
    assert "".join(c for _, c in chunks) == text
    assert all(len(c) <= 10_000 and c.endswith("\n") for _, c in chunks)


def test_context_block_prefilter_agrees_with_context_words() -> None:
    # A long text is read in blocks: an entity whose words are in no block (nor header) of a
    # value is skipped without building its context. The answer must be the context's own,
    # for every entity, near block edges, across the header junction ("tax" + "id"), and
    # around non-ASCII, final sigma and lone surrogates.
    import random
    import re

    from jupyter_prod_discovery.pii import patterns as P
    from jupyter_prod_discovery.pii.scanner import _BLOCK, _has, _Header

    rng = random.Random(5)
    words = sorted({w for ws in P.CONTEXT_WORDS.values() for w in ws})
    fillers = ["x", "ΣΑΣ", "İd", "ö", "\ud800", "rows", "ms", "TAX", "Phone:"]
    # Words with a space are also found across the junction of the line and the header:
    # "social" ending the line's slice, "security" the header's.
    glued = ["tax", "social", "national", "partita", "ni", "id", "german", "vat", "cc"]
    lines = ["  id  security  iva  number  health  insurance  card  value"]
    while sum(map(len, lines)) < 40_000:
        parts = [
            rng.choice(words) if rng.random() < 0.03 else rng.choice(fillers)
            for _ in range(rng.randint(0, 3))
        ]
        number = str(rng.randint(10**8, 10**16))
        parts.append(rng.choice(glued) + number if rng.random() < 0.2 else number)
        lines.append(" ".join(parts))
    text = "\n".join(lines)
    header = _Header(text)
    agreed = found = 0
    for m in re.finditer(r"\d{9,}", text):
        ctx = header.context(m.start(), m.end())
        for entity in P.CONTEXT_WORDS:
            want = _has(ctx, entity)
            assert header.has(m.start(), m.end(), entity) == want, (entity, ctx)
            agreed += 1
            found += want
    assert header._blocks and agreed > 10_000 and found > 100
    # A value at the very start of a block, its word at the end of the one before.
    pad = "rows 12\n" * (_BLOCK // 8)
    edge = pad[: _BLOCK - len("call ")] + "call 5551234567 done\n" + pad
    header = _Header(edge)
    assert header.has(_BLOCK, _BLOCK + 10, "PHONE_NUMBER")
    assert not header.has(_BLOCK, _BLOCK + 10, "UK_NHS")


def test_luhn_prefilter_agrees_with_presidio() -> None:
    import random

    from jupyter_prod_discovery.pii import patterns as P

    card = P._presidio()["card"]
    rng = random.Random(3)
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 22)))
        assert P._luhn_sum_ok(digits) == bool(card.validate_result(digits)), digits
