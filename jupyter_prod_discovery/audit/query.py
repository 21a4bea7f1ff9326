"""Selecting and rendering audit records: shared by the CLI, the REST API and the report."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["COLUMNS", "Filters", "normalize_time", "render", "row", "select"]

COLUMNS = ("seq", "ts", "kind", "user", "what", "path", "kernel_id", "status")


def normalize_time(value: str | None) -> str | None:
    """ISO date or datetime (naive = UTC) -> the trail's 'YYYY-MM-DDTHH:MM:SS.ffffffZ' form."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO date or datetime: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Filters:
    """All optional; an event matches when it matches every one given."""

    user: str | None = None
    since: str | None = None
    until: str | None = None
    kind: str | None = None
    path: str | None = None
    kernel: str | None = None

    def __post_init__(self) -> None:
        self.since = normalize_time(self.since)
        self.until = normalize_time(self.until)

    def match(self, rec: dict[str, Any]) -> bool:
        data = rec.get("data") or {}
        ts = str(rec.get("ts", ""))
        user = (data.get("user") or {}).get("username")
        paths = (data.get("path"), data.get("to_path"))
        return not (
            (self.user and user != self.user)
            or (self.since and ts < self.since)
            or (self.until and ts > self.until)
            or (self.kind and rec.get("kind") != self.kind)
            or (self.path and not any(p and self.path in str(p) for p in paths))
            or (self.kernel and data.get("kernel_id") != self.kernel)
        )


def select(
    lines: Iterable[str], filters: Filters, limit: int | None = None
) -> list[dict[str, Any]]:
    """Records matching ``filters`` in seq order; the last ``limit`` ones when given."""
    out: list[dict[str, Any]] = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # verification reports broken lines; queries skip them
        if isinstance(rec, dict) and filters.match(rec):
            out.append(rec)
    return out[-limit:] if limit else out


def row(rec: dict[str, Any]) -> dict[str, Any]:
    """A flat summary of one record for tables and CSV."""
    data = rec.get("data") or {}
    what = data.get("operation") or data.get("action") or data.get("phase") or data.get("kind")
    if rec.get("kind") == "pii":
        what = ",".join(f"{k}:{v}" for k, v in sorted((data.get("entities") or {}).items()))
    if rec.get("kind") == "datasource":
        what = f"{data.get('kind')} {data.get('target')} x{data.get('count', 1)}"
    return {
        "seq": rec.get("seq"),
        "ts": rec.get("ts"),
        "kind": rec.get("kind"),
        "user": (data.get("user") or {}).get("username"),
        "what": what,
        "path": data.get("path") or data.get("resource"),
        "kernel_id": data.get("kernel_id"),
        "status": data.get("status"),
    }


def render(records: list[dict[str, Any]], fmt: str) -> str:
    """``json`` (full records), ``csv`` or ``table`` (summaries)."""
    if fmt == "json":
        return json.dumps(records, indent=1)
    rows = [row(r) for r in records]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r} (table, json or csv)")
    cells = [[("" if r[c] is None else str(r[c])) for c in COLUMNS] for r in rows]
    widths = [max([len(c), *(len(x[i]) for x in cells)]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(x, widths, strict=True)) for x in cells]
    return "\n".join(line.rstrip() for line in lines) + "\n"
