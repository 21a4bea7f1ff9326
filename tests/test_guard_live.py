"""PIIGuard on each payload kind (the websocket tests cover the transport)."""

from __future__ import annotations

import json
from typing import Any

from jupyter_prod_discovery.credentials.secrets import SecretRegistry
from jupyter_prod_discovery.guard.live import PIIGuard
from jupyter_prod_discovery.pii import PIIPolicy
from jupyter_prod_discovery.pii.secrets import gate_byte

EMAIL = "ann.smith@example.com"


def test_content_redacts_rich_mime_types() -> None:
    content: dict[str, Any] = {
        "data": {
            "text/plain": f"a {EMAIL}",
            "text/html": f"<td>{EMAIL}</td>",
            "text/markdown": f"**{EMAIL}**",
            "application/json": {"rows": [{"email": EMAIL, "n": 3}]},
            "image/png": "iVBORw0KGgo=",
        },
        "metadata": {},
        "transient": {"display_id": "d1"},
    }
    scan = PIIGuard().content("update_display_data", content, None)
    assert scan.content is not None
    data = scan.content["data"]
    assert EMAIL not in str(data)
    assert data["application/json"] == {"rows": [{"email": "<EMAIL_ADDRESS>", "n": 3}]}
    assert data["image/png"] == "iVBORw0KGgo=" and scan.content["transient"] == content["transient"]
    # One value in four representations: counted once (per value, not per representation).
    assert scan.verdict.entities == {"EMAIL_ADDRESS": 1}


def test_content_redacts_widget_output_comm_msg() -> None:
    content = {
        "comm_id": "c1",
        "data": {
            "method": "update",
            "state": {"outputs": [{"output_type": "stream", "name": "stdout", "text": EMAIL}]},
        },
    }
    scan = PIIGuard().content("comm_msg", content, None)
    assert scan.content is not None
    assert scan.content["data"]["state"]["outputs"][0]["text"] == "<EMAIL_ADDRESS>"


def test_content_blocks_comm_msg_without_state() -> None:
    guard = PIIGuard(policy=PIIPolicy(default_action="block"))
    content = {"comm_id": "c1", "data": {"method": "update", "state": {"value": EMAIL}}}
    scan = guard.content("comm_msg", content, None)
    assert scan.content == {"comm_id": "c1", "data": {"method": "update", "state": {}}}


def test_content_leaves_clean_output_untouched() -> None:
    scan = PIIGuard().content("stream", {"name": "stdout", "text": "loss 0.25 at step 100"}, None)
    assert scan.content is None and scan.verdict.action == "allow"


def test_matcher_follows_registry_version() -> None:
    registry = SecretRegistry()
    guard = PIIGuard(secrets=registry)
    registry.set("k1", ["first-secret"])
    assert guard.text("x first-secret", "k1")[1] == "x <SECRET>"
    registry.set("k1", ["second-secret"])
    assert guard.text("x first-secret second-secret", "k1")[1] == "x first-secret <SECRET>"
    assert guard.text("second-secret", None)[1] == "<SECRET>"
    assert PIIGuard().matcher("k1").find("second-secret") == []


def test_audit_records_counts_and_survives_a_broken_sink() -> None:
    class Broken:
        def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> None:
            raise RuntimeError("sink down")

    guard = PIIGuard()
    verdict, _ = guard.text(f"{EMAIL}", None)
    guard.audit(Broken(), {"source": "live"}, verdict)  # logged, not raised
    events: list[dict[str, Any]] = []

    class Keep:
        def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> None:
            events.append(data)

    guard.audit(Keep(), {"source": "live"}, verdict)
    assert events == [{"source": "live", "entities": {"EMAIL_ADDRESS": 1}, "action": "redact"}]


def _packed(text: str) -> bytes:
    """Stream content packed the way jupyter_client's Session packs it."""
    return json.dumps({"name": "stdout", "text": text}).encode()


def test_raw_clean_passes_text_without_digits_or_at() -> None:
    assert PIIGuard().raw_clean(_packed("x" * 99 + "\n" + 'harmless words\t"q"'), None)


def test_raw_clean_refuses_pattern_candidates_and_escapes() -> None:
    guard = PIIGuard()
    for text in ("loss 0.25", "mail ann@", "caf\u00e9", "\x1b[0;31mred"):
        assert not guard.raw_clean(_packed(text), None), text


def test_raw_clean_refuses_any_fragment_of_a_digitless_secret() -> None:
    registry = SecretRegistry()
    # Names and credential patterns off: capitals are then no gate byte of the policy, and the
    # secret's own gate byte is what is tested.
    entities = [e for e in PIIPolicy().entities if e not in ("PERSON", "CREDENTIAL")]
    guard = PIIGuard(secrets=registry, policy=PIIPolicy(entities=entities))
    secret = 'Zebra"Quote\\Slash-secret'
    registry.set("k1", [secret])
    assert gate_byte(secret) == b"Q"
    # The whole secret, JSON-escaped in the raw bytes, and the half that holds the gate byte.
    assert not guard.raw_clean(_packed(f"key={secret}"), "k1")
    assert not guard.raw_clean(_packed(secret[:9]), "k1")
    # The other half is clean on its own: its seam with the dirty half is rescanned.
    assert guard.raw_clean(_packed(secret[9:]), "k1")
    assert guard.raw_clean(_packed("Zebra and Slash"), "k2")


