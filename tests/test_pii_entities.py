"""Every entity type, names, column-aware tables, credentials, visible HTML redaction and counts
per value: the pure ``pii`` package against the labelled set and Presidio."""

from __future__ import annotations

import random

import pytest

from jupyter_prod_discovery.pii import CREDENTIAL, Finding, PIIPolicy, redact
from jupyter_prod_discovery.pii.notebook import scan_notebook
from jupyter_prod_discovery.pii.tables import classify_header
from tests import pii_labelled as L


def _spans(policy: PIIPolicy, text: str) -> list[tuple[str, int, int]]:
    return [(f.entity_type, f.start, f.end) for f in policy.scan(text).findings]


def _recall(docs: list[L.Doc], found: list[list[tuple[str, int, int]]]) -> dict[str, float]:
    hit: dict[str, int] = {}
    total: dict[str, int] = {}
    for doc, fs in zip(docs, found, strict=True):
        for ent, s, e in doc.labels:
            total[ent] = total.get(ent, 0) + 1
            if any(t == ent and a < e and b > s for t, a, b in fs):
                hit[ent] = hit.get(ent, 0) + 1
    return {k: hit.get(k, 0) / v for k, v in total.items()}


@pytest.fixture(scope="module")
def labelled() -> tuple[list[L.Doc], dict[str, float]]:
    docs = L.positives(seed=31, n=10)
    policy = PIIPolicy()
    return docs, _recall(docs, [_spans(policy, d.text) for d in docs])


def test_recall_of_every_entity_on_the_labelled_set(
    labelled: tuple[list[L.Doc], dict[str, float]],
) -> None:
    _, recall = labelled
    assert set(recall) == set(L.ENTITIES)
    low = {k: v for k, v in recall.items() if v < 0.95}
    assert not low, low


def test_recall_at_least_presidio_pattern_only(
    labelled: tuple[list[L.Doc], dict[str, float]],
) -> None:
    from benchmarks.pii_quality import _presidio_spans, presidio

    docs, ours = labelled
    engine = presidio(spacy=False)
    theirs = _recall(docs, [_presidio_spans(engine, d.text) for d in docs])
    worse = {k: (ours[k], v) for k, v in theirs.items() if k in ours and ours[k] < v}
    assert not worse, worse


def test_technical_output_under_one_false_positive_per_100kb() -> None:
    docs = L.negatives(seed=5, size=150_000)
    policy = PIIPolicy()
    found = [(d.text[s:e], t) for d in docs for t, s, e in _spans(policy, d.text)]
    chars = sum(len(d.text) for d in docs)
    assert len(found) / chars * 100_000 <= 1.0, found[:10]


@pytest.mark.parametrize(
    "number",
    [
        "4222222222222",  # 13-digit Visa
        "501800000009",  # 12-digit Maestro
        "30569309025904",  # 14-digit Diners
        "213129141777631",  # 15-digit JCB (2131)
        "180017066907433",  # 15-digit JCB (1800)
        "4539578763621486",  # bare 16 digits, no context
        "3530 1113 3330 0000",  # JCB 16
        "6011-1111-1111-1117",  # Discover
    ],
)
def test_card_formats_presidio_finds(number: str) -> None:
    text = f"ref {number} ok"
    from jupyter_prod_discovery.pii.patterns import luhn_ok

    assert luhn_ok(number.replace(" ", "").replace("-", ""))
    assert _spans(PIIPolicy(), text) == [("CREDIT_CARD", 4, 4 + len(number))]


