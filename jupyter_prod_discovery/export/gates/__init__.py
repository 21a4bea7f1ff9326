"""Promotion gates (pluggable, ordered); see :mod:`.base` for the contract."""

from __future__ import annotations

from .base import ExportContext, GateResult, PromotionGate
from .builtin import (
    CleanRunGate,
    DependenciesLockedGate,
    NoInteractiveGate,
    NoPIIGate,
    NoSecretsGate,
    OutputsStrippedGate,
)

__all__ = [
    "DEFAULT_GATES",
    "CleanRunGate",
    "DependenciesLockedGate",
    "ExportContext",
    "GateResult",
    "NoInteractiveGate",
    "NoPIIGate",
    "NoSecretsGate",
    "OutputsStrippedGate",
    "PromotionGate",
]

DEFAULT_GATES: list[type[PromotionGate]] = [
    OutputsStrippedGate,
    NoPIIGate,
    NoSecretsGate,
    NoInteractiveGate,
    DependenciesLockedGate,
    CleanRunGate,
]
