"""Where chained audit records are stored: an ABC and the JSONL file and PostgreSQL sinks."""

from .base import AuditSink, SinkUnavailable
from .jsonl import JSONLSink
from .postgres import PostgresSink

__all__ = ["AuditSink", "JSONLSink", "PostgresSink", "SinkUnavailable"]
