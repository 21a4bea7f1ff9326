"""The seam every capability uses to put an event on the audit trail.

Capabilities call ``app.audit.record(kind, data, user=...)``; the audit subpackage decides how it
becomes a schema-validated, chained, MACed record in the sinks. ``record`` must never block the
event loop for I/O and never raise into the caller's request path for a sink problem (the
fail-closed option is enforced separately, before data is served).

Kinds and the keys their ``data`` carries (the schemas in ``event_schemas/`` are authoritative):

- ``contents``: operation, path, status (ok|denied|not_found|error), size, sha256, to_path
- ``kernel``: action (start|restart|interrupt|shutdown|cull|dead), kernel_id, kernel_name
- ``execution``: phase (request|reply), kernel_id, session, msg_id, cell_id, code_sha256, code,
  status, via (the path: websocket, rest:..., server-side:..., mcp:<tool>, server)
- ``credential``: action (issue|renew|revoke|failure|expiring|orphan_revoke), kernel_id, profile,
  lease_id, request_id, ttl, error
- ``datasource``: kernel_id, kind (file|sqlite|socket|dbapi), target, count
- ``pii``: source (live|save|scan|export), kernel_id, path, cell, output, entities ({type: count}),
  action (allow|warn|redact|block)
- ``export``: action (export|promote|override|verify), path, target, bundle, manifest_sha256,
  gates ([{name, passed, reason}]), reason
- ``denied``: resource, action, reason
- ``terminal``: action (open|input|close), terminal, line, seq, input_lines, output_bytes,
  output_sha256
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["AUDIT_KINDS", "AuditRecorder", "NullRecorder"]

AUDIT_KINDS = (
    "contents",
    "kernel",
    "execution",
    "credential",
    "datasource",
    "pii",
    "export",
    "denied",
    "terminal",
)


@runtime_checkable
class AuditRecorder(Protocol):
    """Anything that accepts audit events."""

    def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> int | None:
        """Record one event of ``kind``; ``user`` is a jupyter_server ``User`` or None.

        May return a ticket that ``AuditTrail.wait_written`` accepts (callers may ignore it).
        """


class NullRecorder:
    """Drops events: used when the audit guard is disabled, and in unit tests of other parts."""

    def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> None:
        if kind not in AUDIT_KINDS:
            raise ValueError(f"unknown audit event kind {kind!r}")
