"""The demo's customers table, for real (issue 17's acceptance): in the running demo, a notebook
reads ``select * from customers`` into a DataFrame with the login the trusted service issued to
its kernel (``psycopg.connect("")``, as the README's example does) and JupyterLab renders it.

Checked in the page: every shown name, email, phone, SSN and birth-date cell holds a visible,
styled placeholder and nothing else; no raw value of the table, read from PostgreSQL directly by this
test, is anywhere in the page; the output's marker counts one finding per shown value. A
screenshot of the table is saved and inspected: each mark is laid out and drawn in its red.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from lab_support import LOAD_TIMEOUT, demo_dsn, run_in_new_notebook, shot
from PIL import Image
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jupyter_prod_discovery.demo.process import DemoProcess
from jupyter_prod_discovery.demo.seed import DEMO_DATABASE

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.postgres]

#: What a data scientist types: pandas over the kernel's own database login (libpq reads the
#: PG* variables the service injected; there is no password in the notebook).
CELL = (
    "import pandas as pd, psycopg, warnings\n"
    "warnings.simplefilter('ignore', UserWarning)  # pandas prefers SQLAlchemy; psycopg works\n"
    'pd.read_sql("select * from customers", psycopg.connect(""))'
)
#: Column -> the placeholder its every shown cell must hold.
REDACTED = {
    "first_name": "PERSON",
    "last_name": "PERSON",
    "email": "EMAIL_ADDRESS",
    "phone": "PHONE_NUMBER",
    "ssn": "US_SSN",
    "date_of_birth": "DATE_OF_BIRTH",  # the policy redacts a birth-date column too
}
#: Columns the demo's policy only warns about (LOCATION: shown, counted in the marker).
WARNED = {"city": "LOCATION", "state": "LOCATION"}
#: The mark's colour (``pii.findings.HTML_MARK``: text and border #b71c1c).
MARK_RGB = (0xB7, 0x1C, 0x1C)

#: Each row of the rendered table: its cells' text and the text of the marks inside them.
_TABLE = """
table => ({
  head: [...table.querySelectorAll('thead tr:last-child th')].map(th => th.textContent.trim()),
  rows: [...table.querySelectorAll('tbody tr')].map(tr => [...tr.children].map(td => ({
    text: td.textContent.trim(),
    marks: [...td.querySelectorAll('.jp-ProdDiscovery-redacted')].map(m => m.textContent),
  }))),
})
"""


def count_colour(
    image: Image.Image, box: tuple[int, int, int, int], rgb: tuple[int, int, int], tol: int
) -> int:
    """How many pixels of ``box`` (x0, y0, x1, y1, clipped to the image) are within ``tol`` of ``rgb``."""
    x0, y0, x1, y1 = box
    region = image.crop((max(0, x0), max(0, y0), min(image.width, x1), min(image.height, y1)))
    data = region.tobytes()
    return sum(
        all(abs(data[i + k] - rgb[k]) <= tol for k in range(3)) for i in range(0, len(data), 3)
    )


def database_rows() -> dict[int, dict[str, Any]]:
    """The customers table as PostgreSQL holds it, by id (read as the superuser)."""
    params = conninfo_to_dict(demo_dsn())
    params["dbname"] = DEMO_DATABASE
    with psycopg.connect(make_conninfo(**params)) as conn:  # type: ignore[arg-type]
        cur = conn.execute("select * from customers order by id")
        names = [d.name for d in cur.description or ()]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


@pytest.fixture(scope="module")
def demo_page(browser: Any, demo: DemoProcess) -> Any:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{demo.url}/lab?token={demo.token}", wait_until="domcontentloaded")
    page.locator(".jp-ProdDiscovery-indicator").first.wait_for(timeout=LOAD_TIMEOUT)
    try:
        yield page
    except BaseException:
        shot(page, "FAILED-demo-customers-table")
        raise
    finally:
        context.close()


@pytest.mark.timeout(900)
def test_demo_customers_table_redacted_marked_and_counted(demo_page: Any, tmp_path: Path) -> None:
    page = demo_page
    rows = database_rows()
    assert len(rows) >= 100, "the demo seeds its customers table"

    run_in_new_notebook(page, CELL)
    table = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output table").first
    table.wait_for(state="visible", timeout=120_000)
    marker = page.locator(".jp-NotebookPanel:visible .jp-ProdDiscovery-piiMarker").first
    marker.wait_for(state="visible", timeout=60_000)
    stderr = "[data-mime-type='application/vnd.jupyter.stderr']"
    assert page.locator(f".jp-NotebookPanel:visible .jp-OutputArea-output{stderr}").count() == 0

    # Every shown row, matched to the database by its id.
    rendered = table.evaluate(_TABLE)
    head = rendered["head"]
    assert head[1:] == list(next(iter(rows.values()))), head
    column = {name: i for i, name in enumerate(head)}
    shown: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for cells in rendered["rows"]:
        if cells[column["id"]]["text"] == "...":  # pandas' truncation row
            continue
        shown.append((rows[int(cells[column["id"]]["text"])], cells))
    assert len(shown) >= 10, len(shown)
    for db, cells in shown:
        for name, entity in REDACTED.items():
            cell = cells[column[name]]
            assert cell["marks"] == [f"<{entity}>"], (name, cell)
            assert cell["text"] == f"<{entity}>", (name, cell)  # the placeholder, nothing else
            assert str(db[name]) not in cell["text"]

    # No raw value of the table anywhere in the page: the DOM, and what the user reads.
    html, text = page.content(), page.locator("body").inner_text()
    for db in rows.values():
        for name in ("email", "phone", "ssn"):
            assert db[name] not in html and db[name] not in text, name
        for name in ("first_name", "last_name", "date_of_birth"):  # a whole cell's text
            assert f">{db[name]}<" not in html, name
        assert f"{db['first_name']} {db['last_name']}" not in text

    # One count per shown value (not per representation), as the marks in the table show.
    counts = {e: int(n) for e, n in re.findall(r"([A-Z_]+) \u00d7(\d+)", marker.inner_text())}
    marks: dict[str, int] = {}
    for _, cells in shown:
        for cell in cells:
            for m in cell["marks"]:
                marks[m.strip("<>")] = marks.get(m.strip("<>"), 0) + 1
    expected: dict[str, int] = {}
    for entity in [*REDACTED.values(), *WARNED.values()]:
        expected[entity] = expected.get(entity, 0) + len(shown)
    assert marks == {e: expected[e] for e in REDACTED.values()}, marks
    assert counts == expected, marker.inner_text()

    # The screenshot: saved, then read back; each mark is laid out and drawn in its colour.
    table.scroll_into_view_if_needed()
    path = tmp_path / "demo-customers-table.png"
    table.screenshot(path=str(path))
    shot(page, "demo-customers-table")
    image = Image.open(path).convert("RGB")
    origin = table.bounding_box()
    assert origin is not None
    boxes = table.locator(".jp-ProdDiscovery-redacted")
    assert boxes.count() == sum(marks.values())
    drawn = 0
    for i in range(boxes.count()):
        box = boxes.nth(i).bounding_box()
        assert box is not None and box["width"] > 20 and box["height"] > 8, box
        x0, y0 = int(box["x"] - origin["x"]), int(box["y"] - origin["y"])
        x1, y1 = x0 + int(box["width"]), y0 + int(box["height"])
        if y1 > image.height:
            continue  # below what the output area shows without scrolling
        assert count_colour(image, (x0, y0, x1, y1), MARK_RGB, tol=40) >= 10, (i, box)
        drawn += 1
    assert drawn >= 4 * len(REDACTED), drawn  # the first rows' marks, at least
    # And the colour is the marks': cells shown in the clear hold none of it.
    for name in ("id", *WARNED):
        cell = table.locator("tbody tr").first.locator("td").nth(column[name] - 1)
        box = cell.bounding_box()
        assert box is not None
        x0, y0 = int(box["x"] - origin["x"]), int(box["y"] - origin["y"])
        x1, y1 = x0 + int(box["width"]), y0 + int(box["height"])
        assert count_colour(image, (x0, y0, x1, y1), MARK_RGB, tol=40) == 0, name
