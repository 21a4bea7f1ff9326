"""Prod Discovery guardrails for Jupyter.

This module only hands out the version and the Jupyter discovery hooks; everything else lives in
one subpackage per capability (``credentials``, ``guard``, ``pii``, ``audit``, ``export``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("jupyter_prod_discovery")
except PackageNotFoundError:  # pragma: no cover - only when run from a bare source tree
    __version__ = "0.0.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .extension import ProdDiscoveryApp

    return [{"module": "jupyter_prod_discovery", "app": ProdDiscoveryApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-prod-discovery"}]
