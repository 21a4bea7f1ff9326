"""The save guard: what is written through the contents API passes the PII policy first.

``SaveScanner.scan_model`` rewrites a contents model in place (redaction) or raises
``HTTPError``: 403 naming entity types and counts (never values) when the policy blocks, 400
naming the reason when the model cannot be scanned (a malformed notebook, undecodable base64):
any error refuses the save, nothing is ever written unscanned. What it scans:

- notebooks: every output (all MIME types, as the live guard does), markdown and raw cell
  sources (as rendered), notebook, cell and output metadata, and cell attachments. Code cell
  sources are the user's code, audited at execution, not scanned;
- text files, and base64 files (how JupyterLab uploads every file) decoded as UTF-8, else as
  Latin-1; HTML, SVG, Markdown and LaTeX files also as rendered, JSON files (``.ipynb`` sent as
  text included) also after decoding their ``\\u`` escapes.

A notebook's texts are scanned through a memo (``scancache.py``, bounded by
``PIIGuard.save_cache_chars``): a text an earlier save scanned, under the same policy and live
secrets, is not scanned again, which is most of every autosave.

Two ways in. ``GuardedContentsManager`` (installed as ``ServerApp.contents_manager_class``
unless one is configured) scans on a worker thread, so a large save does not stop the server,
and also guards chunked uploads (spooled privately, scanned whole before the file is written),
renames and copies, of files and of directories (``tree.py``: every file of the tree). With
another contents manager, ``make_pre_save_hook`` is registered on it instead: the same scan, on
the event loop, for ``save`` (jupyter_server skips pre-save hooks after the first chunk of a
chunked upload, and copies a directory without saving its files; both are then refused, see
``gate_for`` and the README).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.services.contents.manager import copy_pat
from jupyter_server.utils import ensure_async
from tornado.web import HTTPError

from ..pii import Verdict
from ..pii.notebook import attachment_texts
from .live import PIIGuard, summary
from .normalize import kind_of
from .outputs import apply_to_notebook
from .scancache import Memo, generation
from .tree import copy_scanned, scan_tree

__all__ = [
    "COPY_DIR_REASON",
    "GuardedContentsManager",
    "Job",
    "SaveScanner",
    "gate_for",
    "make_pre_save_hook",
]

COPY_DIR_REASON = (
    "Prod Discovery: copying a directory is refused with this contents manager: it copies the "
    "files without saving them, so the PII guard cannot scan them (the Prod Discovery contents "
    "manager scans each file). Copy the files one by one instead."
)

_KIND_BY_EXT = {
    ".html": "html",
    ".htm": "html",
    ".svg": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".tex": "latex",
}


def _current_user() -> Any:
    from jupyter_server import CallContext

    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    return getattr(handler, "current_user", None)


class Unscannable(ValueError):
    """The model cannot be scanned: the save is refused with this reason."""


class Job:
    """One save's scan results: audit records, what the policy blocked, and whether the scan
    rewrote anything in the model (``changed``: it may without a finding, e.g. active content
    dropped from metadata)."""

    __slots__ = ("blocked", "changed", "records")

    def __init__(self) -> None:
        self.records: list[tuple[dict[str, Any], Verdict]] = []
        self.blocked: dict[str, int] = {}
        self.changed = False

    def add(self, where: dict[str, Any], verdict: Verdict) -> None:
        self.records.append((where, verdict))
        if verdict.action == "block":
            for k, v in verdict.entities.items():
                self.blocked[k] = self.blocked.get(k, 0) + v


class SaveScanner:
    """Applies the guard to contents models; shared by the contents manager and the hook."""

    def __init__(self, guard: PIIGuard, app: Any) -> None:
        self.guard = guard
        self.app = app

    # --- entry point -------------------------------------------------------------------------
    def scan_model(
        self, model: dict[str, Any], path: str, job: Job, *, reading: bool = False
    ) -> None:
        """Scan (and redact in place) one model to be saved, or with ``reading`` one the
        contents API is about to return; raise HTTPError to refuse it.

        Audit records go to ``job`` (written by the caller on the event loop, also when the
        save or read is refused); this method may run on a worker thread.
        """
        if not self.guard.enabled:
            return
        what = "Read" if reading else "Save"
        blocked = job.blocked
        memo = None
        try:
            kind = model.get("type")
            if kind == "notebook":
                memo = self.guard.save_memo()
                self._notebook(model.get("content"), path, job, memo)
            elif kind == "file" and model.get("content") is not None:
                self._file(model, path, job)
            elif kind not in ("directory", "file", None):
                raise Unscannable(f"unknown content type {kind!r}")
        except HTTPError:
            raise
        except Exception as exc:
            # Whatever went wrong, the save does not happen unscanned.
            reason = str(exc) if isinstance(exc, Unscannable) else type(exc).__name__
            raise HTTPError(
                400,
                f"{what} refused: {path} could not be scanned for PII ({reason}).",
                reason=f"{what} refused by the PII guard",
            ) from None
        if memo is not None:
            memo.commit()  # only a save scanned whole without an error adds to the cache
        if blocked and reading:
            raise HTTPError(
                403,
                f"Read refused by the Prod Discovery PII policy: {path} holds {summary(blocked)}"
                ", written to it outside the contents API. Remove these values from a terminal "
                "(for a notebook: jupyter nbconvert --clear-output --inplace).",
                reason="Read refused by the PII policy",
            )
        if blocked:
            raise HTTPError(
                403,
                f"Save refused by the Prod Discovery PII policy: {summary(blocked)}. "
                "Clear or redact these outputs and save again.",
                reason="Save refused by the PII policy",
            )

    # --- parts ------------------------------------------------------------------------------
    def record(self, job: Job, user: Any, source: str = "save") -> None:
        """Write the audit records of one scan (types and counts, never values); ``source``
        says whether a save or a read was scanned."""
        for where, verdict in job.records:
            self.guard.audit(self.app.audit, {"source": source, **where}, verdict, user)
        job.records.clear()

    def _notebook(self, nb: Any, path: str, job: Job, memo: Memo | None = None) -> None:
        """Every place of a notebook (module docstring); ``memo`` gives the text scans of
        earlier saves (``scancache``): only the scans, numbering and records are this save's."""
        _check_notebook(nb)
        # Outputs are rewritten here; every other place is only reported by this walk (as
        # ``scan`` and the export gate judge it: attachments decoded, sources as written).
        reported = apply_to_notebook(self.guard, nb, memo)
        # Places the walk below judges itself (as rendered, and rewrites): (cell index, part).
        walked: set[tuple[int | None, str]] = set()

        def add(ci: int | None, part: str | int, verdict: Verdict) -> None:
            # Numbered from 1 as JupyterLab shows cells and outputs (a part's name stays a name).
            cell = None if ci is None else ci + 1
            output = part + 1 if isinstance(part, int) else part
            job.add({"path": path, "cell": cell, "output": output}, verdict)
            if isinstance(part, str):
                walked.add((ci, part))

        for ci, cell in enumerate(nb["cells"]):
            ctype = cell.get("cell_type")
            if ctype in ("markdown", "raw") and "source" in cell:
                fmt = str((cell.get("metadata") or {}).get("format") or "")
                kind = "markdown" if ctype == "markdown" else (kind_of(fmt) or "plain")
                source = _lines(cell["source"], f"cell {ci + 1} source")
                if memo is not None:
                    verdict, text = memo.text(source, kind)
                else:
                    verdict, text = self.guard.text(source, None, kind=kind)
                if verdict.entities:
                    add(ci, "source", verdict)
                    cell["source"] = text
                    job.changed = True
            for field, name in (("metadata", "metadata"), ("attachments", "attachment")):
                if cell.get(field):
                    scan = self.guard.data(cell[field], memo=memo)
                    verdict = scan.verdict
                    if scan.content is not None:
                        cell[field] = scan.content
                        job.changed = True
                    if field == "attachments":
                        decoded = self._encoded_attachments(cell[field], memo, job)
                        verdict.merge(decoded)
                    if verdict.entities:
                        add(ci, name, verdict)
            for oi, out in enumerate(cell.get("outputs") or []):
                if out.get("metadata"):
                    scan = self.guard.data(out["metadata"], memo=memo)
                    if scan.verdict.entities:
                        add(ci, oi, scan.verdict)
                        if scan.content is not None:
                            out["metadata"] = scan.content
                            job.changed = True
        if nb.get("metadata"):
            scan = self.guard.data(nb["metadata"], memo=memo)
            if scan.verdict.entities:
                add(None, "metadata", scan.verdict)
                if scan.content is not None:
                    nb["metadata"] = scan.content
                    job.changed = True
        for at, part, action, entities in reported:
            if isinstance(part, str) and (at, part) in walked:
                continue  # each place once: the walk's verdict, which rewrote it
            verdict = Verdict(action, [])
            verdict.entities = entities
            add(at, "" if part is None else part, verdict)

    def _encoded_attachments(
        self, attachments: dict[str, Any], memo: Memo | None, job: Job
    ) -> Verdict:
        """Text attachments held as base64 (as nbformat stores every attachment), scanned
        decoded and, where the policy rewrites, encoded again in place: ``guard.data`` sees
        only their base64 text."""
        verdict = Verdict("allow", [])
        for bundle in attachments.values():
            if not isinstance(bundle, dict):
                continue
            for mime, text, encoded in list(attachment_texts(bundle)):
                if not encoded:
                    continue  # not base64: guard.data judged it as it is
                if memo is not None:
                    found, new = memo.text(text, "plain")
                else:
                    found, new = self.guard.text(text, None, kind="plain")
                verdict.merge(found)
                if new != text:
                    bundle[mime] = base64.b64encode(new.encode("utf-8")).decode("ascii")
                    job.changed = True
        return verdict

    def _file(self, model: dict[str, Any], path: str, job: Job) -> None:
        fmt = model.get("format")
        content = model["content"]
        encoding = None
        if fmt == "base64":
            if not isinstance(content, str):
                raise Unscannable("base64 content is not a string")
            try:
                raw = base64.b64decode("".join(content.split()).encode("ascii"), validate=True)
            except (binascii.Error, ValueError, UnicodeEncodeError):
                raise Unscannable("invalid base64 content") from None
            try:
                text, encoding = raw.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                text, encoding = raw.decode("latin-1"), "latin-1"
        elif fmt in ("text", None):
            if not isinstance(content, str):
                raise Unscannable("text content is not a string")
            text = content
        else:
            raise Unscannable(f"unknown format {fmt!r}")
        ext = PurePosixPath(path).suffix.lower()
        kind = _KIND_BY_EXT.get(ext, "plain") if encoding != "latin-1" else "plain"
        verdict, new = self.guard.text(text, None, kind=kind)
        if verdict.entities:
            job.add({"path": path}, verdict)
        if not job.blocked and _looks_json(new, ext):
            new = self._json_text(new, path, job)
        if not job.blocked and new != text:
            job.changed = True
            if encoding is None:
                model["content"] = new
            else:
                model["content"] = base64.b64encode(new.encode(encoding, "replace")).decode("ascii")

    def _json_text(self, text: str, path: str, job: Job) -> str:
        """A JSON file (an ``.ipynb`` sent as text) checked once its escapes are decoded."""
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, dict) and isinstance(value.get("cells"), list):
            before = json.dumps(value, sort_keys=True)
            self._notebook(value, path, job)
            if json.dumps(value, sort_keys=True) == before:
                return text
            return json.dumps(value, indent=1, ensure_ascii=False) + "\n"
        scan = self.guard.data(value)
        if scan.verdict.entities:
            job.add({"path": path, "output": "json"}, scan.verdict)
        if scan.content is None:
            return text
        return json.dumps(scan.content, indent=1, ensure_ascii=False) + "\n"


