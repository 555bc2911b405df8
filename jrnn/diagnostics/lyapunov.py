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
only the thin chain of QR factorisations is sequential. The default chain keeps
each Householder QR in LAPACK's compact form and applies it to the next Jacobian
with ``ormqr`` instead of forming ``Q`` (``orgqr``) and multiplying: the same
algorithm at about half the cost per step on CPU. ``qr="mixed"`` runs that chain
in float64 on float32 Jacobians (exact to float64 rounding for the given
Jacobians, at about the cost of the float32 textbook loop). ``reorth_every = r``
re-orthonormalises once per ``r`` steps; each block is checked against the
Householder error bound and redone step by step where it fails, so blocking never
silently loses accuracy. CholeskyQR2 (Yamamoto et al. 2015) is available as
``qr="cholesky"``.
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
QR_METHODS = ("auto", "compact", "cholesky", "householder", "mixed")

_HIGHEST = lax.Precision.HIGHEST
_HAS_ORMQR = hasattr(lax.linalg, "ormqr")
# Accepted relative error bound of a blocked QR's diagonal (reorth_every > 1), by itemsize:
# float64 allows blocks that grow columns by ~1e8 relative to R_jj, float32 by ~100.
_BLOCK_TOL = {8: 1e-8, 4: 1e-5}


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


class _Explicit(NamedTuple):
    """QR chain that carries ``Q`` itself (``S x k``); ``factor`` is a QR function."""

    factor: object

    def init(self, Q0):
        return Q0

    def apply(self, Q, J):  # J Q
        return jnp.einsum("...ij,...jk->...ik", J.astype(Q.dtype), Q, precision=_HIGHEST)

    def qr(self, A):
        return self.factor(A)


class _Compact(NamedTuple):
    """Householder QR chain that never forms ``Q``.

    The state is LAPACK's compact form ``(reflectors, tau)`` of the last QR
    (``geqrf``); the next step applies it directly, ``J_{t+1} Q_t =
    ormqr(J_{t+1})``, which costs one matrix product instead of ``orgqr``
    (forming ``Q``) plus a product: about 1.8x faster per step on CPU. For
    ``k < S`` ``ormqr`` applies the full ``S x S`` reflector product and the
    first ``k`` columns are kept (the explicit chain is cheaper for ``k << S``).
    """

    square: bool

    def init(self, Q0):
        if self.square:  # Q0 = I: reflectors with tau = 0 are identities
            S = Q0.shape[-1]
            return jnp.zeros_like(Q0), jnp.zeros(Q0.shape[:-2] + (S,), Q0.dtype)
        return self.qr(Q0)[0]  # Q0 up to column signs, which log |R_ii| ignores

    def apply(self, state, J):
        h, tau = state
        A = lax.linalg.ormqr(h, tau, J.astype(h.dtype), left=False)
        return A if self.square else A[..., : h.shape[-1]]

    @staticmethod
    def qr(A):
        h, tau = jnp.linalg.qr(A, mode="raw")
        h = jnp.swapaxes(h, -1, -2)
        return (h, tau), jnp.log(jnp.abs(jnp.diagonal(h, axis1=-2, axis2=-1)))


def _block_error(A, logs):
    """``eps * max_j ||A_j|| / |R_jj|``: the relative error bound of a blocked QR's diagonal.

    Householder QR is column-wise backward stable, so ``R_jj`` carries a relative
    error ``~ eps ||A_j|| / |R_jj|``; after a block of ``r`` steps every column has
    grown like ``exp(r lambda_1)`` while ``R_jj`` grew like ``exp(r lambda_j)``.
    """
    norms = jnp.log(jnp.linalg.norm(A, axis=-2))
    eps = jnp.finfo(A.dtype).eps
    return eps * jnp.exp(jnp.max(norms - logs))


