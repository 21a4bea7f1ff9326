"""The notebook's git state as the single-user server reports it to the trusted service.

Why a report and not a reading: the service cannot read the author's repository (it lives on the
author's server, under the author's uid), so the commit, path and branch in a statement signed
by the service are the *server's claim*. The service says so in the statement
(``internalParameters.reportedByServer``), checks the shape strictly (:func:`validate_report`)
and checks what it can: the reported path must name the notebook it was sent.

The server reads the state with dulwich (:func:`.manifest.git_state`): no ``git`` process, no
hook, no ``core.fsmonitor``, no filter of the user's repository runs in the server's process.

Wire shape (``"git"`` of ``POST /api/exports``, null outside a repository)::

    {"commit": 40 lowercase hex digits (HEAD),
     "path": the notebook's path relative to the repository root (POSIX, normalised),
     "dirty": whether the notebook's bytes differ from its blob in HEAD (or it is not in HEAD),
     "branch": the checked-out branch (null when HEAD is detached),
     "remote": the URL of remote "origin" without credentials (null when none)}
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from .manifest import git_state, public_url

__all__ = ["MAX_BRANCH", "MAX_REMOTE", "git_report", "validate_report"]

MAX_BRANCH = 255
MAX_REMOTE = 1024
MAX_PATH = 1024
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_KEYS = frozenset({"commit", "path", "dirty", "branch", "remote"})


def git_report(notebook: Path) -> dict[str, Any] | None:
    """The wire report of ``notebook``'s repository, or None outside a (readable) repository."""
    state = git_state(notebook)
    if state is None:
        return None
    ref = state.get("ref") or ""
    return {
        "commit": state["commit"],
        "path": state["path"],
        "dirty": not state["notebook_committed"],
        "branch": ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else None,
        "remote": state.get("origin"),
    }


def _text(value: Any, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"'git.{field}' must be null or a string of 1 to {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"'git.{field}' must not contain control characters")
    return value


def _suffix(shorter: tuple[str, ...], longer: tuple[str, ...]) -> bool:
    return len(shorter) <= len(longer) and longer[len(longer) - len(shorter) :] == shorter


def validate_report(report: Any, notebook_path: str) -> dict[str, Any] | None:
    """The report checked field by field; ValueError naming the field (``git.commit``, ...).

    ``notebook_path`` is the submission's path (relative to the server root). The repository
    may hold the server root or lie inside it, so the two paths must agree on their common tail:
    one is the other's trailing components (``nb.ipynb`` vs ``projects/repo/nb.ipynb``). A
    report naming another file is refused: it would attach this notebook to a commit of
    something else.
    """
    if report is None:
        return None
    if not isinstance(report, dict):
        raise ValueError("'git' must be null or an object {commit, path, dirty, branch, remote}")
    unknown = sorted(set(report) - _KEYS)
    if unknown:
        raise ValueError(f"'git' has unknown field(s) {unknown}")
    commit = report.get("commit")
    if not isinstance(commit, str) or not _COMMIT.match(commit):
        raise ValueError("'git.commit' must be a commit id: 40 lowercase hex digits")
    path = report.get("path")
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise ValueError("'git.path' must be the notebook's path in the repository")
    pure = PurePosixPath(path)
    if (
        pure.is_absolute()
        or "\\" in path
        or pure.as_posix() != path
        or any(part in ("..", ".") for part in path.split("/"))
    ):
        raise ValueError("'git.path' must be relative and normalised (no '..', '.', '//')")
    ours = PurePosixPath(notebook_path).parts
    theirs = pure.parts
    if not (_suffix(theirs, ours) or _suffix(ours, theirs)):
        raise ValueError(f"'git.path' {path!r} does not name the submitted notebook")
    dirty = report.get("dirty")
    if not isinstance(dirty, bool):
        raise ValueError("'git.dirty' must be true or false")
    branch = _text(report.get("branch"), "branch", MAX_BRANCH)
    remote = _text(report.get("remote"), "remote", MAX_REMOTE)
    return {
        "commit": commit,
        "path": path,
        "dirty": dirty,
        "branch": branch,
        # A credential in a remote URL never reaches a statement, whoever sent it.
        "remote": public_url(remote) if remote else None,
    }
