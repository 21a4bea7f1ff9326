"""The benchmark runner's lockstep mode (benchmarks/core.py: request_case, measure_lockstep)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from benchmarks.core import CASES, Case, measure_lockstep, request_case


class _Server:
    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log


class _Measure:
    """Stands in for Measure: logs when its window opens and closes."""

    def __init__(self, label: str, log: list[str]) -> None:
        self.label, self.log = label, log

    @contextlib.asynccontextmanager
    async def __call__(self, ops: int = 1) -> AsyncIterator[None]:
        self.log.append(f"open {self.label} x{ops}")
        yield
        self.log.append(f"close {self.label}")


@pytest.fixture
def registered() -> Any:
    names = set(CASES)
    yield
    for name in set(CASES) - names:
        del CASES[name]


def test_lockstep_alternates_both_servers_inside_one_window(registered: None) -> None:
    log: list[str] = []

    @request_case("test_lockstep_case", description="a test case", ops=4)
    async def prepare(server: Any) -> Any:
        log.append(f"prepare {server.label}")

        async def op() -> None:
            log.append(server.label)

        return op

    c = CASES["test_lockstep_case"]
    servers = [_Server("A", log), _Server("B", log)]
    asyncio.run(measure_lockstep(c, servers, [_Measure("A", log), _Measure("B", log)]))  # type: ignore[list-item]
    assert log == [
        "prepare A",
        "prepare B",
        "open A x4",
        "open B x4",
        *["A", "B", "B", "A", "A", "B", "B", "A"],
        "close B",
        "close A",
    ]


def test_request_case_runs_alone_as_a_plain_case_too(registered: None) -> None:
    log: list[str] = []

    @request_case("test_sequential_case", description="a test case", ops=3)
    async def prepare(server: Any) -> Any:
        async def op() -> None:
            log.append(server.label)

        return op

    c = CASES["test_sequential_case"]
    asyncio.run(c.fn(_Server("A", log), _Measure("A", log)))  # type: ignore[arg-type]
    assert log == ["open A x3", "A", "A", "A", "close A"]


def test_lockstep_refuses_a_case_that_is_not_a_request_case() -> None:
    async def fn(server: Any, measure: Any) -> None:
        return None

    with pytest.raises(ValueError, match="'kernel_thing' is not a request case"):
        asyncio.run(measure_lockstep(Case("kernel_thing", fn, "x"), [], []))


def test_contents_and_download_cases_are_request_cases() -> None:
    from benchmarks.cases import load_all

    load_all()
    for name in ("contents_get_small", "contents_put_small", "files_download_settled"):
        assert CASES[name].prepare is not None
        assert CASES[name].ops == 40
    assert CASES["execute_small_x20"].prepare is None
