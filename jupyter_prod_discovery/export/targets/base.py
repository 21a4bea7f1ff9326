"""Pipeline targets: the orchestrator files of a bundle.

Every target runs the bundled notebook with papermill and gets credentials at run time from Vault
*by reference* (profile, mount, role from the manifest): a target never receives a secret value,
so none can end up in generated code (the leak of elyra #1479/#3164 and papermill #271).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from traitlets.config import LoggingConfigurable

from .._meta import ABCConfigurableMeta

__all__ = ["ExportTarget", "JobSpec"]


@dataclass
class JobSpec:
    """What a target needs to describe the job; contains references only, never values."""

    name: str
    notebook: str
    parameters: dict[str, Any]
    kernel_name: str
    vault_references: list[dict[str, Any]] = field(default_factory=list)
    requirements: str = "requirements.txt"


class ExportTarget(LoggingConfigurable, metaclass=ABCConfigurableMeta):
    """One orchestrator. ``name`` is what ``--target`` selects."""

    name: str = ""

    @abstractmethod
    def files(self, job: JobSpec) -> dict[str, str]:
        """Bundle-relative path -> text of every file this target adds to the bundle."""


def env_name(profile: str, key: str) -> str:
    """Environment variable a job sees for one field of a credential profile: PD_<PROFILE>_<KEY>."""
    norm = "".join(c if c.isalnum() else "_" for c in f"{profile}_{key}").upper()
    return f"PD_{norm}"
