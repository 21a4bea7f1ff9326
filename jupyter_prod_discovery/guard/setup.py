"""Wiring of the PII guard into the server, called from the marked sections of extension.py."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from typing import Any

from traitlets.config import Configurable

from ..credentials.environment import SECRET_NAMES
from ..pii.policy import PIIPolicy
from .connection import GuardedWebsocketConnection
from .live import SERVER_SECRETS, PIIGuard
from .save import GuardedContentsManager, SaveScanner, make_pre_save_hook

__all__ = ["CONFIG_CLASSES", "active", "create", "link", "server_secrets", "stop"]

# Configurables of the guard, listed in the app's ``classes`` for --help-all.
CONFIG_CLASSES: list[type[Configurable]] = [PIIGuard, PIIPolicy]


def link(serverapp: Any) -> None:
    """Install the guarded websocket connection and contents manager unless the user configured
    other classes explicitly (then the save guard falls back to a pre-save hook)."""
    configured = serverapp.config.get("ServerApp", {})
    if "kernel_websocket_connection_class" not in configured:
        serverapp.kernel_websocket_connection_class = GuardedWebsocketConnection
    if "contents_manager_class" not in configured:
        serverapp.contents_manager_class = GuardedContentsManager


def _looks_secret(value: str) -> bool:
    """A value worth redacting: long, one word, not a path or a plain address."""
    if len(value) < 8 or any(c.isspace() for c in value) or value.startswith(("/", "~")):
        return False
    return not ("://" in value and "@" not in value)


def server_secrets(serverapp: Any, deny: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The server's own secrets that a kernel could print: its login token, and the values of
    its environment variables whose names look secret (``KernelEnvironment.deny``: kernels do
    not inherit them, but a kernel of the same OS user can read them from the server)."""
    values = [str(v) for v in extra if v]
    token = getattr(getattr(serverapp, "identity_provider", None), "token", "") or ""
    values.append(str(token))
    patterns = [p.upper() for p in deny]
    for name, value in os.environ.items():
        upper = name.upper()
        # Denied to kernels *and* named like a secret: a deny-list entry such as JUPYTERHUB_*
        # also covers JUPYTERHUB_USER, whose value (the user's name) must not be redacted.
        if any(fnmatch.fnmatchcase(upper, p) for p in patterns) and any(
            fnmatch.fnmatchcase(upper, p) for p in SECRET_NAMES
        ):
            values.append(value)
    return [v for v in values if _looks_secret(v)]


def create(app: Any) -> PIIGuard:
    """Create ``app.pii_guard``; put the save guard on the contents manager."""
    guard = PIIGuard(parent=app, secrets=app.secrets)
    app.pii_guard = guard
    try:
        vault_token = getattr(getattr(app.vault, "client", None), "token", None)
    except Exception:  # a client not connected yet: its token is read from the environment
        vault_token = None
    deny = getattr(app.kernel_environment, "deny", ())
    app.secrets.set(SERVER_SECRETS, server_secrets(app.serverapp, deny, [vault_token or ""]))
    cm = getattr(app.serverapp, "contents_manager", None)
    scanner = SaveScanner(guard, app)
    if isinstance(cm, GuardedContentsManager):
        cm.pd_scanner = scanner
        cm.pd_inline = guard.inline_limit
    elif cm is not None:
        # Registered once the guard is on (at start or when turned on later), not before: the
        # server runs and debug-logs every registered hook on each save. Turned off again, the
        # hook stays and returns at once.
        hook = make_pre_save_hook(guard, app)
        registered: list[bool] = []

        def register(change: Any = None) -> None:
            if guard.enabled and not registered:
                cm.register_pre_save_hook(hook)
                registered.append(True)

        register()
        guard.observe(register, "enabled")
    return guard


def active(app: Any) -> bool:
    """For ``app.guards()['pii']``: the guard is on and the websocket class is ours."""
    guard = getattr(app, "pii_guard", None)
    cls = getattr(app.serverapp, "kernel_websocket_connection_class", None)
    return bool(
        guard is not None
        and guard.enabled
        and isinstance(cls, type)
        # ours, or another extension's class composed with the guard (guard/paths.py)
        and (issubclass(cls, GuardedWebsocketConnection) or getattr(cls, "pd_guarded", False))
    )


def stop(app: Any) -> None:
    guard = getattr(app, "pii_guard", None)
    if guard is not None:
        guard.close()
