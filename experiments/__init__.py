"""Runnable studies built on jrnn: ``python -m experiments.NAME``."""

import os as _os

# XLA's CPU runtime can wedge its Eigen thread pool on large vmapped programs with LAPACK
# calls (seen here: an intermittent hang in device_get of a jrnn.parallel.sweep result; the
# same workaround is reported upstream-adjacent, e.g. PyAutoFit issue 1530). Single-threaded
# Eigen costs ~15% on CPU and avoids it. Set before JAX is imported; a user's own
# --xla_cpu_multi_thread_eigen setting wins.
if "xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()
