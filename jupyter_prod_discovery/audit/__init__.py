"""The tamper-evident audit trail: schemas, chain, sinks, verify/query/report, kernel shim."""
