"""The host's door: opt-in CPU tuning and the jaxlib workarounds, in one module.

Nothing here is science. It holds what jrnn needs from, or offers to, the machine
it runs on, so the science modules stay free of it and the day jaxlib is fixed
this file is the one change:

* :func:`lapack_pool_deadlock`: the one predicate of the jaxlib version. jaxlib
  0.10's CPU runtime spreads each *batched* LAPACK call (QR, SVD, ``eigh``,
  Cholesky, ...) over XLA's intra-op thread pool and blocks a pool thread until
  its pieces finish; when as many such calls run at once as the pool has
  threads, every thread waits and the program never finishes (seen in gdb: both
  pool threads in ``QrFactorization -> ParallelBatchMap -> BlockingCounter::Wait``).
* :func:`after` and :func:`together`: the ordering barriers that avoid it inside
  one jitted program (``lax.optimization_barrier``, identity where the
  predicate is false). The science modules call them where two LAPACK calls
  could overlap; users never have to.
* :func:`configure_xla`: the XLA CPU flag the experiments set at the start of
  ``main`` (never at import: importing jrnn or experiments has no side effects).
* :func:`keep_host_buffers` and :func:`lapack_threads`: opt-in, process-wide
  tuning of glibc's allocator and of the BLAS threads LAPACK uses.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from jax import lax

from jrnn.validation import check_int

__all__ = [
    "after",
    "configure_xla",
    "keep_host_buffers",
    "lapack_pool_deadlock",
    "lapack_threads",
    "together",
]

# jaxlib releases with the CPU thread-pool deadlock of batched LAPACK calls. No fixed
# release is known yet (0.10.2 is the newest seen); give the range an upper bound the
# day one is, and the barriers below become identities.
_DEADLOCK_SINCE = (0, 10, 0)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@functools.cache
def lapack_pool_deadlock() -> bool:
    """Whether this jaxlib can deadlock when batched LAPACK calls overlap on the CPU.

    True for jaxlib 0.10.0 and later (no fixed release is known). The ordering
    barriers (:func:`after`, :func:`together`) are identities where it is False.
    """
    import jaxlib

    return _version(jaxlib.__version__) >= _DEADLOCK_SINCE


def after(value: Any, *dependencies: Any) -> Any:
    """``value``, available only once every array in ``dependencies`` is computed.

    ``lax.optimization_barrier`` ties them together, so anything computed from
    the returned ``value`` is scheduled after the dependencies; values and
    derivatives are unchanged. An identity where :func:`lapack_pool_deadlock`
    is False or there are no dependencies.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> x = jnp.ones(3)
        >>> y = jrnn.host.after(x, jnp.zeros(2))  # y == x, computed after the zeros
        >>> bool((y == x).all())
        True
    """
    if not dependencies or not lapack_pool_deadlock():
        return value
    return lax.optimization_barrier((value, dependencies))[0]


def together(values: Any) -> Any:
    """``values`` (a pytree) tied into one barrier: nothing computed from any of
    them starts before all are ready (identity where the deadlock cannot happen).

    The science modules use it to make a LAPACK call wait for inputs that are
    computed concurrently with another LAPACK call.
    """
    if not lapack_pool_deadlock():
        return values
    return lax.optimization_barrier(values)


def configure_xla(*, benchmark: bool = False) -> None:
    """Sets ``--xla_cpu_multi_thread_eigen=false`` in ``XLA_FLAGS`` for a study.

    Call it at the start of a program, before the first JAX computation (the
    flag is read when the CPU backend starts). It keeps Eigen's own kernels off
    XLA's pool (PyAutoFit issue 1530 wedged that way); jaxlib 0.10's batched
    LAPACK calls are ordered by :func:`after` instead. A user's own setting of
    the flag wins; benchmarks (``benchmark=True``) keep XLA's defaults, since
    they must time what a user gets. Nothing happens where the deadlock cannot.
    """
    if benchmark or not lapack_pool_deadlock():
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


_C_INT_MAX = 2**31 - 1


def keep_host_buffers(threshold_bytes: int = 1 << 30) -> bool:
    """Serves large host allocations from glibc's heap and keeps freed memory for reuse.

    XLA:CPU packs an executable's temporaries into one buffer that it allocates
    on every call (LSTM training step at B=64, T=256, n=128: 59 MiB for jrnn's
    fused path, 112 MiB for ``flax.linen.RNN``). Above glibc's largest dynamic
    mmap threshold (32 MiB) such a buffer is a fresh ``mmap`` each call, and
    every one of its pages faults on first touch (``BENCHMARKS.md`` has the
    measured cost). Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` and
    using one malloc arena (``M_ARENA_MAX = 1``; XLA's worker threads would
    otherwise allocate from per-thread arenas, which ``mmap`` anything above
    64 MiB) lets the heap serve and keep it (the memory is not returned to the
    OS; with one arena, threads that allocate heavily in parallel contend for
    one heap lock).

    Call it at program start, before the first JAX computation: threads that
    already allocated keep their own arenas. Process-wide and opt-in; it speeds
    up every JAX program on the host (and PyTorch's), not only jrnn's
    (``experiments.benchmarks.train_step --keep-host-buffers`` applies it to
    all peers alike). Returns ``False`` where glibc's
    ``mallopt`` is unavailable (macOS, musl, Windows), else ``True``.

    Args:
      threshold_bytes: allocations up to this size come from the heap (the
        trim threshold is twice it); an int in ``[1, 2**31 - 1]``.

    Raises:
      TypeError: ``threshold_bytes`` is not an integer.
      ValueError: it is below 1 or above ``2**31 - 1`` (mallopt's C int).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    threshold = check_int(threshold_bytes, "threshold_bytes", low=1)
    if threshold > _C_INT_MAX:  # mallopt takes a C int; larger values would wrap around
        raise ValueError(
            f"threshold_bytes must be at most {_C_INT_MAX} (a C int, mallopt's argument), "
            f"got {threshold}."
        )
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    ok = mallopt(m_mmap_threshold, threshold) == 1
    ok = ok and mallopt(m_trim_threshold, min(2 * threshold, _C_INT_MAX)) == 1
    # XLA runs executables on its own threads, whose glibc arenas are mmap'd heaps of at most
    # 64 MiB: a larger temporary buffer is a fresh mmap there whatever the threshold. One arena
    # (the main heap) serves and keeps them. Measured (minor page faults per LSTM train step,
    # B=64, T=256, n=128): 18,531 -> 18,532 with the thresholds alone, 0 with one arena.
    return ok and mallopt(m_arena_max, 1) == 1


def lapack_threads(n: int = 1):
    """Limits the BLAS threads of the LAPACK library that jaxlib calls on the CPU.

    jaxlib runs CPU ``geqrf``/``ormqr``/``syevd``/... (every QR of
    :func:`jrnn.diagnostics.lyapunov_spectrum`, the SVDs and eigensolvers) through
    scipy's bundled OpenBLAS, on one of XLA's worker threads. OpenBLAS hands parts
    of each call to its own worker threads, and caller and workers busy-wait for
    each other, next to XLA's threads on the same cores: on an idle machine the
    default thread count is fastest, but where another process busy-waits on the
    same cores a default-thread call can stall for a whole time slice per step
    (``BENCHMARKS.md``, "Lyapunov spectra", has the measurements).

    So limit it to 1 where several processes share few cores; keep the default
    on an idle machine. Batched LAPACK calls are spread over XLA's threads by
    jaxlib itself, so one BLAS thread per call loses little there.

    The limit applies at once and process-wide to that library only (numpy's
    own OpenBLAS and PyTorch are untouched); use the result as a context manager
    to restore the previous limit on exit, or call its
    ``restore_original_limits()``. Opt-in, like :func:`keep_host_buffers`.

    Args:
      n: BLAS threads per LAPACK call, an int in ``[1, 2**31 - 1]`` (OpenBLAS
        caps it at its own build maximum).

    Returns:
      The ``threadpoolctl`` limiter (a context manager). Where scipy's OpenBLAS
      is not found (scipy built against another BLAS), every BLAS library that
      ``threadpoolctl`` sees is limited instead.

    Raises:
      TypeError: ``n`` is not an integer.
      ValueError: ``n < 1`` or beyond a C int.

    Example::

        >>> import jrnn
        >>> with jrnn.host.lapack_threads(1):
        ...     pass  # LAPACK-bound diagnostics here
    """
    n = check_int(n, "n", low=1)
    if n > _C_INT_MAX:  # OpenBLAS takes a C int (and caps it at its own build maximum)
        raise ValueError(f"n must be at most {_C_INT_MAX} (a C int), got {n}.")
    import os

    import scipy.linalg.cython_lapack  # noqa: F401  (loads the library jaxlib calls)
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    # threadpoolctl reports resolved paths; scipy's may be reached through a symlink
    scipy_dir = os.path.dirname(os.path.dirname(scipy.linalg.cython_lapack.__file__))
    scipy_dir = os.path.realpath(scipy_dir)
    roots = (scipy_dir, scipy_dir + ".libs")
    paths = [
        lib["filepath"]
        for lib in controller.info()
        if lib["user_api"] == "blas" and os.path.realpath(lib["filepath"]).startswith(roots)
    ]
    if paths:
        return controller.select(filepath=paths).limit(limits=n)
    return controller.limit(limits=n, user_api="blas")
