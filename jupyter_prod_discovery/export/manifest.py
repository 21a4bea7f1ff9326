"""The bundle manifest: what Integration checks before it accepts a job.

The manifest is schema-versioned JSON (``manifest.schema.json`` beside this module is the JSON
Schema). Its canonical form (sorted keys, no whitespace, UTF-8) is what the signer signs, so any
change to the manifest or, through the per-file hashes, to any bundled file breaks verification.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_SCHEMA_VERSION",
    "SIGNATURE_FILE",
    "canonical",
    "file_hashes",
    "git_state",
    "load_schema",
    "sha256_file",
    "validate_manifest",
]

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "signature.json"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


def canonical(manifest: dict[str, Any]) -> bytes:
    """The exact bytes that are signed: sorted keys, compact separators, UTF-8."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(bundle: Path) -> dict[str, str]:
    """sha256 of every file of the bundle except the manifest and signature, by POSIX path."""
    out: dict[str, str] = {}
    for path in sorted(bundle.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(bundle).as_posix()
        if rel in (MANIFEST_FILE, SIGNATURE_FILE):
            continue
        out[rel] = sha256_file(path)
    return out


def git_state(path: Path) -> dict[str, Any] | None:
    """Commit and dirty state of the repository holding ``path``; None outside a repository."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(path.parent), *args],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no") or ""
    notebook_status = git("status", "--porcelain", "--", path.name) or ""
    return {
        "commit": commit.strip(),
        "dirty": bool(status.strip()),
        "notebook_committed": not notebook_status.strip(),
    }


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Raise ValueError naming the first schema violation."""
    import jsonschema

    try:
        jsonschema.validate(manifest, load_schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"manifest does not match its schema at {where}: {exc.message}") from None
