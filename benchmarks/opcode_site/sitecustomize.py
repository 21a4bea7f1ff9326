"""Bytecode counting inside a benchmark server (``python -m benchmarks.opcodes``).

Put on ``PYTHONPATH`` of a server process only: Python imports it at start-up. ``SIGUSR2``
toggles counting on the main thread (the event loop's): the first signal starts it, the second
stops it and writes ``{file, first line, function: [bytecodes, calls]}`` as JSON to
``$PD_OPCODES_OUT.<pid>.json``. jupyter_server handles SIGUSR1 itself, never SIGUSR2.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

_ops: dict[Any, int] = {}
_calls: dict[Any, int] = {}
_on = False


def _local(frame: Any, event: str, arg: Any) -> Any:
    if event == "opcode":
        code = frame.f_code
        _ops[code] = _ops.get(code, 0) + 1
    return _local


def _global(frame: Any, event: str, arg: Any) -> Any:
    # "call" also marks each resumption of a coroutine: a frame crossed again.
    code = frame.f_code
    if code in _OWN:
        return None
    frame.f_trace_opcodes = True
    _calls[code] = _calls.get(code, 0) + 1
    return _local


def _dump() -> None:
    rows = [
        [
            code.co_filename,
            code.co_firstlineno,
            code.co_name,
            _ops.get(code, 0),
            _calls.get(code, 0),
        ]
        for code in set(_ops) | set(_calls)
    ]
    out = f"{os.environ.get('PD_OPCODES_OUT', 'opcodes')}.{os.getpid()}.json"
    with open(out + ".tmp", "w") as f:
        json.dump(rows, f)
    os.replace(out + ".tmp", out)


def _toggle(signum: int, frame: Any) -> None:
    global _on
    if _on:
        sys.settrace(None)
        _dump()
    else:
        _ops.clear()
        _calls.clear()
        sys.settrace(_global)
    _on = not _on


#: The hook's own functions, never counted (the stopping signal runs while counting is on).
_OWN = {_toggle.__code__, _dump.__code__}
signal.signal(signal.SIGUSR2, _toggle)
