"""The kernel spec and locked environment of the notebook's kernel.

The environment is read by running :mod:`importlib.metadata` in the kernel's own interpreter
(not the server's), because that is where the notebook's imports resolve. Only names and versions
are recorded: a kernel spec's ``env`` (which may hold credentials) is never copied.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

__all__ = ["EnvironmentError_", "kernel_info", "locked_environment", "requirements_txt"]


class EnvironmentError_(RuntimeError):
    """The kernel's environment could not be read."""


_PROBE = r"""
import importlib.metadata as md, importlib.util, json, platform, sys
mods = json.loads(sys.argv[1])
pk = {}
for d in md.distributions():
    name = d.metadata["Name"]
    if name:
        pk[name] = d.version
missing = [m for m in mods if importlib.util.find_spec(m) is None]
print(json.dumps({"python_version": platform.python_version(), "packages": pk, "missing": missing}))
"""


def kernel_info(kernel_name: str) -> dict[str, str]:
    """Name, display name, language and interpreter path of a kernel spec (never its env)."""
    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise ValueError(f"the notebook's kernel {kernel_name!r} is not installed") from None
    argv0 = spec.argv[0] if spec.argv else ""
    if argv0 in ("python", "python3", "{python}") or not argv0:
        python = sys.executable
    else:
        python = shutil.which(argv0) or argv0
    return {
        "name": kernel_name,
        "display_name": spec.display_name,
        "language": spec.language,
        "python": python,
    }


def locked_environment(python: str, modules: list[str], timeout: float = 60) -> dict[str, Any]:
    """``{"python_version", "packages": {name: version}, "missing": [modules not importable]}``."""
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE, json.dumps(modules)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentError_(f"cannot run the kernel's interpreter {python}: {exc}") from None
    if proc.returncode != 0:
        raise EnvironmentError_(f"reading the kernel's packages failed in {python}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def requirements_txt(packages: dict[str, str]) -> str:
    """Pinned requirements, one ``name==version`` a line, sorted case-insensitively."""
    lines = [f"{n}=={v}" for n, v in sorted(packages.items(), key=lambda kv: kv[0].lower())]
    return "# Locked from the Discovery kernel's interpreter by jupyter prod-discovery export\n" + (
        "\n".join(lines) + "\n"
    )
