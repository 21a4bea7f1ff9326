"""Wiring of the PII guard into the server, called from the marked sections of extension.py."""

from __future__ import annotations

from typing import Any

from traitlets.config import Configurable

from ..pii.policy import PIIPolicy
from .connection import GuardedWebsocketConnection
from .live import PIIGuard
from .save import make_pre_save_hook

__all__ = ["CONFIG_CLASSES", "active", "create", "link", "stop"]

# Configurables of the guard, listed in the app's ``classes`` for --help-all.
CONFIG_CLASSES: list[type[Configurable]] = [PIIGuard, PIIPolicy]


def link(serverapp: Any) -> None:
    """Install the guarded websocket connection unless the user configured one explicitly."""
    if "kernel_websocket_connection_class" not in serverapp.config.get("ServerApp", {}):
        serverapp.kernel_websocket_connection_class = GuardedWebsocketConnection


def create(app: Any) -> PIIGuard:
    """Create ``app.pii_guard`` and register the save guard on the contents manager."""
    guard = PIIGuard(parent=app, secrets=app.secrets)
    app.pii_guard = guard
    cm = getattr(app.serverapp, "contents_manager", None)
    if cm is not None:
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
