"""Export as a job on the single-user server: submit, then poll each gate as it completes.

Two implementations behind one interface (what ``/prod-discovery/api/export-jobs`` calls):

- :class:`ServiceExports` (the server is a client of the trusted service): the server reads the
  notebook as its user and *submits* its content and the request; the service runs the gates
  and signs. The server only relays progress and, once the service has signed, writes the files
  it got back into the user's folder. Nothing the server (or the user) could change reaches the
  decision: the gates ran in the service on exactly the bytes it signed. With the submission go
  the notebook's git state (read with dulwich: nothing of the repository runs), which the
  service records as this server's claim, and before it every audit record so far (the
  author's data sources, which the service reads back from its own ledger).
- :class:`LocalExports` (same-user mode, evaluation only): the exporter runs in a worker thread
  of this server, reporting each gate through the same job shape.

A job belongs to the user who created it; others get 404.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..service.client import ServiceClient
from .git_report import git_report

if TYPE_CHECKING:
    from ..extension import ProdDiscoveryApp

__all__ = ["ExportJobs", "LocalExports", "ServiceExports", "check_files", "write_files"]

DEFAULT_OUTPUT_DIR = ".prod-discovery/exports"
#: Seconds a submission waits for the audit trail to ship what it holds.
FLUSH_SECONDS = 10.0


def _user_name(user: Any) -> str:
    return str(getattr(user, "username", None) or user or "anonymous")


def write_files(output: Path, files: dict[str, str]) -> None:
    """Write a signed bundle's files (relative path -> base64) into ``output``, atomically.

    Paths come from the service, but are checked anyway: relative, no ``..``, inside ``output``.
    The bundle appears (rename) only once complete, as the exporter's own does.
    """
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"output directory {output} exists and is not empty")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        for rel, data in files.items():
            parts = PurePosixPath(rel).parts
            if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
                raise ValueError(f"the service returned a bad bundle path {rel!r}")
            path = tmp.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(data, validate=True))
        if output.exists():
            output.rmdir()
        tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_files(bundle: Path) -> dict[str, Any]:
    """Whether the written files are those the signed manifest lists (no key needed): what the
    dialog shows; the signature itself is Integration's to check with the public key."""
    import json

    from .manifest import MANIFEST_FILE, file_hashes

    try:
        # The manifest is an in-toto statement: its subjects are the files, by path and sha256.
        statement = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
        expected = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {"files_match_manifest": False, "problems": [f"unreadable {MANIFEST_FILE}"]}
    actual = file_hashes(bundle)
    problems = [
        f"{'missing' if rel not in actual else 'extra' if rel not in expected else 'changed'}"
        f" file: {rel}"
        for rel in sorted(set(expected) | set(actual))
        if expected.get(rel) != actual.get(rel)
    ]
    return {"files_match_manifest": not problems, "problems": problems}


@dataclass
class _Job:
    id: str
    owner: str | None  # None: a single-user server's (any of its callers)
    output: Path
    root: Path
    state: dict[str, Any] = field(default_factory=dict)
    bundle: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: float | None = None


class ExportJobs(ABC):
    """Export jobs of this server's users (contract: tests/test_export_jobs.py)."""

    def __init__(self, app: ProdDiscoveryApp, root: Path) -> None:
        self.app = app
        self.root = root.resolve()
        self._jobs: dict[str, _Job] = {}

    def _output(self, body: dict[str, Any], notebook: Path) -> Path:
        from .service import resolve_inside

        stem = notebook.stem or "notebook"
        default = f"{DEFAULT_OUTPUT_DIR}/{stem}-{time.strftime('%Y%m%dT%H%M%S')}"
        return resolve_inside(self.root, body.get("output") or default, "output")

    def _owner(self, user: Any) -> str | None:
        """Whose jobs ``user`` may see: None on a single-user server, where every caller is the
        same person (token requests get random anonymous names), as for the credentials."""
        return self.app.broker.visible_owner(user)

    def _own(self, job_id: str, user: Any) -> _Job:
        job = self._jobs.get(job_id)
        owner = self._owner(user)
        if job is None or (owner is not None and job.owner != owner):
            raise FileNotFoundError(f"no export job {job_id} of yours")
        return job

    @abstractmethod
    def submit(self, body: dict[str, Any], user: Any) -> dict[str, Any]:
        """Validate and start an export (blocking calls: run in a thread); the job's state."""

    @abstractmethod
    def status(self, job_id: str, user: Any) -> dict[str, Any]:
        """The job's state: ``state`` (running, exported, refused, failed), ``gates`` so far,
        and once exported ``bundle`` (relative to the server root) and ``signature``."""

    def wait(self, job_id: str, user: Any, interval: float = 0.25) -> dict[str, Any]:
        """Poll until the job is done (the synchronous ``POST /exports`` of older clients)."""
        while True:
            state = self.status(job_id, user)
            if state["done"]:
                return state
            time.sleep(interval)