def _notebook_chars(nb: Any, limit: int) -> int:
    """About how many characters a save of notebook ``nb`` scans, counted until ``limit`` is
    passed: cell sources and output texts. Why: a small notebook is scanned on the event loop
    (the hand-off to a worker thread and back cost more than its scan, which mostly hits the
    scan memo on an autosave); a large one, or one whose size is not plain to see (attachments,
    JSON outputs, anything malformed), goes to the worker thread, where a malformed notebook is
    refused by the scan itself."""
    over = limit + 1
    try:
        total = 0
        for cell in nb["cells"]:
            if cell.get("attachments"):
                return over
            total += _chars(cell.get("source"))
            for out in cell.get("outputs") or ():
                total += _chars(out.get("text"))
                for value in (out.get("data") or {}).values():
                    total += _chars(value)
            if total > limit:
                return total
        return total
    except Exception:
        return over


def _chars(value: Any) -> int:
    """Characters of a notebook text (a string or a list of lines); anything else counts as
    too large to scan inline."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return sum(map(len, value))
    return 1 << 62


def _looks_json(text: str, ext: str) -> bool:
    return ext in (".ipynb", ".json", ".geojson") or text.lstrip()[:1] in ("{", "[")


def _lines(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    raise Unscannable(f"{what} is not a string or a list of strings")


def _check_notebook(nb: Any) -> None:
    """The structure every scan below relies on; anything else is refused, not skipped."""
    if not isinstance(nb, dict):
        raise Unscannable("notebook content is not an object")
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise Unscannable("notebook has no list of cells")
    if not isinstance(nb.get("metadata", {}), dict):
        raise Unscannable("notebook metadata is not an object")
    for ci, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise Unscannable(f"cell {ci + 1} is not an object")
        for field in ("metadata", "attachments"):
            if not isinstance(cell.get(field) or {}, dict):
                raise Unscannable(f"cell {ci + 1} {field} is not an object")
        outputs = cell.get("outputs", [])
        if not isinstance(outputs, list):
            raise Unscannable(f"cell {ci + 1} outputs is not a list")
        for oi, out in enumerate(outputs):
            if not isinstance(out, dict):
                raise Unscannable(f"cell {ci + 1} output {oi + 1} is not an object")
            if not isinstance(out.get("data") or {}, dict) or not isinstance(
                out.get("metadata") or {}, dict
            ):
                raise Unscannable(
                    f"cell {ci + 1} output {oi + 1} data or metadata is not an object"
                )


def make_pre_save_hook(guard: PIIGuard, app: Any) -> Any:
    """A hook for ``ContentsManager.register_pre_save_hook`` bound to this guard and audit.

    Used only when the server's contents manager is not a :class:`GuardedContentsManager`.
    It raises ``HTTPError`` for every refusal: jupyter_server saves anyway on any other error.
    """
    scanner = SaveScanner(guard, app)

    def pre_save_hook(model: dict[str, Any], path: str, **kwargs: Any) -> None:
        if model.get("chunk") is not None:
            raise HTTPError(
                403,
                "Chunked uploads cannot be scanned by this contents manager; upload a smaller "
                "file or use the Prod Discovery contents manager.",
            )
        job = Job()
        try:
            scanner.scan_model(model, path, job)
        finally:
            scanner.record(job, _current_user())

    return pre_save_hook


class GuardedContentsManager(AsyncLargeFileManager):
    """jupyter_server's default contents manager with the save guard on every write path.

    ``save`` scans on a worker thread when the content is larger than ``pd_inline`` characters
    (a multi-megabyte file does not hold the event loop), a small one on the event loop;
    chunked uploads are spooled outside the served directory and scanned whole at the last
    chunk, before anything is written there; ``rename_file`` scans the file under its new
    name and ``copy`` saves through ``save``. ``get`` with content scans what it returns
    (``PIIGuard.scan_reads``): files reach the disk by other ways than this manager (kernel
    code, terminals), and what it returns is shown in the browser. Without the extension
    (``pd_scanner`` unset) it behaves as its base class.
    """

    pd_scanner: SaveScanner | None = None
    #: Threshold (characters of content) above which a scan runs on a worker thread.
    pd_inline = 65536

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pd_spools: dict[str, tuple[IO[bytes], str]] = {}
        # Path -> (sha256, scan generation) of bytes found clean there: see ``_pd_known_clean``.
        self._pd_clean: dict[str, tuple[str, tuple[Any, ...]]] = {}

    async def _pd_scan(self, model: dict[str, Any], path: str, *, reading: bool = False) -> bool:
        """Scan ``model`` (redacting it in place) and record the findings; True when the scan
        found nothing at all (no record, nothing changed)."""
        scanner = self.pd_scanner
        if scanner is None or not scanner.guard.enabled:
            return False
        user = _current_user()  # read at request time, on the request's own context
        job = Job()
        content = model.get("content")
        if model.get("type") == "notebook":
            size = _notebook_chars(content, self.pd_inline)
        else:
            size = len(content) if isinstance(content, str) else 0
        try:
            if size > self.pd_inline:
                await asyncio.to_thread(scanner.scan_model, model, path, job, reading=reading)
            else:
                scanner.scan_model(model, path, job, reading=reading)
            clean = not job.records and not job.changed
        finally:
            scanner.record(job, user, "read" if reading else "save")
        return clean

    def _pd_known_clean(self, path: str, sha256: str | None) -> tuple[bool, tuple[Any, ...] | None]:
        """Whether the bytes with this sha256 at ``path`` were scanned and found clean under
        the guard's current generation (policy, settings, live secrets: ``scancache``), and
        that generation (None without a digest), taken before a scan so that a secret issued
        during it makes the next read scan again.

        Why: the same file is read again and again unchanged (every open tab on each reload
        of the page, a reopened notebook, a collaboration room loading it), and the same bytes
        scan the same way under the same generation. Keyed by the exact digest of the bytes
        read (jupyter_server's ``require_hash``, which the audit asks for on every notebook
        read; without it every read is scanned), so any change to the file, the policy or the
        secrets means a full scan. Only reads that found and changed nothing are kept
        (``_pd_remember``): one with findings is scanned (and recorded) every time. Not filled
        by saves: a save's digest would cost every save (far more frequent than reads) to
        spare one read.
        """
        scanner = self.pd_scanner
        if not sha256 or scanner is None:
            return False, None
        gen = generation(scanner.guard)
        entry = self._pd_clean.get(path)
        return entry is not None and entry[0] == sha256 and entry[1] == gen, gen

    def _pd_remember(self, path: str, sha256: str, gen: tuple[Any, ...]) -> None:
        """Note a clean read (bounded like the audit's caches: emptied when full)."""
        if len(self._pd_clean) >= 4096:
            self._pd_clean.clear()
        self._pd_clean[path] = (sha256, gen)

    async def get(
        self,
        path: str,
        content: bool = True,
        type: str | None = None,
        format: str | None = None,
        require_hash: bool = False,
    ) -> dict[str, Any]:
        """The base class's model, its content scanned (redacted in the model only, never on
        disk) before it is returned, when ``PIIGuard.scan_reads`` is on."""
        model: dict[str, Any] = await super().get(
            path, content=content, type=type, format=format, require_hash=require_hash
        )
        scanner = self.pd_scanner
        if (
            content
            and scanner is not None
            and scanner.guard.reads_on
            and model.get("type") in ("notebook", "file")
            and model.get("content") is not None
        ):
            path = path.strip("/")
            digest = model.get("hash") if model.get("hash_algorithm") == "sha256" else None
            known, gen = self._pd_known_clean(path, digest)
            if not known and await self._pd_scan(model, path, reading=True) and gen is not None:
                self._pd_remember(path, str(digest), gen)
        return model

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        chunk = model.get("chunk")
        if chunk is not None and self.pd_scanner is not None and self.pd_scanner.guard.enabled:
            return await self._pd_save_chunk(model, path.strip("/"), int(chunk))
        await self._pd_scan(model, path)
        return dict(await super().save(model, path))

    async def _pd_save_chunk(self, model: dict[str, Any], path: str, chunk: int) -> dict[str, Any]:
        fmt = model.get("format")
        content = model.get("content")
        if (
            model.get("type") != "file"
            or fmt not in ("text", "base64")
            or not isinstance(content, str)
        ):
            self._pd_discard(path)
            raise HTTPError(400, "A chunked upload needs a file model with text or base64 content")
        try:
            data = (
                content.encode()
                if fmt == "text"
                else base64.b64decode("".join(content.split()).encode("ascii"), validate=True)
            )
        except (binascii.Error, ValueError, UnicodeEncodeError):
            self._pd_discard(path)
            raise HTTPError(
                400, f"Upload refused: chunk {chunk} of {path} is not valid base64"
            ) from None
        if chunk == 1:
            self._pd_discard(path)
            # An unnamed file in the server's private runtime directory, never in the root.
            new: IO[bytes] = tempfile.TemporaryFile(dir=self._pd_spool_dir)  # noqa: SIM115
            self._pd_spools[path] = (new, fmt)
        elif path not in self._pd_spools:
            raise HTTPError(400, f"Upload refused: chunk {chunk} of {path} without its first chunk")
        spool, _ = self._pd_spools[path]
        await asyncio.to_thread(spool.write, data)
        if chunk != -1:
            now = datetime.now(tz=UTC)
            return {
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "type": "file",
                "writable": True,
                "created": now,
                "last_modified": now,
                "mimetype": None,
                "content": None,
                "format": None,
                "size": spool.tell(),
            }
        self._pd_spools.pop(path)
        try:
            spool.seek(0)
            whole = await asyncio.to_thread(spool.read)
        finally:
            spool.close()
        full = {
            "type": "file",
            "format": "base64",
            "content": base64.b64encode(whole).decode("ascii"),
        }
        await self._pd_scan(full, path)
        return dict(await super().save(full, path))

    @property
    def _pd_spool_dir(self) -> str | None:
        runtime = getattr(self.parent, "runtime_dir", None)
        return runtime if runtime and Path(runtime).is_dir() else None

    def _pd_discard(self, path: str) -> None:
        spool = self._pd_spools.pop(path, None)
        if spool is not None:
            spool[0].close()

    async def copy(self, from_path: str, to_path: str | None = None) -> dict[str, Any]:
        """Copy; a directory is copied with every file scanned before it appears (``tree``).

        A file is copied through ``save`` by the base class (scanned there). A directory is
        named as jupyter_server names it (``name-Copy1`` inside an existing folder).
        """
        scanner = self.pd_scanner
        if scanner is None or not scanner.guard.enabled or not await self.dir_exists(from_path):
            return dict(await super().copy(from_path, to_path))
        path = from_path.strip("/")
        from_dir, _, from_name = path.rpartition("/")
        await self.check_folder_size(path)
        to_name = copy_pat.sub(".", from_name)
        dest = from_dir if to_path is None else to_path.strip("/")
        if await self.dir_exists(dest):
            to_name = await self.increment_filename(to_name, dest, insert="-Copy")
        target = f"{dest}/{to_name}".strip("/")
        user = _current_user()
        jobs: list[Job] = []
        try:
            await asyncio.to_thread(
                copy_scanned,
                scanner,
                self._get_os_path(path),
                self._get_os_path(target),
                path,
                target,
                jobs,
            )
        finally:
            for job in jobs:
                scanner.record(job, user)
        return dict(await self.get(target, content=False))

    async def rename_file(self, old_path: str, new_path: str) -> None:
        """Rename, then scan the file (or every file of the directory) under its new name; a
        refused rename is moved back."""
        await super().rename_file(old_path, new_path)
        scanner = self.pd_scanner
        if scanner is None or not scanner.guard.enabled:
            return
        new = new_path.strip("/")
        if await self.dir_exists(new):
            user = _current_user()
            jobs: list[Job] = []
            try:
                await asyncio.to_thread(
                    scan_tree, scanner, self._get_os_path(new), new, "Rename", jobs
                )
            except HTTPError:
                await super().rename_file(new_path, old_path)
                raise
            finally:
                for job in jobs:
                    scanner.record(job, user)
            return
        # The base class's read: this scan is the save guard's, with its messages and records.
        model = await super().get(new, content=True)
        before = model.get("content")
        try:
            await self._pd_scan(model, new)
        except HTTPError:
            await super().rename_file(new_path, old_path)  # refused: the file keeps its name
            raise
        if model.get("content") != before:
            await super().save(
                {"type": model["type"], "format": model.get("format"), "content": model["content"]},
                new,
            )


if TYPE_CHECKING:
    from jupyter_server.base.handlers import APIHandler as _Handler
else:
    _Handler = object


class DirectoryCopyRefusal(_Handler):
    """Mixin for the contents handler when the contents manager is not a
    :class:`GuardedContentsManager`: a directory copy (``copytree``, no save, no pre-save hook)
    is refused with a 403 and the reason, while the guard is on."""

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        await super().prepare(*args, **kwargs)
        cm = self.contents_manager
        if self.request.method != "POST" or isinstance(cm, GuardedContentsManager):
            return
        guard = getattr(self.settings.get("prod_discovery"), "pii_guard", None)
        if guard is None or not guard.enabled:
            return
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            return  # the handler itself answers the bad body
        source = body.get("copy_from") if isinstance(body, dict) else None
        if isinstance(source, str) and await ensure_async(cm.dir_exists(source)):
            raise HTTPError(403, COPY_DIR_REASON, reason="Directory copy refused by the PII guard")


def gate_for(cls: type, cm: Any = None) -> type | None:
    """The mixin for jupyter_server's contents handler (see ``paths.install_gates``), or None:
    none with a :class:`GuardedContentsManager` ``cm``, which scans each copied file itself
    (the mixin's check would only cost every contents request a coroutine more)."""
    if isinstance(cm, GuardedContentsManager):
        return None
    if cls.__module__ == "jupyter_server.services.contents.handlers" and (
        cls.__name__ == "ContentsHandler"
    ):
        return DirectoryCopyRefusal
    return None
