"""The built-in promotion gates, in their default order.

Decision on "outputs stripped": the *source* notebook may keep its outputs (that is how people
work in Discovery); those outputs are scanned by ``no_pii`` and ``no_secrets`` and then stripped
from the bundled copy, which ``outputs_stripped`` checks. So nothing seen on production data
leaves Discovery, and a secret or PII printed in an output still refuses the export.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from nbformat import NotebookNode
from traitlets import Float, Instance, List, Type, Unicode, default

from ...pii import ALWAYS_REDACTED, CREDENTIAL, PIIPolicy
from ...pii.notebook import places
from ..notebook import cell_label, split_magics
from ..pii_scan import PIIScanner, finding_type
from .base import CleanRunOutcome, ExportContext, GateResult, PromotionGate, SandboxError

__all__ = [
    "CleanRunGate",
    "DependenciesLockedGate",
    "NoInteractiveGate",
    "NoPIIGate",
    "NoSecretsGate",
    "OutputsStrippedGate",
    "notebook_texts",
]


def _output_text(output: NotebookNode) -> str:
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    if output.get("output_type") == "error":
        return "\n".join([str(output.get("evalue", "")), *output.get("traceback", [])])
    parts = []
    for mime, value in (output.get("data") or {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            parts.append(value if isinstance(value, str) else json.dumps(value))
    return "\n".join(parts)


def notebook_texts(nb: NotebookNode) -> Iterator[tuple[str, str]]:
    """(where, text) for every cell source and output: 'cell 3' or 'cell 3 output 1'.

    Cells and outputs are numbered from 1, as JupyterLab users count them (and the PII sidebar).
    """
    for i, cell in enumerate(nb.cells):
        label = cell_label(nb, i)
        yield label, str(cell.source)
        for j, output in enumerate(cell.get("outputs", []) or []):
            yield f"{label} output {j + 1}", _output_text(output)


def _summarize(findings: list[str], limit: int = 5) -> str:
    more = f" (and {len(findings) - limit} more)" if len(findings) > limit else ""
    return "; ".join(findings[:limit]) + more


class OutputsStrippedGate(PromotionGate):
    """The bundled notebook carries no output nor execution count."""

    name = "outputs_stripped"

    def check(self, ctx: ExportContext) -> GateResult:
        left = [
            cell_label(ctx.bundled, i)
            for i, c in enumerate(ctx.bundled.cells)
            if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
        ]
        if left:
            return self.failed("outputs left in the bundled notebook: " + _summarize(left))
        n = sum(len(c.get("outputs", []) or []) for c in ctx.source.cells)
        return self.passed(
            f"{n} source outputs were scanned by no_pii and no_secrets, "
            "then stripped from the bundle"
        )


def _policy_texts(ctx: ExportContext) -> Iterator[tuple[str, str]]:
    """(where, text) for every place of the source notebook (``pii.notebook.places``: sources,
    markdown, metadata, attachments, outputs) and the export parameters."""
    for place, bundle in places(ctx.source):
        for field, text in bundle.items():
            suffix = f" ({field})" if place.part == "output" else ""
            yield place.label + suffix, text
    yield "parameters", json.dumps(ctx.parameters)


class NoPIIGate(PromotionGate):
    """No PII in any place of the source notebook nor in the export parameters.

    Judged by the same :class:`~jupyter_prod_discovery.pii.PIIPolicy` as the live guard, the save
    guard and ``scan`` (``c.PIIPolicy`` configures all four): a finding whose action is redact
    or block refuses the export; warn-level findings are named in the passing reason.
    """

    name = "no_pii"

    policy = Instance(PIIPolicy)
    scanner_class = Type(
        default_value=None,
        klass=object,
        allow_none=True,
        config=True,
        help="""Class (or import string) of an alternative PII scanner, instantiated as
        cls(entities=...), with scan(text) -> list of findings having an entity_type; it then
        replaces the policy for this gate. Default None: the shared PIIPolicy decides (one
        policy for the live guard, the save guard, scan and this gate). Alternative:
        PatternPIIScanner (jupyter_prod_discovery.export.pii_scan, no Presidio).""",
    )
    entities = List(
        Unicode(),
        default_value=[],
        config=True,
        help="""Entity types that refuse an export. Default []: every type the PIIPolicy
        redacts or blocks. With scanner_class set, the types that scanner looks for
        (default then ['US_SSN', 'EMAIL_ADDRESS', 'CREDIT_CARD', 'IBAN_CODE']).""",
    )

    @default("policy")
    def _default_policy(self) -> PIIPolicy:
        return PIIPolicy(parent=self)

    def check(self, ctx: ExportContext) -> GateResult:
        if self.scanner_class is not None:
            return self._check_with_scanner(ctx)
        policy = self.policy
        only = frozenset(self.entities)
        refused: list[str] = []
        warned: list[str] = []
        for where, text in _policy_texts(ctx):
            verdict = policy.scan(text)
            hard = {
                f.entity_type
                for f in policy.to_redact(verdict)
                if f.entity_type not in ALWAYS_REDACTED and (not only or f.entity_type in only)
            }
            soft = set(verdict.entities) - hard - ALWAYS_REDACTED
            if hard:
                refused.append(f"{', '.join(sorted(hard))} in {where}")
            if soft and not (only and not soft & only):
                warned.append(f"{', '.join(sorted(soft))} in {where}")
        if refused:
            return self.failed("PII found: " + _summarize(refused))
        note = f" (warn-level: {_summarize(warned)})" if warned else ""
        return self.passed("no PII found in sources, outputs, metadata or parameters" + note)

    def _check_with_scanner(self, ctx: ExportContext) -> GateResult:
        factory = cast(Callable[..., Any], self.scanner_class)
        entities = list(self.entities) or ["US_SSN", "EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE"]
        scanner = cast(PIIScanner, factory(entities=entities))
        findings = []
        texts = [*notebook_texts(ctx.source), ("parameters", json.dumps(ctx.parameters))]
        for where, text in texts:
            types = sorted({finding_type(f) for f in scanner.scan(text)})
            if types:
                findings.append(f"{', '.join(types)} in {where}")
        if findings:
            return self.failed("PII found: " + _summarize(findings))
        return self.passed("no PII found in sources, outputs or parameters")


class NoSecretsGate(PromotionGate):
    """No hard-coded secret: the policy's credential patterns, detect-secrets, and the exact
    values issued to the author's kernels, in every place of the notebook.

    Not overridable: an override would put the secret into a signed bundle. A false positive of
    detect-secrets is silenced in the notebook itself with ``# pragma: allowlist secret``.
    """

    name = "no_secrets"
    overridable = False

    policy = Instance(PIIPolicy)

    @default("policy")
    def _default_policy(self) -> PIIPolicy:
        return PIIPolicy(parent=self)

    def check(self, ctx: ExportContext) -> GateResult:
        texts = list(_policy_texts(ctx))
        findings: list[str] = []
        credentials = CREDENTIAL in self.policy.entities
        for where, text in texts:
            if any(value in text for value in ctx.secrets):
                findings.append(f"a credential issued to {ctx.author}'s kernels in {where}")
            if credentials:
                n = sum(1 for f in self.policy.scan(text).findings if f.entity_type == CREDENTIAL)
                if n:
                    findings.append(f"{CREDENTIAL} x{n} in {where}")
        findings.extend(self._detect_secrets(texts))
        if findings:
            return self.failed("hard-coded secret: " + _summarize(findings))
        return self.passed(
            "no secret found by the policy's credential patterns, detect-secrets nor issued "
            "credential values"
        )

    @staticmethod
    def _detect_secrets(texts: list[tuple[str, str]]) -> list[str]:
        from detect_secrets import SecretsCollection
        from detect_secrets.settings import default_settings

        out: list[str] = []
        with tempfile.TemporaryDirectory(prefix="pd-secrets-") as tmp:
            names: dict[str, str] = {}
            for n, (where, text) in enumerate(texts):
                path = Path(tmp) / f"t{n}.py"
                path.write_text(text)
                names[str(path)] = where
            collection = SecretsCollection()
            with default_settings():
                for path_name in names:
                    collection.scan_file(path_name)
            for filename, secret in collection:
                out.append(
                    f"{secret.type} in {names.get(filename, filename)} line {secret.line_number}"
                )
        return sorted(set(out))


class NoInteractiveGate(PromotionGate):
    """No construct that needs a person: input(), getpass, shell ``!`` and magics not allowed."""

    name = "no_interactive"

    allowed_magics = List(
        Unicode(),
        default_value=["matplotlib", "time", "timeit", "config"],
        config=True,
        help="""IPython magics (without %) that may stay in an exported notebook because they run
        unattended. Default ['matplotlib', 'time', 'timeit', 'config']. Shell escapes (!) are never
        allowed.""",
    )
    forbidden_calls = List(
        Unicode(),
        default_value=["input", "raw_input", "getpass", "getpass.getpass", "get_ipython"],
        config=True,
        help="""Calls that wait for a person or reach into the interactive shell. Default
        ['input', 'raw_input', 'getpass', 'getpass.getpass', 'get_ipython'].""",
    )

    def check(self, ctx: ExportContext) -> GateResult:
        findings: list[str] = []
        for i, cell in enumerate(ctx.source.cells):
            if cell.cell_type != "code":
                continue
            code, magics = split_magics(cell.source)
            for line_no, text in magics:
                findings.extend(self._judge_magic(i + 1, line_no, text))
            try:
                tree = ast.parse(code)
            except SyntaxError as exc:
                findings.append(f"cell {i + 1} line {exc.lineno}: not valid Python")
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = _call_name(node.func)
                    if name in self.forbidden_calls:
                        findings.append(f"cell {i + 1} line {node.lineno}: {name}()")
        if findings:
            return self.failed("interactive-only constructs: " + _summarize(findings))
        return self.passed("no input(), getpass, shell escapes or disallowed magics")

    def _judge_magic(self, cell: int, line_no: int, text: str) -> list[str]:
        match = re.search(r"(%%?|!)(\w*)", text)
        kind, magic = (match.group(1), match.group(2)) if match else ("!", "")
        if kind == "!":
            return [f"cell {cell} line {line_no}: shell escape !"]
        if magic in self.allowed_magics:
            return []
        return [f"cell {cell} line {line_no}: magic {kind}{magic} (not allow-listed)"]


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


class DependenciesLockedGate(PromotionGate):
    """The kernel's packages were locked and every imported module resolves in that kernel."""

    name = "dependencies_locked"

    def check(self, ctx: ExportContext) -> GateResult:
        packages = ctx.environment.get("packages") or {}
        if not packages:
            return self.failed("the kernel's package versions could not be read")
        missing = ctx.environment.get("missing") or []
        if missing:
            return self.failed(
                "imported but not installed in the kernel: " + ", ".join(sorted(missing))
            )
        return self.passed(f"{len(packages)} packages locked from {ctx.kernel_python}")


