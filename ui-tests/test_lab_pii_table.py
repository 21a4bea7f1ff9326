"""The demo's customers table in JupyterLab: names, email, phone, SSN and date of birth are
redacted by the live guard and each redacted cell shows a visible, styled placeholder (an
unescaped ``<EMAIL_ADDRESS>`` used to be taken for a tag, leaving the cell empty)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from lab_support import LabOptions, notebook, shot

from jupyter_prod_discovery.demo.seed import generate_customers

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "customers.ipynb"
ROWS = list(generate_customers(10))
COLUMNS = ["id", "first_name", "last_name", "email", "phone", "ssn", "date_of_birth", "city"]
REDACTED = 6  # first_name, last_name, email, phone, ssn, date_of_birth (city only warns)


def _table() -> str:
    """The table as pandas' ``DataFrame.to_html()`` writes it (the kernel has no pandas)."""
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "".join(
        f"<tr><th>{i}</th>"
        + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in COLUMNS)
        + "</tr>"
        for i, r in enumerate(ROWS)
    )
    return (
        '<table border="1" class="dataframe"><thead><tr style="text-align: right;"><th></th>'
        f"{head}</tr></thead><tbody>{body}</tbody></table>"
    )


@pytest.fixture(scope="module")
def lab_options() -> LabOptions:
    source = f"from IPython.display import HTML\nHTML({_table()!r})"
    return LabOptions(compliance=False, vault=False, notebooks={NOTEBOOK: notebook(source)})


def test_customers_table_redacted_and_visibly_marked(page: Any) -> None:
    page.evaluate(
        "(p) => window.jupyterapp.commands.execute('docmanager:open', {path: p})", NOTEBOOK
    )
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
        state="attached", timeout=90_000
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    table = page.locator(".jp-OutputArea-output table").first
    table.wait_for(state="visible", timeout=60_000)
    marks = table.locator(".jp-ProdDiscovery-redacted")
    marks.first.wait_for(state="visible")
    assert marks.count() == REDACTED * len(ROWS)
    text = table.inner_text()
    for r in ROWS:
        for c in ("first_name", "last_name", "email", "phone", "ssn"):
            assert str(r[c]) not in text, c
    for entity in ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "DATE_OF_BIRTH"):
        assert f"<{entity}>" in text
    box = marks.first.bounding_box()
    assert box is not None and box["width"] > 20  # shown, not an empty cell
    assert marks.first.evaluate("e => getComputedStyle(e).borderTopStyle") == "solid"
    marker = page.locator(".jp-ProdDiscovery-piiMarker").first
    marker.wait_for(state="visible")
    counts = marker.inner_text()
    times = "\u00d7"  # the marker writes the multiplication sign before each count
    assert f"PERSON {times}20" in counts and f"US_SSN {times}10" in counts  # one per value
    shot(page, "pii-customers-table")


def test_marker_keeps_prompt_beside_output(page: Any) -> None:
    """The marker sits above the output column; the ``[1]:`` prompt stays on the output's row
    (the marker used to wrap the row and leave the prompt alone on a line above the output)."""
    child = page.locator(".jp-OutputArea-child.jp-ProdDiscovery-piiOutput").first
    child.wait_for(state="visible")
    prompt = child.locator(".jp-OutputArea-prompt")
    output = child.locator(".jp-OutputArea-output")
    marker = child.locator(".jp-ProdDiscovery-piiMarker")
    assert re.fullmatch(r"\[\d+\]:", prompt.inner_text().strip())
    p, o, m = prompt.bounding_box(), output.bounding_box(), marker.bounding_box()
    assert p and o and m
    # One row: the boxes overlap vertically, the prompt left of the output.
    assert p["y"] < o["y"] + o["height"] and o["y"] < p["y"] + p["height"], (p, o)
    assert p["x"] + p["width"] <= o["x"] + 1, (p, o)
    # The marker is visible, above the output, over the output's column.
    assert m["height"] > 0 and m["width"] > 0, m
    assert m["y"] + m["height"] <= o["y"] + 1, (m, o)
    assert m["x"] >= o["x"] - 1, (m, o)
    shot(page, "pii-marker-prompt")
