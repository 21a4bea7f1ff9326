"""The save guard: a contents-manager pre-save hook applying the PII policy to what is saved.

Notebook outputs are redacted in the saved model or, when the policy blocks, the save is refused
with ``HTTPError(403)`` naming entity types and counts (never values): jupyter_server treats any
other exception as fail-open. Text files are scanned whole. Cell sources are not scanned: they
are the user's code, audited separately.
"""

from __future__ import annotations

from typing import Any

from tornado.web import HTTPError

from ..pii import Verdict
from .live import PIIGuard, summary
from .outputs import apply_to_notebook

__all__ = ["make_pre_save_hook"]


def _current_user() -> Any:
    from jupyter_server import CallContext

    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    return getattr(handler, "current_user", None)


def make_pre_save_hook(guard: PIIGuard, app: Any) -> Any:
    """A hook for ``ContentsManager.register_pre_save_hook`` bound to this guard and audit."""

    def pre_save_hook(model: dict[str, Any], path: str, **kwargs: Any) -> None:
        if not guard.enabled:
            return
        user = _current_user()
        blocked: dict[str, int] = {}
        if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
            for ci, oi, action, entities in apply_to_notebook(guard, model["content"]):
                verdict = Verdict(action, [])
                verdict.entities = entities
                where = {"source": "save", "path": path, "cell": ci, "output": oi}
                guard.audit(app.audit, where, verdict, user)
                if action == "block":
                    for k, v in entities.items():
                        blocked[k] = blocked.get(k, 0) + v
        elif model.get("type") == "file" and model.get("format") == "text":
            verdict, text = guard.text(str(model.get("content") or ""), None)
            guard.audit(app.audit, {"source": "save", "path": path}, verdict, user)
            if verdict.action == "block":
                blocked = dict(verdict.entities)
            elif verdict.action == "redact":
                model["content"] = text
        if blocked:
            raise HTTPError(
                403,
                f"Save refused by the Prod Discovery PII policy: {summary(blocked)}. "
                "Clear or redact these outputs and save again.",
            )

    return pre_save_hook
