"""Lyapunov spectra of a driven recurrent network by the Benettin/QR method.

.. math::

   J_t Q_{t-1} = Q_t R_t, \\qquad
   \\lambda_i = \\frac{1}{T} \\sum_{t=1}^{T} \\log |(R_t)_{ii}|

(Benettin, Galgani, Giorgilli & Strelcyn 1980; Shimada & Nagashima 1979). The
exponents are the asymptotic growth rates of ``||d s_T / d s_t||`` along
nested subspaces: ``lambda_1 < 0`` means every gradient through the recurrence
vanishes exponentially, ``lambda_1 > 0`` means some explode (Engelken, Wolf &
Abbott 2023). The computation is differentiable, so the spectrum can serve as a
training penalty ("gradient flossing", Engelken 2023).

Speed: the Jacobians are computed for all steps at once (:func:`step_jacobians`);
only the thin chain of QR factorisations is sequential. The default is
Householder QR (fastest on CPU). For float32 input (with x64 enabled)
``qr="mixed"`` carries ``Q`` in float64 but forms the
Cholesky factor of each Gram matrix in float32 (fast LAPACK), then removes the
remaining loss of orthogonality with one first-order correction (matrix products
only); ``log |R_ii|`` is exact for the triangular factors used, so only the
float32 Jacobians limit the accuracy. Otherwise each QR is CholeskyQR2
(Yamamoto et al. 2015). Both check the conditioning and fall back to Householder
QR when a step is ill conditioned.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jrnn.cells.base import Cell, check_positive_int
from jrnn.diagnostics import jacobians as _jac

__all__ = ["LyapunovSpectrum", "QR_METHODS", "kaplan_yorke_dimension", "lyapunov_spectrum"]

#: Accepted values of ``qr`` in :func:`lyapunov_spectrum`.
QR_METHODS = ("auto", "cholesky", "householder", "mixed")

_HIGHEST = lax.Precision.HIGHEST


class LyapunovSpectrum(NamedTuple):
    """Result of :func:`lyapunov_spectrum` (one sequence; a batch adds ``B``).

    Fields:
      exponents: ``(k,)`` descending, natural log per step.
      local: ``(T', k)`` local exponents, ``log |diag R| / (steps in block)``
        per re-orthonormalisation block after the warmup (``T' =
        ceil((T - warmup) / reorth_every)``), in Benettin column order.
      kaplan_yorke_dimension: ``()`` ``j + sum_{i<=j} lambda_i / |lambda_{j+1}|``.
      entropy_rate: ``()`` sum of the positive exponents (Pesin's bound on
        the Kolmogorov-Sinai entropy rate, nats per step).
    """

    exponents: jax.Array  # (k,)
    local: jax.Array  # (T', k)
    kaplan_yorke_dimension: jax.Array  # ()
    entropy_rate: jax.Array  # ()


def kaplan_yorke_dimension(exponents: jax.Array) -> jax.Array:
    """Kaplan-Yorke (Lyapunov) dimension of a descending spectrum ``(..., k)``.

    ``D = j + (lambda_1 + ... + lambda_j) / |lambda_{j+1}|`` with ``j`` the largest
    index whose partial sum is non-negative; 0 if ``lambda_1 < 0``, ``k`` if every
    partial sum is non-negative (Kaplan & Yorke 1979).
    """
    k = exponents.shape[-1]
    partial = jnp.cumsum(exponents, axis=-1)
    j = jnp.sum(partial >= 0, axis=-1)
    idx = jnp.clip(j - 1, 0, k - 1)[..., None]
    nxt = jnp.clip(j, 0, k - 1)[..., None]
    s_j = jnp.take_along_axis(partial, idx, axis=-1)[..., 0]
    l_next = jnp.abs(jnp.take_along_axis(exponents, nxt, axis=-1)[..., 0])
    frac = s_j / jnp.where(l_next > 0, l_next, 1.0)
    dim = jnp.where(j == 0, 0.0, jnp.where(j == k, float(k), j + frac))
    return dim.astype(exponents.dtype)


def _householder(A):
    Q, R = jnp.linalg.qr(A)
    return Q, jnp.log(jnp.abs(jnp.diagonal(R, axis1=-2, axis2=-1)))


def _cholesky_pass(A, wide=None):
    """``A = Q L^T``, ``L = chol(A^T A)`` formed in ``wide`` precision; returns ``Q``, ``L``."""
    W = A if wide is None else A.astype(wide)
    G = jnp.einsum("...ki,...kj->...ij", W, W, precision=_HIGHEST)
    L = jnp.linalg.cholesky(G)
    Q = lax.linalg.triangular_solve(L, W, left_side=False, lower=True, transpose_a=True)
    return Q.astype(A.dtype), L


def _cholesky_qr2(A):
    """CholeskyQR2 (Yamamoto, Nakatsukasa, Yanagisawa & Fukaya 2015) with a fallback.

    The first pass squares the condition number, so for float32 ``A`` it is
    formed in float64 (when x64 is enabled): ``log |R_ii|`` then carries
    ``eps_64 cond^2`` instead of ``eps_32 cond^2`` error. After it,
    ``G_2 = Q_1^T Q_1`` measures how orthogonal ``Q_1`` is; if
    ``max |G_2 - I| < 0.1`` (every ``A`` in the batch finite and well
    conditioned) the second pass is accurate to working precision, else the
    whole batch is redone with Householder QR.
    """
    narrow = jnp.dtype(A.dtype).itemsize < 8 and jax.config.read("jax_enable_x64")
    Q1, L1 = _cholesky_pass(A, jnp.float64 if narrow else None)
    G2 = jnp.einsum("...ki,...kj->...ij", Q1, Q1, precision=_HIGHEST)
    eye = jnp.broadcast_to(jnp.eye(G2.shape[-1], dtype=G2.dtype), G2.shape)
    ok = jnp.all(jnp.abs(G2 - eye) < 0.1)  # False on NaN too

    def fast(_):
        L2 = jnp.linalg.cholesky(G2)
        Q = lax.linalg.triangular_solve(L2, Q1, left_side=False, lower=True, transpose_a=True)
        d1 = jnp.log(jnp.abs(jnp.diagonal(L1, axis1=-2, axis2=-1))).astype(A.dtype)
        d2 = jnp.log(jnp.abs(jnp.diagonal(L2, axis1=-2, axis2=-1)))
        return Q, d1 + d2

    return lax.cond(ok, fast, lambda _: _householder(A), None)


def _mixed_qr(A):
    """QR of a float64 ``A`` whose Cholesky factors are formed in float32.

    Pass 1: ``L = chol(A^T A)`` in float32 and ``M = L^{-T}`` (upper
    triangular); ``Q_1 = A M`` in float64, so ``A = Q_1 M^{-1}`` holds to float64
    rounding and ``log |R_ii| = -log |M_ii|`` exactly, however inaccurate ``L``
    is. Pass 2 corrects ``Q_1^T Q_1 = I + E`` to first order:
    ``Q = Q_1 (I - triu(E, 1) - diag(E) / 2)``, leaving ``O(|E|^2)`` loss of
    orthogonality. If ``max |E| >= 1e-3`` (ill conditioned ``A``, or NaN) the
    whole batch is redone with float64 Householder QR.
    """
    G = jnp.einsum("...ki,...kj->...ij", *(A.astype(jnp.float32),) * 2, precision=_HIGHEST)
    L = jnp.linalg.cholesky(G)
    eye32 = jnp.broadcast_to(jnp.eye(G.shape[-1], dtype=G.dtype), G.shape)
    M = jnp.swapaxes(lax.linalg.triangular_solve(L, eye32, left_side=True, lower=True), -1, -2)
    M = M.astype(A.dtype)
    Q1 = jnp.einsum("...ij,...jk->...ik", A, M, precision=_HIGHEST)
    E = jnp.einsum("...ki,...kj->...ij", Q1, Q1, precision=_HIGHEST)
    E = E - jnp.eye(E.shape[-1], dtype=E.dtype)
    ok = jnp.all(jnp.abs(E) < 1e-3)  # False on NaN too

    def fast(_):
        dE = jnp.diagonal(E, axis1=-2, axis2=-1)
        M2 = -jnp.triu(E, 1) - 0.5 * dE[..., None, :] * jnp.eye(E.shape[-1], dtype=E.dtype)
        M2 = M2 + jnp.eye(E.shape[-1], dtype=E.dtype)
        Q = jnp.einsum("...ij,...jk->...ik", Q1, M2, precision=_HIGHEST)
        d = jnp.diagonal(M, axis1=-2, axis2=-1) * jnp.diagonal(M2, axis1=-2, axis2=-1)
        return Q, -jnp.log(jnp.abs(d))

    return lax.cond(ok, fast, lambda _: _householder(A), None)


def _chain(Q, Js, r: int, qr):
    """Runs the QR chain over ``Js (..., T, S, S)`` in blocks of ``r`` steps.

    Returns ``(Q, logs (nb, ..., k), steps (nb,))``; a short last block is
    padded with identities and counted with its true length.
    """
    T, S = Js.shape[-3], Js.shape[-1]
    nb = -(-T // r)
    pad = nb * r - T
    Js = jnp.moveaxis(Js, -3, 0)  # (T, ..., S, S)
    if pad:
        eye = jnp.broadcast_to(jnp.eye(S, dtype=Js.dtype), (pad,) + Js.shape[1:])
        Js = jnp.concatenate([Js, eye], axis=0)
    Js = Js.reshape((nb, r) + Js.shape[1:])
    steps = jnp.full((nb,), r).at[-1].set(r - pad)

    def body(Q, Jb):
        A = Q
        for i in range(r):
            J = Jb[i].astype(Q.dtype)
            A = jnp.einsum("...ij,...jk->...ik", J, A, precision=_HIGHEST)
        Q, logs = qr(A)
        return Q, logs

    Q, logs = lax.scan(body, Q, Js)
    return Q, logs, steps


def lyapunov_spectrum(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    carry=None,
    k: int | None = None,
    reorth_every: int = 1,
    warmup: int = 0,
    method: str = "auto",
    qr: str = "auto",
    key: jax.Array | None = None,
) -> LyapunovSpectrum:
    """The ``k`` leading Lyapunov exponents of the state dynamics driven by ``xs``.

    .. math::

       J_t Q_{t-1} = Q_t R_t, \\quad Q_0^\\top Q_0 = I_k, \\qquad
       \\lambda_i = \\frac{1}{T - T_w} \\sum_{t > T_w} \\log |(R_t)_{ii}|

    With ``reorth_every = r > 1`` the product of ``r`` Jacobians is applied
    before each QR; in exact arithmetic ``diag R`` of the block is the product
    of the per-step diagonals, so the exponents are unchanged, but the block
    product has condition ``~exp(r (lambda_1 - lambda_k))``: use ``r > 1`` only
    where that stays far below ``1 / eps`` (e.g. a narrow spectrum or small
    ``k``). ``sum_i lambda_i`` (``k = S``) equals the time average of
    ``log |det J_t|``.

    Args:
      cell, params, xs, carry: as in :func:`step_jacobians`; ``xs`` is
        ``(T, d)`` or ``(B, T, d)`` (trajectories are processed together).
      k: number of exponents, ``1 <= k <= S`` (default ``S = cell.state_size``).
      reorth_every: steps between re-orthonormalisations.
      warmup: leading steps used only to align ``Q`` with the dynamics
        (``0 <= warmup < T``); they are not averaged.
      method: Jacobian method (see :func:`step_jacobians`).
      qr: ``"cholesky"`` (CholeskyQR2 with a Householder fallback when a
        step's first pass is ill conditioned), ``"householder"``
        (``jnp.linalg.qr``), ``"mixed"`` (for float32 Jacobians with x64
        enabled: a float64 chain with float32 Cholesky factors and a
        first-order re-orthogonalisation, :func:`_mixed_qr`, Householder
        fallback; the most accurate, about 2x slower on CPU; else
        ``"cholesky"``), or ``"auto"`` (= ``"householder"``, the fastest
        measured on CPU: see BENCHMARKS.md).
      key: PRNG key for the initial orthonormal ``Q_0`` when ``k < S``
        (default ``jax.random.key(0)``); ``k = S`` starts from the identity.

    Returns:
      :class:`LyapunovSpectrum`. Differentiable with respect to ``params``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(16, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = 0.1 * jax.random.normal(jax.random.key(1), (200, 1))
        >>> spec = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, warmup=50)
        >>> spec.exponents.shape, spec.local.shape
        ((16,), (150, 16))
    """
    batch = _jac.prepare(cell, params, xs, carry)
    xs = jnp.asarray(xs)
    T, S = xs.shape[-2], cell.state_size
    k = S if k is None else check_positive_int(k, "k")
    if k > S:
        raise ValueError(f"k must be at most the state size {S}, got {k}.")
    r = check_positive_int(reorth_every, "reorth_every")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < T:
        raise ValueError(f"warmup must be an int in [0, T) = [0, {T}), got {warmup!r}.")
    if qr not in QR_METHODS:
        raise ValueError(f"qr must be one of {QR_METHODS}, got {qr!r}.")
    qr_fn = _cholesky_qr2 if qr in ("cholesky", "mixed") else _householder

    fn = lambda x, c: _jac.sequence_jacobians(cell, params, x, c, method)[0]
    Js = _jac.map_sequences(fn, batch, xs, carry)  # (..., T, S, S)
    if k == S:
        Q0 = jnp.eye(S, dtype=Js.dtype)
    else:
        key = jax.random.key(0) if key is None else key
        Q0 = jnp.linalg.qr(jax.random.normal(key, (S, k), Js.dtype))[0]
    Q0 = jnp.broadcast_to(Q0, Js.shape[:-3] + (S, k))
    mixed = (
        qr == "mixed"
        and jnp.dtype(Js.dtype) == jnp.float32
        and jax.config.read("jax_enable_x64")
    )
    if mixed:  # float64 chain with float32 Cholesky factors
        qr_fn, Q0 = _mixed_qr, Q0.astype(jnp.float64)
    if warmup:
        Q0, _, _ = _chain(Q0, Js[..., :warmup, :, :], r, qr_fn)
    _, logs, steps = _chain(Q0, Js[..., warmup:, :, :], r, qr_fn)
    exponents = (jnp.sum(logs, axis=0) / (T - warmup)).astype(Js.dtype)
    exponents = -jnp.sort(-exponents, axis=-1)
    local = logs / steps.astype(logs.dtype).reshape((-1,) + (1,) * (logs.ndim - 1))
    local = local.astype(Js.dtype)
    local = jnp.moveaxis(local, 0, -2)
    return LyapunovSpectrum(
        exponents=exponents,
        local=local,
        kaplan_yorke_dimension=kaplan_yorke_dimension(exponents),
        entropy_rate=jnp.sum(jnp.maximum(exponents, 0), axis=-1),
    )
