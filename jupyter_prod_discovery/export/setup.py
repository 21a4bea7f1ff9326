"""Wiring of the export capability into the server (called from extension.py)."""

from __future__ import annotations

from traitlets.config import Configurable

from .exporter import NotebookExporter
from .gates.builtin import CleanRunGate, NoInteractiveGate, NoPIIGate
from .signing import HMACSigner, TransitSigner
from .targets.airflow import AirflowTarget
from .targets.kubernetes import KubernetesTarget

__all__ = ["CONFIG_CLASSES"]

# Configurables of the exporter, listed in the app's ``classes`` for --help-all.
CONFIG_CLASSES: list[type[Configurable]] = [
    NotebookExporter,
    NoPIIGate,
    NoInteractiveGate,
    CleanRunGate,
    HMACSigner,
    TransitSigner,
    AirflowTarget,
    KubernetesTarget,
]
