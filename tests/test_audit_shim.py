"""The kernel data-source shim: real interpreters, real sockets, real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq
from audit_support import KEY, event_data
from credentials_support import run_code
from traitlets.config import Config

from jupyter_prod_discovery.audit.kernel_shim import ENV_ADDR, ENV_TOKEN, Collector, scrub_target
from jupyter_prod_discovery.audit.shim_listener import SHIM_SITE, ShimListener
from jupyter_prod_discovery.audit.trail import AuditTrail


def make_trail(tmp_path: Path) -> AuditTrail:
    config = {
        "AuditTrail": {"mac_key": KEY, "spool_dir": str(tmp_path / "spool")},
        "JSONLSink": {"path": str(tmp_path / "log" / "audit.jsonl")},
    }
    trail = AuditTrail(config=Config(config))
    trail.start()
    return trail


def datasource(trail: AuditTrail) -> list[dict[str, Any]]:
    return event_data(trail, "datasource")


async def wait_for(trail: AuditTrail, predicate: Any) -> list[dict[str, Any]]:
    for _ in range(300):
        got = datasource(trail)
        if predicate(got):
            return got
        await asyncio.sleep(0.1)
    return datasource(trail)


SCRIPT = """
import socket, sqlite3, sys
data = sys.argv[1]
open(data + "/sales.csv", "w").write("a,b\\n")
for _ in range(3):
    open(data + "/sales.csv").read()
