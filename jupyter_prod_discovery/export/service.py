"""Export through the server: what ``POST /prod-discovery/api/exports`` does, outside HTTP.

The notebook path is relative to the server root and must stay inside it (as must the output);
the author is the authenticated user; the exact secret values checked are those issued to that
user's kernels (all kernels on a single-user server, where every caller is the same person).
The session's data sources and credential profiles come from the audit trail (every kernel of
the author, stopped ones included) and the credential broker's live kernels; with neither, both
lists are empty and the manifest says ``"source": "none"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..audit.session import summarize_session
from .exporter import ExportRefused, ExportRequest, NotebookExporter, SessionProvider
from .gates.base import GateResult
from .manifest import SIGNATURE_FILE

if TYPE_CHECKING:
    from ..extension import ProdDiscoveryApp

__all__ = [
    "ExportFailed",
    "build_exporter",
    "export_for_user",
    "export_request",
    "resolve_inside",
]

DEFAULT_OUTPUT_DIR = ".prod-discovery/exports"


def resolve_inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` resolved; PermissionError when it escapes the root."""
    if not isinstance(relative, str) or not relative.strip():
        raise ValueError(f"'{what}' must be a non-empty path relative to the server root")
    root = root.resolve()
    path = (root / relative.lstrip("/")).resolve()
    if path != root and root not in path.parents:
        raise PermissionError(f"{what} {relative!r} is outside the server root")
    return path


def _user_name(user: Any) -> str:
    return str(getattr(user, "username", None) or user or "anonymous")


def _session_provider(app: ProdDiscoveryApp, owner: str | None) -> SessionProvider | None:
    """Data sources and profiles of ``owner``'s Discovery session.

    The audit trail remembers every kernel of the session, stopped ones included; the broker adds
    its live kernels and the references (mount, role, policies) of each profile. With neither,
    there is no provider and the manifest says ``"source": "none"``.
    """
    broker = getattr(app, "broker", None)
    sinks = getattr(getattr(app, "audit", None), "sinks", None)
    if broker is None and not sinks:
        return None

    def provider(author: str, path: str) -> dict[str, Any]:
        used: set[str] = set()
        data_sources: list[dict[str, Any]] = []
        if sinks:
            summary = summarize_session(sinks[0].read_lines(), owner)
            used |= set(summary["credential_profiles"])
            data_sources = summary["data_sources"]
        details: dict[str, dict[str, Any]] = {}
        if broker is not None:
            used |= {p for k in broker.kernels(owner) for p in k.profiles}
            details = {
                p.name: {
                    "name": p.name,
                    "mount": p.mount,
                    "role": p.role,
                    "path": p.path,
                    "policies": list(p.policies),
                }
                for p in broker.profile_objects
            }
        profiles = [details.get(name, {"name": name}) for name in sorted(used)]
        return {"data_sources": data_sources, "credential_profiles": profiles}

    return provider


def export_request(root: Path, body: dict[str, Any], user: Any) -> ExportRequest:
    """The exporter's request for ``body`` (paths confined to the server root)."""
    notebook = resolve_inside(root, body.get("path", ""), "path")
    stem = notebook.stem or "notebook"
    default_out = f"{DEFAULT_OUTPUT_DIR}/{stem}-{time.strftime('%Y%m%dT%H%M%S')}"
    output = resolve_inside(root, body.get("output") or default_out, "output")
    targets = body.get("targets") or [body.get("target") or "papermill"]
    params = body.get("parameters") or {}
    overrides = body.get("overrides") or {}
    if not isinstance(targets, list) or not isinstance(params, dict):
        raise ValueError("'targets' must be a list and 'parameters' an object")
    if not isinstance(overrides, dict):
        raise ValueError("'overrides' must be an object {gate: reason}")
    return ExportRequest(
        notebook=notebook,
        output=output,
        author=_user_name(user),
        targets=[str(t) for t in targets],
        parameters=params,
        overrides={str(k): str(v) for k, v in overrides.items()},
        display_path=notebook.relative_to(root.resolve()).as_posix(),
    )


def build_exporter(
    app: ProdDiscoveryApp, user: Any, on_gate: Callable[[GateResult], None] | None = None
) -> NotebookExporter:
    """This server's exporter for ``user`` (same-user mode): their issued secrets, their
    session's profiles, the server's Vault for a transit signer."""
    broker = getattr(app, "broker", None)
    owner = broker.visible_owner(user) if broker is not None else _user_name(user)
    secrets = app.secrets.all() if owner is None else app.secrets.for_owner(owner)
    provider = _session_provider(app, owner)
    vault = app.vault if app.vault.configured and app.vault_error is None else None
    return NotebookExporter(
        parent=app,
        audit=app.audit,
        secrets_for=lambda _author: secrets,
        session_provider=provider,
        vault=vault,
        on_gate=on_gate,
    )


def export_for_user(
    app: ProdDiscoveryApp, root: Path, body: dict[str, Any], user: Any
) -> tuple[int, dict[str, Any]]:
    """Run one export (blocking: call it in a thread); return (HTTP status, JSON payload).

    As a client of the trusted service the service decides (:class:`.jobs.ServiceExports`):
    this waits for its job and answers in the same shape.
    """
    if app.service_client is not None:
        jobs = app.export_jobs
        job = jobs.wait(jobs.submit(body, user)["id"], user)
        if job["state"] == "failed":
            raise ExportFailed(job.get("message") or "the service could not export")
        payload = {
            "exported": job["state"] == "exported",
            "message": job.get("message", ""),
            "gates": job["gates"],
            "job": job["id"],
            "signer": job.get("signer"),
        }
        if job["state"] == "exported":
            payload.update(
                bundle=job["bundle"],
                manifest_sha256=job["manifest_sha256"],
                signature=job["signature"],
            )
        return (201 if job["state"] == "exported" else 422), payload
    request = export_request(root, body, user)
    exporter = build_exporter(app, user)
    try:
        result = exporter.process(request, user=user)
    except ExportRefused as exc:
        return 422, {
            "exported": False,
            "message": str(exc),
            "gates": [g.to_dict() for g in exc.gates],
        }
    bundle = result.bundle.relative_to(root.resolve()).as_posix()
    return 201, {
        "exported": True,
        "bundle": bundle,
        "manifest_sha256": result.manifest_sha256,
        "signature": {**result.signature, "file": f"{bundle}/{SIGNATURE_FILE}"},
        "gates": [g.to_dict() for g in result.gates],
    }


class ExportFailed(RuntimeError):
    """The export could not be carried out (not a refusal by the gates): 502 from the server."""