def test_luhn_invalid_and_id_columns_are_not_cards() -> None:
    policy = PIIPolicy()
    assert _spans(policy, "ref 4539578763621487 ok") == []
    table = "   user_id  amount\n0  4539578763621486   12.50\n1  4539578763621487    3.10\n"
    assert [t for t, _, _ in _spans(policy, table)] == []


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "CRYPTO"),
        ("mac 00:1A:2B:3C:4D:5E", "MAC_ADDRESS"),
        ("DEA number AB1234563", "MEDICAL_LICENSE"),
        ("bank account 123456789012", "US_BANK_NUMBER"),
        ("driver license A1234567", "US_DRIVER_LICENSE"),
        ("ITIN 912-70-1234", "US_ITIN"),
        ("passport number 912345678", "US_PASSPORT"),
        ("NHS number 943 476 5919", "UK_NHS"),
        ("NI number AB 12 34 56 C", "UK_NINO"),
        ("DNI 12345678Z", "ES_NIF"),
        ("NIE X1234567L", "ES_NIE"),
        ("codice fiscale RSSMRA85T10A562S", "IT_FISCAL_CODE"),
        ("PESEL 44051401359", "PL_PESEL"),
        ("hetu 131052-308T", "FI_PERSONAL_IDENTITY_CODE"),
        ("patente di guida AB1234567C", "IT_DRIVER_LICENSE"),
        ("patente U1X4Z7B9KQ", "IT_DRIVER_LICENSE"),
        ("partita IVA 01234567897", "IT_VAT_CODE"),
        ("VAT number IT01234567897", "IT_VAT_CODE"),
        ("passaporto YA1234567", "IT_PASSPORT"),
        ("carta d'identità AB 1234567", "IT_IDENTITY_CARD"),
        ("CIE 1234567AB", "IT_IDENTITY_CARD"),
        ("identity card CA12345AB", "IT_IDENTITY_CARD"),
        ("pasaporte AAA123456", "ES_PASSPORT"),
        ("personnummer 811228-9874", "SE_PERSONNUMMER"),
        ("personnummer 811228+9874", "SE_PERSONNUMMER"),
        ("Personnummer: 19811228-9874", "SE_PERSONNUMMER"),
        ("personnummer=198112289874", "SE_PERSONNUMMER"),
        ("Steuer-ID: 86095742719", "DE_TAX_ID"),
        ("Her German tax ID is 86095742719.", "DE_TAX_ID"),
        ("Rentenversicherungsnummer 15070649C103", "DE_SOCIAL_SECURITY"),
        ("rvnr=15070649C103 status=200", "DE_SOCIAL_SECURITY"),
        ("Personalausweis L01X00T44", "DE_ID_CARD"),
        ("Personalausweis (alt) T22000124", "DE_ID_CARD"),
        ("German ID card L01X00T44 checked", "DE_ID_CARD"),
        ("Reisepass C01X00T41", "DE_PASSPORT"),
        ("German passport F20400481 scanned", "DE_PASSPORT"),
        ("Krankenversichertennummer A000500015", "DE_HEALTH_INSURANCE"),
        ("kvnr=A000500015", "DE_HEALTH_INSURANCE"),
        ("Führerscheinnummer BO12345678A", "DE_FUEHRERSCHEIN"),
        ("German driving licence MU12345678B on file", "DE_FUEHRERSCHEIN"),
        ("Driver license 1234567 expires soon.", "US_DRIVER_LICENSE"),
        ("driver_license=650000 status=200", "US_DRIVER_LICENSE"),
        ("Verified driver's license no. 07654321.", "US_DRIVER_LICENSE"),
        ("bank account number: 12345678", "US_BANK_NUMBER"),
        ("acct=00123456 ok", "US_BANK_NUMBER"),
        ("Yesterday Agnieszka Wiśniewska signed.", "PERSON"),
    ],
)
def test_each_entity_with_its_context(text: str, entity: str) -> None:
    assert [t for t, _, _ in _spans(PIIPolicy(), text)] == [entity]


def test_weak_ids_need_context() -> None:
    assert _spans(PIIPolicy(), "rows 123456789012 and A1234567 and 912345678") == []
    # Italian shapes without their words; a VAT code whose check digit is wrong.
    quiet = "ref AB1234567C, YA1234567, 1234567AB, CA12345AB; partita IVA 01234567890"
    assert _spans(PIIPolicy(), quiet) == []
    # A personnummer's shape in a build name; one whose Luhn digit is wrong; a bare passport.
    quiet = "release-19811228-9874 ref AAA123456; personnummer 811228-9875"
    assert _spans(PIIPolicy(), quiet) == []
    # German shapes without their words (all with valid check digits), then with their words
    # but a wrong check digit (tax id, pension, identity card, passport, health insurance).
    quiet = "job 86095742719 ref 15070649C103 L01X00T44 C01X00T41 A000500015 BO12345678A"
    assert _spans(PIIPolicy(), quiet) == []
    for text in (
        "Steuer-ID 86095742718",
        "Rentenversicherungsnummer 15070649C104",
        "Personalausweis L01X00T45",
        "Reisepass C01X00T42",
        "Krankenversichertennummer A000500016",
        # Forbidden ICAO letters; a passport's shape after the US word only.
        "Reisepass A01X00T41",
        "passport C01X00T41",
    ):
        assert _spans(PIIPolicy(), text) == [], text


