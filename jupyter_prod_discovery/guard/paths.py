"""Every path from a request to a kernel, or to a shell, through the same guard and audit.

Paths and how each is guarded (``ExecutionPaths.status`` reports them to ``/status``):

``kernel-websocket``
    ``ServerApp.kernel_websocket_connection_class``. Ours (``connection.py``) unless another
    extension replaced it: jupyter-server-documents' class is composed with the guard
    (``documents.py``), a ``ZMQChannelsWebsocketConnection`` subclass gets ours mixed in; any
    other class cannot be guarded, so kernel websockets are refused (403 with the reason)
    unless ``allow_unguarded`` names the path.
``kernel-client``
    Kernel clients inside the server (jupyter-server-nbmodel, jupyter-server-documents'
    server-side execution, jupyter-mcp-server's tools): ``GuardedKernelClient`` as the kernel
    managers' ``client_class``. A configured class not derived from it cannot be guarded: the
    execute endpoints are refused unless allowed.
``rest-execute`` / ``server-side-execute``
    ``POST /api/kernels/{id}/execute`` of jupyter-server-nbmodel / jupyter-server-documents. A
    gate on the handler states, at request time, who asked (``attribution.py``); nbmodel's
    execution on a *remote* Jupyter server (``"server"`` in the body) passes no guard of ours
    and is refused unless ``allow_unguarded`` names ``nbmodel-remote``.
``mcp`` / ``mcp-remote``
    jupyter-mcp-server's tools: a hook on its ``HookRegistry`` marks the executions of each tool
    call (``mcp:<tool>``) with the authenticated user of the request (``mcp.py``); set to run
    code on a remote server or in a code sandbox, it cannot be guarded and is refused unless
    ``allow_unguarded`` names ``mcp-remote``.
``terminals``
    ``terminals.py``: audited and guarded, or refused, per ``ProdDiscoveryApp.terminals``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado import web
from traitlets import List, Unicode, validate
from traitlets.config import LoggingConfigurable

from . import mcp
from .attribution import Attributions
from .connection import GuardedWebsocketConnection
from .kernel_client import GuardedKernelClient, is_guarded
from .mcp import McpHook

__all__ = ["UNGUARDABLE", "ExecutionPaths", "link"]

CLIENT_CLASS = "jupyter_prod_discovery.guard.kernel_client.GuardedKernelClient"
#: Paths that may be allowed to run unguarded, by name (``ExecutionPaths.allow_unguarded``).
UNGUARDABLE = ("kernel-websocket", "kernel-client", "nbmodel-remote", mcp.PATH)
#: The hook registered on jupyter-mcp-server's process-wide HookRegistry (one server's).
_MCP_HOOK: Any = None
_CLIENT_SECTIONS = ("ServerKernelManager", "AsyncIOLoopKernelManager", "AsyncKernelManager")


def link(serverapp: Any) -> None:
    """Make the guarded client the kernel managers' client class, unless one is configured."""
    for section in _CLIENT_SECTIONS:
        if "client_class" in serverapp.config.get(section, {}):
            return
    serverapp.config.ServerKernelManager.client_class = CLIENT_CLASS


