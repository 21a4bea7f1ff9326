"""Contents API: what every notebook open and save pays (the audit trail hooks these)."""

from __future__ import annotations

import json

import nbformat

from benchmarks.core import BenchServer, OpFn, request_case


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


@request_case(
    "contents_get_small",
    description="GET /api/contents of a small notebook (with content)",
    ops=40,  # one op is a few ms: a batch evens out the timing of single requests
)
async def contents_get_small(server: BenchServer) -> OpFn:
    nb = _notebook(4_000)
    await server.json("PUT", "/api/contents/small.ipynb", {"type": "notebook", "content": nb})
    return lambda: server.request("GET", "/api/contents/small.ipynb?content=1")


def _save(server: BenchServer, path: str, target_bytes: int) -> OpFn:
    body = json.dumps({"type": "notebook", "content": _notebook(target_bytes)}).encode()
    return lambda: server.request("PUT", path, body)


@request_case(
    "contents_put_small", description="PUT /api/contents of a small notebook (a save)", ops=40
)
async def contents_put_small(server: BenchServer) -> OpFn:
    save = _save(server, "/api/contents/small-save.ipynb", 4_000)
    await save()
    return save


@request_case(
    "contents_put_1mb", description="PUT /api/contents of a 1 MB notebook (a save)", ops=5
)
async def contents_put_1mb(server: BenchServer) -> OpFn:
    save = _save(server, "/api/contents/big.ipynb", 1_000_000)
    await save()
    return save