@pytest.mark.parametrize(
    "text",
    [
        "took 1234567 ms",  # no key
        "driver_id=1234567 trip=98765432",  # the id of a driver, not a licence
        "accounts: 66479012 rows scanned",  # a plural counts them
        "bank account 1234567",  # 7 digits: shorter than any bank account Presidio knows
        "license 12345",  # 5 digits
        "license 123456789012345678",  # a longer run is not cut into a short id
        "driver memory 4096 MB; driver took 1234567 ms",  # a word between key and number
        "license version 1234567.5",  # a decimal
    ],
)
def test_short_ids_need_their_key_next_to_them(text: str) -> None:
    assert _spans(PIIPolicy(), text) == []


def test_short_ids_in_a_table_column_named_for_them() -> None:
    rows = [["1", "1234567", "12345678"], ["2", "650001", "87654321"]]
    for kind in ("dataframe", "html"):
        text = L.table(kind, ["id", "driver_license", "bank_account"], rows, [None] * 3).text
        found = PIIPolicy().scan(text).entities
        assert found == {"US_DRIVER_LICENSE": 2, "US_BANK_NUMBER": 2}, kind


def test_italian_ids_in_columns_and_a_generic_header_yields_to_their_shape() -> None:
    rows = [["YA1234567", "1234567AB", "01234567897"], ["YB7654321", "CA12345AB", "IT01234567897"]]
    header = ["passport", "carta_identita", "partita_iva"]
    for kind in ("dataframe", "html"):
        text = L.table(kind, header, rows, [None] * 3).text
        found = PIIPolicy().scan(text).entities
        assert found == {"IT_PASSPORT": 2, "IT_IDENTITY_CARD": 2, "IT_VAT_CODE": 2}, kind


def test_german_ids_in_columns_named_for_them_and_not_in_untold_ones() -> None:
    rows = [
        ["86095742719", "15070649C103", "L01X00T44", "C01X00T41", "A000500015", "BO12345678A"],
        ["39141777639", "63110709C411", "T22000124", "F20400481", "L858590267", "MU12345678B"],
    ]
    header = ["steuer_id", "rvnr", "personalausweis", "reisepass", "kvnr", "fuehrerschein"]
    want = {e: 2 for e in ("DE_TAX_ID", "DE_SOCIAL_SECURITY", "DE_ID_CARD", "DE_PASSPORT",
                           "DE_HEALTH_INSURANCE", "DE_FUEHRERSCHEIN")}  # fmt: skip
    for kind in ("dataframe", "html"):
        text = L.table(kind, header, rows, [None] * 6).text
        assert PIIPolicy().scan(text).entities == want, kind
        text = L.table(kind, [f"c{i}" for i in range(6)], rows, [None] * 6).text
        assert PIIPolicy().scan(text).entities == {}, kind


def test_optional_entities_only_when_the_policy_lists_them() -> None:
    text = "at 2026-01-02 see https://example.com/x id 123e4567-e89b-12d3-a456-426614174000"
    assert _spans(PIIPolicy(), text) == []
    policy = PIIPolicy(entities=["DATE_TIME", "URL", "UUID"])
    assert [t for t, _, _ in _spans(policy, text)] == ["DATE_TIME", "URL", "UUID"]


def test_names_in_prose_but_not_in_technical_words() -> None:
    policy = PIIPolicy()
    found = _spans(policy, "Customer John Smith called; Dr. Okafor replied.")
    assert [t for t, _, _ in found] == ["PERSON", "PERSON"]
    quiet = "The Random Forest Classifier and Max Pooling layer; Will Return Value. INFO Mark"
    assert _spans(policy, quiet) == []
    assert _spans(PIIPolicy(names=False), "Customer John Smith called") == []


def _df(header: list[str], rows: list[list[str]]) -> str:
    return L.table("dataframe", header, rows, [None] * len(header)).text


