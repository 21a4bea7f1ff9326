"""The bundle's in-toto Statement v1 with a SLSA provenance v1 predicate.

Why SLSA provenance rather than a private predicate: Integration's tooling (policy engines,
in-toto and SLSA verifiers) already knows where to look. The fields map as follows:

- ``subject``: every bundle file (notebook, script, requirements, target files) with its sha256;
- ``buildDefinition.externalParameters``: what the request asked for: the notebook (path, sha256,
  bundled names), the job name, its parameters, targets, declared roles (the Vault references
  the job gets at run time) and gate overrides with their reasons;
- ``buildDefinition.internalParameters``: what the exporter decided and read itself: the
  authenticated author, the gate results, the kernel and locked environment, and the data
  sources and credential profiles of the author's Discovery session;
- ``buildDefinition.internalParameters.reportedByServer``: what the submitting server reported
  and the builder could not check (the trusted service cannot read the author's repository):
  the server's id and the notebook's git commit, path, branch, remote and dirty flag. A reader
  must treat it as the server's claim, never as the builder's observation;
- ``buildDefinition.resolvedDependencies``: the notebook's git commit and path (read without
  running git, or reported by the server: then annotated ``reportedBy: server``), and the source
  notebook's sha256;
- ``runDetails``: the builder (this exporter, its version) and when it ran.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .attestation import PREDICATE_TYPE, STATEMENT_TYPE

__all__ = ["BUILDER_ID", "BUILD_TYPE", "ProvenanceInput", "build_statement", "predicate_fields"]

BUILD_TYPE = "https://jupyter-prod-discovery.readthedocs.io/export/build-type/v1"
BUILDER_ID = "https://jupyter-prod-discovery.readthedocs.io/exporter"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jupyter_prod_discovery")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class ProvenanceInput:
    """Everything the statement records; built by the exporter."""

    name: str
    notebook: dict[str, Any]
    files: dict[str, str]
    author: str
    kernel: dict[str, Any]
    environment: dict[str, Any]
    parameters: dict[str, Any]
    targets: list[str]
    gates: list[dict[str, Any]]
    session: dict[str, Any]
    declared_roles: list[dict[str, Any]] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    git: dict[str, Any] | None = None
    #: What the submitting server reported and the builder could not check: {"server": id,
    #: "git": wire report or None} (export/git_report.py). Empty: nothing was reported.
    reported_by_server: dict[str, Any] = field(default_factory=dict)
    started: datetime | None = None
    builder_id: str = BUILDER_ID


def build_statement(p: ProvenanceInput) -> dict[str, Any]:
    """The Statement (a JSON object) the envelope signs."""
    now = datetime.now(UTC)
    deps: list[dict[str, Any]] = [
        {
            "name": "notebook",
            "uri": f"file:{p.notebook['path']}",
            "digest": {"sha256": p.notebook["source_sha256"]},
        }
    ]
    if p.git:
        origin = p.git.get("origin") or "file:"
        deps.append(
            {
                "name": "notebook repository",
                "uri": f"git+{origin}",
                "digest": {"gitCommit": p.git["commit"]},
                "annotations": {
                    k: p.git[k] for k in ("path", "ref", "notebook_committed") if k in p.git
                },
            }
        )
    reported_git = p.reported_by_server.get("git")
    if reported_git:
        deps.append(
            {
                "name": "notebook repository",
                "uri": f"git+{reported_git.get('remote') or 'file:'}",
                "digest": {"gitCommit": reported_git["commit"]},
                "annotations": {
                    "path": reported_git["path"],
                    "branch": reported_git.get("branch"),
                    "dirty": reported_git["dirty"],
                    "reportedBy": "server",
                },
            }
        )
    internal: dict[str, Any] = {
        "author": p.author,
        "gates": p.gates,
        "kernel": p.kernel,
        "environment": p.environment,
        "session": p.session,
        "git": p.git,
    }
    if p.reported_by_server:
        internal["reportedByServer"] = p.reported_by_server
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": k, "digest": {"sha256": v}} for k, v in sorted(p.files.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "name": p.name,
                    "notebook": p.notebook,
                    "parameters": p.parameters,
                    "targets": list(p.targets),
                    "declaredRoles": p.declared_roles,
                    "overrides": dict(p.overrides),
                },
                "internalParameters": internal,
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": p.builder_id, "version": {"jupyter_prod_discovery": _version()}},
                "metadata": {
                    "invocationId": str(uuid.uuid4()),
                    "startedOn": (p.started or now).isoformat(timespec="seconds"),
                    "finishedOn": now.isoformat(timespec="seconds"),
                },
            },
        },
    }


def predicate_fields(statement: dict[str, Any]) -> dict[str, Any]:
    """A flat view for readers (CLI output, UI, tests): name, author, gates, parameters, ..."""
    build = statement["predicate"]["buildDefinition"]
    ext, internal = build["externalParameters"], build["internalParameters"]
    return {
        "name": ext["name"],
        "notebook": ext["notebook"],
        "parameters": ext["parameters"],
        "targets": ext["targets"],
        "declared_roles": ext["declaredRoles"],
        "overrides": ext["overrides"],
        "author": internal["author"],
        "gates": internal["gates"],
        "kernel": internal["kernel"],
        "environment": internal["environment"],
        "session": internal["session"],
        "git": internal["git"],
        "reported_by_server": internal.get("reportedByServer") or {},
        "files": {s["name"]: s["digest"]["sha256"] for s in statement["subject"]},
    }
