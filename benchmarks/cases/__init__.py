"""Benchmark cases: every module in this package is imported, and registers its cases."""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    """Import every case module (each registers its cases with ``@case``)."""
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{mod.name}")
