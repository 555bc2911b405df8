"""Runnable studies built on jrnn: ``python -m experiments.NAME``."""

import os as _os
import sys as _sys

# XLA's CPU runtime can wedge its Eigen thread pool on large vmapped programs with LAPACK
# calls (seen here: an intermittent hang in device_get of a jrnn.parallel.sweep result; the
# same workaround is reported upstream-adjacent, e.g. PyAutoFit issue 1530). Single-threaded
# Eigen avoids it, so the studies set it before JAX is imported; a user's own
# --xla_cpu_multi_thread_eigen setting wins. The benchmarks (experiments.benchmarks.*) keep
# XLA's defaults: single-threaded Eigen also slows some peers (jnp.linalg.svd 2.5x on 2 cores),
# and the benchmarks must time what a user gets.
_BENCHMARK = any("experiments.benchmarks" in a for a in getattr(_sys, "orig_argv", ()))
if not _BENCHMARK and "xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()
