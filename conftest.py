"""Doctests of jrnn's public docstrings (collected by ``python -m pytest``): the names
every ``>>>`` example may use without importing them, and the user's default JAX
config (float32: ``jax_enable_x64`` off; rank promotion allowed), whatever tests/conftest.py
sets for the tests."""

import os

# The suite is compile-bound on CPU: most tests compile small programs once and run them for
# milliseconds. XLA's backend optimisation level 0 (LLVM's expensive passes off; the HLO passes,
# fusion included, still run) cuts compilation by ~30% (measured: the Newton gradient tests
# 57-64 s against 85-96 s). Set in the environment as well, so test subprocesses inherit it.
# Benchmarks and studies never run under it.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# Many tests compile the same program (the same diagnostic on the same small cell, built in
# another closure), and two xdist workers compile what the other already has. A persistent
# compilation cache in a fresh directory of this run (made by the first process, inherited by
# the xdist workers and test subprocesses through the environment, removed by its maker at exit)
# serves repeats from disk: measured -9.5% wall time on the Lyapunov/Newton/snapshot tests
# (-n 2), and a warm cache (not used: each run starts cold) shows compilation is ~2/3 of them.
# A cache dir given by the caller is used as it is and never removed.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="jrnn-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)  # in case jax was imported first
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace):
    import jrnn

    doctest_namespace.update(jax=jax, jnp=jnp, np=np, optax=optax, jrnn=jrnn)


@pytest.fixture(autouse=True)
def _doctest_default_config(request):
    if type(request.node).__name__ != "DoctestItem":
        yield
        return
    with jax.enable_x64(False), jax.numpy_rank_promotion("allow"):
        yield


# Tests measured at >= 6 s on the 2-core CI machine (tests/slow_tests.txt, one node id per
# line) carry the `slow` marker: the README's `python -m pytest -n 2 -q` deselects them
# (pyproject's addopts), `python -m pytest -n 2 -q -m slow` runs them, `-m ""` runs all.
_SLOW_FILE = os.path.join(os.path.dirname(__file__), "tests", "slow_tests.txt")


def pytest_collection_modifyitems(config, items):
    with open(_SLOW_FILE) as f:
        slow = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)
