"""Wiring the audit trail into the server (called from the audit section of extension.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from traitlets.config import Configurable

from . import recording
from .shim_listener import ShimListener
from .sinks import JSONLSink, PostgresSink, ServiceSink
from .trail import AuditTrail

__all__ = ["CONFIG_CLASSES", "create", "link", "start", "stop"]

# Configurables of the audit trail, listed in the app's ``classes`` for --help-all.
CONFIG_CLASSES: list[type[Configurable]] = [AuditTrail, JSONLSink, PostgresSink, ServiceSink]


def link(serverapp: Any) -> None:
    """Before the server builds its configurables: the auditing ``/files/`` handler."""
    recording.link(serverapp)


def create(app: Any) -> AuditTrail:
    """The trail, with contents/kernel/denied recording installed (writer not started yet).

    A client of the trusted service ships its records there unless sinks were configured.
    """
    kwargs: dict[str, Any] = {}
    service_url = getattr(app, "service_url", "")
    if service_url:
        if "url" not in app.config.ServiceSink:
            app.config.ServiceSink.url = service_url
        if "sink_classes" not in app.config.AuditTrail:
            kwargs["sink_classes"] = [ServiceSink]
    trail = AuditTrail(
        **kwargs,
        parent=app,
        secrets_provider=app.secrets.all,
        vault_client=lambda: app.vault.client if app.vault.configured else None,
    )
    owners: dict[str, str] = {}
    listener = ShimListener(trail, owners) if trail.kernel_shim else None
    app.audit_kernel_owners = recording.install(
        app, trail, owners, on_shutdown=listener.discard if listener else None
    )
    app.audit_shim_listener = listener
    if listener is not None:
        app.kernel_env_hooks.append(listener.env_hook)
    return trail


async def start(app: Any) -> None:
    """Open the sinks (may connect to PostgreSQL: off the event loop) and start the writer."""
    await asyncio.to_thread(app.audit.start)
    listener = getattr(app, "audit_shim_listener", None)
    if listener is not None:
        # Bound now, not at the first kernel start: a port taken between the moment a kernel's
        # ports are chosen and the moment it binds them would fail that start.
        listener.address()


async def stop(app: Any) -> None:
    """Last of all: record kernels going down with the server, flush, checkpoint, close."""
    trail: AuditTrail = app.audit
    km = getattr(app.serverapp, "kernel_manager", None)
    for kid in list(km.list_kernel_ids()) if km is not None else []:
        trail.record(
            "kernel",
            {"action": "shutdown", "kernel_id": kid, "status": "server_stop"},
        )
    listener = getattr(app, "audit_shim_listener", None)
    if listener is not None:
        listener.close()
    await asyncio.to_thread(trail.stop)
