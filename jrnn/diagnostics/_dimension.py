"""Summaries of a Lyapunov spectrum: the Kaplan-Yorke dimension and the entropy rate
(private module; :func:`kaplan_yorke_dimension` is public as
``jrnn.diagnostics.kaplan_yorke_dimension``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn import validation

__all__ = ["kaplan_yorke_dimension"]


def kaplan_yorke_dimension(exponents: jax.Array, state_size: int | None = None) -> jax.Array:
    """Kaplan-Yorke (Lyapunov) dimension of a descending spectrum ``(..., k)``.

    ``D = j + (lambda_1 + ... + lambda_j) / |lambda_{j+1}|`` with ``j`` the largest
    index whose partial sum is non-negative; 0 if ``lambda_1 < 0`` (Kaplan &
    Yorke 1979). When every partial sum is non-negative the dimension is ``k``
    only if the spectrum is complete: pass ``state_size = S``; with ``k < S``
    the dimension is then undetermined (at least ``k``) and the result is NaN.
    ``state_size=None`` means the spectrum is complete. NaN in, NaN out.
    The exponents are sorted (descending) first, so the order they come in
    does not matter; integer exponents give a float result.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> round(float(jrnn.diagnostics.kaplan_yorke_dimension(jnp.array([0.5, -0.2, -1.0]))), 6)
        2.3
        >>> float(jrnn.diagnostics.kaplan_yorke_dimension(jnp.array([0.3, 0.1]), state_size=5))
        nan
    """
    exponents = jnp.asarray(exponents)
    validation.check_xs_dtype(exponents, "exponents")
    if not jnp.issubdtype(exponents.dtype, jnp.floating):
        exponents = exponents.astype(jnp.result_type(float))
    if exponents.ndim < 1:
        raise ValueError(f"exponents must have shape (..., k), got a scalar {exponents}.")
    if state_size is not None:
        state_size = validation.check_int(state_size, "state_size", low=1)
    # Descending order (NaN sorts last either way and is caught below).
    exponents = -jnp.sort(-exponents, axis=-1)
    k = exponents.shape[-1]
    partial = jnp.cumsum(exponents, axis=-1)
    j = jnp.sum(partial >= 0, axis=-1)
    idx = jnp.clip(j - 1, 0, k - 1)[..., None]
    nxt = jnp.clip(j, 0, k - 1)[..., None]
    s_j = jnp.take_along_axis(partial, idx, axis=-1)[..., 0]
    l_next = jnp.abs(jnp.take_along_axis(exponents, nxt, axis=-1)[..., 0])
    frac = s_j / jnp.where(l_next > 0, l_next, 1.0)
    complete = state_size is None or k >= state_size
    full = float(k) if complete else jnp.nan
    dim = jnp.where(j == 0, 0.0, jnp.where(j == k, full, j + frac))
    dim = jnp.where(jnp.any(jnp.isnan(exponents), axis=-1), jnp.nan, dim)
    return dim.astype(exponents.dtype)


def _entropy_rate(exponents: jax.Array, state_size: int) -> jax.Array:
    """Sum of the positive exponents; NaN when undetermined (NaN input, or ``k < S``
    with ``lambda_k > 0``: more positive exponents may lie beyond the computed ones)."""
    k = exponents.shape[-1]
    h = jnp.sum(jnp.maximum(exponents, 0), axis=-1)
    bad = jnp.any(jnp.isnan(exponents), axis=-1)
    if k < state_size:
        bad = bad | (exponents[..., -1] > 0)
    return jnp.where(bad, jnp.nan, h)
