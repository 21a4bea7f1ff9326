"""How verdicts are written into outputs (``guard/outputs.py``): visible HTML placeholders,
counts per value in ``metadata.prod_discovery``, blocking notices, JSON payloads."""

from __future__ import annotations

from typing import Any

from jupyter_prod_discovery.guard.outputs import rewrite_output
from jupyter_prod_discovery.pii import PIIPolicy, SecretMatcher
from tests import pii_labelled as L


def _customers_output(rows: int = 10) -> dict[str, Any]:
    return {
        "output_type": "execute_result",
        "data": {
            "text/plain": L.customers_doc("dataframe", rows).text,
            "text/html": L.customers_doc("html", rows).text,
        },
        "metadata": {},
        "execution_count": 1,
    }


def test_customers_table_redacted_visibly_and_counted_per_value() -> None:
    verdict, new = rewrite_output(PIIPolicy(), _customers_output(10))
    assert new is not None
    html, plain = new["data"]["text/html"], new["data"]["text/plain"]
    assert html.count('class="jp-ProdDiscovery-redacted"') == 60  # 2 names, dob, email, phone, ssn
    assert "&lt;PERSON&gt;" in html and "<PERSON>" not in html and "<PERSON>" in plain
    expected = {"PERSON": 20, "DATE_OF_BIRTH": 10, "LOCATION": 10, "EMAIL_ADDRESS": 10,
                "PHONE_NUMBER": 10, "US_SSN": 10}  # fmt: skip
    assert verdict.entities == expected
    assert new["metadata"]["prod_discovery"] == {"action": "redact", "entities": expected}
    for row in L.customers(10)[1:]:
        assert row[1] not in html and row[5] not in html and row[7] not in plain


def test_warn_only_output_is_left_alone_but_reported() -> None:
    out = {"output_type": "stream", "name": "stdout", "text": "login from 10.2.3.4\n"}
    verdict, new = rewrite_output(PIIPolicy(), out)
    assert verdict.action == "warn" and verdict.entities == {"IP_ADDRESS": 1} and new == out


def test_block_replaces_the_output_with_a_notice() -> None:
    verdict, new = rewrite_output(PIIPolicy(actions={"US_SSN": "block"}), _customers_output(3))
    assert verdict.action == "block" and new is not None
    assert list(new["data"]) == ["text/plain"]
    assert "US_SSN x3" in new["data"]["text/plain"]


def test_error_and_json_outputs_and_issued_secrets() -> None:
    matcher = SecretMatcher(["s3cr3t-value-issued"])
    err = {
        "output_type": "error",
        "ename": "KeyError",
        "evalue": "'ann@example.com'",
        "traceback": ["Traceback", "KeyError: 'ann@example.com' s3cr3t-value-issued"],
    }
    verdict, new = rewrite_output(PIIPolicy(), err, matcher.find)
    assert new is not None and "ann@example.com" not in str(new)
    assert "s3cr3t-value-issued" not in str(new)
    assert verdict.entities == {"EMAIL_ADDRESS": 1, "SECRET": 1}
    data = {"output_type": "display_data", "data": {"application/json": {"a": ["ann@example.com"]}}}
    verdict, new = rewrite_output(PIIPolicy(), data)
    assert new is not None and new["data"]["application/json"] == {"a": ["<EMAIL_ADDRESS>"]}