def _chain(state, Js, r: int, method, tol: float):
    """Runs the QR chain over ``Js (..., T, S, S)`` in blocks of ``r`` steps.

    Returns ``(state, logs (nb, ..., k), steps (nb,))``; a short last block is
    padded with identities and counted with its true length. With ``r > 1``
    each block is checked (:func:`_block_error` ``<= tol`` for every
    trajectory, finite) and redone one step at a time where it fails.
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

    def one(state, J):
        return method.qr(method.apply(state, J))

    def stepwise(state, Jb):
        state, logs = lax.scan(one, state, Jb)
        return state, jnp.sum(logs, axis=0)

    def body(state, Jb):
        if r == 1:
            return one(state, Jb[0])
        A = method.apply(state, Jb[0])
        for i in range(1, r):
            A = jnp.einsum("...ij,...jk->...ik", Jb[i].astype(A.dtype), A, precision=_HIGHEST)
        new, logs = method.qr(A)
        ok = _block_error(A, logs) <= tol  # False on NaN / inf
        return lax.cond(ok, lambda: (new, logs), lambda: stepwise(state, Jb))

    state, logs = lax.scan(body, state, Js)
    return state, logs, steps


def _exponent_logs(Js, state, *, warmup: int, r: int, method, tol: float):
    if warmup:
        state, _, _ = _chain(state, Js[..., :warmup, :, :], r, method, tol)
    _, logs, steps = _chain(state, Js[..., warmup:, :, :], r, method, tol)
    return logs, steps


def _compact_logs(Js, Q0, square: bool, opts):
    """Log-diagonals of the compact chain; derivatives from the explicit Householder chain.

    ``geqrf``/``ormqr`` have no differentiation rules, so the compact chain is a
    ``custom_jvp`` whose tangent is that of the mathematically identical chain
    with ``Q`` formed by ``jnp.linalg.qr`` (forward and reverse mode).
    """
    compact = _Compact(square)
    explicit = _Explicit(_householder)

    @jax.custom_jvp
    def logs_of(Js, Q0):
        return _exponent_logs(Js, compact.init(Q0), method=compact, **opts)[0]

    @logs_of.defjvp
    def _jvp(primals, tangents):
        f = lambda J, Q: _exponent_logs(J, explicit.init(Q), method=explicit, **opts)[0]
        return jax.jvp(f, primals, tangents)

    return logs_of(Js, Q0)


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
    product has condition ``~exp(r (lambda_1 - lambda_k))``. Each block is
    therefore checked: Householder QR is column-wise backward stable, so
    ``R_jj`` carries a relative error ``~eps ||A_j|| / |R_jj|``; a block whose
    bound exceeds ``1e-8`` (float64 chain) or ``1e-5`` (float32), or is not
    finite, is redone one step at a time. Blocking pays where the spectrum is
    narrow (or ``k`` small) relative to the precision: with ``qr="mixed"`` a
    float64 chain accepts blocks of ``r (lambda_1 - lambda_k) <~ 18``. The check
    is one decision for all trajectories of a batch; under ``jax.vmap`` it
    becomes a select that runs both branches, so pass trajectories as a
    ``(B, T, d)`` batch rather than vmapping over them when ``r > 1``.
    ``sum_i lambda_i`` (``k = S``) equals the time average of
    ``log |det J_t|``.

    Args:
      cell, params, xs, carry: as in :func:`step_jacobians`; ``xs`` is
        ``(T, d)`` or ``(B, T, d)`` (trajectories are processed together).
      k: number of exponents, ``1 <= k <= S`` (default ``S = cell.state_size``).
      reorth_every: steps between re-orthonormalisations (checked blocks, above).
      warmup: leading steps used only to align ``Q`` with the dynamics
        (``0 <= warmup < T``); they are not averaged.
      method: Jacobian method (see :func:`step_jacobians`).
      qr: ``"compact"`` (Householder QR kept in compact form and applied with
        ``ormqr``, :class:`_Compact`; derivatives through the explicit chain),
        ``"householder"`` (``jnp.linalg.qr``, ``Q`` formed each step: the
        textbook reference), ``"cholesky"`` (CholeskyQR2 with a Householder
        fallback when a step's first pass is ill conditioned), ``"mixed"``
        (the compact chain in float64 when the Jacobians are float32 and x64
        is enabled, else ``"compact"``), or ``"auto"`` (= ``"compact"``, the
        fastest measured on CPU: see BENCHMARKS.md; ``"householder"`` on a jax
        without ``lax.linalg.ormqr``).
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
    k_eq_s = k == S

    fn = lambda x, c: _jac.sequence_jacobians(cell, params, x, c, method)[0]
    Js = _jac.map_sequences(fn, batch, xs, carry)  # (..., T, S, S)
    if k_eq_s:
        Q0 = jnp.eye(S, dtype=Js.dtype)
    else:
        key = jax.random.key(0) if key is None else key
        # The barrier makes the QR of Q_0 wait for the Jacobians: independent LAPACK calls
        # that XLA may run concurrently can deadlock jaxlib 0.10's CPU thread pool
        # (README, Known issues); ordered after J it never overlaps the caller's init.
        Z, Js = lax.optimization_barrier((jax.random.normal(key, (S, k), Js.dtype), Js))
        Q0 = jnp.linalg.qr(Z)[0]
    Q0 = jnp.broadcast_to(Q0, Js.shape[:-3] + (S, k))
    if qr == "mixed" and jnp.dtype(Js.dtype) == jnp.float32 and jax.config.read("jax_enable_x64"):
        Q0 = Q0.astype(jnp.float64)  # float64 chain on the float32 Jacobians
    if qr in ("auto", "mixed"):
        qr = "compact" if _HAS_ORMQR else "householder"
    if qr == "compact" and not _HAS_ORMQR:
        raise ValueError(
            "qr='compact' needs jax.lax.linalg.ormqr (a newer jax); use qr='householder'."
        )
    tol = _BLOCK_TOL.get(jnp.dtype(Q0.dtype).itemsize, 1e-2)
    opts = dict(warmup=warmup, r=r, tol=tol)
    nb = -(-(T - warmup) // r)
    steps = jnp.full((nb,), r).at[-1].set(T - warmup - r * (nb - 1))
    explicit = _Explicit(_cholesky_qr2 if qr == "cholesky" else _householder)
    if qr == "compact":
        logs = _compact_logs(Js, Q0, k_eq_s, opts)
    else:
        logs, _ = _exponent_logs(Js, explicit.init(Q0), method=explicit, **opts)
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
