"""Timing and table helpers shared by the benchmarks (medians over repeats after warmup)."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence

import jax


def block(tree):
    """Waits for every array in ``tree``."""
    return jax.tree_util.tree_map(
        lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree
    )


def median_time(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
    """Median wall times (s) of several callables, timed round-robin.

    Interleaving the repeats makes the ratios robust to load that changes
    while the benchmark runs (other processes sharing the cores).
    """
    for fn in fns.values():
        for _ in range(warmup):
            block(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            block(fn())
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine() -> str:
    """``"cpu: AMD EPYC (2 cores)"``-style description of the default device."""
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        name = platform.processor() or "cpu"
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        import os

        return f"cpu: {name} ({os.cpu_count()} cores), jax {jax.__version__}"
    return f"{dev.platform}: {dev.device_kind}, jax {jax.__version__}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table of the cells as ``str`` (the experiments' one formatter,
    :func:`experiments.common.table`)."""
    from experiments import common

    return common.table(headers, [[str(c) for c in row] for row in rows])
