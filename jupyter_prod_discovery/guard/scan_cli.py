"""``jupyter prod-discovery scan PATH... [--format text|json] [--policy FILE]``.

Scans every place of a notebook (``.ipynb``: outputs, code and markdown sources, metadata,
attachments) and text files with the same policy object as the live guard, the save guard and
the export gate (``PIIPolicy``), so all four find the same things. A folder is scanned
recursively: its notebooks and UTF-8 text files, skipping hidden entries (``.git``,
``.ipynb_checkpoints``) and files that are not text. Exit status: 0 clean, 1 findings at or above
the policy's threshold, 2 bad input (missing or unreadable file, invalid notebook, bad policy
file), with a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from traitlets import TraitError

from ..pii import PIIPolicy
from .live import PIIGuard
from .outputs import Located, locate

__all__ = ["add_scan", "load_policy", "scan_paths"]


class BadInput(Exception):
    """A path or policy the scan cannot use (exit status 2)."""


def load_policy(path: str | None) -> PIIPolicy:
    """A policy from a YAML or JSON file with the trait names as keys (default policy if None)."""
    if path is None:
        return PIIPolicy()
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read policy file {path}: {exc.strerror}") from None
    try:
        if path.endswith(".json"):
            data = json.loads(raw)
        else:
            import yaml

            data = yaml.safe_load(raw)
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError are ValueError-like
        raise BadInput(f"policy file {path} is not valid: {exc}") from None
    except Exception as exc:
        raise BadInput(f"policy file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput(f"policy file {path} must hold a mapping of policy settings")
    try:
        return PIIPolicy.from_dict(data)
    except TraitError as exc:
        raise BadInput(f"policy file {path}: {exc}") from None


def _read(path: str) -> tuple[dict[str, Any] | None, str | None]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not a UTF-8 text file or notebook") from None
    if p.suffix != ".ipynb":
        return None, text
    try:
        nb = json.loads(text)
    except ValueError:
        raise BadInput(f"{path} is not a notebook (invalid JSON)") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise BadInput(f"{path} is not a notebook (no cells)")
    return nb, None


def _is_text(path: Path) -> bool:
    """Whether a file found in a folder is worth scanning: a notebook, or UTF-8 text."""
    if path.suffix == ".ipynb":
        return True
    try:
        with path.open("rb") as f:
            head = f.read(8192)
    except OSError:
        return False
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end is still text
        return exc.start >= len(head) - 3
    return True


def expand(paths: list[str]) -> list[str]:
    """Files named, plus every notebook and text file under each folder named (sorted).

    Why skip rather than fail inside folders: a project folder holds images, archives and
    caches; a file named explicitly that cannot be read is still bad input (exit 2).
    """
    files: list[str] = []
    for path in paths:
        p = Path(path)
        if not p.is_dir():
            files.append(path)
            continue
        for found in sorted(p.rglob("*")):
            hidden = any(part.startswith(".") for part in found.relative_to(p).parts)
            if not hidden and found.is_file() and _is_text(found):
                files.append(str(found))
    return files


def scan_paths(paths: list[str], policy: PIIPolicy) -> list[dict[str, Any]]:
    """Findings as JSON-ready dicts: path, cell, output, field, entity type, span, score, action."""
    guard = PIIGuard(policy=policy)
    rows: list[dict[str, Any]] = []
    inputs = [(path, *_read(path)) for path in expand(paths)]  # all bad input reported first
    for path, nb, text in inputs:
        found: list[Located] = locate(guard, nb, text)
        for loc in found:
            f = loc.finding
            rows.append(
                {
                    "path": path,
                    # Numbered from 1, as JupyterLab, the sidebar, the gates and the audit do.
                    "cell": None if loc.cell is None else loc.cell + 1,
                    "output": loc.output + 1 if isinstance(loc.output, int) else loc.output,
                    "field": loc.field,
                    "entity_type": f.entity_type,
                    "start": f.start,
                    "end": f.end,
                    "score": round(f.score, 3),
                    "action": policy.action_for(f.entity_type),
                }
            )
    return rows


def run(args: argparse.Namespace) -> int:
    try:
        rows = scan_paths(args.paths, load_policy(args.policy))
    except BadInput as exc:
        print(f"jupyter prod-discovery scan: error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({"findings": rows}, indent=2))
    else:
        for r in rows:
            where = r["path"] if r["cell"] is None else f"{r['path']} cell {r['cell']} "
            if r["output"] is not None:
                where += f"output {r['output']} ({r['field']})"
            elif r["field"] != "text":
                where += f"({r['field']})"
            print(
                f"{where}: {r['entity_type']} at {r['start']}-{r['end']} "
                f"score {r['score']:.2f} -> {r['action']}"
            )
        print(f"{len(rows)} finding(s) in {len(expand(args.paths))} file(s)")
    return 1 if rows else 0


def add_scan(sub: Any) -> None:
    """Register the ``scan`` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "scan",
        help="scan notebooks and text files for PII (exit 1 when found)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="notebooks (.ipynb), text files or folders (scanned recursively)",
    )
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    p.add_argument(
        "--policy",
        default=None,
        help="YAML or JSON policy file (keys: entities, names, tables, ner, default_action, "
        "actions, default_threshold, thresholds, allow_list, allow_patterns)",
    )
    p.set_defaults(run=run)
