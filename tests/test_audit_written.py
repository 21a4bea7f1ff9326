"""A save's record names what it wrote, digested as written; a read's size is what it hashed.

Each case checks the record against the file on disk (sha256 and size), and that the digest was
taken without reading the file back (or, where the writer goes around ``write``, that it was).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from audit_support import KEY, event_data, trail_of
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.audit import recording, written
from jupyter_prod_discovery.audit.sinks import JSONLSink


@pytest.fixture
def prod_discovery_extension_config(tmp_path: Path) -> Any:
    return {
        "AuditTrail": {
            "sink_classes": [JSONLSink],
            "mac_key": KEY,
            "spool_dir": str(tmp_path / "spool"),
            "compliance_users": [],
        },
        "JSONLSink": {
            "path": str(tmp_path / "log" / "audit.jsonl"),
            "checkpoint_path": str(tmp_path / "cp" / "cp.jsonl"),
        },
    }


def on_disk(path: Path) -> tuple[int, str]:
    raw = path.read_bytes()
    return len(raw), hashlib.sha256(raw).hexdigest()


@pytest.fixture
def hashed_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths ``hash_file`` was asked to read back (it still does, for the record)."""
    asked: list[str] = []
    real = recording.hash_file

    def spy(path: Any, *args: Any) -> Any:
        asked.append(str(path))
        return real(path, *args)

    monkeypatch.setattr(recording, "hash_file", spy)
    yield asked


async def put(jp_fetch: Any, path: str, model: dict[str, Any]) -> None:
    await jp_fetch("api", "contents", path, method="PUT", body=json.dumps(model))


async def test_saves_digested_as_written(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, hashed_files: list[str]
) -> None:
    """New notebook, text and base64 files and a notebook saved again: each record's sha256
    and size are the file's (the last one's as saved again), and no file was read back."""
    trail = trail_of(jp_serverapp)
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("Straße — naïve ünïcode"))
    await put(jp_fetch, "n.ipynb", {"type": "notebook", "content": nb})
    await put(jp_fetch, "t.txt", {"type": "file", "format": "text", "content": "a,b\n1,é\n"})
    binary = bytes(range(256)) * 3
    await put(
        jp_fetch,
        "b.bin",
        {"type": "file", "format": "base64", "content": base64.b64encode(binary).decode()},
    )
    nb.cells.append(nbformat.v4.new_code_cell("x = 1"))
    await put(jp_fetch, "n.ipynb", {"type": "notebook", "content": nb})
    got = event_data(trail, "contents")
    assert [(d["operation"], d["path"]) for d in got] == [
        ("new", "n.ipynb"),
        ("new", "t.txt"),
        ("new", "b.bin"),
        ("save", "n.ipynb"),
    ]
    for d in got[1:]:
        assert (d["size"], d["sha256"]) == on_disk(jp_root_dir / d["path"]), d["path"]
    first = nbformat.writes(nbformat.from_dict({**nb, "cells": nb.cells[:1]})) + "\n"
    assert (got[0]["size"], got[0]["sha256"]) != on_disk(jp_root_dir / "n.ipynb")
    assert got[0]["sha256"] == hashlib.sha256(first.encode()).hexdigest()
    assert hashed_files == []


async def test_copy_digested_as_written(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, hashed_files: list[str]
) -> None:
    trail = trail_of(jp_serverapp)
    (jp_root_dir / "src.txt").write_text("copied\n")
    await jp_fetch("api", "contents", "", method="POST", body=json.dumps({"copy_from": "src.txt"}))
    got = event_data(trail, "contents")
    assert [d["operation"] for d in got] == ["copy"]
    assert (got[0]["size"], got[0]["sha256"]) == on_disk(jp_root_dir / got[0]["to_path"])
    assert hashed_files == []


async def test_save_through_a_symlink_names_what_it_wrote(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, hashed_files: list[str]
) -> None:
    trail = trail_of(jp_serverapp)
    (jp_root_dir / "target.txt").write_text("old\n")
    (jp_root_dir / "link.txt").symlink_to(jp_root_dir / "target.txt")
    await put(jp_fetch, "link.txt", {"type": "file", "format": "text", "content": "new text\n"})
    got = event_data(trail, "contents")
    assert (got[0]["size"], got[0]["sha256"]) == on_disk(jp_root_dir / "target.txt")
    assert hashed_files == []


