"""Promotion gates: the checks a notebook must pass before it leaves Discovery.

A gate is a configurable plug-in class (``NotebookExporter.gate_classes``); gates run in order,
each returns a :class:`GateResult` (name, passed, reason) that goes into the manifest. A reason
names what failed and where (cell and output index, finding type), never the offending value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from traitlets.config import LoggingConfigurable

from .._meta import ABCConfigurableMeta

__all__ = [
    "CleanRunOutcome",
    "CleanRunSandbox",
    "ExportContext",
    "GateResult",
    "PromotionGate",
    "SandboxError",
]


@dataclass
class GateResult:
    name: str
    passed: bool
    reason: str
    skipped: bool = False
    overridden: bool = False
    override_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SandboxError(RuntimeError):
    """The clean run's sandbox could not be prepared (no sandbox user, credentials refused):
    the gate fails closed with this message, which names the cause and never a secret."""


@dataclass
class CleanRunOutcome:
    """How a sandboxed run ended: ``returncode`` None means it was stopped at its deadline;
    ``output`` is papermill's output notebook (JSON text) when one was written."""

    returncode: int | None
    output: str | None


class CleanRunSandbox(ABC):
    """Where ``clean_run`` executes the bundled notebook, when not in the exporter's process.

    The trusted service supplies one per export (``service/sandbox.py``): another OS user, an
    environment holding nothing of the trusted side, credentials of the bundle's declared
    profiles only, revoked after the run.
    """

    @abstractmethod
    def run(self, notebook: str, parameters: dict[str, Any], timeout: float) -> CleanRunOutcome:
        """Run ``notebook`` (nbformat JSON) with papermill and ``parameters``; raise
        :class:`SandboxError` when the sandbox cannot be prepared."""


@dataclass
class ExportContext:
    """Everything a gate may look at. ``secrets`` are exact values: never copy them anywhere."""

    source_path: Path
    source: NotebookNode
    bundled: NotebookNode
    parameters: dict[str, Any]
    author: str
    kernel_python: str
    environment: dict[str, Any] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()
    sandbox: CleanRunSandbox | None = None


class PromotionGate(LoggingConfigurable, metaclass=ABCConfigurableMeta):
    """One promotion gate.

    Subclasses set ``name`` (stable, used by ``--override NAME``), ``overridable`` (False for gates
    whose failure would put a secret into the bundle) and ``expensive`` (skipped once an earlier
    gate has failed, so a refusal comes fast).
    """

    name: str = ""
    overridable: bool = True
    expensive: bool = False

    @abstractmethod
    def check(self, ctx: ExportContext) -> GateResult:
        """Check the notebook; return a result, never raise for a finding (raise only on bugs)."""

    def passed(self, reason: str) -> GateResult:
        return GateResult(self.name, True, reason)

    def failed(self, reason: str) -> GateResult:
        return GateResult(self.name, False, reason)