def test_gate_byte_of_escaped_and_unusable_secrets() -> None:
    assert gate_byte("ab12cd") == b"" and gate_byte("me@x") == b""
    assert gate_byte('"\\"') == b'"'
    assert gate_byte("\x01\x02") is None
    registry = SecretRegistry()
    registry.set("k1", ["\x01\x02" * 8])
    # A secret no raw byte can stand for: every message of that kernel is decoded.
    assert not PIIGuard(secrets=registry).raw_clean(_packed("harmless"), "k1")


def test_raw_clean_is_off_with_ner() -> None:
    guard = PIIGuard(policy=PIIPolicy(ner=True))
    assert not guard.raw_clean(_packed("Ann Smith lives in Paris"), None)


JS = {"application/javascript": "x = String.fromCharCode(53, 51, 54)", "text/plain": "<JS>"}


def test_active_content_dropped_by_default() -> None:
    scan = PIIGuard().content("display_data", {"data": dict(JS), "metadata": {}}, None)
    assert scan.content is not None and scan.content["data"] == {"text/plain": "<JS>"}
    assert scan.content["metadata"]["prod_discovery"]["entities"] == {"ACTIVE_CONTENT": 1}


def test_active_content_scanned_or_allowed_when_configured() -> None:
    data = {**JS, "application/javascript": f"x = '{EMAIL}'"}
    scan = PIIGuard(active_content="scan").content("display_data", {"data": data}, None)
    assert scan.content is not None
    assert scan.content["data"]["application/javascript"] == "x = '<EMAIL_ADDRESS>'"
    allowed = PIIGuard(active_content="allow").content("display_data", {"data": data}, None)
    assert allowed.content is None


def test_passthrough_mime_is_not_scanned_and_configurable() -> None:
    data = {"image/png": f"{EMAIL}"}
    assert PIIGuard().content("display_data", {"data": data}, None).content is None
    scan = PIIGuard(passthrough_mime=[]).content("display_data", {"data": data}, None)
    assert scan.content is not None and EMAIL not in str(scan.content)


def test_secrets_scope_server_and_kernel() -> None:
    registry = SecretRegistry()
    registry.set("k1", ["pw-abcdefgh123"])
    registry.set("__server__", ["srv-token-0987654321"])
    wide = PIIGuard(secrets=registry)
    assert wide.text("pw-abcdefgh123 srv-token-0987654321", "k2")[1] == "<SECRET> <SECRET>"
    narrow = PIIGuard(secrets=registry, secrets_scope="kernel")
    assert narrow.text("pw-abcdefgh123 srv-token-0987654321", "k2")[1] == (
        "pw-abcdefgh123 <SECRET>"
    )


def test_kernel_set_marker_is_removed_from_output_metadata() -> None:
    forged = {"prod_discovery": {"action": "block", "entities": {"US_SSN": 99}}}
    content = {"data": {"text/plain": "fine"}, "metadata": forged}
    scan = PIIGuard().content("display_data", content, None)
    assert scan.content is not None and scan.content["metadata"] == {}


def test_blocked_reply_keeps_its_structure() -> None:
    guard = PIIGuard(policy=PIIPolicy(default_action="block"))
    content = {"status": "ok", "matches": [EMAIL, "abc"], "cursor_start": 0, "cursor_end": 1}
    scan = guard.content("complete_reply", content, None)
    assert scan.content is not None and scan.content["status"] == "ok"
    assert EMAIL not in str(scan.content) and scan.content["matches"][1] == "abc"


def test_raw_clean_refuses_digitless_names_and_tables() -> None:
    """Names are on by default: a digit-free output naming a person is scanned, not passed."""
    guard = PIIGuard()
    for text in ("Maria Garcia", "<td>maria</td>", "Zieli\u0144ski", "caf\u00e9 \uff11"):
        assert not guard.raw_clean(_packed(text), None), text
    assert guard.content("stream", {"name": "stdout", "text": "Maria Garcia\n"}, None).content


def test_raw_clean_passes_only_what_the_scanner_finds_nowhere() -> None:
    """What the live gate leaves out (live.py ``_split_gate``: a text table's double spaces)
    holds no finding in all-lowercase text: the scanner looks for names only where a capital
    is (``scanner.may_hold_words``), on save and in ``scan`` too. If the scanner learns to find
    these, this fails: the live gate must follow."""
    guard = PIIGuard()
    for text in ("first  last\nmaria  garcia\n", "first_name       city\n      anna    chicago\n"):
        assert guard.raw_clean(_packed(text), None), text
        assert not guard.policy.scan(text).findings, text


