"""Covariant Lyapunov vectors (Ginelli et al. 2007): the directions that grow at each rate.

The Benettin/QR frame ``Q_t`` depends on the orthonormalisation; the covariant
vectors ``v_t^{(i)}`` do not. They are carried by the dynamics,
``J_t v_{t-1}^{(i)} \\propto v_t^{(i)}``, and grow at exactly the ``i``-th
exponent forward in time (Ginelli, Poggi, Turchi, Chate, Livi & Politi 2007,
PRL 99, 130601; review: Kuptsov & Parlitz 2012). Where two of them become
nearly tangent, small perturbations change growth regimes: the angles between
leading vectors are the standard measure of hyperbolicity.

Algorithm: a forward QR pass ``J_t Q_{t-1} = Q_t R_t`` storing ``Q_t`` over the
window and ``R_t`` over the window and the backward tail; a backward pass with
upper-triangular coefficients ``C_{t-1} = R_t^{-1} C_t`` (columns renormalised),
started from ``C = I`` at the end of the tail; then ``v_t = Q_t C_t``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jrnn import host, validation
from jrnn.cells.base import Cell
from jrnn.diagnostics._trajectory import (
    advance,
    check_phases,
    inputs,
    map_sequences,
    prepare,
    tangent_map,
)

__all__ = ["CovariantVectors", "covariant_lyapunov_vectors"]


class CovariantVectors(NamedTuple):
    """Result of :func:`covariant_lyapunov_vectors` (one sequence; a batch adds ``B``).

    Fields:
      vectors: ``(W, S, k)`` unit CLVs ``v_t^{(i)}`` (columns) at each step of
        the window, ordered by exponent (column ``i`` grows at ``lambda_i``),
        defined up to sign.
      angles: ``(W, k - 1)`` principal angle in radians, in ``[0, pi/2]``,
        between CLVs ``i`` and ``i + 1`` at each step.
      exponents: ``(k,)`` ``mean log |diag R_t|`` over the window (nats per step).
    """

    vectors: jax.Array  # (W, S, k)
    angles: jax.Array  # (W, k - 1)
    exponents: jax.Array  # (k,)


def covariant_lyapunov_vectors(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    k: int | None = None,
    carry=None,
    transient: int = 0,
    warmup: int = 0,
    backward: int = 0,
    key: jax.Array | None = None,
) -> CovariantVectors:
    """The ``k`` leading covariant Lyapunov vectors at every step of a window.

    .. math::

       J_t Q_{t-1} = Q_t R_t, \\qquad C_{t-1} = R_t^{-1} C_t N_t, \\qquad
       v_t = Q_t C_t,

    with ``C_t`` upper triangular and ``N_t`` the diagonal that normalises its
    columns (Ginelli et al. 2007). Steps are split as: ``transient`` (state
    only), ``warmup`` (forward alignment of ``Q``), the window of
    ``W = T - transient - warmup - backward`` steps where vectors are reported,
    and ``backward`` trailing steps used only to converge the backward pass
    (choose it several times ``1 / (lambda_i - lambda_{i+1})``). ``J_t Q`` comes
    from the cell's tangent map (:func:`jrnn.diagnostics.tangent_map`).
    Memory ``O((W + backward) S k)``: the window's frames are stored.

    Args:
      cell, params, xs, carry: as in :func:`lyapunov_spectrum`; ``xs`` is
        ``(T, d)`` or ``(B, T, d)``.
      k: number of vectors, ``1 <= k <= S`` (default ``S``).
      transient, warmup, backward: step counts (above); the window must keep
        at least one step.
      key: PRNG key for the initial frame when ``k < S`` (default key 0).

    Returns:
      :class:`CovariantVectors`.

    Raises:
      ValueError: ``k`` or a step count out of range. TypeError: ``k`` or a
        step count not an integer.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(4, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (60, 1))
        >>> clv = jrnn.diagnostics.covariant_lyapunov_vectors(
        ...     cell, params, xs, warmup=20, backward=20)
        >>> clv.vectors.shape, clv.angles.shape
        ((20, 4, 4), (20, 3))
    """
    batch = prepare(cell, params, xs, carry)
    xs = jnp.asarray(xs)
    T, S = xs.shape[-2], cell.state_size
    k = S if k is None else validation.check_int(k, "k", low=1)
    if k > S:
        raise ValueError(f"k must be at most the state size {S}, got {k}.")
    phases = dict(transient=transient, warmup=warmup, backward=backward)
    transient, warmup, backward = check_phases(T, **phases)
    W = T - transient - warmup - backward
    key = jax.random.key(0) if key is None else validation.check_key(key, "key")

    def one(x, c):
        us, c = inputs(cell, params, x, c)
        c = advance(cell, params, us[:transient], c)
        dtype = us.dtype
        if k == S:
            Q = jnp.eye(S, dtype=dtype)
        else:
            Z, us = host.together((jax.random.normal(key, (S, k), dtype), us))
            Q = jnp.linalg.qr(Z)[0]
        tan = tangent_map(cell, params)

        def fwd(st, u):
            c, Q = st
            Q, R = jnp.linalg.qr(tan(c, u, Q).astype(Q.dtype))
            return (cell.recur(params, c, u)[0], Q), (Q, R)

        us = us[transient:]
        if warmup:
            (c, Q), _ = lax.scan(fwd, (c, Q), us[:warmup])
        _, (Qs, Rs) = lax.scan(fwd, (c, Q), us[warmup:])  # (W + backward, ...)

        def bwd(C, R):
            C_out = C
            C = lax.linalg.triangular_solve(R, C, left_side=True, lower=False)
            C = C / jnp.linalg.norm(C, axis=0, keepdims=True)
            return C, C_out

        _, Cs = lax.scan(bwd, jnp.eye(k, dtype=Rs.dtype), Rs, reverse=True)
        V = jnp.einsum("tsk,tkj->tsj", Qs[:W], Cs[:W])
        V = V / jnp.linalg.norm(V, axis=1, keepdims=True)
        cos = jnp.abs(jnp.sum(V[:, :, :-1] * V[:, :, 1:], axis=1))
        angles = jnp.arccos(jnp.clip(cos, 0.0, 1.0))
        ex = jnp.mean(jnp.log(jnp.abs(jnp.diagonal(Rs[:W], axis1=-2, axis2=-1))), axis=0)
        return CovariantVectors(V, angles, ex)

    return map_sequences(one, batch, xs, carry)
