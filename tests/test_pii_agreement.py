"""``scan``, the save guard and the export gate judge a notebook with one policy: for PII in each
place of a notebook (code and markdown sources, cell and notebook metadata, attachments, stream,
display and error outputs) all three find the same entity types in the same place, and none
finds anything in a clean notebook."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from guard_support import Recorder

from jupyter_prod_discovery.export.gates import ExportContext, NoPIIGate, NoSecretsGate
from jupyter_prod_discovery.export.notebook import prepare_notebook
from jupyter_prod_discovery.guard.live import PIIGuard
from jupyter_prod_discovery.guard.save import make_pre_save_hook
from jupyter_prod_discovery.guard.scan_cli import scan_paths
from jupyter_prod_discovery.pii import PIIPolicy

SSN, EMAIL, CARD = "536-22-1234", "ann.smith@example.com", "4539 5787 6362 1486"
NAME = "Maria Garcia"


def _code(source: str, outputs: list[Any] | None = None) -> Any:
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = outputs or []
    return cell


PLACES: dict[str, Any] = {
    "code source": lambda nb: nb.cells.append(_code(f"customer_ssn = '{SSN}'")),
    "markdown source": lambda nb: nb.cells.append(
        nbformat.v4.new_markdown_cell(f"Ask {NAME} ({EMAIL}) before running this.")
    ),
    "cell metadata": lambda nb: nb.cells.append(
        nbformat.v4.new_code_cell("x = 1", metadata={"reviewer": EMAIL})
    ),
    "notebook metadata": lambda nb: nb.metadata.update({"authors": [{"name": NAME}]}),
    "attachment": lambda nb: nb.cells.append(
        nbformat.v4.new_markdown_cell(
            "![notes](attachment:notes.txt)",
            attachments={"notes.txt": {"text/plain": base64.b64encode(SSN.encode()).decode()}},
        )
    ),
    "stream output": lambda nb: nb.cells.append(
        _code("print(c)", [nbformat.v4.new_output("stream", name="stdout", text=f"ssn {SSN}\n")])
    ),
    "display output": lambda nb: nb.cells.append(
        _code(
            "df",
            [
                nbformat.v4.new_output(
                    "execute_result",
                    data={
                        "text/plain": f"   name  card\n0  {NAME}  {CARD}\n",
                        "text/html": f"<table><tr><th>name</th><th>card</th></tr>"
                        f"<tr><td>{NAME}</td><td>{CARD}</td></tr></table>",
                    },
                    execution_count=1,
                )
            ],
        )
    ),
    "error output": lambda nb: nb.cells.append(
        _code(
            "lookup()",
            [
                nbformat.v4.new_output(
                    "error",
                    ename="KeyError",
                    evalue=f"'{EMAIL}'",
                    traceback=["Traceback", f"KeyError: '{EMAIL}'"],
                )
            ],
        )
    ),
}


def _notebook(place: str | None) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(_code("import pandas as pd"))
    if place is not None:
        PLACES[place](nb)
    return nb


def _by_scan(path: Path, policy: PIIPolicy) -> dict[str, set[str]]:
    """Places as the gate names them: cells and outputs numbered from 1 everywhere."""
    out: dict[str, set[str]] = {}
    for row in scan_paths([str(path)], policy):
        if row["cell"] is None:
            where = "notebook metadata"
        elif row["output"] is not None:
            where = f"cell {row['cell']} output {row['output']}"
        else:
            where = f"cell {row['cell']} {row['field']}"
        out.setdefault(where, set()).add(row["entity_type"])
    return out


def _by_save(nb: Any, policy: PIIPolicy) -> dict[str, set[str]]:
    class App:
        audit = Recorder()

    hook = make_pre_save_hook(PIIGuard(policy=policy), App)
    hook({"type": "notebook", "content": nbformat.from_dict(nb)}, "n.ipynb")
    out: dict[str, set[str]] = {}
    for data in App.audit.of("pii"):
        cell, output = data["cell"], data["output"]
        if cell is None:
            where = f"notebook {output}"
        elif isinstance(output, int):
            where = f"cell {cell} output {output}"
        else:
            where = f"cell {cell} {output}"
        out.setdefault(where, set()).update(data["entities"])
    return out


def _by_gate(tmp_path: Path, nb: Any, policy: PIIPolicy) -> dict[str, set[str]]:
    ctx = ExportContext(tmp_path / "n.ipynb", nb, prepare_notebook(nb, {}), {}, "ada", "")
    gate = NoPIIGate(policy=policy)
    result = gate.check(ctx)
    out: dict[str, set[str]] = {}
    text = result.reason.split(": ", 1)[1] if not result.passed else ""
    text += " " + (
        result.reason.split("warn-level: ", 1)[1] if "warn-level" in result.reason else ""
    )
    for types, where in re.findall(
        r"([A-Z_]+(?:, [A-Z_]+)*) in ([a-z]+(?: \d+)?(?: [a-z]+)?(?: \d+)?)", text
    ):
        out.setdefault(where.strip(), set()).update(types.split(", "))
    return out


@pytest.mark.parametrize("place", [None, *PLACES])
def test_scan_save_guard_and_export_gate_agree(tmp_path: Path, place: str | None) -> None:
    policy = PIIPolicy()
    nb = _notebook(place)
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    scanned = _by_scan(path, policy)
    saved = _by_save(nb, policy)
    gated = _by_gate(tmp_path, nbformat.read(path, 4), policy)
    assert scanned == saved == gated, (place, scanned, saved, gated)
    if place is None:
        assert scanned == {}
    else:
        assert scanned, place  # the PII in this place is found at all


def test_gate_refuses_and_save_redacts_outputs_only(tmp_path: Path) -> None:
    nb = _notebook("stream output")
    PLACES["code source"](nb)
    ctx = ExportContext(tmp_path / "n.ipynb", nb, prepare_notebook(nb, {}), {}, "ada", "")
    assert not NoPIIGate().check(ctx).passed
    model = {"type": "notebook", "content": nbformat.from_dict(nb)}

    class App:
        audit = Recorder()

    make_pre_save_hook(PIIGuard(), App)(model, "n.ipynb")
    saved = nbformat.writes(nbformat.from_dict(model["content"]))
    assert saved.count(SSN) == 1  # the code source keeps its text, the output is redacted
    assert "<US_SSN>" in saved


def test_secrets_gate_uses_the_policy_credentials(tmp_path: Path) -> None:
    nb = _notebook(None)
    nb.cells.append(
        _code(
            "print(cfg)",
            [nbformat.v4.new_output("stream", name="stdout", text="key AKIAZ3MSJV4WWNKWW5HG\n")],
        )
    )
    ctx = ExportContext(tmp_path / "n.ipynb", nb, prepare_notebook(nb, {}), {}, "ada", "")
    result = NoSecretsGate().check(ctx)
    assert not result.passed and "CREDENTIAL x1 in cell 2 output 1" in result.reason