_SENSITIVE_ENV = re.compile(
    r"(^VAULT_|^BAO_|TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE|^PG|^AWS_|^JUPYTERHUB_API)",
    re.IGNORECASE,
)


class CleanRunGate(PromotionGate):
    """The bundled notebook runs top to bottom with papermill in a fresh kernel, in time.

    The kernel gets the server's environment minus anything that looks like a credential and any
    exact issued value, so a notebook that only works with the author's live credentials fails
    here instead of in Integration. Errors are reported by cell and exception type only: an
    exception message may hold data.
    """

    name = "clean_run"
    expensive = True

    timeout = Float(
        300.0,
        config=True,
        help="Seconds the whole clean run may take before the gate fails. Default 300.",
    )

    def check(self, ctx: ExportContext) -> GateResult:
        if not _kernel_name(ctx.bundled):
            # papermill would stop with "No kernel name found in notebook and no override
            # provided": say what that means for the author, before starting anything.
            return self.failed(NO_KERNELSPEC)
        if ctx.sandbox is not None:
            try:
                outcome = ctx.sandbox.run(json.dumps(ctx.bundled), ctx.parameters, self.timeout)
            except SandboxError as exc:
                return self.failed(f"the sandbox could not be prepared: {exc}")
            return self._judge(
                outcome, "in the sandbox, with the declared credential profiles", ctx
            )
        env = {
            k: v
            for k, v in os.environ.items()
            if not _SENSITIVE_ENV.search(k) and v not in ctx.secrets
        }
        with tempfile.TemporaryDirectory(prefix="pd-cleanrun-") as tmp:
            src = Path(tmp) / "in.ipynb"
            out = Path(tmp) / "out.ipynb"
            src.write_text(json.dumps(ctx.bundled))
            args = [sys.executable, "-c", PAPERMILL_RUNNER, str(src), str(out)]
            args += [json.dumps(ctx.parameters), str(ctx.source_path.parent)]
            try:
                proc = subprocess.run(
                    args, env=env, capture_output=True, timeout=self.timeout, check=False
                )
            except subprocess.TimeoutExpired:
                return self._judge(CleanRunOutcome(None, None), "", ctx)
            text = out.read_text() if out.is_file() else None
            return self._judge(CleanRunOutcome(proc.returncode, text), "in a clean kernel", ctx)

    def _judge(self, outcome: CleanRunOutcome, where: str, ctx: ExportContext) -> GateResult:
        if outcome.returncode is None:
            return self.failed(f"did not finish within {self.timeout:g} s")
        if outcome.returncode == 0:
            return self.passed(f"ran top to bottom with papermill {where}")
        ids = [str(c.get("id") or "") for c in ctx.source.cells]
        return self.failed(_describe_failure(outcome.output, ids))


