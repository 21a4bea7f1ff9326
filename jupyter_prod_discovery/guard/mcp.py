"""jupyter-mcp-server (AI agents' tools) as a server extension: marked, or refused when remote.

Its local backend runs code through a kernel client of this server (``GuardedKernelClient``), and
a hook on its declared ``HookRegistry`` (:class:`McpHook`) marks each tool call's executions
``mcp:<tool>`` with the authenticated user. It can also be set to run code elsewhere, where no
guard or audit of this server applies:

- ``JupyterMCPServerExtensionApp.code_sandbox_url`` (or ``document_url``) not ``"local"``: a
  remote Jupyter server;
- its ``sandbox_variant`` other than ``jupyter-server``: the ``code-sandboxes`` package (E2B,
  Modal, Docker, in-process ``eval``...);
- its ``connect_to_jupyter`` tool, which switches both URLs to a server an agent names.

Such a configuration is the ``mcp-remote`` path (``ExecutionPaths``): refused unless
``c.ExecutionPaths.allow_unguarded`` names it. Refused at start, the MCP endpoints answer 403
with the reason; switched to at run time, every tool call is refused with it (the hook raises,
and jupyter-mcp-server returns the error to the agent), and ``connect_to_jupyter`` to a remote
server is refused before it switches anything. ``/status`` shows the path and the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tornado import web

from .attribution import _VIA, current_request_user, mark_via, unmark

if TYPE_CHECKING:
    from jupyter_server.base.handlers import JupyterHandler as _Handler

    from .paths import ExecutionPaths
else:
    _Handler = object

__all__ = ["PATH", "McpHook", "McpRefusal", "remote_reason"]

PATH = "mcp-remote"
#: The variant of jupyter-mcp-server that runs code in this Jupyter server's kernels.
LOCAL_VARIANT = "jupyter-server"
#: Its tools that point it at another server (their argument naming it).
_SWITCHING_TOOLS = {"connect_to_jupyter": "jupyter_url"}


def _remote(url: Any) -> bool:
    return url is not None and str(url).strip() not in ("local", "", "None", "none", "null")


def remote_reason(
    code_sandbox_url: Any = "local", document_url: Any = "local", variant: Any = None
) -> str | None:
    """Why jupyter-mcp-server would run code where this server's guard cannot see, or None."""
    found = []
    if _remote(code_sandbox_url):
        found.append(f"code_sandbox_url = {str(code_sandbox_url)!r} (a remote Jupyter server)")
    if _remote(document_url):
        found.append(f"document_url = {str(document_url)!r} (a remote Jupyter server)")
    if variant is not None and _normalize(variant) != LOCAL_VARIANT:
        found.append(f"sandbox_variant = {str(variant)!r} (code-sandboxes, outside this server)")
    if not found:
        return None
    return "jupyter-mcp-server is set to run code outside this server's kernels: " + "; ".join(
        found
    )


def _normalize(variant: Any) -> str:
    try:
        from code_sandboxes import normalize_variant

        return str(normalize_variant(str(variant)))
    except Exception:  # an unknown name is not the local variant either
        return str(variant).strip().lower().replace("_", "-")


def live_reason() -> str | None:
    """``remote_reason`` of jupyter-mcp-server's live configuration (tools may change it)."""
    try:
        from jupyter_mcp_server.config import get_config
    except ImportError:
        return None
    config = get_config()
    return remote_reason(
        config.code_sandbox_url, config.document_url or "local", config.sandbox_variant
    )


def startup_reason(ext_app: Any) -> str | None:
    """``remote_reason`` of the extension's traits and the package's configured variant."""
    try:
        from jupyter_mcp_server.config import get_config

        variant = get_config().sandbox_variant
    except ImportError:
        variant = None
    return remote_reason(
        getattr(ext_app, "code_sandbox_url", "local"),
        getattr(ext_app, "document_url", "local"),
        variant,
    )


