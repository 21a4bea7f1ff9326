"""Pipeline targets selectable with ``--target`` (see :mod:`.base`)."""

from __future__ import annotations

from .airflow import AirflowTarget
from .base import ExportTarget, JobSpec
from .dagster import DagsterTarget
from .kubernetes import KubernetesTarget
from .papermill import PapermillTarget

__all__ = [
    "DEFAULT_TARGETS",
    "AirflowTarget",
    "DagsterTarget",
    "ExportTarget",
    "JobSpec",
    "KubernetesTarget",
    "PapermillTarget",
]

DEFAULT_TARGETS: dict[str, type[ExportTarget]] = {
    t.name: t for t in (PapermillTarget, AirflowTarget, DagsterTarget, KubernetesTarget)
}
