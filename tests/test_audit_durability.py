"""Durability and fail-closed against real processes and a real database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from audit_support import KEY, closed_port_dsn, writer_role
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.audit.chain import verify
from jupyter_prod_discovery.audit.sinks import JSONLSink, PostgresSink
from jupyter_prod_discovery.audit.trail import AuditTrail

TOKEN = "durability-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(port: int, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - http loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.slow
def test_kill_server_keeps_every_answered_event(tmp_path: Path) -> None:
    """SIGKILL right after the last answer: every answered request is in the log."""
    root, log = tmp_path / "root", tmp_path / "log" / "audit.jsonl"
    root.mkdir()
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {
                    "jpserver_extensions": {"jupyter_prod_discovery": True},
                    "allow_root": True,
                    "open_browser": False,
                    "root_dir": str(root),
                },
                "IdentityProvider": {"token": TOKEN},
                "AuditTrail": {"spool_dir": str(tmp_path / "spool")},
                "JSONLSink": {"path": str(log), "fsync": False},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "JUPYTER_", "BAO_"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        PROD_DISCOVERY_AUDIT_KEY=KEY,
    )
    port = _free_port()
    errlog = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=errlog,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _request(port, "GET", "/api/status")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "jupyter server exited"
            assert time.monotonic() < deadline, "jupyter server did not start"
            time.sleep(0.2)
        answered = []
        for i in range(40):
            model = {"type": "file", "format": "text", "content": f"row {i}\n"}
            status, _ = _request(port, "PUT", f"/api/contents/f{i}.txt", model)
            assert status in (200, 201)
            answered.append(("new", f"f{i}.txt"))
            status, _ = _request(port, "GET", f"/api/contents/f{i}.txt")
            assert status == 200
            answered.append(("get", f"f{i}.txt"))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        errlog.close()
    lines = log.read_text().splitlines()
    recorded = [
        (r["data"]["operation"], r["data"]["path"])
        for r in map(json.loads, lines)
        if r["kind"] == "contents"
    ]
    assert recorded == answered
    result = verify(lines, KEY.encode())
    assert result.ok, result.summary()


@pytest.fixture
def prod_discovery_extension_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "AuditTrail": {
            "mac_key": KEY,
            "fail_closed": True,
            "retry_interval": 0.05,
            "spool_dir": str(tmp_path / "spool"),
            "sink_classes": [JSONLSink, PostgresSink],
        },
        "JSONLSink": {"path": str(tmp_path / "log" / "audit.jsonl")},
        "PostgresSink": {"dsn": "", "create_tables": False},
    }


async def test_get_contents_fail_closed_while_sink_down(
    jp_fetch: Any, jp_serverapp: Any, postgres_database: str
) -> None:
    trail = jp_serverapp.web_app.settings["prod_discovery"].audit
    assert isinstance(trail, AuditTrail)
    pg = trail.sinks[1]
    assert isinstance(pg, PostgresSink)
    with writer_role(postgres_database) as dsn:
        pg.dsn = closed_port_dsn(dsn)
        trail.start()
        assert not trail.writable
        for path in (("api", "contents", ""), ("files", "x.txt")):
            with pytest.raises(HTTPClientError) as err:
                await jp_fetch(*path)
            assert err.value.code == 503
        status = json.loads((await jp_fetch("prod-discovery", "api", "status")).body)
        assert status["guards"]["audit"] is False
        pg.dsn = dsn  # the database is back: the spool is replayed, access resumes
        for _ in range(600):
            if trail.writable:
                break
            time.sleep(0.05)
        assert trail.writable
        response = await jp_fetch("api", "contents", "")
        assert response.code == 200
        assert trail.flush()
        trail.stop()
        recs = [json.loads(x) for x in pg.read_lines()]
        denied = [r["data"] for r in recs if r["kind"] == "denied"]
        assert [(d["resource"], d["status"]) for d in denied] == [("contents", 503), ("files", 503)]
        assert recs[-1]["data"]["operation"] == "list"
        assert verify(pg.read_lines(), KEY.encode(), pg.read_checkpoints()).ok
        pg.close()
