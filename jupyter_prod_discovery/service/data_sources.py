"""The data sources a signed statement lists: from the service's ledger and its own clean run.

Two origins, kept apart in each entry's ``seen_in``:

- ``author_session``: what the author's kernels touched on the server that submitted the
  export. The kernels' audit shim reported it to that server, which shipped it to the service;
  the service recorded it under the principal it authenticated. Selection is by the service's
  own columns (principal, the server's stream, time of receipt), never by a name in a record,
  so another user's sources cannot appear. What each record says was touched is the server's
  report (a tripwire, not a sandbox: see audit/kernel_shim.py).
- ``clean_run``: what the bundled notebook touched in the service's sandboxed run (the same
  shim in the run's kernel, reporting to the service directly).

Entries are deduplicated by (kind, target); ``dropped`` summaries are not sources. Targets go
through the shim's credential scrub again (a server could send anything) and every secret value
the service issued to the author is masked, as the audit trail masks them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..audit.kernel_shim import scrub_target
from ..audit.redaction import MASK
from ..audit.session import MAX_DATA_SOURCES

__all__ = ["AUTHOR_SESSION", "CLEAN_RUN", "merge_sources"]

AUTHOR_SESSION = "author_session"
CLEAN_RUN = "clean_run"
_ORIGINS = (AUTHOR_SESSION, CLEAN_RUN)


def _clean(target: str, secrets: frozenset[str]) -> str:
    text = scrub_target(str(target))
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def merge_sources(
    by_origin: dict[str, Iterable[dict[str, Any]]],
    secrets: frozenset[str] = frozenset(),
    limit: int = MAX_DATA_SOURCES,
) -> list[dict[str, Any]]:
    """One entry per (kind, target): ``{kind, target, count, seen_in}``, most used first.

    ``by_origin`` maps :data:`AUTHOR_SESSION` / :data:`CLEAN_RUN` to datasource event data
    (``kind``, ``target``, ``count``). At most ``limit`` entries.
    """
    counts: dict[tuple[str, str], int] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    for origin in _ORIGINS:
        for event in by_origin.get(origin, ()):
            kind = str(event.get("kind") or "")
            if not kind or kind == "dropped":
                continue
            key = (kind, _clean(str(event.get("target") or ""), secrets))
            try:
                count = max(1, int(event.get("count") or 1))
            except (TypeError, ValueError):
                count = 1
            counts[key] = counts.get(key, 0) + count
            seen.setdefault(key, set()).add(origin)
    ordered = sorted(counts, key=lambda k: (-counts[k], k))[:limit]
    return [
        {
            "kind": kind,
            "target": target,
            "count": counts[(kind, target)],
            "seen_in": [o for o in _ORIGINS if o in seen[(kind, target)]],
        }
        for kind, target in ordered
    ]
