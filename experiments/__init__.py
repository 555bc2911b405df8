"""Runnable studies built on jrnn: ``python -m experiments.NAME``."""

import os as _os
import sys as _sys

# XLA's CPU runtime can wedge its thread pool when a library kernel blocks a pool thread on
# sub-tasks queued to the same pool (PyAutoFit issue 1530: FFTs, fixed by single-threaded
# Eigen). jaxlib 0.10's batched LAPACK kernels do the same (gdb of a hung activation study:
# both pool threads in QrFactorization -> ParallelBatchMap -> BlockingCounter::Wait), which
# this flag does not prevent; jrnn orders its LAPACK calls instead (jrnn.diagnostics.after,
# README "Known issues"). The studies still set the flag before JAX is imported; a user's own
# --xla_cpu_multi_thread_eigen setting wins. The benchmarks (experiments.benchmarks.*) keep
# XLA's defaults: single-threaded Eigen also slows some peers (jnp.linalg.svd 2.5x on 2 cores),
# and the benchmarks must time what a user gets.
_BENCHMARK = any("experiments.benchmarks" in a for a in getattr(_sys, "orig_argv", ()))
if not _BENCHMARK and "xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()