class ServiceExports(ExportJobs):
    """The trusted service decides; this server submits, relays and writes the signed files."""

    def __init__(
        self,
        app: ProdDiscoveryApp,
        root: Path,
        client: ServiceClient,
        flush_audit: Callable[[float], bool] | None = None,
    ) -> None:
        super().__init__(app, root)
        self.client = client
        # Ships what the audit trail holds (the author's data-source records among it) before
        # a submission, so that the service's ledger has them when it writes the statement.
        self.flush_audit = flush_audit

    def _declared_profiles(self, body: dict[str, Any], user: Any) -> list[str]:
        """The job's roles: as the request declares them, else those the author's kernels on
        this server hold (the service checks each against the author's entitlements)."""
        if "profiles" in body:
            profiles = body["profiles"]
            if not isinstance(profiles, list):
                raise ValueError("'profiles' must be a list of credential profile names")
            return [str(p) for p in profiles]
        broker = self.app.broker
        owner = broker.visible_owner(user)
        return sorted({p for k in broker.kernels(owner) for p in k.profiles})

    def submit(self, body: dict[str, Any], user: Any) -> dict[str, Any]:
        from .service import resolve_inside

        notebook = resolve_inside(self.root, body.get("path", ""), "path")
        if not notebook.is_file():
            raise FileNotFoundError(f"no such notebook: {body.get('path')}")
        output = self._output(body, notebook)
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise ValueError(f"output directory {body.get('output')} exists and is not empty")
        targets = body.get("targets") or [body.get("target") or "papermill"]
        if self.flush_audit is not None and not self.flush_audit(FLUSH_SECONDS):
            self.app.log.warning(
                "export of %s: audit records not all shipped to the service within %g s; the "
                "statement may miss the latest data sources",
                body.get("path"),
                FLUSH_SECONDS,
            )
        submission = {
            "notebook": notebook.read_text(encoding="utf-8"),
            "path": notebook.relative_to(self.root).as_posix(),
            "git": git_report(notebook),
            "targets": targets,
            "parameters": body.get("parameters") or {},
            "overrides": body.get("overrides") or {},
            "profiles": self._declared_profiles(body, user),
            "writable": body.get("writable") or [],
        }
        remote = self.client.create_export(submission)
        job = _Job(remote["id"], self._owner(user), output, self.root, state=remote)
        self._jobs[job.id] = job
        return self._public(job)

    def status(self, job_id: str, user: Any) -> dict[str, Any]:
        job = self._own(job_id, user)
        with job.lock:  # one poll writes the bundle, the others see it written
            if job.finished is None:
                remote = self.client.export_job(job_id)
                if remote["state"] == "exported":
                    write_files(job.output, remote.pop("files", {}))
                    job.bundle = job.output.relative_to(self.root).as_posix()
                    remote["verification"] = check_files(job.output)
                if remote["done"]:
                    job.finished = time.time()
                job.state = remote
            return self._public(job)

    @staticmethod
    def _public(job: _Job) -> dict[str, Any]:
        state = {k: v for k, v in job.state.items() if k != "files"}
        state["bundle"] = job.bundle
        if job.bundle and state.get("signature"):
            state["signature"] = {**state["signature"], "file": f"{job.bundle}/signature.json"}
        return state


class LocalExports(ExportJobs):
    """Same-user mode: this server runs the exporter in a thread (evaluation only)."""

    def submit(self, body: dict[str, Any], user: Any) -> dict[str, Any]:
        from .service import build_exporter, export_request

        exporter_request = export_request(self.root, body, user)
        job = _Job(
            uuid.uuid4().hex,
            self._owner(user),
            exporter_request.output,
            self.root,
            state={
                "state": "running",
                "done": False,
                "gates": [],
                "path": exporter_request.display_path,
                "author": exporter_request.author,
                "signer": "this server",
            },
        )
        job.state["id"] = job.id
        self._jobs[job.id] = job

        def on_gate(result: Any) -> None:
            job.state["gates"].append(result.to_dict())

        exporter = build_exporter(self.app, user, on_gate=on_gate)

        def run() -> None:
            from .exporter import ExportRefused

            try:
                result = exporter.process(exporter_request, user=user)
            except ExportRefused as exc:
                job.state.update(
                    state="refused", message=str(exc), gates=[g.to_dict() for g in exc.gates]
                )
            except Exception as exc:
                job.state.update(state="failed", message=f"{type(exc).__name__}: {exc}"[:500])
            else:
                job.bundle = result.bundle.relative_to(self.root).as_posix()
                job.state.update(
                    state="exported",
                    gates=[g.to_dict() for g in result.gates],
                    manifest_sha256=result.manifest_sha256,
                    signature={**result.signature, "file": f"{job.bundle}/signature.json"},
                    verification=check_files(result.bundle),
                    timings=dict(exporter.timings),
                )
            job.finished = time.time()
            job.state["done"] = True

        threading.Thread(target=run, name=f"export-{job.id[:8]}", daemon=True).start()
        return self.status(job.id, user)

    def status(self, job_id: str, user: Any) -> dict[str, Any]:
        job = self._own(job_id, user)
        return {**job.state, "gates": list(job.state["gates"]), "bundle": job.bundle}
