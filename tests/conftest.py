"""Test configuration: float64 available, silent rank promotion is an error,
and hypothesis runs a deterministic, small profile (every new shape recompiles)."""

import jax
from hypothesis import HealthCheck, settings

import jrnn

jrnn.host.configure_xla()  # before the CPU backend starts (the studies do the same in main)
# pytest -n 2 runs two processes on two cores: one BLAS thread per LAPACK call (QR, SVD, eig),
# as jrnn.host.lapack_threads documents for shared cores (a default-thread call can stall for
# a whole time slice; BENCHMARKS.md measures 13x on batched SVDs).
_LAPACK_LIMIT = jrnn.host.lapack_threads(1)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "jrnn",
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("jrnn")
