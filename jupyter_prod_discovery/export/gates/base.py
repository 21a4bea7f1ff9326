"""Promotion gates: the checks a notebook must pass before it leaves Discovery.

A gate is a configurable plug-in class (``NotebookExporter.gate_classes``); gates run in order,
each returns a :class:`GateResult` (name, passed, reason) that goes into the manifest. A reason
names what failed and where (cell and output index, finding type), never the offending value.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from traitlets.config import LoggingConfigurable

from .._meta import ABCConfigurableMeta

__all__ = ["ExportContext", "GateResult", "PromotionGate"]


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
