"""Contents API: what every notebook open and save pays (the audit trail hooks these)."""

from __future__ import annotations

import itertools

import nbformat

from benchmarks.core import BenchServer, Measure, case

#: Save numbers across runs of ``contents_put_1mb_changed``: no two of its saves are alike.
_SAVES = itertools.count()


def _notebook(target_bytes: int) -> dict:
    """A valid notebook of about ``target_bytes``: code cells with plain-text outputs."""
    nb = nbformat.v4.new_notebook()
    line = "row 0123456789 some harmless sample output text\n"
    per_cell = "".join(line for _ in range(200))  # ~10 KB per cell
    while len(nbformat.writes(nb)) < target_bytes:
        cell = nbformat.v4.new_code_cell("print(df.head())")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=per_cell)]
        nb.cells.append(cell)
    return nbformat.from_dict(nb)


@case("contents_get_small", description="GET /api/contents of a small notebook (with content)")
async def contents_get_small(server: BenchServer, measure: Measure) -> None:
    nb = _notebook(4_000)
    await server.json("PUT", "/api/contents/small.ipynb", {"type": "notebook", "content": nb})
    n = 40  # one op is a few ms: a batch evens out the timing of single requests
    async with measure(ops=n):
        for _ in range(n):
            await server.request("GET", "/api/contents/small.ipynb?content=1")


@case("contents_put_small", description="PUT /api/contents of a small notebook (a save)")
async def contents_put_small(server: BenchServer, measure: Measure) -> None:
    import json

    body = json.dumps({"type": "notebook", "content": _notebook(4_000)}).encode()
    await server.request("PUT", "/api/contents/small-save.ipynb", body)
    n = 40
    async with measure(ops=n):
        for _ in range(n):
            await server.request("PUT", "/api/contents/small-save.ipynb", body)


@case("contents_put_1mb", description="PUT /api/contents of a 1 MB notebook (a save)")
async def contents_put_1mb(server: BenchServer, measure: Measure) -> None:
    nb = _notebook(1_000_000)
    import json

    body = json.dumps({"type": "notebook", "content": nb}).encode()
    await server.request("PUT", "/api/contents/big.ipynb", body)
    n = 5
    async with measure(ops=n):
        for _ in range(n):
            await server.request("PUT", "/api/contents/big.ipynb", body)


@case(
    "contents_put_1mb_changed",
    description="PUT /api/contents of a 1 MB notebook whose every output differs at each save",
)
async def contents_put_1mb_changed(server: BenchServer, measure: Measure) -> None:
    """What a save costs when no output was scanned before (no scan can be reused): every
    output text gets a line naming the save and the cell, so each differs from all others
    (``contents_put_1mb`` saves the same outputs again, as an autosave does)."""
    import json

    nb = _notebook(1_000_000)
    n = 5

    def body(save: int) -> bytes:
        cells = [
            {
                **cell,
                "outputs": [
                    {**out, "text": f"save {save} cell {ci}\n{out['text']}"}
                    for out in cell["outputs"]
                ],
            }
            for ci, cell in enumerate(nb["cells"])
        ]
        return json.dumps({"type": "notebook", "content": {**nb, "cells": cells}}).encode()

    bodies = [body(next(_SAVES)) for _ in range(n + 1)]
    await server.request("PUT", "/api/contents/big-changed.ipynb", bodies[0])
    async with measure(ops=n):
        for b in bodies[1:]:
            await server.request("PUT", "/api/contents/big-changed.ipynb", b)
