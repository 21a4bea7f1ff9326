"""Every place of a notebook where PII can sit, and the policy's verdict on each.

A notebook holds text in cell sources (code and markdown), cell and notebook metadata, cell
attachments (text ones; images are not text) and outputs (streams, errors, display bundles).
``scan`` (the CLI), the save guard and the export gate all walk a notebook with
:func:`places` and judge each place with :func:`scan_notebook`, so they find the same things.

Pure: a notebook as a dict in, verdicts out.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .findings import Finding
from .policy import PIIPolicy, Verdict

__all__ = ["SCANNED_MIME", "Place", "attachment_texts", "bundle_text", "places", "scan_notebook"]

# MIME types of display bundles whose text is scanned.
SCANNED_MIME = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")


@dataclass(frozen=True)
class Place:
    """Where a text is: a cell index (None for the notebook) and what part of it.

    ``part`` is ``source``, ``metadata``, ``attachment``, or ``output`` (then ``output`` is the
    output's index).
    """

    cell: int | None
    part: str
    output: int | None = None

    @property
    def label(self) -> str:
        """'cell 3 output 1', 'cell 2 source', 'notebook metadata': numbered from 1, as
        JupyterLab, the PII sidebar and the export gates show cells (``cell`` and ``output`` hold
        0-based indexes)."""
        where = "notebook" if self.cell is None else f"cell {self.cell + 1}"
        if self.part == "output":
            return f"{where} output {(self.output or 0) + 1}"
        return f"{where} {self.part}"


def _text(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return "".join(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def bundle_text(output: dict[str, Any]) -> dict[str, str]:
    """``{field: text}`` for one output: a stream's text, an error's evalue and traceback, or a
    display bundle's text representations (one value, several representations)."""
    kind = output.get("output_type")
    if kind == "stream":
        return {"text": _text(output.get("text", ""))}
    if kind == "error":
        return {
            "evalue": str(output.get("evalue", "")),
            "traceback": "\n".join(map(str, output.get("traceback") or [])),
        }
    data = output.get("data") or {}
    return {mime: _text(data[mime]) for mime in SCANNED_MIME if mime in data}


def attachment_texts(bundle: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(MIME type, text, whether it was base64) for each text value of one attachment's
    bundle: nbformat stores attachments base64-encoded, so a value that decodes as base64
    UTF-8 is given decoded, any other as it is. Binary types are skipped."""
    for mime, value in bundle.items():
        if not (mime.startswith("text/") or mime.endswith("json")):
            continue
        raw = _text(value)
        try:
            yield mime, base64.b64decode(raw, validate=True).decode("utf-8"), True
        except (binascii.Error, ValueError):
            yield mime, raw, False


def _attachment_text(attachments: Any) -> str:
    parts: list[str] = []
    for name, bundle in (attachments or {}).items():
        parts.append(str(name))
        parts.extend(text for _mime, text, _encoded in attachment_texts(bundle or {}))
    return "\n".join(parts)


def places(nb: dict[str, Any], outputs: bool = True) -> Iterator[tuple[Place, dict[str, str]]]:
    """(place, {field: text}) for every text of a notebook; outputs are one bundle each (not
    built with ``outputs=False``, for a caller that judges outputs its own way)."""
    meta = nb.get("metadata")
    if meta:
        yield Place(None, "metadata"), {"metadata": json.dumps(meta, sort_keys=True)}
    for ci, cell in enumerate(nb.get("cells") or []):
        yield Place(ci, "source"), {"source": _text(cell.get("source", ""))}
        if cell.get("metadata"):
            yield Place(ci, "metadata"), {"metadata": json.dumps(cell["metadata"], sort_keys=True)}
        if cell.get("attachments"):
            yield Place(ci, "attachment"), {"attachment": _attachment_text(cell["attachments"])}
        for oi, out in enumerate((cell.get("outputs") or []) if outputs else ()):
            bundle = bundle_text(out)
            if bundle:
                yield Place(ci, "output", oi), bundle


@dataclass
class Judged:
    """One place's verdict (counts per value) and its findings per field."""

    place: Place
    verdict: Verdict
    fields: dict[str, list[Finding]]


def scan_notebook(
    policy: PIIPolicy,
    nb: dict[str, Any],
    secrets: Callable[[str], list[Finding]] | None = None,
) -> list[Judged]:
    """The policy's verdict on every place that holds a kept finding.

    ``secrets(text)`` adds exact issued-secret matches. For a display bundle the verdict counts
    each entity once per value (the most any one representation holds).
    """
    out: list[Judged] = []
    for place, bundle in places(nb):
        combined = Verdict("allow", [])
        fields: dict[str, list[Finding]] = {}
        for field, text in bundle.items():
            verdict = policy.scan(text, secrets(text) if secrets else ())
            if verdict.findings:
                fields[field] = verdict.findings
            combined.merge(verdict, per_value=place.part == "output" and len(bundle) > 1)
        if combined.entities:
            out.append(Judged(place, combined, fields))
    return out
