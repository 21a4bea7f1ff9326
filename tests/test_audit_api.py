"""The audit endpoints the audit viewer uses: verify, report, CSV, and the status permission."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from audit_support import KEY
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.audit.sinks import JSONLSink
from jupyter_prod_discovery.audit.trail import AuditTrail

COMPLIANCE = pytest.mark.parametrize("compliance_users", [["*"]], indirect=True)


@pytest.fixture
def compliance_users(request: Any) -> list[str]:
    return list(getattr(request, "param", []))


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "log" / "audit.jsonl"


@pytest.fixture
def prod_discovery_extension_config(
    tmp_path: Path, log_path: Path, compliance_users: list[str]
) -> Any:
    return {
        "AuditTrail": {
            "sink_classes": [JSONLSink],
            "mac_key": KEY,
            "spool_dir": str(tmp_path / "spool"),
            "compliance_users": compliance_users,
        },
        "JSONLSink": {"path": str(log_path), "checkpoint_path": str(tmp_path / "cp.jsonl")},
    }


def started_trail(serverapp: Any) -> AuditTrail:
    """The server's trail with its writer running (pytest-jupyter never runs start hooks)."""
    trail = serverapp.web_app.settings["prod_discovery"].audit
    assert isinstance(trail, AuditTrail)
    trail.start()
    return trail


async def get(jp_fetch: Any, *path: str, **params: str) -> Any:
    return await jp_fetch("prod-discovery", "api", *path, params=params)


async def test_get_status_permissions_without_compliance(jp_fetch: Any, jp_serverapp: Any) -> None:
    started_trail(jp_serverapp)
    body = json.loads((await get(jp_fetch, "status")).body)
    assert body["permissions"] == {"audit": False}


@COMPLIANCE
async def test_get_status_permissions_for_compliance(jp_fetch: Any, jp_serverapp: Any) -> None:
    started_trail(jp_serverapp)
    body = json.loads((await get(jp_fetch, "status")).body)
    assert body["permissions"] == {"audit": True}


@pytest.mark.parametrize("endpoint", ["verify", "report"])
async def test_get_audit_endpoint_refused_to_ordinary_users(
    jp_fetch: Any, jp_serverapp: Any, endpoint: str
) -> None:
    trail = started_trail(jp_serverapp)
    with pytest.raises(HTTPClientError) as err:
        await get(jp_fetch, "audit", endpoint)
    assert err.value.code == 403
    assert trail.flush()
    denied = [json.loads(x) for x in trail.sinks[0].read_lines()]
    assert [r["data"]["resource"] for r in denied if r["kind"] == "denied"] == [
        "prod_discovery_audit"
    ]


@COMPLIANCE
async def test_verify_audit_trail_intact(jp_fetch: Any, jp_serverapp: Any) -> None:
    trail = started_trail(jp_serverapp)
    trail.record("kernel", {"action": "start", "kernel_id": "k-1"}, user="alice")
    assert trail.flush()
    body = json.loads((await get(jp_fetch, "audit", "verify")).body)
    assert body["ok"] is True
    assert body["problem"] is None
    assert body["records"] >= 1
    assert body["summary"].startswith("intact")
    assert KEY not in json.dumps(body)


@COMPLIANCE
async def test_verify_audit_trail_modified(
    jp_fetch: Any, jp_serverapp: Any, log_path: Path
) -> None:
    trail = started_trail(jp_serverapp)
    trail.record("kernel", {"action": "start", "kernel_id": "k-1"}, user="alice")
    trail.record("kernel", {"action": "start", "kernel_id": "k-2"}, user="alice")
    assert trail.flush()
    lines = log_path.read_text().splitlines()
    lines[0] = lines[0].replace('"k-1"', '"k-9"')
    log_path.write_text("\n".join(lines) + "\n")
    body = json.loads((await get(jp_fetch, "audit", "verify")).body)
    assert body["ok"] is False
    assert body["problem"]["what"] == "modified"
    assert body["problem"]["seq"] == 1


@COMPLIANCE
async def test_get_audit_report_and_csv(jp_fetch: Any, jp_serverapp: Any) -> None:
    trail = started_trail(jp_serverapp)
    trail.record("kernel", {"action": "start", "kernel_id": "k-1"}, user="alice")
    trail.record("kernel", {"action": "start", "kernel_id": "k-2"}, user="bob")
    assert trail.flush()
    report = await get(jp_fetch, "audit", "report", user="alice")
    assert report.headers["Content-Type"].startswith("text/html")
    html = report.body.decode()
    assert "User alice" in html and "User bob" not in html
    assert "intact" in html
    csv = await get(jp_fetch, "audit", "events", format="csv", type="kernel")
    assert csv.headers["Content-Type"].startswith("text/csv")
    rows = csv.body.decode().strip().splitlines()
    assert rows[0].split(",") == [
        "seq",
        "ts",
        "kind",
        "user",
        "what",
        "path",
        "kernel_id",
        "status",
    ]
    assert [r.split(",")[6] for r in rows[1:]] == ["k-1", "k-2"]
