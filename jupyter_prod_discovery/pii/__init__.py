"""A pure PII scanner: text in, findings out, no I/O."""
