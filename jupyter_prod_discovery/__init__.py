"""Prod Discovery guardrails for Jupyter.

This module only hands out the version and the Jupyter discovery hooks; everything else lives in
one subpackage per capability (``credentials``, ``guard``, ``pii``, ``audit``, ``export``).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> str:
    """``__version__`` on first use: importlib.metadata costs ~40 ms of import time, and this
    package is imported by the audit shim in every kernel at interpreter start."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("jupyter_prod_discovery")
    except PackageNotFoundError:  # pragma: no cover - only when run from a bare source tree
        value = "0.0.0"
    globals()["__version__"] = value
    return value


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .extension import ProdDiscoveryApp

    return [{"module": "jupyter_prod_discovery", "app": ProdDiscoveryApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-prod-discovery"}]
