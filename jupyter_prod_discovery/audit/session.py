"""What a Discovery session touched, read back from the audit trail, for export manifests.

An export manifest must say which data sources the author's kernels touched and which credential
profiles they were issued, including kernels that have stopped since. Only the audit trail
remembers that, so the exporter asks this module, which scans the trail's first sink once per
export (exports are rare; the scan is linear in the log size).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

__all__ = ["MAX_DATA_SOURCES", "summarize_session"]

#: A manifest lists at most this many data sources, the most used first.
MAX_DATA_SOURCES = 500


def _username(rec: dict[str, Any]) -> str | None:
    user = (rec.get("data") or {}).get("user") or {}
    return user.get("server_owner") or user.get("username")


def summarize_session(lines: Iterable[str], owner: str | None) -> dict[str, Any]:
    """Data sources and credential profiles of ``owner``'s kernels (every kernel when None).

    A kernel belongs to ``owner`` when a kernel or credential record names them; data-source
    records are attributed by the server to the kernel that sent them, so they are selected by
    kernel id. Returns ``{"data_sources": [{kind, target, count}], "credential_profiles":
    [names]}``.
    """
    records: list[dict[str, Any]] = []
    kernels: set[str] = set()
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # broken lines are the verifier's business
        if not isinstance(rec, dict):
            continue
        kind = rec.get("kind")
        data = rec.get("data") or {}
        kernel_id = data.get("kernel_id")
        if (
            kind in ("kernel", "credential")
            and kernel_id
            and (owner is None or _username(rec) == owner)
        ):
            kernels.add(kernel_id)
        if kind in ("datasource", "credential"):
            records.append(rec)
    sources: Counter[tuple[str, str]] = Counter()
    profiles: set[str] = set()
    for rec in records:
        data = rec.get("data") or {}
        if data.get("kernel_id") not in kernels:
            continue
        if rec.get("kind") == "datasource" and data.get("kind") != "dropped":
            sources[(str(data.get("kind")), str(data.get("target")))] += int(data.get("count") or 1)
        elif data.get("action") == "issue" and data.get("profile"):
            profiles.add(str(data["profile"]))
    return {
        "data_sources": [
            {"kind": kind, "target": target, "count": count}
            for (kind, target), count in sources.most_common(MAX_DATA_SOURCES)
        ],
        "credential_profiles": sorted(profiles),
    }
