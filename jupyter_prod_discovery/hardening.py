"""Defence in depth for same-user deployments (a laptop, a plain ``jupyter lab``).

Why: kernels, terminals and every ``!cmd`` run as the server's OS user, so they can read what the
server process holds (``/proc/<pid>/environ``, ``/proc/<pid>/mem``) and every file it wrote. On a
single-user server nothing here is a boundary against that user; these measures raise the bar and
keep other local users out:

- the server process is made non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``, Linux): its ``environ``
  and ``mem`` become unreadable to other processes of the same uid without ``CAP_SYS_PTRACE``, and
  ptrace is refused. Children become dumpable again at ``execve``, so kernels are unaffected.
- the runtime dir (connection files, cookie secret, server info and browser-open files with the
  token, the credential journal) is made 0700 and the files in it 0600. jupyter_core already writes
  most of them 0600, but keeps an existing runtime dir's mode and writes the browser-open file
  (``jpserver-<pid>-open.html``, which holds the token) with the default umask.

``boundary_status`` tells the UI which kind of boundary the deployment has, so the indicator can
say when it is "evaluation only".
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    Logger = logging.Logger | logging.LoggerAdapter[Any]

__all__ = [
    "boundary_status",
    "harden",
    "is_non_dumpable",
    "make_non_dumpable",
    "secure_runtime_dir",
]

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4

SAME_USER_LABEL = "same-user boundary: evaluation only"
SERVICE_LABEL = "trusted service: controls outside the user's reach"


@functools.cache
def _libc() -> Any | None:
    """The C library exposing ``prctl`` (Linux only; None elsewhere). Patched by the tests."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The symbols of the running process: glibc and musl both have prctl there.
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _prctl() -> Any | None:
    libc = _libc()
    return getattr(libc, "prctl", None) if libc is not None else None


def _args(*values: int) -> tuple[ctypes.c_ulong, ...]:
    """prctl is variadic and reads unsigned longs: pass them as such, not as C ints."""
    return tuple(ctypes.c_ulong(v) for v in values)


def make_non_dumpable(log: Logger) -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)`` on this process; True when it is non-dumpable afterwards.

    Not Linux (or no ``prctl``): nothing to do, logged at debug level. A refused call is logged as
    a warning; the server starts either way (this is defence in depth, not a boundary).
    """
    prctl = _prctl()
    if prctl is None:
        log.debug(
            "non_dumpable: prctl is not available on %s; the server stays dumpable", sys.platform
        )
        return False
    if prctl(PR_SET_DUMPABLE, *_args(0, 0, 0, 0)) != 0:
        err = ctypes.get_errno()
        log.warning(
            "non_dumpable: prctl(PR_SET_DUMPABLE, 0) failed: %s; other processes of this user "
            "can read the server's environment and memory",
            os.strerror(err) if err else "unknown error",
        )
        return False
    applied = is_non_dumpable()
    log.debug("non_dumpable: applied=%s", applied)
    return applied


def is_non_dumpable() -> bool:
    """Whether this process is non-dumpable now (False where that cannot be told)."""
    prctl = _prctl()
    if prctl is None:
        return False
    return bool(prctl(PR_GET_DUMPABLE, *_args(0, 0, 0, 0)) == 0)


def secure_runtime_dir(runtime_dir: str | os.PathLike[str], log: Logger) -> list[Path]:
    """Runtime dir 0700, and its files (ours: owned by this uid) without group/other bits.

    Not recursive and never through a symlink; entries of other uids are left alone, and so is a
    world-writable dir (a shared one such as /tmp: closing it would break other users). Returns
    the paths whose mode changed. Failures are logged as warnings.
    """
    changed: list[Path] = []
    root = Path(runtime_dir)
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    try:
        if root.stat().st_mode & stat.S_IWOTH:
            log.warning("runtime dir %s is world-writable (shared): its modes are left alone", root)
            return changed
        entries = [root, *root.iterdir()]
    except OSError as exc:
        log.warning("runtime dir %s not secured: %s", root, exc)
        return changed
    for path in entries:
        try:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode) or (uid is not None and st.st_uid != uid):
                continue
            if path != root and not stat.S_ISREG(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            # Group and other bits go; the owner's stay (the dir needs rwx to be used at all).
            wanted = (mode & ~0o077) | (0o700 if path == root else 0)
            if mode != wanted:
                path.chmod(wanted)
                changed.append(path)
        except OSError as exc:
            log.warning("cannot restrict the mode of %s: %s", path, exc)
    if changed:
        log.debug("restricted the mode of %s", ", ".join(str(p) for p in changed))
    return changed


def harden(serverapp: Any, *, non_dumpable: bool, log: Logger) -> None:
    """At extension load: the process non-dumpable (when asked), the runtime dir private."""
    if non_dumpable:
        make_non_dumpable(log)
    runtime_dir = getattr(serverapp, "runtime_dir", None)
    if runtime_dir:
        secure_runtime_dir(runtime_dir, log)


def boundary_status(app: Any) -> dict[str, Any]:
    """The ``boundary`` of ``GET /prod-discovery/api/status``: what protects the controls.

    ``same-user`` unless the server is a client of a separate trusted service
    (``app.service_client``), whose controls run outside the user's reach.
    """
    if getattr(app, "service_client", None) is not None:
        mode, label = "service", SERVICE_LABEL
    else:
        mode, label = "same-user", SAME_USER_LABEL
    return {"mode": mode, "label": label, "non_dumpable": is_non_dumpable()}
