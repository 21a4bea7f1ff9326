"""The exporter: a template method (before_start, execute, on_failure, on_complete).

Shape taken from jupyter-scheduler's ``ExecutionManager.process``, with the plug-ins
(signer, gates, targets) chosen by configurable ``Type`` traits instead of hard-coded classes.
The bundle is written to a temporary sibling directory and renamed into place only once it is
complete and signed, so a refused or failed export leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from traitlets import Dict, Float, List, Type
from traitlets.config import LoggingConfigurable

from ..audit.recorder import AuditRecorder, NullRecorder
from .dsse import sign_envelope
from .environment import kernel_info, locked_environment, requirements_txt
from .gates import DEFAULT_GATES, ExportContext, GateResult, PromotionGate
from .gates.base import CleanRunSandbox
from .manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    canonical,
    file_hashes,
    git_state,
    sha256_file,
    validate_manifest,
)
from .notebook import imported_modules, prepare_notebook, to_script, validate_parameters
from .provenance import ProvenanceInput, build_statement
from .signing import HMACSigner, ManifestSigner
from .targets import DEFAULT_TARGETS, ExportTarget, JobSpec

__all__ = ["ExportRefused", "ExportRequest", "ExportResult", "NotebookExporter", "SessionProvider"]

#: Optional provider of what the author's Discovery session touched: called with
#: (author, notebook path) and returning {"data_sources": [...], "credential_profiles": [names or
#: {"name", "mount", "role", "path", "policies"}], "source": where they come from (default
#: "audit")}. Through the server it reads the audit trail
#: and the credential broker (export/service.py); without it both lists are empty and the
#: manifest says so.
SessionProvider = Callable[[str, str], dict[str, Any]]

_REF_KEYS = ("mount", "role", "path", "policies")


class ExportRefused(Exception):
    """A gate failed and was not (or could not be) overridden; ``gates`` holds every result."""

    def __init__(self, gates: list[GateResult]) -> None:
        self.gates = gates
        failed = [g for g in gates if not g.passed and not g.skipped]
        super().__init__(
            "export refused by gate(s) " + ", ".join(f"{g.name} ({g.reason})" for g in failed)
        )


@dataclass
class ExportRequest:
    notebook: Path
    output: Path
    author: str
    targets: list[str] = field(default_factory=lambda: ["papermill"])
    parameters: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    #: Path recorded in the manifest (relative to the server root when exported by the server).
    display_path: str = ""
    #: Read the notebook's repository (dulwich, nothing of it runs) for the statement's ``git``.
    #: False where the notebook is a copy of what a server submitted (the trusted service).
    read_git: bool = True
    #: What the submitting server reported and the builder cannot check ({"server", "git"}):
    #: recorded as ``reportedByServer``, the server's claim (export/git_report.py).
    reported_by_server: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportResult:
    bundle: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    gates: list[GateResult]
    #: Who signed: {"algorithm", "key_id" (the DSSE keyid), "signer" (where the key lives),
    #: "verified" (the written bundle verifies with the signer's public key), "verification"}.
    signature: dict[str, Any] = field(default_factory=dict)


class NotebookExporter(LoggingConfigurable):
    """Exports a notebook into a signed bundle after the promotion gates.

    Configure as ``c.NotebookExporter.<trait>``; gates, targets and signers have their own config
    sections (``c.NoInteractiveGate.allowed_magics``, ``c.HMACSigner.keys``, ...).
    """

    signer_class = Type(
        default_value=HMACSigner,
        klass=ManifestSigner,
        config=True,
        help="""ManifestSigner subclass (or import string) that signs the bundle's DSSE
        envelope. Default HMACSigner: development only, its bundles never verify with a public
        key. Production (in the trusted service): jupyter_prod_discovery.export.signing.
        Ed25519Signer (c.Ed25519Signer.key_file) or TransitSigner (Vault transit ed25519).""",
    )
    gate_classes = List(
        Type(klass=PromotionGate),
        default_value=list(DEFAULT_GATES),
        config=True,
        help="""Promotion gates, run in this order (classes or import strings of PromotionGate
        subclasses). Default: outputs_stripped, no_pii, no_secrets, no_interactive,
        dependencies_locked, clean_run.""",
    )
    target_classes = Dict(
        value_trait=Type(klass=ExportTarget),
        default_value=dict(DEFAULT_TARGETS),
        config=True,
        help="""Targets by name (what --target selects) -> ExportTarget subclass or import
        string. Default papermill, airflow, dagster, kubernetes.""",
    )
    environment_timeout = Float(
        60.0,
        config=True,
        help="Seconds allowed to read the kernel's package versions. Default 60.",
    )

    def __init__(
        self,
        *,
        audit: AuditRecorder | None = None,
        secrets_for: Callable[[str], frozenset[str]] | None = None,
        session_provider: SessionProvider | None = None,
        vault: Any = None,
        on_gate: Callable[[GateResult], None] | None = None,
        sandbox: CleanRunSandbox | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.audit = audit or NullRecorder()
        self.secrets_for = secrets_for or (lambda _user: frozenset())
        self.session_provider = session_provider
        self.vault = vault
        # Progress seam: called with each gate's result as soon as it is known (the trusted
        # service reports them to the polling client one by one).
        self.on_gate = on_gate or (lambda _result: None)
        # Where the clean run executes; None: a subprocess of this process (same-user mode).
        self.sandbox = sandbox
        #: Seconds spent per step of the last export: "prepare", each gate by name, "bundle"
        #: (writing and signing). For progress displays and benchmarks/export_service.py.
        self.timings: dict[str, float] = {}

    def signer(self) -> ManifestSigner:
        factory: Callable[..., ManifestSigner] = self.signer_class
        return factory(parent=self, vault=self.vault)

    # -- template method ------------------------------------------------------------------------

    def process(self, request: ExportRequest, *, user: Any = None) -> ExportResult:
        """Run the export; raise ExportRefused (gates) or ValueError/OSError/SignatureError."""
        ctx = None
        try:
            ctx = self.before_start(request)
            result = self.execute(request, ctx)
        except Exception as exc:
            self.on_failure(request, exc, user=user)
            raise
        self.on_complete(request, result, user=user)
        return result

    def before_start(self, request: ExportRequest) -> ExportContext:
        """Validate the request and gather everything the gates and the manifest need."""
        started = time.monotonic()
        try:
            return self._context(request)
        finally:
            self.timings["prepare"] = time.monotonic() - started

    def _context(self, request: ExportRequest) -> ExportContext:
        unknown = [t for t in request.targets if t not in self.target_classes]
        if unknown or not request.targets:
            raise ValueError(
                f"unknown target(s) {unknown or request.targets}; "
                f"choose from {sorted(self.target_classes)}"
            )
        out = request.output
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"output directory {out} exists and is not empty")
        validate_parameters(request.parameters)
        if not request.notebook.is_file():
            raise FileNotFoundError(f"no such notebook: {request.notebook}")
        source = nbformat.read(request.notebook, as_version=4)
        kernel_name = source.metadata.get("kernelspec", {}).get("name", "python3")
        kinfo = kernel_info(kernel_name, parent=self)
        environment = locked_environment(
            kinfo["python"], imported_modules(source), timeout=self.environment_timeout
        )
        bundled = prepare_notebook(source, request.parameters)
        return ExportContext(
            source_path=request.notebook,
            source=source,
            bundled=bundled,
            parameters=dict(request.parameters),
            author=request.author,
            kernel_python=kinfo["python"],
            environment={**environment, "kernel": kinfo},
            secrets=self.secrets_for(request.author),
            sandbox=self.sandbox,
        )

    def run_gates(self, request: ExportRequest, ctx: ExportContext) -> list[GateResult]:
        results: list[GateResult] = []
        blocked = False
        for cls in self.gate_classes:
            gate: PromotionGate = cls(parent=self)
            if blocked and gate.expensive:
                skipped = GateResult(
                    gate.name, False, "skipped: an earlier gate failed", skipped=True
                )
                results.append(skipped)
                self.on_gate(skipped)
                continue
            started = time.monotonic()
            result = gate.check(ctx)
            self.timings[gate.name] = time.monotonic() - started
            if not result.passed and gate.name in request.overrides:
                reason = request.overrides[gate.name].strip()
                if gate.overridable and reason:
                    result.overridden = True
                    result.override_reason = reason
                elif not gate.overridable:
                    result.reason += " (this gate cannot be overridden)"
            if not result.passed and not result.overridden:
                blocked = True
            results.append(result)
            self.on_gate(result)
        unknown = set(request.overrides) - {r.name for r in results}
        if unknown:
            raise ValueError(f"--override names unknown gate(s): {', '.join(sorted(unknown))}")
        return results

    def execute(self, request: ExportRequest, ctx: ExportContext) -> ExportResult:
        for name, reason in request.overrides.items():
            if not reason.strip():
                raise ValueError(f"overriding gate {name!r} needs a reason")
        gates = self.run_gates(request, ctx)
        if any(not g.passed and not g.overridden for g in gates):
            raise ExportRefused(gates)
        started = time.monotonic()
        signer = self.signer()
        out = request.output
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            manifest = self._write_bundle(request, ctx, gates, tmp)
            validate_manifest(manifest)
            data = canonical(manifest)
            (tmp / MANIFEST_FILE).write_bytes(data)
            envelope = sign_envelope(data, signer)
            (tmp / SIGNATURE_FILE).write_text(json.dumps(envelope, indent=2) + "\n")
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.timings["bundle"] = time.monotonic() - started
        signed_by = {
            "algorithm": signer.algorithm,
            "key_id": str(envelope["signatures"][0]["keyid"]),
            "signer": signer.describe(),
            **self._verification(out, signer),
        }
        return ExportResult(out, manifest, hashlib.sha256(data).hexdigest(), gates, signed_by)

    @staticmethod
    def _verification(bundle: Path, signer: ManifestSigner) -> dict[str, Any]:
        """Check the written bundle as Integration will: offline, with the public key only."""
        from .verify import verify_bundle

        pem = signer.public_key_pem()
        if pem is None:
            problems = ["signed with a development key: no public key verifies it"]
        else:
            problems = verify_bundle(bundle, [pem])
        return {
            "verified": not problems,
            "verification": "; ".join(problems) or "verifies offline with the signer's public key",
        }

    def on_failure(self, request: ExportRequest, exc: BaseException, *, user: Any = None) -> None:
        gates = [g.to_dict() for g in getattr(exc, "gates", [])]
        self.audit.record(
            "export",
            {
                "action": "export",
                "path": request.display_path or str(request.notebook),
                "target": ",".join(request.targets),
                "bundle": None,
                "gates": gates,
                # bundle None marks a failed export; the reason says refused (gates) or error.
                "reason": ("refused: " if isinstance(exc, ExportRefused) else "error: ")
                + str(exc)[:500],
            },
            user=user,
        )

    def on_complete(
        self, request: ExportRequest, result: ExportResult, *, user: Any = None
    ) -> None:
        for g in result.gates:
            if g.overridden:
                self.audit.record(
                    "export",
                    {
                        "action": "override",
                        "path": request.display_path or str(request.notebook),
                        "target": ",".join(request.targets),
                        "bundle": str(result.bundle),
                        "gates": [g.to_dict()],
                        "reason": g.override_reason,
                    },
                    user=user,
                )
        self.audit.record(
            "export",
            {
                "action": "export",
                "path": request.display_path or str(request.notebook),
                "target": ",".join(request.targets),
                "bundle": str(result.bundle),
                "manifest_sha256": result.manifest_sha256,
                "gates": [g.to_dict() for g in result.gates],
            },
            user=user,
        )

    # -- bundle ---------------------------------------------------------------------------------

    def _session(self, request: ExportRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if self.session_provider is None:
            return {"data_sources": [], "credential_profiles": [], "source": "none"}, []
        info = self.session_provider(request.author, request.display_path or str(request.notebook))
        refs: list[dict[str, Any]] = []
        names: list[str] = []
        for prof in info.get("credential_profiles", []):
            if isinstance(prof, str):
                prof = {"name": prof}
            name = str(prof.get("name") or prof.get("profile") or "")
            if not name:
                continue
            names.append(name)
            ref: dict[str, Any] = {"profile": name}
            ref.update({k: prof[k] for k in _REF_KEYS if prof.get(k) is not None})
            refs.append(ref)
        session = {
            "data_sources": list(info.get("data_sources", [])),
            "credential_profiles": names,
            "source": str(info.get("source") or "audit"),
        }
        return session, refs

    def _write_bundle(
        self, request: ExportRequest, ctx: ExportContext, gates: list[GateResult], tmp: Path
    ) -> dict[str, Any]:
        stem = request.notebook.stem
        name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "notebook"
        nb_name = f"{stem}.ipynb"
        script_name = f"{stem}.py"
        nbformat.write(ctx.bundled, tmp / nb_name)
        (tmp / script_name).write_text(to_script(ctx.bundled))
        packages = ctx.environment.get("packages", {})
        (tmp / "requirements.txt").write_text(requirements_txt(packages))
        session, refs = self._session(request)
        kinfo = ctx.environment["kernel"]
        job = JobSpec(
            name=name,
            notebook=nb_name,
            parameters=ctx.parameters,
            kernel_name=kinfo["name"],
            vault_references=refs,
        )
        for target in request.targets:
            files = self.target_classes[target](parent=self).files(job)
            for rel, text in files.items():
                path = tmp / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        return build_statement(
            ProvenanceInput(
                name=name,
                notebook={
                    "path": request.display_path or str(request.notebook),
                    "source_sha256": sha256_file(request.notebook),
                    "bundled": nb_name,
                    "sha256": sha256_file(tmp / nb_name),
                    "script": script_name,
                },
                files=file_hashes(tmp),
                git=git_state(request.notebook.resolve()) if request.read_git else None,
                reported_by_server=dict(request.reported_by_server),
                author=request.author,
                kernel=kinfo,
                environment={
                    "python_version": ctx.environment.get("python_version", ""),
                    "packages": packages,
                    "requirements": "requirements.txt",
                },
                parameters=ctx.parameters,
                targets=list(request.targets),
                session=session,
                declared_roles=refs,
                overrides={g.name: g.override_reason or "" for g in gates if g.overridden},
                gates=[g.to_dict() for g in gates],
            )
        )