def test_column_aware_table_by_header() -> None:
    rows = [["Anna", "Zzyzwicz", "1984-03-02", "12 Elm Street", "Chicago"],
            ["Rubén", "Garcia", "1990-11-23", "3 Rue Neuve", "Lyon"]]  # fmt: skip
    header = ["first_name", "surname", "date_of_birth", "address", "city"]
    for kind in ("dataframe", "html"):
        text = L.table(kind, header, rows, [None] * 5).text
        found = PIIPolicy().scan(text)
        assert found.entities == {"PERSON": 4, "DATE_OF_BIRTH": 2, "LOCATION": 4}, kind


def test_column_aware_table_without_telling_headers() -> None:
    rng = random.Random(4)
    rows = [[str(i), L.value("PERSON", rng, "pl"), f"{rng.random():.3f}"] for i in range(12)]
    found = PIIPolicy().scan(_df(["c0", "c1", "c2"], rows))
    assert found.entities == {"PERSON": 12}


def test_column_of_bare_nine_digit_numbers_is_no_ssn_column_by_its_values() -> None:
    """Most 9-digit numbers pass the SSN rules; a column of them (timings, ids) is an SSN
    column only when its header says so or its cells look like SSNs (dashes)."""
    rng = random.Random(9)
    numbers = [str(rng.randint(10**8, 10**9 - 1)) for _ in range(20)]
    timings = PIIPolicy().scan(
        _df(["count", "latency_us"], [[str(i), n] for i, n in enumerate(numbers)])
    )
    assert timings.entities == {}
    by_header = PIIPolicy().scan(
        _df(["count", "ssn"], [[str(i), n] for i, n in enumerate(numbers)])
    )
    assert by_header.entities.get("US_SSN", 0) >= 15
    dashed = [f"{n[:3]}-{n[3:5]}-{n[5:]}" for n in numbers]
    by_shape = PIIPolicy().scan(_df(["count", "c3"], [[str(i), n] for i, n in enumerate(dashed)]))
    assert by_shape.entities.get("US_SSN", 0) >= 15


def test_column_consistency_redacts_cells_a_validator_rejects() -> None:
    rows = [["(212) 555-0134"], ["(415) 555-0199"], ["(999) 000-0000"]]
    text = _df(["phone"], rows)
    verdict = PIIPolicy().scan(text)
    assert verdict.entities == {"PHONE_NUMBER": 3}


@pytest.mark.parametrize(
    ("header", "entity"),
    [
        ("first_name", "PERSON"),
        ("CustomerName", "PERSON"),
        ("dob", "DATE_OF_BIRTH"),
        ("home_address", "LOCATION"),
        ("email_address", "EMAIL_ADDRESS"),
        ("client_ip", "IP_ADDRESS"),
        ("user_id", None),
        ("file_name", None),
        ("created_at", None),
    ],
)
def test_header_classification(header: str, entity: str | None) -> None:
    assert classify_header(header) == entity


@pytest.mark.parametrize(
    "text",
    [
        "AWS_ACCESS_KEY_ID=AKIAZ3MSJV4WWNKWW5HG",
        "token: ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        "auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
        "postgresql://app:Xq7!pz2Lw@db.internal:5432/prod",
        'password = "Tr0ub4dor&3xQ"',
        "SLACK xoxb-123456789012-abcdefghijkl",
    ],
)
def test_credentials_are_found_and_always_redacted(text: str) -> None:
    policy = PIIPolicy(actions={CREDENTIAL: "allow"})
    verdict = policy.scan(text)
    assert CREDENTIAL in verdict.entities
    assert verdict.action == "redact"


@pytest.mark.parametrize(
    "text",
    [
        'password = os.environ["DB_PASSWORD"]',
        "token = get_token()",
        'api_key = "<your key here>"',
        "secret: ${SECRET}",
        "password=********",
    ],
)
def test_credential_references_are_not_credentials(text: str) -> None:
    assert CREDENTIAL not in PIIPolicy().scan(text).entities


def test_html_placeholder_is_escaped_and_visible() -> None:
    html = "<table><tr><th>email</th></tr><tr><td>ann@example.com</td></tr></table>"
    verdict, out = PIIPolicy().scan_html(html)
    assert verdict.entities == {"EMAIL_ADDRESS": 1}
    assert "&lt;EMAIL_ADDRESS&gt;" in out and "<EMAIL_ADDRESS>" not in out
    assert 'class="jp-ProdDiscovery-redacted"' in out and "ann@example.com" not in out
    assert redact("a b", [Finding("PERSON", 0, 1, 1.0)]) == "<PERSON> b"  # plain text stays


