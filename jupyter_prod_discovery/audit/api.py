"""``GET /prod-discovery/api/audit/events``: the trail for compliance, refused to everyone else.

Two checks, both required: the server's authorizer must allow ``read`` on
``prod_discovery_audit`` (JupyterHub deployments grant it with a scope), and the user must be in
``AuditTrail.compliance_users`` or ``compliance_groups``, so that under the default allow-all
authorizer ordinary users are refused. Every refusal is itself recorded as ``denied``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tornado import web

from ..handlers import API, ProdDiscoveryHandler, map_errors
from .chain import VerifyResult, verify
from .cli import report_html
from .query import Filters, render, select
from .sinks.jsonl import read_checkpoint_file
from .trail import AuditTrail

__all__ = [
    "AUDIT_RESOURCE",
    "AuditEventsHandler",
    "AuditReportHandler",
    "AuditVerifyHandler",
    "audit_handlers",
    "can_read",
]

AUDIT_RESOURCE = "prod_discovery_audit"
MAX_LIMIT = 10_000


class AuditEventsHandler(ProdDiscoveryHandler):
    """Audit records filtered by user, since, until, type, path and kernel (newest last)."""

    auth_resource = AUDIT_RESOURCE

    @web.authenticated
    @map_errors
    async def get(self) -> None:
        trail = require_compliance(self)
        limit = int(self.get_argument("limit", "1000"))
        if not 0 < limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        filters = _filters(self)
        sink = trail.sinks[0]
        events: list[dict[str, Any]] = await asyncio.to_thread(
            lambda: select(sink.read_lines(), filters, limit)
        )
        if self.get_argument("format", "json") == "csv":
            # APIHandler.finish sets the JSON content type unless told otherwise.
            self.finish(render(events, "csv"), set_content_type="text/csv; charset=utf-8")
            return
        self.write_json({"events": events, "count": len(events)})


class AuditVerifyHandler(ProdDiscoveryHandler):
    """Verify the whole chain of the first sink with the server's MAC key and checkpoints.

    For the audit viewer: the result (intact or the first broken record), never the key.
    """

    auth_resource = AUDIT_RESOURCE

    @web.authenticated
    @map_errors
    async def get(self) -> None:
        trail = require_compliance(self)
        result = await asyncio.to_thread(verify_trail, trail)
        problem = result.problem
        self.write_json(
            {
                "ok": result.ok,
                "summary": result.summary(),
                "records": result.records,
                "last_seq": result.last_seq,
                "checkpoints": result.checkpoints,
                "warnings": result.warnings,
                "problem": None
                if problem is None
                else {
                    "index": problem.index,
                    "seq": problem.seq,
                    "what": problem.what,
                    "detail": problem.detail,
                },
            }
        )


class AuditReportHandler(ProdDiscoveryHandler):
    """The HTML report of ``jupyter prod-discovery audit report`` for the filtered events."""

    auth_resource = AUDIT_RESOURCE

    @web.authenticated
    @map_errors
    async def get(self) -> None:
        trail = require_compliance(self)
        filters = _filters(self)
        sink = trail.sinks[0]
        records = await asyncio.to_thread(lambda: select(sink.read_lines(), filters))
        result = await asyncio.to_thread(verify_trail, trail)
        self.finish(report_html(records, result), set_content_type="text/html; charset=utf-8")


def verify_trail(trail: AuditTrail) -> VerifyResult:
    """Verify what the first sink holds against its checkpoints (and the checkpoint file)."""
    sink = trail.sinks[0]
    checkpoints = list(sink.read_checkpoints())
    if trail.checkpoint_path and Path(trail.checkpoint_path).is_file():
        checkpoints.extend(read_checkpoint_file(trail.checkpoint_path))
    # The trail's own key: this module belongs to the audit package, the key never leaves it.
    return verify(sink.read_lines(), trail._key, checkpoints)


def _filters(handler: ProdDiscoveryHandler) -> Filters:
    return Filters(
        user=handler.get_argument("user", None),
        since=handler.get_argument("since", None),
        until=handler.get_argument("until", None),
        kind=handler.get_argument("type", None),
        path=handler.get_argument("path", None),
        kernel=handler.get_argument("kernel", None),
    )


def can_read(handler: ProdDiscoveryHandler) -> bool:
    """Whether the caller may read the trail: the authorizer allows it and they are compliance.

    The status endpoint reports it so that the UI shows the audit viewer only to them; the
    endpoints above check it again on every request.
    """
    trail = handler.app.audit
    if not isinstance(trail, AuditTrail):
        return False
    user = handler.current_user
    allowed = handler.authorizer.is_authorized(handler, user, "read", AUDIT_RESOURCE)
    return bool(allowed and trail.is_compliance(user))


def require_compliance(handler: ProdDiscoveryHandler) -> AuditTrail:
    """The trail when the caller may read it; otherwise record ``denied`` and raise 403/404."""
    trail = handler.app.audit
    if not isinstance(trail, AuditTrail):
        raise web.HTTPError(404, "the audit trail is disabled")
    user = handler.current_user
    allowed = handler.authorizer.is_authorized(handler, user, "read", AUDIT_RESOURCE)
    if not (allowed and trail.is_compliance(user)):
        handler._prod_discovery_denied_recorded = True  # type: ignore[attr-defined]
        trail.record(
            "denied",
            {
                "resource": AUDIT_RESOURCE,
                "action": "read",
                "method": handler.request.method,
                "status": 403,
                "reason": "not a compliance user" if allowed else "authorizer refused",
            },
            user=user,
        )
        raise web.HTTPError(403, "reading the audit trail needs the compliance permission")
    return trail


audit_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"{API}/audit/events", AuditEventsHandler),
    (rf"{API}/audit/verify", AuditVerifyHandler),
    (rf"{API}/audit/report", AuditReportHandler),
]
