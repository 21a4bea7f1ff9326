"""``GET /prod-discovery/api/audit/events``: the trail for compliance, refused to everyone else.

Two checks, both required: the server's authorizer must allow ``read`` on
``prod_discovery_audit`` (JupyterHub deployments grant it with a scope), and the user must be in
``AuditTrail.compliance_users`` or ``compliance_groups``, so that under the default allow-all
authorizer ordinary users are refused. Every refusal is itself recorded as ``denied``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado import web

from ..handlers import API, ProdDiscoveryHandler, map_errors
from .query import Filters, select
from .trail import AuditTrail

__all__ = ["AUDIT_RESOURCE", "AuditEventsHandler", "audit_handlers"]

AUDIT_RESOURCE = "prod_discovery_audit"
MAX_LIMIT = 10_000


class AuditEventsHandler(ProdDiscoveryHandler):
    """Audit records filtered by user, since, until, type, path and kernel (newest last)."""

    auth_resource = AUDIT_RESOURCE

    @web.authenticated
    @map_errors
    async def get(self) -> None:
        trail = self.app.audit
        if not isinstance(trail, AuditTrail):
            raise web.HTTPError(404, "the audit trail is disabled")
        user = self.current_user
        allowed = self.authorizer.is_authorized(self, user, "read", AUDIT_RESOURCE)
        if not (allowed and trail.is_compliance(user)):
            self._prod_discovery_denied_recorded = True
            trail.record(
                "denied",
                {
                    "resource": AUDIT_RESOURCE,
                    "action": "read",
                    "method": "GET",
                    "status": 403,
                    "reason": "not a compliance user" if allowed else "authorizer refused",
                },
                user=user,
            )
            raise web.HTTPError(403, "reading the audit trail needs the compliance permission")
        limit = int(self.get_argument("limit", "1000"))
        if not 0 < limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        filters = Filters(
            user=self.get_argument("user", None),
            since=self.get_argument("since", None),
            until=self.get_argument("until", None),
            kind=self.get_argument("type", None),
            path=self.get_argument("path", None),
            kernel=self.get_argument("kernel", None),
        )
        sink = trail.sinks[0]
        events: list[dict[str, Any]] = await asyncio.to_thread(
            lambda: select(sink.read_lines(), filters, limit)
        )
        self.write_json({"events": events, "count": len(events)})


audit_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"{API}/audit/events", AuditEventsHandler),
]