class ExecutionPaths(LoggingConfigurable):
    """Which paths to kernels exist in this server, and whether each passes the guard."""

    allow_unguarded = List(
        Unicode(),
        config=True,
        help=f"""Paths allowed to serve kernels without the PII guard and audit when they cannot
        be guarded, by name: {", ".join(UNGUARDABLE)}. Default [] (fail closed: such a path
        is refused with a 403 naming the reason, and /status shows it). 'kernel-websocket': a
        kernel websocket class we cannot compose with; 'kernel-client': a configured kernel
        client class not derived from GuardedKernelClient; 'nbmodel-remote':
        jupyter-server-nbmodel's execution on a remote Jupyter server; 'mcp-remote':
        jupyter-mcp-server set to run code on a remote Jupyter server or in a code-sandboxes
        variant (its code_sandbox_url or document_url not 'local', its sandbox_variant not
        'jupyter-server', or its connect_to_jupyter tool pointing it elsewhere).""",
    )

    @validate("allow_unguarded")
    def _check_allow(self, proposal: Any) -> list[str]:
        unknown = sorted(set(proposal["value"]) - set(UNGUARDABLE))
        if unknown:
            from traitlets import TraitError

            raise TraitError(
                f"ExecutionPaths.allow_unguarded: unknown path(s) {unknown}; "
                f"known: {list(UNGUARDABLE)}"
            )
        return list(proposal["value"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attributions = Attributions()
        #: The extension app (its audit), set by ``install``.
        self.app: Any = None
        #: path -> "guarded" | "refused" | "unguarded" (allowed) | "absent"
        self.states: dict[str, str] = {}
        self.reasons: dict[str, str] = {}

    # --- decisions ------------------------------------------------------------------------------
    def decide(self, path: str, guarded: bool, reason: str) -> str:
        if guarded:
            state = "guarded"
        elif path in self.allow_unguarded:
            state = "unguarded"
            self.log.warning("Prod Discovery: %s runs UNGUARDED (allowed): %s", path, reason)
        else:
            state = "refused"
            self.log.error("Prod Discovery: %s refused: %s", path, reason)
        self.states[path] = state
        if not guarded:
            self.reasons[path] = reason
        return state

    def refusal(self, path: str) -> str | None:
        """The reason ``path`` is refused, or None when it may serve."""
        if self.states.get(path) != "refused":
            return None
        return (
            f"Prod Discovery: {self.reasons.get(path, path)}. This path is refused because "
            f"the PII guard and audit cannot apply to it (c.ExecutionPaths.allow_unguarded = "
            f"['{path}'] allows it unguarded)."
        )

    def status(self) -> dict[str, Any]:
        return {
            "paths": dict(self.states),
            "reasons": dict(self.reasons),
            "ok": all(s != "unguarded" for s in self.states.values()),
        }

    # --- installation ---------------------------------------------------------------------------
    def install(self, app: Any) -> None:
        """At initialize_settings: settle the websocket class and the client class."""
        serverapp = app.serverapp
        self.app = app
        self.compose_websocket(serverapp, app.settings)
        km = getattr(serverapp, "kernel_manager", None)
        configured = None
        for section in _CLIENT_SECTIONS:
            configured = serverapp.config.get(section, {}).get("client_class", configured)
        if configured is None:
            configured = CLIENT_CLASS if km is not None else None
        self.decide(
            "kernel-client",
            configured is None or is_guarded(configured),
            f"the configured kernel client class {configured!r} is not derived from "
            "GuardedKernelClient",
        )
        self.install_mcp_hook(app)
        guard = getattr(app, "pii_guard", None)
        if guard is not None:
            # The first scan imports the pattern recognizers (~1 s). Done now on the guard's
            # worker thread, so no path's first output waits for it: jupyter-mcp-server, for
            # one, stops reading outputs 100 ms after the execute_reply.
            guard.submit(guard.text, "warm-up 536-22-1234 a@example.com", None)
        loop = getattr(serverapp, "io_loop", None)
        if loop is not None:
            # Other extensions add their routes after us (name order): gate them once all are.
            loop.add_callback(self.install_gates, app)

    def compose_websocket(self, serverapp: Any, settings: dict[str, Any]) -> None:
        """Compose the configured kernel websocket class with the guard, or refuse it.

        ``settings``: the extension's own, which the server copies back over its web app's
        settings after ``initialize_settings``.
        """
        cls = serverapp.kernel_websocket_connection_class
        new: type | None = None
        reason = f"the kernel websocket class {cls.__module__}.{cls.__qualname__} cannot be guarded"
        if issubclass(cls, GuardedWebsocketConnection) or getattr(cls, "pd_guarded", False):
            new = cls
        elif _is_documents_connection(cls):
            from .._compat import guarded_documents_connection

            new = guarded_documents_connection(cls)
        elif issubclass(cls, ZMQChannelsWebsocketConnection):
            new = type(f"Guarded{cls.__name__}", (GuardedWebsocketConnection, cls), {})
        state = self.decide("kernel-websocket", new is not None, reason)
        if new is not None and new is not cls:
            self.log.info("Prod Discovery: kernel websocket %s composed with the guard", cls)
            serverapp.kernel_websocket_connection_class = new
            serverapp.web_app.settings["kernel_websocket_connection_class"] = new
            settings["kernel_websocket_connection_class"] = new

        self.websocket_refused = state == "refused"

    def install_gates(self, app: Any) -> int:
        """Swap the handlers of the execute endpoints, terminals and (for directory copies
        with a contents manager not ours) contents for gated subclasses."""
        from .._compat import wrap_route_targets
        from . import save, terminals

        cm = getattr(app.serverapp, "contents_manager", None)

        def wrap(cls: type) -> type | None:
            if getattr(cls, "pd_gated", False):
                return None
            gate = (
                _gate_for(cls)
                or terminals.gate_for(cls)
                or save.gate_for(cls, cm)
                or mcp.gate_for(cls)
            )
            if gate is None:
                return None
            return type(f"Gated{cls.__name__}", (gate, cls), {"pd_gated": True})

        web_app = app.serverapp.web_app
        n = wrap_route_targets(web_app, wrap)
        if getattr(app, "terminals", "audit") == "deny":
            # JupyterLab reads this into page config: no terminal launcher to fail on.
            web_app.settings["terminals_available"] = False
            self.states["terminals"] = "denied"
            self.reasons["terminals"] = terminals.DENY_REASON
        elif web_app.settings.get("terminals_available"):
            self.states["terminals"] = "guarded"
        self.log.debug("Prod Discovery: %d handlers gated", n)
        return n

    def install_mcp_hook(self, app: Any) -> None:
        """Mark jupyter-mcp-server tool executions (its declared HookRegistry)."""
        enabled = app.serverapp.extension_manager.extensions.get("jupyter_mcp_server")
        if enabled is None or not getattr(enabled, "enabled", False):
            return
        try:
            from jupyter_mcp_server.hooks import HookRegistry
        except ImportError:
            return
        global _MCP_HOOK
        registry = HookRegistry.get_instance()
        if _MCP_HOOK is not None:  # a previous server of this process (tests): replaced
            with contextlib.suppress(ValueError):
                registry.unregister(_MCP_HOOK)
        _MCP_HOOK = McpHook(self)
        registry.register(_MCP_HOOK)
        point = enabled.extension_points.get("jupyter_mcp_server")
        reason = mcp.startup_reason(getattr(point, "app", None))
        if reason is None:
            self.states["mcp"] = "guarded"
        else:
            # Its endpoints are refused (``mcp.McpRefusal``) unless allowed.
            self.decide(mcp.PATH, False, reason)


def _is_documents_connection(cls: type) -> bool:
    try:
        from jupyter_server_documents.websocket_connection import KernelWebsocketConnection
    except ImportError:
        return False
    return issubclass(cls, KernelWebsocketConnection)


# --- gates on the execute endpoints -------------------------------------------------------------
if TYPE_CHECKING:
    from jupyter_server.base.handlers import APIHandler as _Handler
    from jupyter_server.services.kernels.websocket import KernelWebsocketHandler as _WsHandler
else:
    _Handler = _WsHandler = object


class _ExecuteGate(_Handler):
    """Mixin for an execute endpoint's handler: refuse when unguardable, else attribute."""

    pd_path = ""
    pd_via = ""
    _pd_expected: list[Any] | None = None

    def _pd_paths(self) -> ExecutionPaths | None:
        app = self.settings.get("prod_discovery")
        return getattr(app, "execution_paths", None)

    def _pd_kernel_id(self) -> str:
        kwargs = self.path_kwargs
        if "kernel_id" in kwargs:
            return str(kwargs["kernel_id"])
        args = self.path_args
        return str(args[0]) if args else ""

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        await super().prepare(*args, **kwargs)
        if self.request.method != "POST" or not self.current_user:
            return
        paths = self._pd_paths()
        if paths is None:
            raise web.HTTPError(403, reason="Prod Discovery: the execution guard is not running")
        reason = paths.refusal("kernel-client")
        if reason is not None:
            self._pd_refuse(reason)
        try:
            body = self.get_json_body() or {}
        except web.HTTPError:
            return  # the handler itself answers the bad body
        if not isinstance(body, dict):
            return
        self._pd_attribute(paths, body)

    def _pd_refuse(self, reason: str) -> None:
        app = self.settings.get("prod_discovery")
        audit = getattr(app, "audit", None)
        if audit is not None:
            audit.record(
                "denied",
                {
                    "resource": self.request.path,
                    "action": "execute",
                    "reason": reason,
                    "status": 403,
                    "method": "POST",
                },
                user=self.current_user,
            )
        raise web.HTTPError(403, reason=reason)

    def _pd_attribute(self, paths: ExecutionPaths, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def on_finish(self) -> None:
        paths = self._pd_paths()
        if self._pd_expected and paths is not None and self.get_status() >= 300:
            paths.attributions.withdraw(self._pd_kernel_id(), self._pd_expected)
        super().on_finish()


class NbmodelExecuteGate(_ExecuteGate):
    pd_via = "rest:jupyter-server-nbmodel"

    def _pd_attribute(self, paths: ExecutionPaths, body: dict[str, Any]) -> None:
        if body.get("server") is not None:
            if "nbmodel-remote" not in paths.allow_unguarded:
                self._pd_refuse(
                    "Prod Discovery: execution on a remote Jupyter server is refused: its "
                    "outputs and code pass no PII guard or audit of this server "
                    "(c.ExecutionPaths.allow_unguarded = ['nbmodel-remote'] allows it)"
                )
            return
        code = body.get("code")
        if isinstance(code, str):
            self._pd_expected = paths.attributions.expect(
                self._pd_kernel_id(),
                self.pd_via,
                self.current_user,
                code=code,
            )


class DocumentsExecuteGate(_ExecuteGate):
    pd_via = "server-side:jupyter-server-documents"

    def _pd_attribute(self, paths: ExecutionPaths, body: dict[str, Any]) -> None:
        cells = body.get("cells")
        if isinstance(cells, list) and cells:
            # Each cell as the API names it: its id and the hash of the source the user ran,
            # matched to the execute_request carrying that source (not to the order they run).
            named = [_cell_named(c) for c in cells]
            self._pd_expected = paths.attributions.expect(
                self._pd_kernel_id(), self.pd_via, self.current_user, cells=named
            )


def _cell_named(entry: Any) -> tuple[str | None, str | None]:
    """(cell_id, source_hash) of one entry of a jupyter-server-documents execute request."""
    if not isinstance(entry, dict):
        return (entry if isinstance(entry, str) else None), None
    cell, source_hash = entry.get("cell_id"), entry.get("source_hash")
    return (
        str(cell) if cell is not None else None,
        str(source_hash) if source_hash is not None else None,
    )


class WebsocketRefusal(_WsHandler):
    """Mixin for the kernel websocket handler when its connection class cannot be guarded."""

    async def pre_get(self) -> None:
        app = self.settings.get("prod_discovery")
        paths = getattr(app, "execution_paths", None)
        reason = paths.refusal("kernel-websocket") if paths is not None else None
        if reason is not None:
            raise web.HTTPError(403, reason=reason)
        await super().pre_get()


def _gate_for(cls: type) -> type | None:
    mod = cls.__module__
    if mod.startswith("jupyter_server_nbmodel") and cls.__name__ == "ExecuteHandler":
        return NbmodelExecuteGate
    if mod.startswith("jupyter_server_documents") and cls.__name__ == "KernelExecuteHandler":
        return DocumentsExecuteGate
    from jupyter_server.services.kernels.websocket import KernelWebsocketHandler

    if issubclass(cls, KernelWebsocketHandler):
        return WebsocketRefusal
    return None


__all__ += ["DocumentsExecuteGate", "GuardedKernelClient", "McpHook", "NbmodelExecuteGate"]
