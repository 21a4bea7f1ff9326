"""What the bundle's statement is built from: file hashes, git metadata, and its JSON Schema.

The statement (an in-toto Statement v1, :mod:`.provenance`) is stored canonically (sorted keys,
no whitespace, UTF-8) as ``manifest.json`` and signed inside the DSSE envelope ``signature.json``
(:mod:`.dsse`); ``manifest.schema.json`` beside this module is its JSON Schema.

Git metadata is read with dulwich, which parses ``.git`` itself: no ``git`` process runs, so
nothing the repository configures (``core.fsmonitor``, hooks, ``filter.*.clean``,
``core.sshCommand``, ``include.path`` tricks) executes in the trusted domain. The notebook counts
as committed when the git blob of its bytes, hashed as stored (no clean filter), is the blob at
its path in HEAD.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from .attestation import ENVELOPE_FILE, STATEMENT_FILE

__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_SCHEMA_VERSION",
    "SIGNATURE_FILE",
    "canonical",
    "file_hashes",
    "git_state",
    "load_schema",
    "public_url",
    "sha256_file",
    "validate_manifest",
]

MANIFEST_SCHEMA_VERSION = 2
MANIFEST_FILE = STATEMENT_FILE
SIGNATURE_FILE = ENVELOPE_FILE
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
    """sha256 of every file of the bundle except the statement and envelope, by POSIX path."""
    out: dict[str, str] = {}
    for path in sorted(bundle.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(bundle).as_posix()
        if rel in (MANIFEST_FILE, SIGNATURE_FILE):
            continue
        out[rel] = sha256_file(path)
    return out


def public_url(url: str) -> str:
    """A remote URL without credentials (``https://user:token@host`` loses its userinfo)."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def git_state(path: Path) -> dict[str, Any] | None:
    """Commit, ref, repository-relative path and committed state of the notebook at ``path``.

    None outside a repository, or when the repository cannot be read (an unborn HEAD, an
    unsupported extension): the statement then records ``git: null`` rather than a guess.
    """
    from dulwich.errors import NotGitRepository
    from dulwich.object_store import tree_lookup_path
    from dulwich.objects import Blob
    from dulwich.repo import Repo

    path = path.resolve()
    try:
        repo = Repo.discover(str(path.parent))
    except NotGitRepository:
        return None
    try:
        with repo:
            commit_id = repo.head()
            rel = path.relative_to(Path(repo.path).resolve()).as_posix()
            head_ref = cast(Any, repo.refs).read_ref(b"HEAD") or b""
            ref = head_ref[5:].decode() if head_ref.startswith(b"ref: ") else None
            tree = repo[commit_id].tree  # type: ignore[attr-defined]
            blob = Blob.from_string(path.read_bytes()).id
            try:
                _mode, committed = tree_lookup_path(repo.__getitem__, tree, rel.encode())
            except KeyError:
                committed = None
            origin = None
            with contextlib.suppress(KeyError):
                origin = repo.get_config().get((b"remote", b"origin"), b"url").decode()
    except Exception:  # an unreadable repository is recorded as none, never guessed
        return None
    state: dict[str, Any] = {
        "commit": commit_id.decode(),
        "ref": ref,
        "path": rel,
        "blob": blob.decode(),
        "notebook_committed": committed == blob,
    }
    if origin:
        state["origin"] = public_url(origin)
    return state


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Raise ValueError naming the first schema violation of a statement."""
    import jsonschema

    try:
        jsonschema.validate(manifest, load_schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"manifest does not match its schema at {where}: {exc.message}") from None