def test_lowercase_keyword_credentials() -> None:
    """A keyword's value with no digit or capital is a credential to the scanner (saves,
    ``scan``, the export gate), and live where an '=' opens the raw gate; after ':' it is the
    live gate's documented gap (every packed message holds ': ')."""
    guard = PIIGuard()
    for text in ("password = batterystaplexkcd\n", "db_password=wrongbatteryhorse\n"):
        assert not guard.raw_clean(_packed(text), None), text
        assert [f.entity_type for f in guard.policy.scan(text).findings] == ["CREDENTIAL"], text
        out = guard.content("stream", {"name": "stdout", "text": text}, None).content
        assert out is not None and "battery" not in json.dumps(out), (text, out)
    gap = "secret: wrongbatteryhorse\n"
    assert [f.entity_type for f in guard.policy.scan(gap).findings] == ["CREDENTIAL"]
    assert guard.raw_clean(_packed(gap), None)
    # Placeholders and low-entropy values stay clear.
    for text in ("password = changeme\n", "token: xxxxxxxxxxxx\n", "width=aaaaaaaaaaaa\n"):
        assert not guard.policy.scan(text).findings, text


def test_few_digits_shortcut_agrees_with_the_scanner() -> None:
    """Texts of whitespace and at most eight digits skip the scanner (live.py ``_FEW_DIGITS``):
    on every such text the scanner finds nothing, with every entity type on; a live secret
    made of digits is still redacted."""
    import random

    from jupyter_prod_discovery.guard.live import _FEW_DIGITS
    from jupyter_prod_discovery.pii.patterns import PATTERN_ENTITIES

    every = PIIPolicy(entities=[*PIIPolicy().entities, *PATTERN_ENTITIES])
    scanner = every.scanner()
    rng = random.Random(19)
    texts = ["12345678\n", "1234 5678\n", "123\t45\n678\n", "  12  34\n56  78\n", "0\n"]
    for _ in range(3000):
        n = rng.randint(1, 8)
        texts.append("".join(rng.choice("0123456789" * 3 + " \n\t") for _ in range(n * 2)))
    shortcut = 0
    for text in texts:
        if _FEW_DIGITS.fullmatch(text) is not None:
            shortcut += 1
            assert not scanner.scan(text), repr(text)
    assert shortcut > 1000
    assert _FEW_DIGITS.fullmatch("123456789\n") is None  # nine digits: scanned
    assert _FEW_DIGITS.fullmatch("12.5\n") is None and _FEW_DIGITS.fullmatch("7 a\n") is None
    registry = SecretRegistry()
    registry.set("k1", ["48151623"])
    assert PIIGuard(secrets=registry).text("48151623\n", "k1")[1] == "<SECRET>\n"


def test_bundle_counts_each_value_once_across_representations() -> None:
    """text/plain and text/html of one DataFrame are one set of values: counted once."""
    rows = [("Maria Garcia", "123-45-6788"), ("John Smith", "234-56-7890")]
    plain = "   name         ssn\n" + "".join(f"{i}  {n}  {s}\n" for i, (n, s) in enumerate(rows))
    html = "<table><tr><th>name</th><th>ssn</th></tr>" + "".join(
        f"<tr><td>{n}</td><td>{s}</td></tr>" for n, s in rows
    )
    out = PIIGuard().content(
        "display_data", {"data": {"text/plain": plain, "text/html": html}, "metadata": {}}, None
    )
    assert out.content is not None
    assert out.content["metadata"]["prod_discovery"]["entities"] == {"PERSON": 2, "US_SSN": 2}
    assert "123-45-6788" not in json.dumps(out.content)


def test_ssn_in_a_csv_field_is_found_but_thousands_separators_are_not() -> None:
    policy = PIIPolicy()
    assert policy.scan("id,ssn\n1,123-45-6788\n").entities == {"US_SSN": 1}
    assert policy.scan("n,phone\n2,555-123-4567\n").entities == {"PHONE_NUMBER": 1}
    assert policy.scan("total,1,234,567,890").entities == {}


def test_server_secrets_are_secret_values_not_every_denied_variable(
    monkeypatch: Any,
) -> None:
    """JUPYTERHUB_* is denied to kernels, but only its token is a secret: the user's name in
    JUPYTERHUB_USER must stay readable (in outputs and in every audit record's user)."""
    from jupyter_prod_discovery.credentials.environment import DEFAULT_DENY
    from jupyter_prod_discovery.guard.setup import server_secrets

    monkeypatch.setenv("JUPYTERHUB_USER", "pdhload0")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token-5f2c9a7e41d8b3")
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:8200")
    values = server_secrets(None, DEFAULT_DENY)
    assert "hub-token-5f2c9a7e41d8b3" in values
    assert "pdhload0" not in values and "http://127.0.0.1:8200" not in values
