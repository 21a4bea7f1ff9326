"""The Discovery session summary that export manifests take from the audit trail."""

from __future__ import annotations

from pathlib import Path

from audit_support import KEY
from traitlets.config import Config

from jupyter_prod_discovery.audit.session import summarize_session
from jupyter_prod_discovery.audit.trail import AuditTrail


def _trail(tmp_path: Path) -> AuditTrail:
    config = Config(
        {
            "AuditTrail": {"mac_key": KEY, "spool_dir": str(tmp_path / "spool")},
            "JSONLSink": {"path": str(tmp_path / "audit.jsonl")},
        }
    )
    return AuditTrail(config=config, secrets_provider=frozenset)


def _session_lines(tmp_path: Path) -> list[str]:
    """The trail's lines after a session of ann's and one of bob's, written and flushed."""
    trail = _trail(tmp_path)
    trail.start()
    _session(trail)
    assert trail.flush()
    trail.stop()
    return list(trail.sinks[0].read_lines())


def _session(trail: AuditTrail) -> None:
    trail.record("kernel", {"action": "start", "kernel_id": "k-ann"}, user="ann")
    trail.record(
        "credential",
        {"action": "issue", "kernel_id": "k-ann", "profile": "warehouse", "lease_id": "db/1"},
        user="ann",
    )
    for _ in range(3):
        trail.record(
            "datasource",
            {"kernel_id": "k-ann", "kind": "dbapi", "target": "postgresql://db/sales", "count": 2},
            user="ann",
        )
    trail.record(
        "datasource",
        {"kernel_id": "k-ann", "kind": "sqlite", "target": "/data/local.db", "count": 1},
        user="ann",
    )
    trail.record("kernel", {"action": "shutdown", "kernel_id": "k-ann"}, user="ann")
    # Another user's kernel: never in ann's manifest.
    trail.record("kernel", {"action": "start", "kernel_id": "k-bob"}, user="bob")
    trail.record(
        "credential",
        {"action": "issue", "kernel_id": "k-bob", "profile": "fraud", "lease_id": "db/2"},
        user="bob",
    )
    trail.record(
        "datasource",
        {"kernel_id": "k-bob", "kind": "file", "target": "/secret/fraud.csv", "count": 5},
        user="bob",
    )


def test_summarize_session_selects_the_owners_kernels(tmp_path: Path) -> None:
    summary = summarize_session(_session_lines(tmp_path), "ann")
    assert summary["credential_profiles"] == ["warehouse"]
    assert summary["data_sources"] == [
        {"kind": "dbapi", "target": "postgresql://db/sales", "count": 6},
        {"kind": "sqlite", "target": "/data/local.db", "count": 1},
    ]


def test_summarize_session_without_owner_takes_every_kernel(tmp_path: Path) -> None:
    summary = summarize_session(_session_lines(tmp_path), None)
    assert summary["credential_profiles"] == ["fraud", "warehouse"]
    assert {s["target"] for s in summary["data_sources"]} == {
        "postgresql://db/sales",
        "/data/local.db",
        "/secret/fraud.csv",
    }


def test_summarize_session_skips_broken_lines() -> None:
    lines = ["not json", "[1, 2]", '{"kind": "datasource", "data": {"kernel_id": "k"}}']
    assert summarize_session(lines, "ann") == {"data_sources": [], "credential_profiles": []}
