"""Pipeline targets: the orchestrator files of a bundle.

Every target runs the bundled notebook with papermill and gets credentials at run time from Vault
*by reference* (profile, mount, role from the manifest): a target never receives a secret value,
so none can end up in generated code (the leak of elyra #1479/#3164 and papermill #271).

Every target also verifies the whole bundle before it runs anything of it: the entry file embeds
the offline verifier (:func:`embedded_verifier`, the source of :mod:`..attestation`) and calls
``require_verified`` with the public key Integration pins (``PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE``
or ``PROD_DISCOVERY_EXPORT_PUBLIC_KEY``), never a key from the bundle. That catches a bundle
edited or re-signed after export whose entry file is the generated one; an entry file rewritten
by a forger is caught where Integration verifies with its own copy first (``export verify``,
the Airflow ``might_contain_dag_callable``, the Kubernetes init step's image).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets.config import LoggingConfigurable

from .._meta import ABCConfigurableMeta

__all__ = ["ExportTarget", "JobSpec", "embedded_verifier"]

_EMBED_START = "\nimport base64\n"
_EMBED_END = "# --- end of the embedded verifier"


def embedded_verifier() -> str:
    """Source of the offline verifier to paste into a generated entry file (module level)."""
    from .. import attestation

    source = Path(attestation.__file__).read_text(encoding="utf-8")
    body = source[source.index(_EMBED_START) : source.index(_EMBED_END)]
    return "# --- offline bundle verifier, from jupyter_prod_discovery.export.attestation ---" + (
        body.rstrip() + "\n# --- end of the offline bundle verifier ---\n"
    )


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
