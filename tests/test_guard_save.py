"""The save guard (pre-save hook) through the real contents API, and the scan CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from guard_support import Recorder, prod_discovery_extension_config, recorder
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.cli import main
from jupyter_prod_discovery.guard.save import COPY_DIR_REASON, GuardedContentsManager

__all__ = ["prod_discovery_extension_config", "recorder"]  # the fixtures, imported

SSN, EMAIL = "536-22-1234", "ann.smith@example.com"


def _notebook(*texts: str) -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    for t in texts:
        cell = nbformat.v4.new_code_cell("show()")
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text=t),
            nbformat.v4.new_output("execute_result", data={"text/plain": t}, execution_count=1),
        ]
        nb.cells.append(cell)
    return dict(nb)


async def _put(jp_fetch: Any, path: str, model: dict[str, Any]) -> Any:
    return await jp_fetch("api", "contents", path, method="PUT", body=json.dumps(model))


async def test_save_redacts_notebook_outputs(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    nb = _notebook("clean", f"ssn {SSN}")
    await _put(jp_fetch, "a.ipynb", {"type": "notebook", "content": nb})
    saved = (jp_root_dir / "a.ipynb").read_text()
    assert SSN not in saved and "<US_SSN>" in saved
    events = recorder.of("pii")
    # Cells and outputs numbered from 1, as JupyterLab shows them.
    assert [(e["cell"], e["output"], e["action"]) for e in events] == [
        (2, 1, "redact"),
        (2, 2, "redact"),
    ]
    assert events[0]["entities"] == {"US_SSN": 1} and events[0]["path"] == "a.ipynb"


@pytest.mark.parametrize("size", ["small", "large", "attachment"])
async def test_notebook_scanned_on_the_loop_only_when_small(
    jp_fetch: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    """A small notebook is scanned on the event loop, a large one (or one with attachments,
    whose size is not plain to see) on a worker thread; both are redacted alike."""
    from jupyter_prod_discovery.guard import save as save_module

    threaded: list[str] = []
    to_thread = save_module.asyncio.to_thread

    async def spy(fn: Any, *args: Any, **kwargs: Any) -> Any:
        threaded.append(getattr(fn, "__name__", ""))
        return await to_thread(fn, *args, **kwargs)

    monkeypatch.setattr(save_module.asyncio, "to_thread", spy)
    filler = "plain words without anything to find\n" * (3000 if size == "large" else 1)
    nb = _notebook(filler, f"ssn {SSN}")
    if size == "attachment":
        nb["cells"].append(
            {
                "cell_type": "markdown",
                "id": "att",
                "metadata": {},
                "source": "![x](attachment:x)",
                "attachments": {"x": {"text/plain": "tiny"}},
            }
        )
    await _put(jp_fetch, f"{size}.ipynb", {"type": "notebook", "content": nb})
    saved = (jp_root_dir / f"{size}.ipynb").read_text()
    assert SSN not in saved and "<US_SSN>" in saved
    assert threaded == ([] if size == "small" else ["scan_model"])


@pytest.mark.parametrize("guard_config", [{"PIIPolicy": {"actions": {"US_SSN": "block"}}}])
async def test_save_refuses_blocked_notebook(jp_fetch: Any, jp_root_dir: Path) -> None:
    with pytest.raises(HTTPClientError) as err:
        await _put(jp_fetch, "b.ipynb", {"type": "notebook", "content": _notebook(SSN)})
    assert err.value.code == 403
    body = err.value.response.body.decode()  # type: ignore[union-attr]
    assert "US_SSN x2" in body and SSN not in body
    assert not (jp_root_dir / "b.ipynb").exists()


async def test_save_redacts_text_file(jp_fetch: Any, jp_root_dir: Path) -> None:
    model = {"type": "file", "format": "text", "content": f"id,email\n1,{EMAIL}\n"}
    await _put(jp_fetch, "c.csv", model)
    assert (jp_root_dir / "c.csv").read_text() == "id,email\n1,<EMAIL_ADDRESS>\n"


@pytest.mark.parametrize("guard_config", [{"PIIGuard": {"enabled": False}}])
async def test_save_passes_when_guard_disabled(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any
) -> None:
    await _put(jp_fetch, "d.txt", {"type": "file", "format": "text", "content": EMAIL})
    assert (jp_root_dir / "d.txt").read_text() == EMAIL
    assert isinstance(jp_serverapp.contents_manager, GuardedContentsManager)
    # Turned on while the server runs: saves are guarded from then on.
    jp_serverapp.web_app.settings["prod_discovery"].pii_guard.enabled = True
    await _put(jp_fetch, "d2.txt", {"type": "file", "format": "text", "content": EMAIL})
    assert (jp_root_dir / "d2.txt").read_text() == "<EMAIL_ADDRESS>"


async def test_second_save_of_same_notebook_is_the_same_save(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any, recorder: Recorder
) -> None:
    """The second save scans nothing again (``guard/scancache.py``), yet writes and records
    exactly what the first did; a secret issued in between is redacted at the third."""
    token = "qwertyuiopasdfghzx"
    nb = _notebook("clean", f"ssn {SSN}", f"build {token}")
    # Created first: jupyter_server hands a new file's path to the save with a leading '/'.
    await _put(jp_fetch, "s.ipynb", {"type": "notebook", "content": _notebook()})
    recorder.events.clear()
    await _put(jp_fetch, "s.ipynb", {"type": "notebook", "content": nb})
    first, first_events = (jp_root_dir / "s.ipynb").read_text(), recorder.of("pii")
    recorder.events.clear()
    guard = jp_serverapp.web_app.settings["prod_discovery"].pii_guard
    assert len(guard._save_cache) > 0
    await _put(jp_fetch, "s.ipynb", {"type": "notebook", "content": nb})
    assert (jp_root_dir / "s.ipynb").read_text() == first and recorder.of("pii") == first_events
    assert SSN not in first and token in first
    guard.secrets.set("k1", [token])
    await _put(jp_fetch, "s.ipynb", {"type": "notebook", "content": nb})
    assert token not in (jp_root_dir / "s.ipynb").read_text()


async def test_save_redacts_injected_secret(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any
) -> None:
    jp_serverapp.web_app.settings["prod_discovery"].secrets.set("k1", ["pw-abcdefgh123"])
    await _put(jp_fetch, "e.txt", {"type": "file", "format": "text", "content": "x pw-abcdefgh123"})
    assert (jp_root_dir / "e.txt").read_text() == "x <SECRET>"


async def _refused(jp_fetch: Any, path: str, model: dict[str, Any], code: int) -> str:
    with pytest.raises(HTTPClientError) as err:
        await _put(jp_fetch, path, model)
    assert err.value.code == code
    return str(err.value.response.body.decode())  # type: ignore[union-attr]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_save_redacts_base64_upload(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    """JupyterLab uploads every file, CSVs included, as base64."""
    # ';'-separated: the scanner misses an SSN right after a comma (reported separately).
    csv = f"id;email;ssn\n1;{EMAIL};{SSN}\n".encode()
    await _put(jp_fetch, "up.csv", {"type": "file", "format": "base64", "content": _b64(csv)})
    assert (jp_root_dir / "up.csv").read_text() == "id;email;ssn\n1;<EMAIL_ADDRESS>;<US_SSN>\n"
    assert recorder.of("pii")[0]["path"] == "up.csv"


async def test_save_redacts_latin1_base64_upload(jp_fetch: Any, jp_root_dir: Path) -> None:
    data = f"caf\xe9;{SSN}\n".encode("latin-1")
    await _put(jp_fetch, "l1.csv", {"type": "file", "format": "base64", "content": _b64(data)})
    assert (jp_root_dir / "l1.csv").read_bytes() == "caf\xe9;<US_SSN>\n".encode("latin-1")


async def test_save_refuses_invalid_base64(jp_fetch: Any, jp_root_dir: Path) -> None:
    body = await _refused(
        jp_fetch, "bad.csv", {"type": "file", "format": "base64", "content": "%%%"}, 400
    )
    assert "could not be scanned" in body and not (jp_root_dir / "bad.csv").exists()


async def test_chunked_upload_is_scanned_whole_before_it_is_written(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    data = f"id;ssn\n1;{SSN}\n2;{EMAIL}\n".encode()
    cut1, cut2 = data.index(b"-22") + 1, data.index(b"@") + 2  # values split across chunks
    chunks = [data[:cut1], data[cut1:cut2], data[cut2:]]
    for n, part in zip((1, 2, -1), chunks, strict=True):
        model = {"type": "file", "format": "base64", "chunk": n, "content": _b64(part)}
        await _put(jp_fetch, "big.csv", model)
        if n != -1:  # nothing reaches the served directory before the whole file is scanned
            assert not (jp_root_dir / "big.csv").exists()
    assert (jp_root_dir / "big.csv").read_text() == "id;ssn\n1;<US_SSN>\n2;<EMAIL_ADDRESS>\n"


@pytest.mark.parametrize("guard_config", [{"PIIPolicy": {"actions": {"US_SSN": "block"}}}])
async def test_chunked_upload_refused_by_policy_leaves_nothing(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    await _put(
        jp_fetch, "c.csv", {"type": "file", "format": "text", "chunk": 1, "content": "a;536-2"}
    )
    body = await _refused(
        jp_fetch, "c.csv", {"type": "file", "format": "text", "chunk": -1, "content": "2-1234"}, 403
    )
    assert "US_SSN x1" in body and not (jp_root_dir / "c.csv").exists()


async def test_chunk_without_first_chunk_is_refused(jp_fetch: Any) -> None:
    model = {"type": "file", "format": "text", "chunk": 2, "content": SSN}
    assert "without its first chunk" in await _refused(jp_fetch, "o.csv", model, 400)


async def test_copy_of_file_written_outside_contents_api_is_redacted(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    (jp_root_dir / "raw.txt").write_text(f"mail {EMAIL}\n")  # e.g. written by a kernel
    await jp_fetch("api", "contents", method="POST", body=json.dumps({"copy_from": "raw.txt"}))
    (copy,) = [p for p in jp_root_dir.iterdir() if p.name != "raw.txt"]
    assert copy.read_text() == "mail <EMAIL_ADDRESS>\n"


async def test_rename_into_scanned_name_is_redacted(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "dump.bin").write_bytes(f"{SSN}\n".encode())
    await jp_fetch(
        "api", "contents", "dump.bin", method="PATCH", body=json.dumps({"path": "dump.csv"})
    )
    assert (jp_root_dir / "dump.csv").read_text() == "<US_SSN>\n"


@pytest.mark.parametrize("guard_config", [{"PIIPolicy": {"actions": {"US_SSN": "block"}}}])
async def test_rename_refused_by_policy_keeps_old_name(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "dump.bin").write_bytes(f"{SSN}\n".encode())
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "api", "contents", "dump.bin", method="PATCH", body=json.dumps({"path": "d.csv"})
        )
    assert err.value.code == 403
    assert (jp_root_dir / "dump.bin").exists() and not (jp_root_dir / "d.csv").exists()


def _tree(root: Path, ssn_line: str = f"1;{SSN}\n") -> None:
    """A directory written outside the contents API (e.g. by a kernel): clean and PII files."""
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "clean.txt").write_text("nothing here\n")
    (root / "d" / "sub" / "p.csv").write_text(ssn_line)
    nb = _notebook(f"mail {EMAIL}")
    (root / "d" / "sub" / "n.ipynb").write_text(json.dumps(nb))


async def _copy(jp_fetch: Any, source: str, dest: str = "") -> Any:
    return await jp_fetch(
        "api", "contents", dest, method="POST", body=json.dumps({"copy_from": source})
    )


async def test_directory_copy_scans_and_redacts_every_file(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    _tree(jp_root_dir)
    reply = json.loads((await _copy(jp_fetch, "d")).body)
    assert reply["path"] == "d-Copy1" and reply["type"] == "directory"
    copy = jp_root_dir / "d-Copy1"
    assert (copy / "clean.txt").read_text() == "nothing here\n"
    assert (copy / "sub" / "p.csv").read_text() == "1;<US_SSN>\n"
    copied_nb = (copy / "sub" / "n.ipynb").read_text()
    assert EMAIL not in copied_nb and "<EMAIL_ADDRESS>" in copied_nb
    assert (jp_root_dir / "d" / "sub" / "p.csv").read_text() == f"1;{SSN}\n"  # source as it was
    assert sorted(p.name for p in jp_root_dir.iterdir()) == ["d", "d-Copy1"]  # no staging left
    paths = sorted({e["path"] for e in recorder.of("pii")})
    assert paths == ["d/sub/n.ipynb", "d/sub/p.csv"]
    assert all(u is not None for k, _, u in recorder.events if k == "pii")


async def test_directory_copy_of_clean_tree_is_identical(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "c" / "x").mkdir(parents=True)
    (jp_root_dir / "c" / "x" / "a.bin").write_bytes(bytes(range(256)))
    (jp_root_dir / "dest").mkdir()
    reply = json.loads((await _copy(jp_fetch, "c", "dest")).body)
    assert reply["path"].startswith("dest/c")
    assert (jp_root_dir / reply["path"] / "x" / "a.bin").read_bytes() == bytes(range(256))


@pytest.mark.parametrize("guard_config", [{"PIIPolicy": {"actions": {"US_SSN": "block"}}}])
async def test_directory_copy_refused_by_policy_leaves_nothing(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    _tree(jp_root_dir)
    with pytest.raises(HTTPClientError) as err:
        await _copy(jp_fetch, "d")
    assert err.value.code == 403
    body = json.loads(err.value.response.body)  # type: ignore[union-attr]
    assert "d/sub/p.csv" in body["message"] and "US_SSN x1" in body["message"]
    assert SSN not in body["message"]
    assert sorted(p.name for p in jp_root_dir.iterdir()) == ["d"]
    assert any(e["action"] == "block" for e in recorder.of("pii"))


async def test_directory_copy_with_unscannable_file_is_refused(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    _tree(jp_root_dir)
    nb = _notebook("x")
    nb["cells"][0]["outputs"] = [None]
    (jp_root_dir / "d" / "bad.ipynb").write_text(json.dumps(nb))
    with pytest.raises(HTTPClientError) as err:
        await _copy(jp_fetch, "d")
    assert err.value.code == 400
    message = json.loads(err.value.response.body)["message"]  # type: ignore[union-attr]
    assert "d/bad.ipynb could not be scanned" in message and "cell 1" in message
    assert sorted(p.name for p in jp_root_dir.iterdir()) == ["d"]


async def _rename(jp_fetch: Any, old: str, new: str) -> Any:
    return await jp_fetch("api", "contents", old, method="PATCH", body=json.dumps({"path": new}))


async def test_directory_rename_scans_every_file(jp_fetch: Any, jp_root_dir: Path) -> None:
    _tree(jp_root_dir)
    await _rename(jp_fetch, "d", "e")
    assert (jp_root_dir / "e" / "sub" / "p.csv").read_text() == "1;<US_SSN>\n"
    assert EMAIL not in (jp_root_dir / "e" / "sub" / "n.ipynb").read_text()
    assert (jp_root_dir / "e" / "clean.txt").read_text() == "nothing here\n"


@pytest.mark.parametrize("guard_config", [{"PIIPolicy": {"actions": {"US_SSN": "block"}}}])
async def test_directory_rename_refused_by_policy_keeps_old_name(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    _tree(jp_root_dir)
    with pytest.raises(HTTPClientError) as err:
        await _rename(jp_fetch, "d", "e")
    assert err.value.code == 403
    assert "e/sub/p.csv" in json.loads(err.value.response.body)["message"]  # type: ignore[union-attr]
    assert sorted(p.name for p in jp_root_dir.iterdir()) == ["d"]
    # Refused as a whole: no file was rewritten either (the email is still there).
    assert EMAIL in (jp_root_dir / "d" / "sub" / "n.ipynb").read_text()


def _rich_notebook() -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    nb.metadata["title"] = f"owner {EMAIL}"
    md = nbformat.v4.new_markdown_cell(f"Customer 536\\-**22**-1234 and {EMAIL}")
    md.attachments = {"note.txt": {"text/plain": f"ssn {SSN}"}, "a.png": {"image/png": "iVBOR"}}
    raw = nbformat.v4.new_raw_cell(f"<b>{EMAIL}</b>", metadata={"format": "text/html"})
    code = nbformat.v4.new_code_cell("x = 1", metadata={"tags": [f"by {EMAIL}"]})
    code.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/latex": r"$5\,3\,6-22-1234$",
                "image/svg+xml": "<svg><text>536-22</text><text>-1234</text></svg>",
            },
            metadata={"note": f"{EMAIL}"},
        )
    ]
    nb.cells = [md, raw, code]
    return dict(nb)


def _leaks(text: str) -> bool:
    digits = "".join(c for c in text if c.isdigit())
    return "536221234" in digits or EMAIL in text or "ann.smith" in text


async def test_save_scans_every_part_of_a_notebook(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    await _put(jp_fetch, "rich.ipynb", {"type": "notebook", "content": _rich_notebook()})
    saved = (jp_root_dir / "rich.ipynb").read_text()
    nb = json.loads(saved)
    assert not _leaks(saved), saved
    assert nb["cells"][0]["attachments"]["a.png"] == {"image/png": "iVBOR"}
    assert "".join(nb["cells"][2]["source"]) == "x = 1"  # code is the user's, audited at execution
    places = [(e["cell"], e["output"]) for e in recorder.of("pii")]
    # Each place once (the notebook's metadata, the markdown's source as rendered and its
    # attachments, the raw cell's source, the code cell's metadata and its output).
    assert sorted(places, key=str) == sorted(
        [
            (None, "metadata"),
            (1, "source"),
            (1, "attachment"),
            (2, "source"),
            (3, "metadata"),
            (3, 1),
        ],
        key=str,
    )
    ((md,),) = [[e for e in recorder.of("pii") if (e["cell"], e["output"]) == (1, "source")]]
    assert md["entities"] == {"US_SSN": 1, "EMAIL_ADDRESS": 1}  # as rendered: the SSN too


async def test_save_scans_notebook_sent_as_text_with_escapes(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    nb = _notebook(f"ssn {SSN}")
    text = json.dumps(nb, ensure_ascii=True).replace("536", "\\u0035\\u0033\\u0036")
    assert SSN not in text
    await _put(jp_fetch, "t.ipynb", {"type": "file", "format": "text", "content": text})
    saved = json.loads((jp_root_dir / "t.ipynb").read_text())
    assert not _leaks(json.dumps(saved)) and "<US_SSN>" in json.dumps(saved)


@pytest.mark.parametrize("guard_config", [{"PIIPolicy": {"actions": {"US_SSN": "block"}}}])
@pytest.mark.parametrize("bad", [[None], "not a list", [{"output_type": "stream", "data": 3}]])
async def test_malformed_notebook_is_refused_not_saved(
    jp_fetch: Any, jp_root_dir: Path, bad: Any
) -> None:
    nb = _notebook(f"ssn {SSN}")
    md = nbformat.v4.new_markdown_cell("notes")
    md["outputs"] = bad
    nb["cells"].insert(0, md)
    body = await _refused(jp_fetch, "m.ipynb", {"type": "notebook", "content": nb}, 400)
    assert "could not be scanned" in body and "cell 1" in body
    assert not (jp_root_dir / "m.ipynb").exists()


async def test_large_save_is_scanned_off_the_event_loop(
    jp_fetch: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from jupyter_prod_discovery.guard import save

    threads: list[str] = []
    real = save.SaveScanner.scan_model

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        threads.append(threading.current_thread().name)
        real(self, *args, **kwargs)

    monkeypatch.setattr(save.SaveScanner, "scan_model", spy)
    big = ("row 12.5 ok\n" * 20_000) + EMAIL
    await _put(jp_fetch, "big.txt", {"type": "file", "format": "text", "content": big})
    assert threads and threads[0] != threading.main_thread().name
    assert (jp_root_dir / "big.txt").read_text().endswith("<EMAIL_ADDRESS>")


@pytest.mark.parametrize(
    "guard_config",
    [
        {
            "ServerApp": {
                "contents_manager_class": "jupyter_server.services.contents.largefilemanager.AsyncLargeFileManager"
            }
        }
    ],
)
async def test_other_contents_manager_gets_hook_that_fails_closed(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any
) -> None:
    assert not isinstance(jp_serverapp.contents_manager, GuardedContentsManager)
    await _put(
        jp_fetch, "h.txt", {"type": "file", "format": "base64", "content": _b64(SSN.encode())}
    )
    assert (jp_root_dir / "h.txt").read_text() == "<US_SSN>"
    nb = _notebook("x")
    nb["cells"][0]["outputs"] = [None]
    await _refused(jp_fetch, "h.ipynb", {"type": "notebook", "content": nb}, 400)
    assert not (jp_root_dir / "h.ipynb").exists()
    model = {"type": "file", "format": "text", "chunk": 1, "content": SSN}
    assert "Chunked uploads" in await _refused(jp_fetch, "h.csv", model, 403)
    # A directory copy saves nothing (no hook runs): refused with the reason; a file copy saves.
    _tree(jp_root_dir)
    with pytest.raises(HTTPClientError) as err:
        await _copy(jp_fetch, "d")
    assert err.value.code == 403
    assert COPY_DIR_REASON in json.loads(err.value.response.body)["message"]  # type: ignore[union-attr]
    assert not (jp_root_dir / "d-Copy1").exists()
    reply = json.loads((await _copy(jp_fetch, "d/sub/p.csv", "d")).body)
    assert (jp_root_dir / reply["path"]).read_text() == "1;<US_SSN>\n"


def test_scan_cli_reports_json_findings(tmp_path: Path, capsys: Any) -> None:
    nb = tmp_path / "n.ipynb"
    nb.write_text(json.dumps(_notebook("clean", f"mail {EMAIL}")))
    log = tmp_path / "app.log"
    log.write_text(f"user ssn {SSN}\n")
    assert main(["scan", str(nb), str(log), "--format", "json"]) == 1
    rows = json.loads(capsys.readouterr().out)["findings"]
    assert rows[0] == {
        "path": str(nb),
        "cell": 2,
        "output": 1,
        "field": "text",
        "entity_type": "EMAIL_ADDRESS",
        "start": 5,
        "end": 26,
        "score": 1.0,
        "action": "redact",
    }
    assert rows[-1]["path"] == str(log) and rows[-1]["entity_type"] == "US_SSN"
    assert rows[-1]["cell"] is None


def test_scan_cli_exits_zero_when_clean(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "clean.txt"
    f.write_text("nothing to see, 12.5 rows\n")
    assert main(["scan", str(f)]) == 0
    assert "0 finding(s)" in capsys.readouterr().out


def test_scan_cli_applies_policy_file(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "a.txt"
    f.write_text(f"{EMAIL} {SSN}\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("entities: [US_SSN]\nactions: {US_SSN: block}\n")
    assert main(["scan", str(f), "--policy", str(policy)]) == 1
    out = capsys.readouterr().out
    assert "US_SSN" in out and "-> block" in out and "EMAIL" not in out
    allow = tmp_path / "allow.json"
    allow.write_text(json.dumps({"allow_list": [EMAIL, SSN]}))
    assert main(["scan", str(f), "--policy", str(allow)]) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"\xff\xfe\x00binary", "not a UTF-8"),
        (b"{not json", "not a notebook (invalid JSON)"),
        (b'{"metadata": {}}', "not a notebook (no cells)"),
    ],
)
def test_scan_cli_rejects_bad_input(
    tmp_path: Path, capsys: Any, content: bytes | None, message: str
) -> None:
    path = tmp_path / "x.ipynb"
    if content is not None:
        path.write_bytes(content)
    assert main(["scan", str(path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("actions: {US_SSN: shred}\n", "PIIPolicy.actions"),
        ("- a list\n", "mapping"),
        ("actions: [unclosed\n", "not valid"),
        ("colour: red\n", "unknown policy keys"),
    ],
)
def test_scan_cli_rejects_bad_policy(
    tmp_path: Path, capsys: Any, policy: str, message: str
) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    p = tmp_path / "p.yaml"
    p.write_text(policy)
    assert main(["scan", str(f), "--policy", str(p)]) == 2
    assert message in capsys.readouterr().err
    assert main(["scan", str(f), "--policy", str(tmp_path / "missing.yaml")]) == 2


def test_scan_cli_scans_a_folder_recursively(tmp_path: Path, capsys: Any) -> None:
    project = tmp_path / "project"
    (project / "reports" / "2026").mkdir(parents=True)
    (project / ".ipynb_checkpoints").mkdir()
    (project / "reports" / "2026" / "n.ipynb").write_text(
        json.dumps(_notebook("clean", f"mail {EMAIL}"))
    )
    (project / "notes.txt").write_text(f"ssn {SSN}\n")
    (project / "clean.md").write_text("nothing here\n")
    (project / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")  # skipped: not text
    (project / ".ipynb_checkpoints" / "n-checkpoint.ipynb").write_text(
        json.dumps(_notebook("clean", f"mail {EMAIL}"))
    )  # skipped: hidden
    assert main(["scan", str(project), "--format", "json"]) == 1
    rows = json.loads(capsys.readouterr().out)["findings"]
    found = {(Path(r["path"]).relative_to(project).as_posix(), r["entity_type"]) for r in rows}
    assert found == {("notes.txt", "US_SSN"), ("reports/2026/n.ipynb", "EMAIL_ADDRESS")}
    assert main(["scan", str(project)]) == 1
    assert f"{len(rows)} finding(s) in 3 file(s)" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["scan", str(empty)]) == 0


def test_contents_handler_gated_only_for_a_manager_not_ours() -> None:
    """The directory-copy gate wraps jupyter_server's contents handler only when the contents
    manager is not the guarded one (which scans each copied file itself)."""
    from jupyter_server.services.contents.handlers import ContentsHandler
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

    from jupyter_prod_discovery.guard.save import DirectoryCopyRefusal, gate_for

    assert gate_for(ContentsHandler, GuardedContentsManager()) is None
    assert gate_for(ContentsHandler, AsyncLargeFileManager()) is DirectoryCopyRefusal
    assert gate_for(ContentsHandler) is DirectoryCopyRefusal
    assert gate_for(type("Other", (), {}), AsyncLargeFileManager()) is None


async def test_base64_text_attachment_is_redacted_decoded(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    """nbformat stores attachments as base64: a text one is judged and redacted decoded (its
    base64 alone shows no SSN), then stored encoded again; an image is left as it was."""
    md = nbformat.v4.new_markdown_cell("![notes](attachment:notes.txt)")
    md.attachments = {
        "notes.txt": {"text/plain": _b64(f"ssn {SSN}".encode())},
        "a.png": {"image/png": "iVBORw0KGgo="},
    }
    nb = nbformat.v4.new_notebook()
    nb.cells = [md]
    await _put(jp_fetch, "att.ipynb", {"type": "notebook", "content": dict(nb)})
    saved = json.loads((jp_root_dir / "att.ipynb").read_text())
    atts = saved["cells"][0]["attachments"]
    value = atts["notes.txt"]["text/plain"]  # nbformat writes text/* values as lists of lines
    text = base64.b64decode("".join(value) if isinstance(value, list) else value).decode()
    assert SSN not in text and "<US_SSN>" in text
    assert atts["a.png"] == {"image/png": "iVBORw0KGgo="}
    assert [(e["cell"], e["output"], e["entities"]) for e in recorder.of("pii")] == [
        (1, "attachment", {"US_SSN": 1})
    ]