NO_KERNELSPEC = (
    "the notebook names no kernel (metadata.kernelspec.name is missing), so papermill cannot "
    "choose one ('No kernel name found in notebook'): open it in JupyterLab, select a kernel "
    "and save, then export again"
)


def _kernel_name(nb: dict[str, Any]) -> str:
    """The kernel papermill would start for ``nb`` ('' when the notebook names none)."""
    spec = (nb.get("metadata") or {}).get("kernelspec") or {}
    return str(spec.get("name") or "") if isinstance(spec, dict) else ""


#: What runs papermill: argv = in.ipynb out.ipynb parameters-json cwd. Plain Python, so that
#: any interpreter with papermill and ipykernel runs it (the sandbox user's too).
PAPERMILL_RUNNER = (
    "import json, sys, papermill\n"
    "papermill.execute_notebook(sys.argv[1], sys.argv[2],"
    " parameters=json.loads(sys.argv[3]), cwd=sys.argv[4], progress_bar=False,"
    " log_output=False)\n"
)


def _describe_failure(notebook: str | None, source_ids: list[str]) -> str:
    """Which cell raised what, numbered as in the *source* notebook (the bundle has a parameters
    cell and papermill an injected one that the author never saw); by id, else by position."""
    try:
        nb: dict[str, Any] = json.loads(notebook or "")
    except ValueError:
        return "papermill could not run the notebook (kernel did not start or bad notebook)"
    for i, cell in enumerate(nb.get("cells", [])):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                cid = str(cell.get("id") or "")
                where = (
                    f"cell {source_ids.index(cid) + 1}" if cid in source_ids else cell_label(nb, i)
                )
                return f"{where} raised {output.get('ename', 'an error')} in a clean kernel"
    return "papermill failed before any cell raised (kernel did not start?)"