def refresh(paths: ExecutionPaths) -> str | None:
    """Bring the ``mcp-remote`` state in line with the live configuration; the refusal message
    while it is refused, else None."""
    reason = live_reason()
    if reason is None:
        if PATH in paths.states:  # set back to this server's kernels
            paths.states.pop(PATH)
            paths.reasons.pop(PATH, None)
            paths.states["mcp"] = "guarded"
        return None
    if paths.reasons.get(PATH) != reason:
        paths.states.pop("mcp", None)
        paths.decide(PATH, False, reason)
    return paths.refusal(PATH)


class McpHook:
    """jupyter-mcp-server hook: its tool calls run code as ``mcp:<tool>`` for the request's user,
    and none runs while it is set to execute outside this server (unless allowed)."""

    # Errors of this hook must not pass silently: an execution it cannot mark is refused.
    propagate_errors = True

    def __init__(self, paths: ExecutionPaths) -> None:
        self.paths = paths

    def _check(self, tool: str | None, arguments: Any, user: Any) -> None:
        """Refuse (raise) a tool call or an execution that would run outside this server."""
        paths = self.paths
        target = _SWITCHING_TOOLS.get(tool or "")
        url = arguments.get(target) if target and isinstance(arguments, dict) else None
        if _remote(url) and PATH not in paths.allow_unguarded:
            self._deny(
                tool,
                f"Prod Discovery: the tool {tool} would point jupyter-mcp-server at {url!r}, "
                "where this server's PII guard and audit do not apply "
                f"(c.ExecutionPaths.allow_unguarded = ['{PATH}'] allows it)",
                user,
            )
        message = refresh(paths)
        if message is not None:
            self._deny(tool, message, user)

    def _deny(self, tool: str | None, message: str, user: Any) -> None:
        audit = getattr(self.paths.app, "audit", None)
        if audit is not None:
            audit.record(
                "denied",
                {
                    "resource": f"mcp:{tool or 'execute'}",
                    "action": "execute",
                    "reason": message,
                    "status": 403,
                    "method": "POST",
                },
                user=user,
            )
        raise PermissionError(message)

    async def on_event(self, event: Any, context: Any = None, **kwargs: Any) -> None:
        name = str(getattr(event, "value", event))
        ctx = context if isinstance(context, dict) else {}
        live = current_request_user()
        user = live[1] if live else None
        if name == "before_tool_call":
            tool = str(kwargs.get("tool_name", "?"))
            self._check(tool, kwargs.get("arguments"), user)
            ctx["pd_via"] = f"mcp:{tool}"
            ctx["pd_token"] = mark_via(ctx["pd_via"], user)
        elif name == "after_tool_call":
            token = ctx.pop("pd_token", None)
            if token is not None:
                unmark(token)
        elif name == "before_execute":
            marked = _VIA.get()
            if marked and marked[1] is not None:
                user = marked[1]
            self._check(None, None, user)
            kernel_id, code = kwargs.get("kernel_id"), kwargs.get("code")
            via = marked[0] if marked else "mcp:execute"
            if kernel_id and isinstance(code, str):
                self.paths.attributions.expect(str(kernel_id), via, user, code=code)


class McpRefusal(_Handler):
    """Mixin for jupyter-mcp-server's handlers: 403 with the reason while ``mcp-remote`` is
    refused (its health check stays open: it runs nothing)."""

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        app = self.settings.get("prod_discovery")
        paths = getattr(app, "execution_paths", None)
        reason = refresh(paths) if paths is not None else None
        if reason is not None:
            raise web.HTTPError(403, reason=reason)
        await super().prepare(*args, **kwargs)


def gate_for(cls: type) -> type | None:
    """The mixin for one of jupyter-mcp-server's handlers, or None."""
    if not cls.__module__.startswith("jupyter_mcp_server") or cls.__name__ == "MCPHealthHandler":
        return None
    from tornado.web import RequestHandler

    return McpRefusal if issubclass(cls, RequestHandler) else None
