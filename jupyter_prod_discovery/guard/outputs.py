"""Notebook outputs and text files through the guard: shared by the save hook and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..pii import Finding
from .live import SCANNED_MIME, PIIGuard

__all__ = ["Located", "apply_to_notebook", "iter_texts", "locate"]


@dataclass(frozen=True)
class Located:
    """A finding with where it is: cell and output index (None for text files) and field."""

    cell: int | None
    output: int | None
    field: str
    finding: Finding


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def iter_texts(nb: dict[str, Any]) -> Iterator[tuple[int, int, str, str]]:
    """(cell index, output index, field, text) for every scannable output text."""
    for ci, cell in enumerate(nb.get("cells") or []):
        for oi, out in enumerate(cell.get("outputs") or []):
            kind = out.get("output_type")
            if kind == "stream":
                yield ci, oi, "text", _text(out.get("text", ""))
            elif kind == "error":
                yield ci, oi, "evalue", str(out.get("evalue", ""))
                yield ci, oi, "traceback", "\n".join(map(str, out.get("traceback") or []))
            elif kind in ("execute_result", "display_data"):
                for mime in SCANNED_MIME:
                    if mime in (out.get("data") or {}):
                        v = out["data"][mime]
                        yield ci, oi, mime, v if isinstance(v, str) else _json_text(v)


def _json_text(v: Any) -> str:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "".join(v)
    return json.dumps(v)


def locate(guard: PIIGuard, nb: dict[str, Any] | None, text: str | None) -> list[Located]:
    """Findings kept by the policy (at or above threshold) in a notebook's outputs or a text."""
    out: list[Located] = []
    if nb is not None:
        for ci, oi, field, t in iter_texts(nb):
            kept = guard.policy.decide(guard.find(t, None)).findings
            out.extend(Located(ci, oi, field, f) for f in kept)
    if text is not None:
        kept = guard.policy.decide(guard.find(text, None)).findings
        out.extend(Located(None, None, "text", f) for f in kept)
    return out


def apply_to_notebook(
    guard: PIIGuard, nb: dict[str, Any]
) -> list[tuple[int, int, str, dict[str, int]]]:
    """Rewrite outputs in place by policy; return (cell, output, action, entities) per output."""
    results: list[tuple[int, int, str, dict[str, int]]] = []
    for ci, cell in enumerate(nb.get("cells") or []):
        outputs = cell.get("outputs") or []
        for oi, out in enumerate(outputs):
            kind = out.get("output_type")
            if kind not in ("stream", "error", "execute_result", "display_data"):
                continue
            content = dict(out)
            if kind == "stream":
                content["text"] = _text(out.get("text", ""))
            elif kind != "error":
                data = dict(out.get("data") or {})
                for mime in SCANNED_MIME:
                    if mime in data and isinstance(data[mime], list):
                        data[mime] = "".join(map(str, data[mime]))
                content["data"] = data
            scan = guard.content(kind, content, None)
            if not scan.verdict.entities:
                continue
            results.append((ci, oi, scan.verdict.action, dict(scan.verdict.entities)))
            if scan.content is not None and scan.verdict.action in ("redact", "block"):
                outputs[oi] = type(out)(scan.content) if isinstance(out, dict) else scan.content
    return results