async def test_writer_going_around_write_is_hashed_from_the_file(
    jp_fetch: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
    hashed_files: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A manager whose save writes through ``f.buffer`` (not the proxy's ``write``): the proxy
    cannot follow it, so the record is hashed from the file, and still matches it."""
    cm = jp_serverapp.contents_manager

    async def save_notebook(os_path: str, nb: Any, capture_validation_error: Any = None) -> None:
        with cm.atomic_writing(os_path, encoding="utf-8") as f:
            f.write("")
            f.flush()
            f.buffer.write(nbformat.writes(nb).encode() + b"\n")

    monkeypatch.setattr(cm, "_save_notebook", save_notebook)
    trail = trail_of(jp_serverapp)
    await put(jp_fetch, "around.ipynb", {"type": "notebook", "content": nbformat.v4.new_notebook()})
    got = event_data(trail, "contents")
    assert (got[0]["size"], got[0]["sha256"]) == on_disk(jp_root_dir / "around.ipynb")
    assert hashed_files == [str(jp_root_dir / "around.ipynb")]


async def test_failed_write_leaves_no_digest(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails inside ``atomic_writing``: the save is refused and recorded as an
    error, the old file stays, and nothing of the failed write is named in the record."""
    cm = jp_serverapp.contents_manager
    (jp_root_dir / "keep.txt").write_text("kept\n")

    async def broken(os_path: str, content: str, format: str) -> None:
        with cm.atomic_writing(os_path, text=False) as f:
            f.write(b"half")
            raise OSError("disk full")

    monkeypatch.setattr(cm, "_save_file", broken)
    trail = trail_of(jp_serverapp)
    with pytest.raises(HTTPClientError) as err:
        await put(jp_fetch, "keep.txt", {"type": "file", "format": "text", "content": "lost\n"})
    assert err.value.code == 500
    assert (jp_root_dir / "keep.txt").read_text() == "kept\n"
    got = event_data(trail, "contents")
    assert [(d["operation"], d["status"]) for d in got] == [("save", "error")]
    assert "sha256" not in got[0] and "size" not in got[0]


async def test_notebook_read_size_is_what_was_hashed(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size of a notebook read comes with its hash from the manager's read: no stat after."""

    def no_stat(*args: Any) -> None:
        raise AssertionError("the size of a hashed read was taken by a stat of the file")

    monkeypatch.setattr(recording._ContentsAuditor, "read_size", no_stat)
    trail = trail_of(jp_serverapp)
    raw = (json.dumps(nbformat.v4.new_notebook(), indent=2) + "\n").encode()
    (jp_root_dir / "r.ipynb").write_bytes(raw)
    (jp_root_dir / "l.ipynb").symlink_to(jp_root_dir / "r.ipynb")
    for name in ("r.ipynb", "l.ipynb"):
        await jp_fetch("api", "contents", name, method="GET")
    got = event_data(trail, "contents")
    want = (len(raw), hashlib.sha256(raw).hexdigest())
    assert [(d["size"], d["sha256"]) for d in got] == [want, want]


# --- the proxy on its own ---------------------------------------------------------------------


def test_text_digest_is_of_the_encoded_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    with path.open("w", encoding="utf-8") as f:
        proxy = written.DigestingFile(f)
        proxy.write("héllo\n")
        proxy.write("wörld")
        proxy.flush()
    assert proxy.result() == on_disk(path)


@pytest.mark.parametrize(
    ("encoding", "newline"),
    [("utf-16", None), ("utf-8-sig", None), ("utf-8", "\r\n"), ("utf-8", "\r")],
)
def test_text_that_is_not_written_as_encoded_is_not_digested(
    tmp_path: Path, encoding: str, newline: str | None
) -> None:
    """A byte-order mark or translated line ends: the bytes differ from ``str.encode``."""
    with (tmp_path / "t.txt").open("w", encoding=encoding, newline=newline) as f:
        proxy = written.DigestingFile(f, newline)
        proxy.write("a\nb\n")
    assert proxy.result() is None


@pytest.mark.parametrize("name", ["writelines", "raw", "fileno", "seek", "truncate"])
def test_any_write_around_write_makes_the_digest_unknown(tmp_path: Path, name: str) -> None:
    with (tmp_path / "b.bin").open("wb") as f:
        proxy = written.DigestingFile(f)
        proxy.write(b"abc")
        getattr(proxy, name)
    assert proxy.result() is None


def test_binary_partial_write_hashes_what_the_file_took() -> None:
    class Partial(io.RawIOBase):
        def __init__(self) -> None:
            self.got = b""

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            take = bytes(b)[:2]
            self.got += take
            return len(take)

    raw = Partial()
    proxy = written.DigestingFile(raw)
    data = memoryview(b"abcdef")
    while data:
        data = data[proxy.write(data) :]
    assert raw.got == b"abcdef"
    assert proxy.result() == (6, hashlib.sha256(b"abcdef").hexdigest())


def test_digests_are_collected_only_while_an_operation_collects(tmp_path: Path) -> None:
    class Manager:
        def atomic_writing(self, os_path: str, *args: Any, **kwargs: Any) -> Any:
            return open(os_path, "w", encoding="utf-8")

    cm = Manager()
    assert written.watch_writes(cm)
    path = str(tmp_path / "x.txt")
    with cm.atomic_writing(path) as f:
        assert not isinstance(f, written.DigestingFile)
        f.write("outside")
    sink = written.begin()
    try:
        with cm.atomic_writing(path) as f:
            f.write("inside\n")
    finally:
        written.end()
    assert written.written(sink, path) == on_disk(Path(path))
    assert written.written(sink, str(tmp_path / "other")) is None
