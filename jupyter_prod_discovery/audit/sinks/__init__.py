"""Where chained audit records are stored: an ABC and the JSONL file and PostgreSQL sinks."""

from .base import AuditSink, SinkUnavailable
from .jsonl import JSONLSink
from .postgres import PostgresSink
from .service import ServiceSink

__all__ = ["AuditSink", "JSONLSink", "PostgresSink", "ServiceSink", "SinkUnavailable"]
