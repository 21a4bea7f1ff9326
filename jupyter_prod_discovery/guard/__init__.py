"""The kernel websocket hook: execute requests to the audit trail, outputs through the PII policy."""
