"""Error bars and trust flags of time-averaged exponents (private to :mod:`jrnn.diagnostics`).

Input: the per-block sums ``logs (nb, ...)`` of ``log |diag R|`` and the steps
``steps (nb,)`` of each block; the exponent is ``sum(logs) / sum(steps)``.

* :func:`batch_means_stderr`: the standard error of that mean from ``M``
  contiguous batches that cover *every* averaged block (the mean and its error
  bar use the same steps), batches weighted by their steps (Flyvbjerg &
  Petersen 1989).
* :func:`start_up_transient`: the MSER truncation point (White 1997; the
  marginal standard error rule) of the block series, and whether dropping it
  moves the exponent by more than ``SIGNIFICANCE`` of the truncated series'
  own batch-means error bar: a start-up transient that the run still
  averages.
* :func:`roundoff_floor`: the exponent below which a chain of precision
  ``eps`` biases the exponent by more than its statistical error.

All functions are jnp-only (jit- and vmap-safe); shapes are static.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

#: Batches of the batch-means error bar.
GROUPS = 20
#: A start-up transient is reported when dropping it moves an exponent by more
#: than this many standard errors of the truncated series.
SIGNIFICANCE = 4.0


def _centred_prefix(logs: jax.Array, steps: jax.Array):
    """Prefix sums of ``logs - mean * steps`` and of ``steps`` (leading 0), the mean."""
    acc = jnp.float64 if jax.config.read("jax_enable_x64") else logs.dtype
    lg = logs.astype(acc)
    st = steps.astype(acc).reshape((-1,) + (1,) * (logs.ndim - 1))
    mean = jnp.sum(lg, axis=0) / jnp.sum(st, axis=0)
    zero = jnp.zeros((1,) + lg.shape[1:], acc)
    C_L = jnp.concatenate([zero, jnp.cumsum(lg - mean[None] * st, axis=0)])
    C_N = jnp.concatenate([jnp.zeros((1,), acc), jnp.cumsum(steps.astype(acc))])
    return C_L, C_N, mean


def _batch_means_from(C_L, C_N, start, groups: int):
    """Stderr of the mean over blocks ``start..nb-1`` from ``groups`` step-weighted batches.

    ``start`` broadcasts against ``C_L.shape[1:]``; returns the tail's centred mean
    and its stderr.
    """
    nb = C_L.shape[0] - 1
    start = jnp.broadcast_to(start, C_L.shape[1:]).astype(jnp.int32)
    j = jnp.arange(groups + 1).reshape((-1,) + (1,) * (C_L.ndim - 1))
    edges = start[None] + (j * (nb - start[None])) // groups  # (M+1, ...)
    L = jnp.take_along_axis(C_L, edges, axis=0)
    N = C_N[edges]
    sums, counts = jnp.diff(L, axis=0), jnp.diff(N, axis=0)
    total = N[-1] - N[0]
    mean = (L[-1] - L[0]) / total
    means = sums / jnp.where(counts > 0, counts, 1.0)
    # Batches holding no step (blocks of zero steps: the adaptive chain's slots between
    # block ends) carry no batch mean; with M' non-empty batches the estimate has M' - 1
    # degrees of freedom (M' = M whenever every batch holds a step).
    filled = jnp.sum((counts > 0).astype(counts.dtype), axis=0)
    var = jnp.sum(counts * (means - mean[None]) ** 2, axis=0) / ((filled - 1) * total)
    return mean, jnp.sqrt(jnp.where(filled >= 2, var, jnp.nan))


def batch_means_stderr(logs: jax.Array, steps: jax.Array, groups: int = GROUPS) -> jax.Array:
    """Standard error of ``sum(logs) / sum(steps)`` (``logs (nb, ...)``, ``steps (nb,)``).

    The ``nb`` blocks are split into ``M = min(groups, nb)`` contiguous batches
    of ``floor`` / ``ceil(nb / M)`` blocks, every block in one batch;
    ``stderr^2 = sum_j n_j (m_j - m)^2 / ((M - 1) N)`` with ``n_j`` the steps
    and ``m_j`` the mean of batch ``j``, ``N = sum_j n_j`` and ``m`` the
    overall mean (for equal batches ``std(m_j, ddof=1)^2 / M``). NaN with
    fewer than two blocks. Blocks of zero steps (the adaptive chain's slots between
    block ends, ``logs = 0``) are allowed: a batch then holds the blocks that end in
    it, and only the ``M'`` batches with steps count (``M' - 1`` in place of
    ``M - 1``; NaN when ``M' < 2``), so a block of many steps is one sample of its
    batch, never spread over several.
    """
    nb = logs.shape[0]
    M = min(groups, nb)
    if M < 2:
        return jnp.full(logs.shape[1:], jnp.nan, logs.dtype)
    C_L, C_N, _ = _centred_prefix(logs, steps)
    return _batch_means_from(C_L, C_N, 0, M)[1].astype(logs.dtype)


def start_up_transient(logs: jax.Array, steps: jax.Array, groups: int = GROUPS):
    """``(blocks, shift, significant)`` of a start-up transient in ``logs (nb, ...)``.

    MSER (White 1997): with ``x_b = logs_b / steps_b`` the local rates, the
    truncation ``d* = argmin_{0 <= d <= nb / 2} sum_{b >= d} (x_b - xbar_d)^2 /
    (nb - d)^2``; ``shift = mean(all) - mean(b >= d*)``, and ``significant`` is
    ``|shift| > SIGNIFICANCE * stderr(b >= d*) + sqrt(eps) max(1, |mean|)`` with the
    truncated series' batch-means error bar (shifts below ``sqrt(eps)`` are
    below what any chain resolves). Fewer than 8 blocks: nothing is detected.
    """
    nb = logs.shape[0]
    shape = logs.shape[1:]
    if nb < 8:
        return jnp.zeros(shape, jnp.int32), jnp.zeros(shape, logs.dtype), jnp.zeros(shape, bool)
    C_L, C_N, mean = _centred_prefix(logs, steps)
    st = steps.astype(C_L.dtype).reshape((-1,) + (1,) * len(shape))
    x = jnp.diff(C_L, axis=0) / st  # centred local rates
    # Tail sums of x and x^2 for every truncation d (reverse cumulative sums).
    P = jnp.cumsum(x[::-1], axis=0)[::-1]
    Q = jnp.cumsum((x * x)[::-1], axis=0)[::-1]
    half = nb // 2 + 1
    n = (nb - jnp.arange(half)).astype(C_L.dtype).reshape((-1,) + (1,) * len(shape))
    ss = jnp.maximum(Q[:half] - P[:half] ** 2 / n, 0.0)
    d = jnp.argmin(ss / (n * n), axis=0).astype(jnp.int32)
    tail_mean, tail_err = _batch_means_from(C_L, C_N, d, min(groups, nb - nb // 2))
    shift = -tail_mean  # the series is centred on the overall mean
    eps = jnp.finfo(logs.dtype).eps
    rounding = jnp.sqrt(eps) * jnp.maximum(1.0, jnp.abs(mean))  # below any resolution
    significant = jnp.abs(shift) > SIGNIFICANCE * tail_err + rounding
    return d, shift.astype(logs.dtype), significant


#: Fraction of ``log(eps)`` below ``lambda_1`` where a float32 chain's round-off
#: starts to bias the tail beyond its error bar (measured against float64 runs of
#: tanh nets, g = 5: see :func:`jrnn.diagnostics.lyapunov_spectrum`). Float64
#: chains keep the QR floor ``log(eps) + lambda_1``.
FLOOR_FRACTION_FLOAT32 = 0.5


def roundoff_floor(exponents: jax.Array, eps: float) -> jax.Array:
    """``lambda_1 + a log(eps)`` with ``a = 0.5`` for a float32 chain, 1 for float64."""
    a = FLOOR_FRACTION_FLOAT32 if eps > 1e-10 else 1.0
    return jnp.max(exponents, axis=-1, keepdims=True) + a * float(np.log(eps))


#: A sum-rule residual above this fraction of ``1 + |mean log |det J||`` is warned about.
SUM_RULE_TOLERANCE = 1e-3


def warn_sum_rule(residual, logdet_mean, stacklevel: int = 3) -> None:
    """``RuntimeWarning`` when a concrete sum-rule residual shows round-off in the tail."""
    if isinstance(residual, jax.core.Tracer) or isinstance(logdet_mean, jax.core.Tracer):
        return
    r = np.abs(np.asarray(residual, np.float64))
    tol = SUM_RULE_TOLERANCE * (1.0 + np.abs(np.asarray(logdet_mean, np.float64)))
    bad = np.isfinite(r) & (r > tol)
    if np.any(bad):
        warnings.warn(
            f"lyapunov_spectrum: sum_rule_residual up to {float(np.max(r[bad])):.3g} nats/step "
            f"(sum of the exponents minus mean log|det J|; tolerance {float(np.max(tol)):.2g}): "
            f"round-off biases the tail of the spectrum. Use qr='mixed' with "
            f"jax.config.update('jax_enable_x64', True) (a float64 chain on float32 "
            f"Jacobians) or float64 params.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
