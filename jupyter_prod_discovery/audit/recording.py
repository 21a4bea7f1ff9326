"""Recording what happens in the server: contents, /files/ downloads, kernels, denied requests.

jupyter_server's own contents events carry no user, only successes and no hashes, so the
contents manager's methods are wrapped on the instance instead: the wrapper takes the user from
``CallContext`` (the handler of the current request), records success or failure with the size
and sha256 of what was read or written (a save's as it is written: ``written``; a notebook read's
from the bytes the manager parsed; otherwise by reading the file), and
(``AuditTrail.wait_for_write``) holds the answer until the record is acknowledged. Nested calls
(``copy`` calling ``get`` and ``save``) record once.
``/files/`` downloads are served by an auditing subclass of the files handler (set in
``link``), kernels by wrappers on the kernel manager, and 401/403 answers of any handler through
the server's ``log_function``.

Not recorded: metadata-only lookups (``content=0``, the file browser's polling), file access
from kernel code (see ``kernel_shim``), terminals.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import hashlib
import inspect
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.call_context import CallContext
from jupyter_server.base.handlers import AuthenticatedFileHandler
from jupyter_server.files.handlers import FilesHandler
from jupyter_server.utils import ensure_async
from tornado import web

from . import written

if TYPE_CHECKING:
    from .trail import AuditTrail

__all__ = ["AuditedFilesHandler", "AuditedStaticFilesHandler", "install", "link"]

SETTINGS_KEY = "prod_discovery"
_in_audited_call: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "prod_discovery_audited_call", default=False
)
_culling: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "prod_discovery_culling", default=False
)
_HASH_INLINE_LIMIT = 4 * 1024 * 1024
_CM_CONFIG_SECTIONS = (
    "ContentsManager",
    "FileContentsManager",
    "AsyncFileContentsManager",
    "LargeFileManager",
    "AsyncLargeFileManager",
)


def current_user() -> Any:
    """The user of the request being handled, or None outside a request."""
    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    if handler is None:
        return None
    return handler.__dict__.get("_current_user") or getattr(handler, "current_user", None)


def _status_of(exc: BaseException) -> str:
    code = getattr(exc, "status_code", None)
    if code == 404 or isinstance(exc, FileNotFoundError):
        return "not_found"
    if code in (401, 403) or isinstance(exc, PermissionError):
        return "denied"
    return "error"


_TOO_BIG = (-1, "")

# Digests of files hashed before, by path: (stat key, (size, sha256)). Why: a notebook is read
# far more often than it is written, and hashing it again costs more than the rest of its audit
# record. The key holds what every change of the file changes: device, inode, size, mtime and
# ctime. User space cannot set ctime, but file systems stamp it with a coarse clock (a tick of a
# few ms), so two writes in one tick could share a key; an entry is therefore only kept when the
# file's ctime was at least _SETTLED_NS old when it was hashed: any later write stamps a later
# ctime, and the key no longer matches.
_DIGESTS: dict[str, tuple[tuple[int, ...], tuple[int, str]]] = {}
_SETTLED_NS = 2_000_000_000
_CACHE_MAX = 4096


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    """Put ``value`` in a path-keyed cache, emptied when it reaches ``_CACHE_MAX`` entries."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def hash_file(path: str | Path, max_size: int = 0) -> tuple[int, str] | None:
    """Size and sha256 of a file on disk (None when it is not a regular file).

    With ``max_size``, a larger file is not read and ``_TOO_BIG`` is returned instead (the
    caller hashes it in a thread), so that one open and one fstat decide both. A file unchanged
    since it was last hashed (see ``_DIGESTS``) is not read again.
    """
    cached = _DIGESTS.get(str(path))
    if cached is not None:
        # One stat decides a hit (cheaper than open, fstat and close); a miss opens the file
        # and keys what it reads by the descriptor's own fstat.
        try:
            st = os.stat(path)  # noqa: PTH116 - no Path object on this hot path
        except OSError:
            return None
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == cached[0]:
            return cached[1]
    try:
        # O_NONBLOCK: a FIFO at the path must not hang the server (regular files ignore it).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        # fstat of the descriptor read, not a second lookup of the path: one open, no race.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if max_size and st.st_size > max_size:
            return _TOO_BIG
        digest = hashlib.sha256()
        size = 0
        # Asking for one byte more than the file holds ends a small file in one read.
        want = min(st.st_size + 1, 1 << 20)
        while chunk := os.read(fd, want):
            digest.update(chunk)
            size += len(chunk)
            if len(chunk) < want:
                break
            want = 1 << 20
    finally:
        os.close(fd)
    result = size, digest.hexdigest()
    if size == st.st_size and time.time_ns() - st.st_ctime_ns >= _SETTLED_NS:
        _remember(_DIGESTS, str(path), (key, result))
    return result


