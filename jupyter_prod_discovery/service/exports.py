"""Promotion decided by the trusted service: it runs every gate itself and signs what passed.

Why here and not in the single-user server: whatever runs as the notebook's author (the server,
its kernels, a terminal) can edit the gate results, the notebook after the gates, or read a key
that signs. The server therefore only *submits*: the notebook's content and the request
(targets, parameters, overrides with reasons, declared credential profiles). The service builds
the export context from exactly that, runs every gate (the clean run in :mod:`.sandbox`, as
another OS user with the declared roles only), records the decision in its own ledger under the
principal it authenticated, and signs only a bundle whose gates passed or whose failed gates
were overridden by someone :attr:`ExportDesk.override_policy` allows.

What the service signs about the notebook's origin and what it touched
(``internalParameters`` of the statement): the principal it authenticated (``author``), the
gates it ran, the declared roles, and the data sources from its own ledger and its own clean run
(:mod:`.data_sources`). The notebook's git commit, path and branch it cannot observe (the
repository is on the author's server): the server reports them, the service checks their shape
and that they name the submitted notebook (:mod:`..export.git_report`), and records them under
``reportedByServer``, the server's claim, in the statement and in the ledger's decision.

Long work as a job: :meth:`ExportDesk.create` validates and returns a job at once; the job runs
in a worker thread, and each gate's result is visible (``GET /api/exports/<id>``) as soon as it is
known. Jobs belong to the principal that created them; nobody else can read them (404).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import nbformat
from traitlets import Dict, Float, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from ..credentials.records import AccessDenied
from ..export.exporter import ExportRefused, ExportRequest, NotebookExporter
from ..export.gates.base import GateResult
from ..export.git_report import validate_report
from ..export.manifest import SIGNATURE_FILE
from ..export.notebook import validate_parameters as _checked_parameters
from .credentials import CredentialDesk
from .data_sources import AUTHOR_SESSION, CLEAN_RUN, merge_sources
from .ledger import AuditLedger, Principal, read_data_sources
from .sandbox import ExportSandbox

__all__ = ["ExportDesk", "ExportInvalid", "ExportJob", "validate_parameters"]

SERVER_ID = "prod-discovery-service"


class ExportInvalid(ValueError):
    """The submitted request cannot be run (400); the message names the field."""


def validate_parameters(parameters: Any) -> dict[str, Any]:
    """The exporter's own check (export/notebook.py), as the service's 400 (ExportInvalid)."""
    if not isinstance(parameters, dict):
        raise ExportInvalid("'parameters' must be an object {name: JSON value}")
    try:
        return _checked_parameters(parameters)
    except ValueError as exc:
        raise ExportInvalid(str(exc)) from None


def _names(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ExportInvalid(f"'{what}' must be a list of non-empty strings")
    return list(dict.fromkeys(value))


@dataclass
class ExportJob:
    """One export: its owner, progress (gate results as they complete) and, once signed, files."""

    id: str
    principal: Principal
    server_id: str
    path: str
    targets: list[str]
    profiles: list[str]
    writable: list[str]
    #: The notebook's git state as the submitting server reported it (shape checked), or None.
    git: dict[str, Any] | None = None
    state: str = "running"  # running | exported | refused | failed
    gates: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    files: dict[str, str] = field(default_factory=dict)  # relative path -> base64
    manifest_sha256: str = ""
    signature: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    finished: float | None = None
    #: Seconds per step as the service measured them ("prepare", each gate, "bundle").
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "done": self.state != "running",
            "path": self.path,
            "targets": self.targets,
            "profiles": self.profiles,
            "writable": self.writable,
            "git_reported_by_server": self.git,
            "author": self.principal.username,
            "gates": list(self.gates),
            "message": self.message,
            "signer": "prod-discovery-service",
            "timings": dict(self.timings),
        }
        if self.state == "exported":
            out.update(
                files=self.files, manifest_sha256=self.manifest_sha256, signature=self.signature
            )
        return out


class _LedgerRecorder:
    """The exporter's ``audit``: records from the job's thread into the service's ledger, on
    the event loop (the ledger's queue belongs to it), with the authenticated principal."""

    def __init__(self, ledger: AuditLedger, loop: asyncio.AbstractEventLoop, job: ExportJob):
        self._ledger, self._loop, self._job = ledger, loop, job

    def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> int:
        payload = {k: v for k, v in data.items() if v is not None}
        principal = self._job.principal
        payload.update(
            server_id=SERVER_ID,
            export_job=self._job.id,
            client_server=self._job.server_id,
            user={"username": principal.username, "groups": list(principal.groups)},
            principal={"username": principal.username, "via": principal.via},
            # The server's claim, recorded as such beside the decision (export/git_report.py).
            git_reported_by_server=self._job.git,
        )
        self._loop.call_soon_threadsafe(self._ledger.record_local, kind, payload)
        return 0


class ExportDesk(LoggingConfigurable):
    """Export jobs of authenticated servers: validation, gates, decision, signature."""

    override_policy = Dict(
        value_trait=List(Unicode()),
        default_value={
            "outputs_stripped": ["*"],
            "no_interactive": ["*"],
            "dependencies_locked": ["*"],
        },
        config=True,
        help="""Who may override which failed gate: {gate name: [entries]}, an entry being
        'user:NAME', 'group:NAME' or '*' (any authenticated user). A gate absent from the dict
        cannot be overridden by anyone. Default: outputs_stripped, no_interactive and
        dependencies_locked by anyone (with a reason, recorded); no_pii, no_secrets and
        clean_run by nobody.""",
    )
    job_seconds = Float(
        3600.0,
        config=True,
        help="Seconds a finished job (and its bundle) stays readable. Default 3600.",
    )
    max_notebook_bytes = Int(
        20 * 1024 * 1024,
        config=True,
        help="Largest notebook (JSON bytes) accepted for export. Default 20 MiB.",
    )
    data_source_window = Float(
        7 * 24 * 3600.0,
        config=True,
        help="""Seconds before a submission whose data sources the statement lists: every
        'datasource' record the service received from the author (the principal it
        authenticated) on the submitting server's stream within this window, all kernels of
        that server, stopped ones included. 0: no limit. Default 604800 (7 days).""",
    )
    max_running = Int(
        2,
        config=True,
        help="""Export jobs that may run at once per user (each may hold a clean run);
        more are refused with 429. Default 2.""",
    )

    def __init__(
        self, desk: CredentialDesk, ledger: AuditLedger, sandbox: ExportSandbox, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.desk = desk
        self.ledger = ledger
        self.sandbox = sandbox
        self._jobs: dict[str, ExportJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- policy ----------------------------------------------------------------------------------

    def may_override(self, principal: Principal, gate: str) -> bool:
        allowed = self.override_policy.get(gate, [])
        return any(
            entry == "*"
            or entry == f"user:{principal.username}"
            or (entry.startswith("group:") and entry[len("group:") :] in principal.groups)
            for entry in allowed
        )

    # -- jobs ------------------------------------------------------------------------------------

    def create(self, principal: Principal, server_id: str, body: dict[str, Any]) -> ExportJob:
        """Validate a submission and start its job; ExportInvalid (400), AccessDenied (403)."""
        notebook_json = body.get("notebook")
        if isinstance(notebook_json, dict):
            notebook_json = json.dumps(notebook_json)
        if not isinstance(notebook_json, str) or not notebook_json:
            raise ExportInvalid("'notebook' must be the notebook's JSON")
        if len(notebook_json) > self.max_notebook_bytes:
            raise ExportInvalid(f"the notebook exceeds {self.max_notebook_bytes} bytes")
        try:
            nb = nbformat.reads(notebook_json, as_version=4)
        except Exception as exc:
            raise ExportInvalid(f"'notebook' is not a notebook: {type(exc).__name__}") from None
        path = body.get("path")
        if not isinstance(path, str) or not path.strip() or len(path) > 1024:
            raise ExportInvalid("'path' must be the notebook's path (relative to its server)")
        parts = PurePosixPath(path).parts
        if ".." in parts or PurePosixPath(path).is_absolute() or not path.endswith(".ipynb"):
            raise ExportInvalid("'path' must be a relative .ipynb path without '..'")
        exporter = NotebookExporter(parent=self)
        targets = _names(body.get("targets") or ["papermill"], "targets")
        unknown = [t for t in targets if t not in exporter.target_classes]
        if unknown:
            raise ExportInvalid(
                f"unknown target(s) {unknown}; choose from {sorted(exporter.target_classes)}"
            )
        parameters = validate_parameters(body.get("parameters") or {})
        overrides = body.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ExportInvalid("'overrides' must be an object {gate: reason}")
        gates = {cls.name for cls in exporter.gate_classes}
        for gate, reason in overrides.items():
            if gate not in gates:
                raise ExportInvalid(f"'overrides' names unknown gate {gate!r}")
            if not isinstance(reason, str) or not reason.strip():
                raise ExportInvalid(f"overriding gate {gate!r} needs a reason")
            if not self.may_override(principal, str(gate)):
                raise AccessDenied(
                    f"{principal.username!r} may not override gate {gate!r} "
                    "(c.ExportDesk.override_policy)"
                )
        try:
            git = validate_report(body.get("git"), path)
        except ValueError as exc:
            raise ExportInvalid(str(exc)) from None
        profiles = _names(body.get("profiles"), "profiles")
        writable = _names(body.get("writable"), "writable")
        for name in profiles:
            if not self.desk.profile_type(name):
                raise ExportInvalid(f"'profiles' names unknown credential profile {name!r}")
        for name in writable:
            if name not in profiles:
                raise ExportInvalid(f"writable profile {name!r} is not among the declared profiles")
            if self.desk.profile_type(name) != "database":
                raise ExportInvalid(f"writable profile {name!r} is not a database profile")
        kernel_name = str(nb.metadata.get("kernelspec", {}).get("name") or "python3")
        self.desk.check_declared(principal, kernel_name, profiles)
        running = [
            j
            for j in self._jobs.values()
            if j.state == "running" and j.principal.username == principal.username
        ]
        if len(running) >= self.max_running:
            raise TooManyJobs(f"{len(running)} export(s) of yours are running already")
        self._expire()
        job = ExportJob(
            id=uuid.uuid4().hex,
            principal=principal,
            server_id=server_id,
            path=path,
            targets=targets,
            profiles=profiles,
            writable=writable,
            git=git,
        )
        self._jobs[job.id] = job
        request = {
            "notebook": notebook_json,
            "kernel_name": kernel_name,
            "parameters": parameters,
            "overrides": {str(k): str(v) for k, v in overrides.items()},
        }
        task = asyncio.get_running_loop().create_task(self._run(job, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, principal: Principal, job_id: str) -> ExportJob:
        job = self._jobs.get(job_id)
        if job is None or job.principal.username != principal.username:
            raise FileNotFoundError(f"no export job {job_id} of yours")
        return job

    def _expire(self) -> None:
        now = time.time()
        for jid, job in list(self._jobs.items()):
            if job.finished is not None and now - job.finished > self.job_seconds:
                del self._jobs[jid]

    async def stop(self) -> None:
        """Wait for running jobs (their clean runs revoke what they were issued)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _run(self, job: ExportJob, request: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._export, job, request, loop)
        except Exception as exc:  # a bug or an unexpected failure: the job says so, closed
            self.log.exception("Export job %s failed", job.id)
            job.state, job.message = "failed", f"export failed: {type(exc).__name__}"
        finally:
            job.finished = time.time()

    def _export(
        self, job: ExportJob, request: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        """The job's thread: gates on the submitted notebook, then the signed bundle's files."""
        principal = job.principal
        secrets = self.desk.host.secrets.for_owner(principal.username)
        details = {p.name: p for p in self.desk.broker.profile_objects}
        window = self.data_source_window
        since = datetime.now(UTC) - timedelta(seconds=window) if window > 0 else None

        def session(_author: str, _path: str) -> dict[str, Any]:
            declared = []
            for name in job.profiles:
                p = details[name]
                declared.append(
                    {
                        "name": p.name,
                        "mount": p.mount or None,
                        "role": p.role or None,
                        "path": p.path or None,
                        "policies": list(p.policies) or None,
                    }
                )
            author = read_data_sources(
                self.ledger.dsn,
                principal.username,
                job.server_id,
                since,
                chain=self.ledger.chain,
                table=self.ledger.table,
            )
            sources = merge_sources(
                {AUTHOR_SESSION: author, CLEAN_RUN: sandbox.data_sources},
                secrets | self.desk.host.secrets.for_owner(principal.username),
            )
            return {
                "data_sources": sources,
                "credential_profiles": declared,
                "source": "service_ledger",
            }

        def on_gate(result: GateResult) -> None:
            job.timings = dict(exporter.timings)
            job.gates.append(result.to_dict())  # list.append: atomic for the polling reader

        sandbox = self.sandbox.for_run(
            self.desk,
            loop,
            principal,
            job.id,
            request["kernel_name"],
            job.profiles,
            job.writable,
        )
        exporter = NotebookExporter(
            parent=self,
            audit=_LedgerRecorder(self.ledger, loop, job),
            secrets_for=lambda _author: secrets,
            session_provider=session,
            vault=self.desk.host.vault if self.desk.host.vault.configured else None,
            on_gate=on_gate,
            sandbox=sandbox,
        )
        with tempfile.TemporaryDirectory(prefix="pd-export-") as tmp:
            name = PurePosixPath(job.path).name
            source = Path(tmp) / "src" / name
            source.parent.mkdir()
            source.write_text(request["notebook"], encoding="utf-8")
            bundle = Path(tmp) / "bundle"
            export_request = ExportRequest(
                notebook=source,
                output=bundle,
                author=principal.username,
                targets=job.targets,
                parameters=request["parameters"],
                overrides=request["overrides"],
                display_path=job.path,
                read_git=False,  # a copy in the service's temp dir: not the author's repository
                reported_by_server={"server": job.server_id, "git": job.git},
            )
            user = {"username": principal.username, "groups": list(principal.groups)}
            try:
                result = exporter.process(export_request, user=user)
            except ExportRefused as exc:
                job.gates = [g.to_dict() for g in exc.gates]
                job.state, job.message = "refused", str(exc)
                return
            except (ValueError, OSError) as exc:
                job.state, job.message = "failed", str(exc)[:500]
                return
            except Exception as exc:  # SignatureError and the like: named, never a key
                job.state, job.message = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
                return
            files = {
                p.relative_to(bundle).as_posix(): base64.b64encode(p.read_bytes()).decode()
                for p in sorted(bundle.rglob("*"))
                if p.is_file()
            }
            job.gates = [g.to_dict() for g in result.gates]
            job.timings = dict(exporter.timings)
            job.files, job.manifest_sha256 = files, result.manifest_sha256
            job.signature = {**result.signature, "file": SIGNATURE_FILE}
            job.state = "exported"
            shutil.rmtree(bundle, ignore_errors=True)


class TooManyJobs(Exception):
    """The user has ``max_running`` exports running already (429)."""