def test_bundle_counts_per_value_not_per_representation() -> None:
    rows = [[f"user{i}@example.com"] for i in range(10)]
    data = {
        "text/plain": _df(["email"], rows),
        "text/html": L.table("html", ["email"], rows, [None]).text,
    }
    verdict, out = PIIPolicy().scan_bundle(data)
    assert verdict.entities == {"EMAIL_ADDRESS": 10}
    assert "example.com" not in out["text/plain"] + out["text/html"]


def test_scan_notebook_counts_one_value_once() -> None:
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "source": "df",
                "metadata": {},
                "outputs": [
                    {
                        "output_type": "execute_result",
                        "data": {
                            "text/plain": "x ann@example.com",
                            "text/html": "<b>ann@example.com</b>",
                        },
                    }
                ],
            }
        ]
    }
    [judged] = scan_notebook(PIIPolicy(), nb)
    assert judged.verdict.entities == {"EMAIL_ADDRESS": 1}
    assert set(judged.fields) == {"text/plain", "text/html"}


def test_raw_gate_is_sound_for_every_finding() -> None:
    """Whatever the policy finds in a text, the text holds a byte of its raw gate."""
    policy = PIIPolicy(entities=[*PIIPolicy().entities, "UUID", "URL", "DATE_TIME"])
    gate = policy.raw_gate()
    assert gate is not None
    docs = [
        *L.positives(seed=3, n=2),
        L.Doc(
            "lower",
            "   first_name       city\n0        anna    chicago\n1       marco     milano\n",
        ),
        L.Doc("lower", "password=hunterhunterx and ghp_" + "a" * 36),
    ]
    for doc in docs:
        if policy.scan(doc.text).findings:
            raw = doc.text.encode()
            assert any(b in raw for b in gate), doc.text[:80]
    assert PIIPolicy(ner=True).raw_gate() is None
    assert not any(
        b in b'{"data": {"text/plain": "loss is low at this step"}}'
        for b in PIIPolicy().raw_gate() or ()
    )


def test_names_in_row_reprs_and_key_value_pairs() -> None:
    """What ``cursor.fetchall()`` and a dict print: quoted names side by side, named keys."""
    from jupyter_prod_discovery.demo.seed import generate_customers

    policy = PIIPolicy()
    rows = list(generate_customers(50))
    text = repr([tuple(r.values()) for r in rows])
    out = policy.redact_text(text, policy.scan(text))
    for r in rows:
        assert f"'{r['first_name']}'" not in out and f"'{r['last_name']}'" not in out
        assert r["email"] not in out and r["ssn"] not in out
    keyed = "{'first_name': 'Maria', 'city': 'Lyon', 'dob': '1984-03-02', 'file_name': 'a.csv'}"
    assert policy.scan(keyed).entities == {"PERSON": 1, "LOCATION": 1, "DATE_OF_BIRTH": 1}
    assert policy.scan("('Open', 'Close') ('Max', 'Value') ['Train', 'Test']").entities == {}


def test_headers_are_checked_against_their_values() -> None:
    """A header says what a column should hold: "Service Name" holds no person, "state" of a
    job no place, so neither is reported; the same for keys in a config."""
    rows = [["Billing Export", "running", "eu-west-1"], ["Data Platform", "failed", "us-east-2"]]
    assert PIIPolicy().scan(_df(["service_name", "state", "region"], rows)).entities == {}
    config = '{"Owner": "Data Platform", "Service Name": "Billing Export", "state": "running"}'
    assert PIIPolicy().scan(config).entities == {}


def test_html_table_on_one_line_is_read_by_columns() -> None:
    html = (
        "<table><thead><tr><th></th><th>first_name</th><th>last_name</th></tr></thead><tbody>"
        "<tr><th>0</th><td>Emily</td><td>Lopez</td></tr><tr><th>1</th><td>Nancy</td>"
        "<td>Zzyzwicz</td></tr></tbody></table>"
    )
    assert PIIPolicy().scan(html).entities == {"PERSON": 4}