sqlite3.connect(data + "/local.db").close()
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
s.close()
import psycopg
psycopg.connect(sys.argv[3], password="hunter2-secret").close()
"""


async def test_record_shim_events_from_interpreter(tmp_path: Path, postgres_dsn: str) -> None:
    trail = make_trail(tmp_path)
    listener = ShimListener(trail, {"k-test": "ann"}, interval=0.2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    listener.env_hook("k-test", env)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == SHIM_SITE
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    data = tmp_path / "data"
    data.mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, str(data), str(port), postgres_dsn, env=env
    )
    assert await proc.wait() == 0
    server.close()
    got = await wait_for(trail, lambda g: any(d["kind"] == "dbapi" for d in g))
    listener.close()
    trail.stop()
    by_kind = {(d["kind"], d["target"]): d for d in got}
    csv = by_kind[("file", str(data / "sales.csv"))]
    assert csv["kernel_id"] == "k-test"
    assert csv["user"] == {"username": "ann"}
    files = [d for d in got if d["kind"] == "file" and d["target"].endswith("sales.csv")]
    assert sum(d["count"] for d in files) == 4
    assert ("sqlite", str(data / "local.db")) in by_kind
    assert ("socket", f"127.0.0.1:{port}") in by_kind
    dbapi = [d for d in got if d["kind"] == "dbapi"]
    assert dbapi[0]["target"].startswith("psycopg ")
    assert "hunter2" not in json.dumps(got)
    assert not any("site-packages" in d["target"] for d in got)


async def test_record_shim_attributes_by_token_and_rate_limits(tmp_path: Path) -> None:
    trail = make_trail(tmp_path)
    listener = ShimListener(trail, {"k-a": "ann", "k-b": "bob"}, max_events_per_second=20)
    addr = listener.address()
    token_a, token_b = listener.token("k-a"), listener.token("k-b")
    assert token_a != token_b and len(token_a) == 32
    assert listener.token("k-a") == token_a  # stable across restarts of the kernel
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(addr)
    forged = {"kind": "file", "target": "/x", "count": 1, "kernel_id": "k-b", "user": "root"}
    flood = [{"kind": "file", "target": f"/f{i}", "count": 1} for i in range(1000)]
    push.send_multipart(
        [token_a.encode(), json.dumps({"v": 1, "events": [forged, *flood]}).encode()]
    )
    push.send_multipart([token_a.encode(), b"not json"])
    # No token, a guessed token, a token of a kernel that is gone: all dropped.
    one = json.dumps({"v": 1, "events": [{"kind": "file", "target": "/forged", "count": 1}]})
    push.send(one.encode())
    push.send_multipart([b"0" * 32, one.encode()])
    listener.discard("k-b")
    push.send_multipart([token_b.encode(), one.encode()])
    got = await wait_for(trail, lambda g: any(d["kind"] == "dropped" for d in g))
    await asyncio.sleep(0.3)  # the dropped messages had their chance to arrive
    push.close()
    listener.close()
    trail.stop()
    assert listener.unknown_messages == 3
    assert {d["kernel_id"] for d in got} == {"k-a"}
    assert {d["user"]["username"] for d in got} == {"ann"}
    assert "/forged" not in {d["target"] for d in got}
    assert got[0]["target"] == "/x"
    assert len(got) <= 22
    assert got[-1]["kind"] == "dropped"
    assert sum(d["count"] for d in got) == 1001


def test_hook_collector_bounds_targets() -> None:
    sent: list[bytes] = []
    collector = Collector(sent.append, max_targets=5)
    for i in range(20):
        collector.hook("open", (f"/data/f{i}.csv", "r", 0))
    collector.hook("open", (3, "r", 0))
    collector.hook("open", (f"{sys.prefix}/lib/x.txt", "r", 0))
    collector.hook("exec", ("ignored",))
    collector.flush()
    events = json.loads(sent[0])["events"]
    assert len(events) == 6
    assert events[-1] == {"kind": "dropped", "target": "*", "mode": "", "count": 15}
    collector.flush()
    assert len(sent) == 1


def test_scrub_connection_targets() -> None:
    assert scrub_target("host=db password=s3cret user=ann") == "host=db password=*** user=ann"
    assert (
        scrub_target("postgresql://ann:s3cret@db:5432/prod") == "postgresql://ann:***@db:5432/prod"
    )


def test_load_shim_only_with_address_and_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_ADDR, ENV_TOKEN)}
    env["PYTHONPATH"] = SHIM_SITE
    code = "import sys; print(getattr(sys, '_prod_discovery_shim', None) is None)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "True"
    # The shadowed sitecustomize still runs.
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins; builtins.CHAINED = 1\n")
    env["PYTHONPATH"] = os.pathsep.join([SHIM_SITE, str(other)])
    env[ENV_ADDR] = "tcp://127.0.0.1:9"
    code = "import sys; print(getattr(sys, '_prod_discovery_shim', None) is None)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True"]  # an address without a token: not installed
    env[ENV_TOKEN] = "0" * 32
    code = "import builtins, sys; print(builtins.CHAINED, sys._prod_discovery_shim is not None)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["1", "True"]


@pytest.fixture
def prod_discovery_extension_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "AuditTrail": {"mac_key": KEY, "spool_dir": str(tmp_path / "spool")},
        "JSONLSink": {"path": str(tmp_path / "log" / "audit.jsonl")},
    }


async def test_record_shim_events_from_server_kernel(
    jp_fetch: Any, jp_serverapp: Any, tmp_path: Path
) -> None:
    """A kernel started by the server reports what its code opened, attributed to it."""
    trail = jp_serverapp.web_app.settings["prod_discovery"].audit
    assert isinstance(trail, AuditTrail)
    trail.start()
    target = tmp_path / "customers.parquet"
    target.write_bytes(b"PAR1")
    kernel = json.loads((await jp_fetch("api", "kernels", method="POST", body="{}")).body)
    kid = kernel["id"]
    await run_code(jp_serverapp, kid, f"open({str(target)!r}, 'rb').read()")
    got = await wait_for(trail, lambda g: any(d["target"] == str(target) for d in g))
    await jp_fetch("api", "kernels", kid, method="DELETE")
    hit = [d for d in got if d["target"] == str(target)]
    assert hit
    assert hit[0]["kernel_id"] == kid
    assert hit[0]["mode"].startswith("r")
    assert hit[0]["user"]["username"]
