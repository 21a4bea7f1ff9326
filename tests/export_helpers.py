"""Sample notebooks and a recording audit sink for the export tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

HMAC_KEY = "test-export-key-0123456789"


def make_notebook(
    path: Path, cells: list[tuple[str, list[dict[str, Any]]]], params: str = ""
) -> Path:
    """Write a python3 notebook; each cell is (source, outputs). ``params`` makes a parameters cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if params:
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    for source, outputs in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def result_value(notebook: Path, cell: int = -1) -> str:
    """text/plain of the execute_result of a cell of an executed notebook."""
    nb = nbformat.read(notebook, as_version=4)
    for output in nb.cells[cell].outputs:
        if output.output_type == "execute_result":
            return str(output.data["text/plain"])
    raise AssertionError(f"cell {cell} has no execute_result")


class ListRecorder:
    """An audit recorder that keeps events in memory (the audit seam's contract)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], Any]] = []

    def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> None:
        self.events.append((kind, data, user))
