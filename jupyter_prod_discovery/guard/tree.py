"""Directory copies and renames through the save guard: every file of the tree is scanned.

jupyter_server copies a directory with ``shutil.copytree`` and renames one with ``shutil.move``:
no file of it passes ``save``, so a directory holding a file a kernel wrote (or one saved before
the guard was on) would reach a new name unscanned. ``GuardedContentsManager`` therefore:

- copies into a private staging directory next to the destination (a hidden name, which
  JupyterLab does not list), scans every file of the copy as its save would be scanned
  (:meth:`.save.SaveScanner.scan_model`), writes the redactions there, and only then moves the
  copy to its name;
- renames, then scans the tree under its new name, and moves it back when refused.

Any file the policy blocks, or that cannot be scanned, refuses the whole operation with a 4xx
naming that file and the reason; redactions are written only once every file has passed, so a
refusal leaves nothing changed and nothing under the new name.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tornado.web import HTTPError

from .live import summary

if TYPE_CHECKING:
    from .save import Job, SaveScanner

__all__ = ["copy_scanned", "scan_tree"]

STAGING_PREFIX = ".pd-copy-"
_DONE = {"Copy": "copied", "Rename": "renamed"}


def _model(data: bytes, name: str) -> dict[str, Any]:
    """The contents model a save of this file would carry (a notebook as JSON, else base64)."""
    if name.lower().endswith(".ipynb"):
        try:
            nb = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            nb = None  # not a notebook after all: scanned as any other file, as a save would
        if isinstance(nb, dict):
            return {"type": "notebook", "content": nb}
    return {"type": "file", "format": "base64", "content": base64.b64encode(data).decode("ascii")}


def _bytes(model: dict[str, Any]) -> bytes:
    if model["type"] == "notebook":
        return (json.dumps(model["content"], indent=1, ensure_ascii=False) + "\n").encode()
    return base64.b64decode(model["content"])


def scan_tree(scanner: SaveScanner, os_root: str, api_root: str, verb: str, jobs: list[Job]) -> int:
    """Scan every file under ``os_root`` (named ``api_root/...``); write redactions in place.

    Raises ``HTTPError`` (403 blocked, 400 unscannable) naming the first refused file; then
    nothing has been written. Symbolic links are refused in a copy (``copytree`` resolved
    them, so one left is not what was scanned) and left alone in a rename (the link moved, not
    its target). Audit records are appended to ``jobs`` (the caller writes them). Returns the
    number of files scanned.
    """
    from .save import Job

    writes: list[tuple[Path, bytes]] = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(os_root):
        here = Path(dirpath)
        dirnames.sort()
        rel_dir = here.relative_to(os_root).as_posix()
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            os_path = here / name
            api_path = "/".join(p for p in (api_root, rel_dir, name) if p and p != ".")
            if os_path.is_symlink():
                if verb == "Copy":
                    raise HTTPError(
                        400,
                        f"Copy refused: {api_path} is a symbolic link the PII guard did not scan.",
                        reason="Copy refused by the PII guard",
                    )
                continue
            job = Job()
            jobs.append(job)
            try:
                model = _model(os_path.read_bytes(), name)
            except OSError as err:
                raise HTTPError(
                    400,
                    f"{verb} refused: {api_path} could not be read to scan it for PII "
                    f"({err.strerror}).",
                    reason=f"{verb} refused by the PII guard",
                ) from None
            before = json.dumps(model["content"], sort_keys=True)
            try:
                scanner.scan_model(model, api_path, job)
            except HTTPError as err:
                if err.status_code == 403:
                    detail = (
                        f"{api_path} holds {summary(job.blocked)}, which the Prod Discovery "
                        "PII policy blocks"
                    )
                else:
                    detail = str(err.log_message or "").removeprefix("Save refused: ").rstrip(".")
                raise HTTPError(
                    err.status_code,
                    f"{verb} refused: {detail}. Nothing was {_DONE[verb]}.",
                    reason=f"{verb} refused by the PII guard",
                ) from None
            count += 1
            if json.dumps(model["content"], sort_keys=True) != before:
                writes.append((os_path, _bytes(model)))
    for os_path, data in writes:
        os_path.write_bytes(data)
    return count


def copy_scanned(
    scanner: SaveScanner, os_src: str, os_dst: str, api_src: str, api_dst: str, jobs: list[Job]
) -> int:
    """Copy the directory ``os_src`` to ``os_dst`` with every file scanned before it appears.

    Files are named by their source path (``api_src/...``) in refusals and audit records: that
    is the file the user can fix. The copy is built in a staging directory beside ``os_dst`` and renamed into place (one
    atomic step on the same file system); on any refusal or error the staging is removed.
    """
    dst = Path(os_dst)
    if dst.is_symlink() or dst.exists():
        raise HTTPError(409, f"Copy refused: {api_dst} already exists.")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dst.parent)
    except OSError as err:
        raise HTTPError(400, f"Can't copy into {api_dst}: {err.strerror}") from None
    try:
        staged = Path(staging) / dst.name
        try:
            shutil.copytree(os_src, staged)
        except (OSError, shutil.Error) as err:
            raise HTTPError(400, f"Can't copy into {api_dst}: {err}") from None
        count = scan_tree(scanner, str(staged), api_src, "Copy", jobs)
        try:
            staged.rename(dst)
        except OSError as err:
            raise HTTPError(409, f"Copy refused: {api_dst}: {err.strerror}") from None
        return count
    finally:
        shutil.rmtree(staging, ignore_errors=True)
