"""Every event kind reaches both real sinks from a real server; the trail verifies afterwards."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from audit_support import KEY, events, trail_of, writer_role
from credentials_support import eventually, run_code
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.audit.recording import hash_file
from jupyter_prod_discovery.audit.sinks import JSONLSink, PostgresSink


@pytest.fixture(params=["jsonl", "postgres"])
def sink_config(request: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "jsonl":
        yield {
            "AuditTrail": {"sink_classes": [JSONLSink]},
            "JSONLSink": {
                "path": str(tmp_path / "log" / "audit.jsonl"),
                "checkpoint_path": str(tmp_path / "cp" / "cp.jsonl"),
            },
        }
        return
    database = request.getfixturevalue("postgres_database")
    with writer_role(database) as dsn:
        yield {
            "AuditTrail": {"sink_classes": [PostgresSink]},
            "PostgresSink": {"dsn": dsn, "create_tables": False},
        }


@pytest.fixture
def prod_discovery_extension_config(sink_config: dict[str, Any], tmp_path: Path) -> Any:
    config = dict(sink_config)
    config["AuditTrail"] = {
        **config["AuditTrail"],
        "mac_key": KEY,
        "spool_dir": str(tmp_path / "spool"),
        "compliance_users": [],
    }
    return config


async def test_record_contents_operations(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path
) -> None:
    trail = trail_of(jp_serverapp)
    body = "id,amount\n1,42\n"
    await jp_fetch(
        "api",
        "contents",
        "data.csv",
        method="PUT",
        body=json.dumps({"type": "file", "format": "text", "content": body}),
    )
    await jp_fetch("api", "contents", "data.csv", method="GET")
    await jp_fetch("api", "contents", "", method="GET")
    await jp_fetch("api", "contents", "data.csv", method="GET", params={"content": "0"})
    await jp_fetch(
        "api", "contents", "data.csv", method="PATCH", body=json.dumps({"path": "moved.csv"})
    )
    await jp_fetch(
        "api", "contents", "", method="POST", body=json.dumps({"copy_from": "moved.csv"})
    )
    await jp_fetch("api", "contents", "moved.csv", "checkpoints", method="POST", body="")
    cps = json.loads(
        (await jp_fetch("api", "contents", "moved.csv", "checkpoints", method="GET")).body
    )
    await jp_fetch(
        "api", "contents", "moved.csv", "checkpoints", cps[0]["id"], method="POST", body=""
    )
    chunk = base64.b64encode(b"\x00\x01binary").decode()
    for n in (1, -1):
        await jp_fetch(
            "api",
            "contents",
            "up.bin",
            method="PUT",
            body=json.dumps({"type": "file", "format": "base64", "content": chunk, "chunk": n}),
        )
    await jp_fetch("api", "contents", "moved.csv", method="DELETE")
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("api", "contents", "missing.csv", method="GET")
    assert err.value.code == 404

    got = events(trail, "contents")
    ops = [(e["data"]["operation"], e["data"]["status"]) for e in got]
    assert ops == [
        ("new", "ok"),
        ("get", "ok"),
        ("list", "ok"),
        ("rename", "ok"),
        ("copy", "ok"),
        ("checkpoint_create", "ok"),
        ("checkpoint_restore", "ok"),
        ("upload", "ok"),
        ("upload", "ok"),
        ("delete", "ok"),
        ("get", "not_found"),
    ]
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert got[0]["data"]["sha256"] == digest
    assert got[1]["data"]["sha256"] == digest
    assert got[1]["data"]["size"] == len(body)
    assert got[3]["data"]["to_path"] == "moved.csv"
    assert got[4]["data"]["to_path"] == "moved-Copy1.csv"
    assert got[8]["data"]["chunk"] == -1
    # Token auth without a cookie names a new anonymous user per request; each is recorded.
    assert all(e["data"]["user"]["username"] for e in got)
    result = trail.verify()
    assert result.ok, result.summary()


async def test_record_files_download(jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path) -> None:
    trail = trail_of(jp_serverapp)
    (jp_root_dir / "report.txt").write_bytes(b"quarterly numbers\n")
    response = await jp_fetch("files", "report.txt", method="GET")
    assert response.body == b"quarterly numbers\n"
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("files", "nope.txt", method="GET")
    assert err.value.code == 404
    got = [e["data"] for e in events(trail, "contents")]
    assert [(d["operation"], d["path"], d["status"]) for d in got] == [
        ("download", "report.txt", "ok"),
        ("download", "nope.txt", "not_found"),
    ]
    assert got[0]["sha256"] == hashlib.sha256(b"quarterly numbers\n").hexdigest()
    assert got[0]["size"] == 18


async def test_record_files_over_inline_limit_hashed_in_thread(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files over the inline limit are hashed in a thread, by a read and by a download alike.
    from jupyter_prod_discovery.audit import recording

    monkeypatch.setattr(recording, "_HASH_INLINE_LIMIT", 8)
    threads: list[Any] = []
    to_thread = asyncio.to_thread

    async def counting_to_thread(fn: Any, *args: Any) -> Any:
        threads.append(fn)
        return await to_thread(fn, *args)

    monkeypatch.setattr(recording.asyncio, "to_thread", counting_to_thread)
    trail = trail_of(jp_serverapp)
    content = b"more than eight bytes of data\n"
    (jp_root_dir / "big.txt").write_bytes(content)
    await jp_fetch("api", "contents", "big.txt", method="GET", params={"content": "1"})
    await jp_fetch("files", "big.txt", method="GET")
    got = [e["data"] for e in events(trail, "contents")]
    assert [(d["operation"], d["path"]) for d in got] == [
        ("get", "big.txt"),
        ("download", "big.txt"),
    ]
    assert {d["sha256"] for d in got} == {hashlib.sha256(content).hexdigest()}
    assert {d["size"] for d in got} == {len(content)}
    assert [fn for fn in threads if fn is recording.hash_file] == [recording.hash_file] * 2


async def test_notebook_read_hashed_by_the_manager_from_the_bytes_it_read(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook read takes its sha256 from the manager (``require_hash``): of the very bytes
    it parsed, CRLF line ends and all, without reading the file again; the model the client
    gets has a hash only when the client asked for one."""
    from jupyter_prod_discovery.audit import recording

    def no_second_read(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a notebook read was hashed by reading the file again")

    monkeypatch.setattr(recording, "hash_file", no_second_read)
    trail = trail_of(jp_serverapp)
    raw = json.dumps(nbformat.v4.new_notebook(), indent=1).replace("\n", "\r\n").encode()
    (jp_root_dir / "crlf.ipynb").write_bytes(raw)
    plain = json.loads((await jp_fetch("api", "contents", "crlf.ipynb", method="GET")).body)
    asked = json.loads(
        (await jp_fetch("api", "contents", "crlf.ipynb", method="GET", params={"hash": "1"})).body
    )
    sha = hashlib.sha256(raw).hexdigest()
    assert (plain["hash"], plain["hash_algorithm"]) == (None, None)
    assert (asked["hash"], asked["hash_algorithm"]) == (sha, "sha256")
    # A notebook behind a symlink: the size of what was read, not of the link.
    (jp_root_dir / "link.ipynb").symlink_to(jp_root_dir / "crlf.ipynb")
    await jp_fetch("api", "contents", "link.ipynb", method="GET")
    got = [e["data"] for e in events(trail, "contents")]
    assert [(d["operation"], d["sha256"], d["size"]) for d in got] == [("get", sha, len(raw))] * 3


async def test_notebook_read_hashed_again_when_the_manager_hashes_otherwise(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path
) -> None:
    """The trail's sha256 stays a sha256 when the manager is set to hash with another algorithm
    (the file is read again, as for any other file)."""
    jp_serverapp.contents_manager.hash_algorithm = "md5"
    trail = trail_of(jp_serverapp)
    raw = json.dumps(nbformat.v4.new_notebook()).encode()
    (jp_root_dir / "md5.ipynb").write_bytes(raw)
    model = json.loads((await jp_fetch("api", "contents", "md5.ipynb", method="GET")).body)
    assert model["hash"] is None
    got = [e["data"] for e in events(trail, "contents")]
    assert [(d["sha256"], d["size"]) for d in got] == [(hashlib.sha256(raw).hexdigest(), len(raw))]


async def test_record_kernel_lifecycle(jp_fetch: Any, jp_serverapp: Any) -> None:
    trail = trail_of(jp_serverapp)
    kernel = json.loads((await jp_fetch("api", "kernels", method="POST", body="{}")).body)
    kid = kernel["id"]
    await jp_fetch("api", "kernels", kid, "interrupt", method="POST", body="")
    await jp_fetch("api", "kernels", kid, "restart", method="POST", body="")
    await jp_fetch("api", "kernels", kid, method="DELETE")
    got = [e["data"] for e in events(trail, "kernel")]
    assert [(d["action"], d["kernel_id"]) for d in got] == [
        ("start", kid),
        ("interrupt", kid),
        ("restart", kid),
        ("shutdown", kid),
    ]
    assert all(d["user"]["username"] for d in got)
    assert got[0]["kernel_name"]


async def test_record_denied_anonymous(jp_fetch: Any, jp_serverapp: Any) -> None:
    trail = trail_of(jp_serverapp)
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("api", "contents", "x.csv", headers={"Authorization": ""})
    assert err.value.code == 403
    denied = [e["data"] for e in events(trail, "denied")]
    assert denied[-1]["status"] == 403
    assert denied[-1]["resource"].endswith("/api/contents/x.csv")


async def test_get_audit_events_refused_to_ordinary_users(jp_fetch: Any, jp_serverapp: Any) -> None:
    trail = trail_of(jp_serverapp)
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("prod-discovery", "api", "audit", "events")
    assert err.value.code == 403
    denied = [e["data"] for e in events(trail, "denied")]
    assert [d["resource"] for d in denied] == ["prod_discovery_audit"]


async def test_get_audit_events_for_compliance(jp_fetch: Any, jp_serverapp: Any) -> None:
    trail = trail_of(jp_serverapp)
    trail.compliance_users = ["*"]
    await jp_fetch(
        "api",
        "contents",
        "a.txt",
        method="PUT",
        body=json.dumps({"type": "file", "format": "text", "content": "x"}),
    )
    trail.record("kernel", {"action": "start", "kernel_id": "k-1"}, user="bob")
    assert trail.flush()
    response = await jp_fetch(
        "prod-discovery", "api", "audit", "events", params={"type": "contents", "path": "a.txt"}
    )
    body = json.loads(response.body)
    assert body["count"] == 1
    assert body["events"][0]["data"]["operation"] == "new"
    response = await jp_fetch(
        "prod-discovery", "api", "audit", "events", params={"user": "bob", "kernel": "k-1"}
    )
    assert [e["data"]["kernel_id"] for e in json.loads(response.body)["events"]] == ["k-1"]
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("prod-discovery", "api", "audit", "events", params={"since": "yesterday"})
    assert err.value.code == 400


SAMPLES: dict[str, dict[str, Any]] = {
    "execution": {
        "phase": "request",
        "kernel_id": "k",
        "session": "s",
        "msg_id": "m",
        "cell_id": "c",
        "code_sha256": "0" * 64,
        "code": "print(1)",
    },
    "credential": {
        "action": "issue",
        "kernel_id": "k",
        "profile": "analytics",
        "lease_id": "db/creds/x/1",
        "request_id": "r-1",
        "ttl": 900,
    },
    "datasource": {"kernel_id": "k", "kind": "sqlite", "target": "/tmp/x.db", "count": 3},
    "pii": {
        "source": "live",
        "kernel_id": "k",
        "entities": {"EMAIL_ADDRESS": 2},
        "action": "redact",
    },
    "export": {
        "action": "export",
        "path": "a.ipynb",
        "target": "dagster",
        "bundle": "b.zip",
        "manifest_sha256": "1" * 64,
        "gates": [{"name": "pii", "passed": True, "reason": None}],
    },
}


async def test_record_capability_events(jp_serverapp: Any) -> None:
    """The kinds produced by the other capabilities are accepted by the schemas and sinks."""
    trail = trail_of(jp_serverapp)
    for kind, data in SAMPLES.items():
        trail.record(kind, data, user="carol")
    got = events(trail)
    assert [e["kind"] for e in got] == list(SAMPLES)
    assert trail.invalid_events == 0
    for e in got:
        assert e["data"]["user"] == {"username": "carol"}
        assert e["schema"] == f"https://events.prod-discovery.dev/{e['kind']}/v1"
    assert trail.verify().ok


async def test_record_kernel_cull_and_crash(jp_fetch: Any, jp_serverapp: Any) -> None:
    trail = trail_of(jp_serverapp)
    km = jp_serverapp.kernel_manager
    started = []
    for _ in range(2):
        body = (await jp_fetch("api", "kernels", method="POST", body="{}")).body
        started.append(json.loads(body)["id"])
    crashed, culled = started
    pid = int((await run_code(jp_serverapp, crashed, "import os; print(os.getpid())")).strip())
    os.kill(pid, signal.SIGKILL)
    await eventually(
        lambda: any(e["data"]["status"] == "auto" for e in events(trail, "kernel")),
        what="the automatic restart to be recorded",
    )
    await run_code(jp_serverapp, culled, "1")
    km.cull_idle_timeout = 0

    async def culled_recorded() -> bool:
        # The kernel's idle status may arrive after run_code returns on a loaded machine:
        # cull again until the server did and the trail recorded it.
        if culled in km:
            await km.cull_kernel_if_idle(culled)
        return any(
            e["data"]["action"] == "cull" and e["data"]["kernel_id"] == culled
            for e in events(trail, "kernel")
        )

    deadline = time.monotonic() + 60
    while not await culled_recorded():
        assert time.monotonic() < deadline, "the cull was not recorded"
        await asyncio.sleep(0.2)
    got = [(e["data"]["action"], e["data"]["kernel_id"]) for e in events(trail, "kernel")]
    assert ("restart", crashed) in got
    assert ("cull", culled) in got
    auto = [e["data"] for e in events(trail, "kernel") if e["data"].get("status") == "auto"]
    assert auto[0]["user"]["username"]
    await jp_fetch("api", "kernels", crashed, method="DELETE")


def test_hash_file_regular_only(tmp_path: Path) -> None:
    data = b"id,amount\n1,2\n"
    (tmp_path / "a.csv").write_bytes(data)
    assert hash_file(tmp_path / "a.csv") == (len(data), hashlib.sha256(data).hexdigest())
    os.mkfifo(tmp_path / "fifo")  # opening it must not block the server
    assert hash_file(tmp_path / "fifo") is None
    assert hash_file(tmp_path) is None
    assert hash_file(tmp_path / "missing") is None


def test_hash_file_reuses_digest_only_of_settled_unchanged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_prod_discovery.audit import recording

    f = tmp_path / "n.ipynb"
    f.write_bytes(b"a" * 5000)
    want = (5000, hashlib.sha256(b"a" * 5000).hexdigest())
    # Just written: its ctime is not settled, so nothing is kept and every read hashes again.
    assert hash_file(f) == want
    assert str(f) not in recording._DIGESTS
    monkeypatch.setattr(recording, "_SETTLED_NS", 0)
    assert hash_file(f) == want
    key, _ = recording._DIGESTS[str(f)]
    recording._DIGESTS[str(f)] = (key, (5000, "from-the-cache"))
    assert hash_file(f) == (5000, "from-the-cache")  # unchanged: not read again
    # Any change (here the same size, with an old mtime put back) changes the key.
    f.write_bytes(b"b" * 5000)
    os.utime(f, ns=(key[3], key[3]))
    assert hash_file(f) == (5000, hashlib.sha256(b"b" * 5000).hexdigest())


def test_contents_wrapper_survives_being_stepped_in_another_context() -> None:
    """A caller may step the audited coroutine in one context and finish it in another (seen
    with jupyter-server-documents' rooms): the wrapper must return the call's result, not
    raise ``ValueError: <Token> was created in a different Context`` from its nesting flag."""
    import contextvars

    from jupyter_prod_discovery.audit.recording import _ContentsAuditor

    loop = asyncio.new_event_loop()
    try:
        pending: asyncio.Future[None] = loop.create_future()
        written: list[dict[str, Any]] = []

        class Trail:  # what the wrapper asks of a trail on the common path
            def refusing(self) -> bool:
                return False

            def write_now(self, kind: str, data: dict[str, Any], user: Any = None) -> bool:
                written.append(dict(data))
                return True

        class Manager:
            async def delete(self, path: str) -> str:
                await pending
                return f"deleted {path}"

        cm = Manager()
        _ContentsAuditor(cm, Trail()).wrap("delete", "delete")  # type: ignore[arg-type]
        coro = cm.delete("a.txt")
        first, second = contextvars.copy_context(), contextvars.copy_context()
        assert first.run(coro.send, None) is pending  # suspended inside the call
        pending.set_result(None)
        with pytest.raises(StopIteration) as done:
            second.run(coro.send, None)
        assert done.value.value == "deleted a.txt"
        assert written == [{"operation": "delete", "path": "a.txt", "status": "ok"}]
    finally:
        loop.close()