def _hash_model(model: dict[str, Any] | None) -> tuple[int, str] | None:
    """Size and sha256 of a model's content when the manager is not file based."""
    if not model or model.get("content") is None or model.get("type") == "directory":
        return None
    content = model["content"]
    if model.get("format") == "base64":
        data = base64.b64decode(content)
    elif isinstance(content, str):
        data = content.encode()
    else:
        data = json.dumps(content, sort_keys=True).encode()
    return len(data), hashlib.sha256(data).hexdigest()


class _ContentsAuditor:
    """Wraps one contents manager instance's public methods."""

    def __init__(self, cm: Any, trail: AuditTrail) -> None:
        self.cm = cm
        self.trail = trail
        self.on_disk = hasattr(cm, "_get_os_path")
        # Whether ``get`` can hand back the sha256 of the bytes it read (``require_hash``,
        # jupyter_server 2.11+, with the manager's ``hash_algorithm``): see ``read_hashed``.
        try:
            params = inspect.signature(cm.get).parameters if self.on_disk else {}
        except (AttributeError, TypeError, ValueError):
            params = {}
        self.native_hash = "require_hash" in params
        # What a save wrote, digested as it is written (``written``), and the length of what a
        # hashed read hashed (``_compat.tap_hashed_bytes``): no file read back or stat after.
        self.digests_writes = self.on_disk and written.watch_writes(cm)
        if self.native_hash:
            from .._compat import tap_hashed_bytes

            self.native_hash = tap_hashed_bytes(cm, written.note_read)
        # API path -> OS path, a pure function of the path and the (fixed) root directory;
        # resolving it costs more than hashing a small notebook, and a notebook is read often.
        self._os_paths: dict[str, str] = {}

    def os_path(self, path: str) -> str | None:
        """The manager's OS path for ``path`` (None for a path it refuses)."""
        os_path = self._os_paths.get(path)
        if os_path is None:
            try:
                os_path = str(self.cm._get_os_path(path))
            except Exception:  # a path the manager refuses: recorded without a hash
                return None
            _remember(self._os_paths, path, os_path)
        return os_path

    def digest(self, path: str, model: dict[str, Any] | None) -> tuple[int, str] | None:
        """What was read or written: the file on disk when file based, else the model.

        ``_TOO_BIG`` for a file over the inline limit, which the caller hashes in a thread.
        """
        if model is not None and model.get("type") == "directory":
            return None
        if not self.on_disk:
            return _hash_model(model)
        os_path = self.os_path(path)
        return None if os_path is None else hash_file(os_path, _HASH_INLINE_LIMIT)

    def read_hashed(self, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether this notebook read can take its sha256 from the manager (``require_hash``)
        instead of reading the file again once the manager has read it.

        Why: the manager hashes the very bytes it parsed, so the record names exactly what the
        client got (reading the file again left a window in which it could change), without a
        second open and read. Its CPU is within the noise either way: one pair of runs of
        ``benchmarks.paired`` (100 pairs each) read 1.8 % less per small-notebook read just
        saved, net of an A/A run, and another none. Only for notebooks: jupyter_server
        hashes on the event loop, where it parses and validates the same notebook anyway (far
        more work than its hash); other files keep ``hash_file``, in a thread when large. Not
        when the caller passes ``require_hash`` positionally or the manager hashes otherwise.
        """
        return (
            self.native_hash
            and len(args) < 5
            and (kwargs.get("type") == "notebook" or path.endswith(".ipynb"))
            and getattr(self.cm, "hash_algorithm", None) == "sha256"
        )

    def read_size(self, path: str) -> int | None:
        """Size of the file a hashed read read: its target's when ``path`` is a symlink (the
        model's own ``size`` is the link's, from ``lstat``). Taken just after the read; a write
        in between would make it disagree with the hash, which stays the exact one."""
        os_path = self.os_path(path)
        try:
            return None if os_path is None else os.stat(os_path).st_size  # noqa: PTH116
        except OSError:
            return None

    def wrap(self, method: str, operation: str, path_arg: int = 0) -> None:
        """Replace ``cm.<method>`` by an audited one (one coroutine: no await of helpers on the
        common path, since every frame in the chain is crossed again at each resumption)."""
        original = getattr(self.cm, method)
        trail = self.trail
        is_get = operation == "get"
        with_target = operation in ("rename", "copy")
        to_name = "new_path" if operation == "rename" else "to_path"
        with_model = operation in ("save", "new")
        hashed = operation in ("get", "save", "new", "new_untitled", "copy")
        # Digests of what the operation writes, taken as it writes (``written``).
        digests = hashed and not is_get and self.digests_writes

        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _in_audited_call.get() or (is_get and not kwargs.get("content", True)):
                # Nested (copy calling get and save) or metadata only (not a read).
                result = original(*args, **kwargs)
                return await result if _awaitable(result) else result
            _in_audited_call.set(True)
            sink = None
            try:
                user = current_user()
                path = str(_arg(args, kwargs, path_arg, "path", "") or "").strip("/")
                data: dict[str, Any] = {"operation": operation, "path": path}
                if with_target:
                    to = _arg(args, kwargs, 1, to_name, None)
                    data["to_path"] = str(to).strip("/") if to else None
                model = _arg(args, kwargs, 0, "model", None) if with_model else None
                if isinstance(model, dict) and model.get("chunk") is not None:
                    data["operation"] = "upload"
                    data["chunk"] = int(model["chunk"])
                gate(trail, user, "contents", operation)
                # The caller's own hash request: its model keeps the hash (else it is cleared).
                hashed_read = is_get and self.read_hashed(path, args, kwargs)
                asked = False
                if hashed_read:
                    asked = kwargs.get("require_hash", False)
                    kwargs = {**kwargs, "require_hash": True}
                if digests or hashed_read:  # a hashed read notes the size of what it hashed
                    sink = written.begin()
                try:
                    result = original(*args, **kwargs)
                    if _awaitable(result):
                        result = await result
                except BaseException as exc:
                    data["status"] = _status_of(exc)
                    data["error"] = str(getattr(exc, "log_message", None) or exc)[:300]
                    await acknowledge(trail, "contents", data, user)
                    raise
                data["status"] = "ok"
                if isinstance(result, dict):
                    if is_get and result.get("type") == "directory":
                        data["operation"] = "list"
                    if operation in ("new", "new_untitled"):
                        data["path"] = result.get("path")
                    elif operation == "copy":
                        data["to_path"] = result.get("path")
                    data["content_type"] = result.get("type")
                if hashed_read and isinstance(result, dict) and result.get("hash"):
                    size = written.read_size(sink) if sink is not None else None
                    data["size"] = self.read_size(path) if size is None else size
                    data["sha256"] = result["hash"]
                    if not asked:  # the model the caller gets is the one it asked for
                        result["hash"] = result["hash_algorithm"] = None
                elif hashed:
                    target = str(
                        (data.get("to_path") if operation == "copy" else data["path"]) or ""
                    )
                    source = result if isinstance(result, dict) else model
                    # What this operation wrote there, else (not written through the
                    # manager's atomic_writing, or not exactly) the file or model as before.
                    digest = written.written(sink, self.os_path(target)) if sink else None
                    if digest is None:
                        digest = self.digest(target, source)
                    if digest is _TOO_BIG:  # only from a file on disk: its path is known
                        big = self.os_path(target)
                        assert big is not None
                        digest = await asyncio.to_thread(hash_file, big)
                    if digest is not None:
                        data["size"], data["sha256"] = digest
                if operation == "new_untitled":
                    data["operation"] = "new"
                if not trail.write_now("contents", data, user=user):
                    await acknowledge(trail, "contents", data, user)
                return result
            finally:
                # The flag was unset on entry (the nested case returned above). Set back, not
                # reset(token): a caller that steps this coroutine in another context (seen with
                # jupyter-server-documents' rooms) would make reset raise and lose the result.
                _in_audited_call.set(False)
                if sink is not None:
                    written.end()

        setattr(self.cm, method, wrapper)


def _awaitable(result: Any) -> bool:
    """``inspect.isawaitable``, answering the usual case (an async manager's coroutine) first:
    the wrapper runs for every nested call of a save too."""
    return type(result) is CoroutineType or inspect.isawaitable(result)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, dflt: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else dflt


def gate(trail: AuditTrail, user: Any, resource: str, action: str) -> None:
    """Fail closed: refuse (503) and record the refusal while the trail cannot be written."""
    if trail.refusing():
        trail.record(
            "denied",
            {
                "resource": resource,
                "action": action,
                "reason": "audit trail unavailable (fail-closed)",
                "status": 503,
            },
            user=user,
        )
        raise web.HTTPError(503, "the audit trail cannot be written; data access is suspended")


async def acknowledge(trail: AuditTrail, kind: str, data: dict[str, Any], user: Any) -> None:
    """Record, and hold the answer until the record is durable (the trail's durability policy)."""
    if not await trail.record_acknowledged(kind, data, user=user) and trail.fail_closed:
        raise web.HTTPError(503, "the audit trail did not acknowledge the access")


_CONTENTS_METHODS = (
    ("get", "get", 0),
    ("save", "save", 1),
    ("delete", "delete", 0),
    ("rename", "rename", 0),
    ("copy", "copy", 0),
    ("new", "new", 1),
    ("new_untitled", "new_untitled", 0),
    ("create_checkpoint", "checkpoint_create", 0),
    ("restore_checkpoint", "checkpoint_restore", 1),
    ("delete_checkpoint", "checkpoint_delete", 1),
)


def _install_contents(cm: Any, trail: AuditTrail) -> None:
    from jupyter_server.services.contents.manager import AsyncContentsManager

    if not isinstance(cm, AsyncContentsManager):
        # Sync managers call their own methods synchronously: async wrappers would break them.
        trail.log.warning("contents auditing needs an async contents manager; %s is not", cm)
        return
    auditor = _ContentsAuditor(cm, trail)
    for method, operation, path_arg in _CONTENTS_METHODS:
        auditor.wrap(method, operation, path_arg)


async def _audit_download(handler: Any, path: str, os_path: str | None) -> None:
    app = handler.settings[SETTINGS_KEY]
    trail: AuditTrail = app.audit
    user = handler.current_user
    gate(trail, user, "files", "download")
    data: dict[str, Any] = {"operation": "download", "path": path.strip("/")}
    digest = None
    if os_path is not None:
        digest = hash_file(os_path, _HASH_INLINE_LIMIT)
        if digest is _TOO_BIG:
            digest = await asyncio.to_thread(hash_file, os_path)
    if digest is None and os_path is not None:
        data["status"] = "not_found"
    else:
        data["status"] = "ok"
        if digest:
            data["size"], data["sha256"] = digest
    if trail.write_now("contents", data, user=user):
        return
    token = _in_audited_call.set(True)  # the files handler's own cm.get is this download
    try:
        await acknowledge(trail, "contents", data, user)
    finally:
        _in_audited_call.reset(token)


# The files handlers' own get without their authentication and authorization decorators: ours
# apply the same two checks once, before the download is recorded.
_STATIC_GET = inspect.unwrap(AuthenticatedFileHandler.get)
_FILES_GET = inspect.unwrap(FilesHandler.get)


class AuditedStaticFilesHandler(AuthenticatedFileHandler):
    """``/files/`` for file-based contents managers, each download recorded before serving."""

    @web.authenticated
    @authorized
    async def get(self, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        if include_body:
            try:
                os_path: str | None = self.get_absolute_path(self.root, path)
            except Exception:
                os_path = None
            await _audit_download(self, path, os_path)
        served = _STATIC_GET(self, path, include_body=include_body)
        if served is not None:
            await served


class AuditedFilesHandler(FilesHandler):
    """``/files/`` for other contents managers (served through ``cm.get``), audited."""

    @web.authenticated
    @authorized
    async def get(self, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        if include_body:
            await _audit_download(self, path, None)
        token = _in_audited_call.set(True)
        try:
            served = _FILES_GET(self, path, include_body=include_body)
            if served is not None:
                await served
        finally:
            _in_audited_call.reset(token)


def link(serverapp: Any) -> None:
    """Server-level settings, before the server builds its configurables (never the user's)."""
    config = serverapp.config
    if any("files_handler_class" in config.get(s, {}) for s in _CM_CONFIG_SECTIONS):
        return
    from jupyter_server.services.contents.filemanager import FileContentsManager

    cm_class = serverapp.contents_manager_class
    if isinstance(cm_class, type) and issubclass(cm_class, FileContentsManager):
        config.ContentsManager.files_handler_class = AuditedStaticFilesHandler
    else:
        config.ContentsManager.files_handler_class = AuditedFilesHandler


def _install_kernels(
    km: Any,
    trail: AuditTrail,
    owners: dict[str, str],
    on_shutdown: Callable[[str], None] | None = None,
) -> None:
    def kernel_name(kernel_id: str) -> str | None:
        try:
            return str(km.get_kernel(kernel_id).kernel_name)
        except Exception:
            return None

    def wrap(method: str, action: str) -> None:
        original = getattr(km, method)

        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            kid = _arg(args, kwargs, 0, "kernel_id", None)
            name = kernel_name(kid) if kid else kwargs.get("kernel_name")
            act = "cull" if action == "shutdown" and _culling.get() else action
            data: dict[str, Any] = {"action": act, "kernel_id": kid or "", "kernel_name": name}
            try:
                result = await ensure_async(original(*args, **kwargs))
            except BaseException as exc:
                data["status"], data["error"] = "error", str(exc)[:300]
                trail.record("kernel", data, user=user)
                raise
            if action == "start":
                data["kernel_id"] = str(result)
                data["kernel_name"] = kernel_name(str(result)) or name or km.default_kernel_name
                if user is not None:
                    owners[str(result)] = str(getattr(user, "username", user))
                watch(str(result), data["kernel_name"])
            data["status"] = "ok"
            await acknowledge(trail, "kernel", data, user)
            if action == "shutdown":
                owners.pop(str(kid), None)
                if on_shutdown is not None:
                    on_shutdown(str(kid))
            return result

        setattr(km, method, wrapper)

    def watch(kernel_id: str, name: str | None) -> None:
        """Crashes: the restarter's automatic restarts and the final death, with the owner."""

        def on_event(action: str, status: str) -> None:
            data = {"action": action, "kernel_id": kernel_id, "kernel_name": name, "status": status}
            trail.record("kernel", data, user=owners.get(kernel_id))
            if action == "dead":
                owners.pop(kernel_id, None)
                if on_shutdown is not None:
                    on_shutdown(kernel_id)

        kernel = km.get_kernel(kernel_id)
        kernel.add_restart_callback(lambda: on_event("restart", "auto"), "restart")
        kernel.add_restart_callback(lambda: on_event("dead", "restart limit reached"), "dead")

    for method, action in (
        ("start_kernel", "start"),
        ("restart_kernel", "restart"),
        ("interrupt_kernel", "interrupt"),
        ("shutdown_kernel", "shutdown"),
    ):
        wrap(method, action)
    cull = km.cull_kernel_if_idle

    @functools.wraps(cull)
    async def cull_wrapper(kernel_id: str) -> Any:
        token = _culling.set(True)
        try:
            return await cull(kernel_id)
        finally:
            _culling.reset(token)

    km.cull_kernel_if_idle = cull_wrapper


def _install_denied(app: Any, trail: AuditTrail) -> None:
    web_app = app.serverapp.web_app
    original = web_app.settings.get("log_function")

    def log_function(handler: web.RequestHandler) -> None:
        if original is not None:
            original(handler)
        status = handler.get_status()
        if status not in (401, 403) or getattr(handler, "_prod_discovery_denied_recorded", False):
            return
        trail.record(
            "denied",
            {
                "resource": handler.request.path,
                "action": handler.request.method or "",
                "method": handler.request.method,
                "status": status,
                "reason": getattr(handler, "_reason", None),
            },
            user=handler.__dict__.get("_current_user"),
        )

    web_app.settings["log_function"] = log_function
    # ExtensionApp copies the web app's settings into its own and writes them all back after
    # initialize_settings: without this the original log_function would win again.
    app.settings["log_function"] = log_function


def install(
    app: Any,
    trail: AuditTrail,
    owners: dict[str, str] | None = None,
    on_shutdown: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Wire the recorders into the running server; returns the kernel id -> owner map."""
    serverapp = app.serverapp
    owners = {} if owners is None else owners
    _install_contents(serverapp.contents_manager, trail)
    _install_kernels(serverapp.kernel_manager, trail, owners, on_shutdown)
    _install_denied(app, trail)
    return owners
