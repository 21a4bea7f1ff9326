"""The tamper-evident audit trail: schemas, chain, sinks, verify/query/report and the kernel shim."""
