"""A/B benchmarks of the extension against a plain jupyter-server: ``python -m benchmarks``.

Add a case by dropping a module into ``benchmarks/cases/`` (see benchmarks/README.md)::

    from benchmarks.core import case

    @case("my_case", description="what one op is")
    async def my_case(server, measure):
        ...  # unmeasured preparation
        async with measure(ops=10):
            ...  # exactly the operation under test
"""

from .core import BenchEnv, BenchServer, Kernel, Measure, case, server_config

__all__ = ["BenchEnv", "BenchServer", "Kernel", "Measure", "case", "server_config"]
