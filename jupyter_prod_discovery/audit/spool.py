"""A local, fsynced holding file for records a sink could not take; replayed in order later."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["Spool"]


class Spool:
    """Append-only file of JSON lines for one sink; cleared only after a successful replay."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, lines: list[str]) -> None:
        """Append and fsync: a spooled record must survive the server dying before replay."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as f:
            return [ln.rstrip("\n") for ln in f if ln.strip()]

    def pending(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def tail(self) -> dict[str, Any] | None:
        lines = self.read()
        try:
            return json.loads(lines[-1]) if lines else None
        except ValueError:
            return None

    def clear(self) -> None:
        if self.path.exists():
            with open(self.path, "w", encoding="utf-8") as f:
                f.flush()
                os.fsync(f.fileno())
