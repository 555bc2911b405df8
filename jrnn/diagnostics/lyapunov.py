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

Scale: the state and the QR chain stream through one ``lax.scan`` (``mode``:
Jacobians formed a chunk of steps at a time, or ``J_t Q`` from the cell's tangent
map without forming ``J_t``), so memory does not grow with ``T``; the stacked
``(T, S, S)`` path is kept where it fits a memory budget (:mod:`jrnn.diagnostics.tangent`).

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
``qr="cholesky"``. On the CPU the chain is LAPACK-bound (``geqrf`` + ``ormqr``,
scipy's OpenBLAS through jaxlib); where several processes share few cores, run
it under :func:`jrnn.host.lapack_threads` ``(1)`` (``BENCHMARKS.md``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jrnn import host
from jrnn.cells.base import Cell, check_positive_int, flatten_carry
from jrnn.diagnostics import jacobians as _jac
from jrnn.diagnostics import tangent as _tangent

__all__ = [
    "FiniteTimeExponents",
    "LyapunovSpectrum",
    "QR_METHODS",
    "finite_time_exponents",
    "kaplan_yorke_dimension",
    "lyapunov_spectrum",
]

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
      exponents: ``(k,)`` descending, natural log per step (nats / step).
      local: ``(T', k)`` local exponents, ``log |diag R| / (steps in block)``
        per re-orthonormalisation block after the transient and warmup
        (``T' = ceil((T - transient - warmup) / reorth_every)``), in Benettin
        column order.
      kaplan_yorke_dimension: ``()`` ``j + sum_{i<=j} lambda_i / |lambda_{j+1}|``;
        NaN where undetermined (see :func:`kaplan_yorke_dimension`) or where it
        would use an ``unresolved`` exponent.
      entropy_rate: ``()`` sum of the positive exponents (Pesin's bound on
        the Kolmogorov-Sinai entropy rate, nats per step); NaN when ``k < S``
        and ``lambda_k > 0`` (positive exponents may be missing).
      stderr: ``(k,)`` standard error of each exponent from 20 batch means of
        the local exponents (NaN with fewer than 2 blocks).
      unresolved: ``(k,)`` bool, exponents below the round-off floor
        ``log(eps) + lambda_1`` of the chain's precision (or not finite).
      sum_rule_residual: ``()`` ``sum_i lambda_i - mean_t log |det J_t|`` when
        ``k = S`` (zero up to rounding), else NaN.
      stationary: ``()`` bool, True when the trajectory did not move over the
        averaged steps (a fixed point: the exponents are the fixed point's).
      final_frame: ``(S, k)`` the frame ``Q_T`` (continue a run with ``Q0=``).
      final_carry: the carry ``s_T`` (continue a run with ``carry=``).
    """

    exponents: jax.Array  # (k,)
    local: jax.Array  # (T', k)
    kaplan_yorke_dimension: jax.Array  # ()
    entropy_rate: jax.Array  # ()
    stderr: jax.Array | None = None  # (k,)
    unresolved: jax.Array | None = None  # (k,) bool
    sum_rule_residual: jax.Array | None = None  # ()
    stationary: jax.Array | None = None  # () bool
    final_frame: jax.Array | None = None  # (S, k)
    final_carry: object = None  # carry pytree


def kaplan_yorke_dimension(exponents: jax.Array, state_size: int | None = None) -> jax.Array:
    """Kaplan-Yorke (Lyapunov) dimension of a descending spectrum ``(..., k)``.

    ``D = j + (lambda_1 + ... + lambda_j) / |lambda_{j+1}|`` with ``j`` the largest
    index whose partial sum is non-negative; 0 if ``lambda_1 < 0`` (Kaplan &
    Yorke 1979). When every partial sum is non-negative the dimension is ``k``
    only if the spectrum is complete: pass ``state_size = S``; with ``k < S``
    the dimension is then undetermined (at least ``k``) and the result is NaN.
    ``state_size=None`` means the spectrum is complete. NaN in, NaN out.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> round(float(jrnn.diagnostics.kaplan_yorke_dimension(jnp.array([0.5, -0.2, -1.0]))), 6)
        2.3
        >>> float(jrnn.diagnostics.kaplan_yorke_dimension(jnp.array([0.3, 0.1]), state_size=5))
        nan
    """
    exponents = jnp.asarray(exponents)
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


def _frame_dtype(dtype, qr: str):
    if qr == "mixed" and jnp.dtype(dtype) == jnp.float32 and jax.config.read("jax_enable_x64"):
        return jnp.dtype(jnp.float64)  # float64 chain on float32 Jacobians / tangents
    return jnp.dtype(dtype)


class _Plan(NamedTuple):
    """Static configuration of one run of the QR chain (closed over, never traced)."""

    variant: str  # "jacobian" (J_t formed, `chunk` steps at a time) or "tangent" (J_t V)
    chain: str  # "compact", "householder" or "cholesky"
    r: int
    tol: float
    chunk: int
    transient: int
    warmup: int
    identity_start: bool
    sum_rule: bool
    jac_method: str


def _run(cell: Cell, plan: _Plan, params, us, carry, Q0):
    """The QR chain streamed over time, with an explicit batch axis.

    ``us (T, B, ...)`` (input-mapped, time-major), ``carry`` batched ``(B, ...)``,
    ``Q0 (B, S, k)``. Returns ``(logs (nb, B, k), Q_final (B, S, k), carry_final,
    logdet_sum (B,), movement (B,), scale (B,))``: ``logs`` covers the averaged
    steps only, ``logdet_sum`` is ``sum_t log |det J_t|`` over them (0 unless
    ``plan.sum_rule``), ``movement`` is ``max_t ||s_t - s_{t-1}||_inf`` and
    ``scale`` ``max_t ||s_t||_inf`` over them.
    """
    B, S, k = Q0.shape
    recur_b = jax.vmap(lambda c, u: cell.recur(params, c, u)[0])
    flat_b = jax.vmap(flatten_carry)
    if plan.transient:
        carry = lax.scan(lambda c, u: (recur_b(c, u), None), carry, us[: plan.transient])[0]
    us = us[plan.transient :]
    zeros = jnp.zeros((B,), Q0.dtype)

    def logdet(J):
        return jnp.linalg.slogdet(J)[1].astype(Q0.dtype)

    def stats(acc, flat_old, flat_new):  # (..., B, S) states before / after
        red = tuple(range(flat_new.ndim - 2)) + (flat_new.ndim - 1,)
        mv = jnp.max(jnp.abs(flat_new - flat_old), axis=red).astype(Q0.dtype)
        sc = jnp.max(jnp.abs(flat_new), axis=red).astype(Q0.dtype)
        return jnp.maximum(acc[0], mv), jnp.maximum(acc[1], sc)

    def phases(fn, st, chunk):
        """Warmup (logs and statistics dropped), then the averaged steps."""
        u_w, u_a = us[: plan.warmup], us[plan.warmup :]
        if u_w.shape[0]:
            out, _ = _tangent.scan_chunks(fn, st, u_w, chunk)
            st = out[:2] + st[2:]
        return _tangent.scan_chunks(fn, st, u_a, chunk)

    if plan.variant == "jacobian":
        jac = jax.vmap(_jac._jacobian_fn(cell, params, plan.jac_method))  # over the batch
        if plan.chain == "compact":
            method = _Compact(k == S)
            cs0 = method.init(Q0) if plan.identity_start else method.qr(Q0)[0]
        else:
            method = _Explicit(_cholesky_qr2 if plan.chain == "cholesky" else _householder)
            cs0 = Q0

        def fn(st, ub):  # ub (c, B, ...)
            c, cs, ld, acc = st
            c_new, prev = lax.scan(lambda cc, u: (recur_b(cc, u), cc), c, ub)
            Js = jax.vmap(jac)(prev, ub)  # (c, B, S, S)
            if plan.sum_rule:
                ld = ld + jnp.sum(logdet(Js), axis=0)
            flat_prev = jax.vmap(flat_b)(prev)
            flat_next = jnp.concatenate([flat_prev[1:], flat_b(c_new)[None]], axis=0)
            acc = stats(acc, flat_prev, flat_next)
            cs, logs, _ = _chain(cs, jnp.moveaxis(Js, 0, 1), plan.r, method, plan.tol)
            return (c_new, cs, ld, acc), logs

        st, logs = phases(fn, (carry, cs0, zeros, (zeros, zeros)), plan.chunk)
        c_fin, cs, ld, (mv, sc) = st
        Q_fin = lax.linalg.householder_product(*cs) if plan.chain == "compact" else cs
        return logs, Q_fin, c_fin, ld, mv, sc

    tan = jax.vmap(_tangent.tangent_map(cell, params))  # over the batch
    factor = _cholesky_qr2 if plan.chain == "cholesky" else _householder
    eye = jnp.broadcast_to(jnp.eye(S, dtype=Q0.dtype), (B, S, S))

    def advance(c, u, A, ld, acc):
        if plan.sum_rule:
            ld = ld + logdet(tan(c, u, eye))
        A = tan(c, u, A).astype(Q0.dtype)
        c_new = recur_b(c, u)
        return c_new, A, ld, stats(acc, flat_b(c), flat_b(c_new))

    def one(st, u):
        c, Q, ld, acc = st
        c, A, ld, acc = advance(c, u, Q, ld, acc)
        Q, logs = factor(A)
        return (c, Q, ld, acc), logs

    def block(st, ub):  # ub (m, B, ...), m <= r: one re-orthonormalisation
        if ub.shape[0] == 1:
            st, logs = one(st, ub[0])
            return st, logs[None]
        c, A, ld, acc = st
        for i in range(ub.shape[0]):
            c, A, ld, acc = advance(c, ub[i], A, ld, acc)
        Qn, logs = factor(A)
        ok = _block_error(A, logs) <= plan.tol  # False on NaN / inf

        def stepwise():
            out, ls = lax.scan(one, st, ub)
            return out, jnp.sum(ls, axis=0)

        out, logs = lax.cond(ok, lambda: ((c, Qn, ld, acc), logs), stepwise)
        return out, logs[None]

    st, logs = phases(block, (carry, Q0, zeros, (zeros, zeros)), plan.r)
    c_fin, Q_fin, ld, (mv, sc) = st
    return logs, Q_fin, c_fin, ld, mv, sc


def _run_differentiable(cell: Cell, plan: _Plan, params, us, carry, Q0):
    """:func:`_run`; with the compact chain, derivatives come from the explicit chain.

    ``geqrf``/``ormqr`` have no differentiation rules, so the compact chain is a
    ``custom_jvp`` whose tangent is that of the mathematically identical chain
    with ``Q`` formed by ``jnp.linalg.qr`` (forward and reverse mode).
    """
    if plan.chain != "compact":
        return _run(cell, plan, params, us, carry, Q0)
    explicit = plan._replace(chain="householder")

    @jax.custom_jvp
    def run(params, us, carry, Q0):
        return _run(cell, plan, params, us, carry, Q0)

    @run.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(lambda *a: _run(cell, explicit, *a), primals, tangents)

    return run(params, us, carry, Q0)


def _stable_sum(x: jax.Array) -> jax.Array:
    """``sum(x, axis=0)`` in float64 when x64 is on, else two-level (error ~ sqrt(n) eps)."""
    if jax.config.read("jax_enable_x64"):
        return jnp.sum(x.astype(jnp.float64), axis=0)
    n = x.shape[0]
    m = max(1, int(n**0.5))
    pad = (-n) % m
    x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    return jnp.sum(jnp.sum(x.reshape((-1, m) + x.shape[1:]), axis=1), axis=0)


def _batch_means_stderr(logs: jax.Array, steps: jax.Array, groups: int = 20) -> jax.Array:
    """Standard error of ``sum(logs) / sum(steps)`` from ``groups`` batch means (``(nb, ...)``).

    Consecutive blocks are pooled into ``M = min(groups, nb)`` batches (the first
    ``nb mod M`` blocks are dropped); ``stderr = std(batch means, ddof=1) / sqrt(M)``.
    Correlations shorter than a batch are absorbed (Flyvbjerg & Petersen 1989).
    NaN with fewer than two blocks.
    """
    nb = logs.shape[0]
    M = min(groups, nb)
    if M < 2:
        return jnp.full(logs.shape[1:], jnp.nan, logs.dtype)
    L = nb // M
    lg = logs[nb - M * L :].reshape((M, L) + logs.shape[1:])
    st = steps[nb - M * L :].reshape((M, L)).astype(logs.dtype)
    means = jnp.sum(lg, axis=1) / jnp.sum(st, axis=1).reshape((M,) + (1,) * (logs.ndim - 1))
    return jnp.std(means, axis=0, ddof=1) / jnp.sqrt(jnp.asarray(M, logs.dtype))


def _check_int(value, argument: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | jnp.integer):
        raise ValueError(f"{argument} must be an int in [{low}, {high}), got {value!r}.")
    if not low <= int(value) < high:
        raise ValueError(f"{argument} must be an int in [{low}, {high}), got {value!r}.")
    return int(value)


def _check_frame(Q0, S: int, k: int | None, batch: int | None):
    """Validates ``Q0`` eagerly (shape; orthonormality when its values are concrete)."""
    Q0 = jnp.asarray(Q0)
    ok_shapes = [(S, Q0.shape[-1])] + ([(batch, S, Q0.shape[-1])] if batch is not None else [])
    if Q0.ndim < 2 or tuple(Q0.shape) not in ok_shapes or Q0.shape[-1] < 1:
        exp = f"(S, k) = ({S}, k)" + (f" or (B, S, k) = ({batch}, {S}, k)" if batch else "")
        raise ValueError(f"Q0 must have shape {exp} with 1 <= k <= {S}, got {tuple(Q0.shape)}.")
    if Q0.shape[-1] > S:
        raise ValueError(f"Q0 must have at most S = {S} columns, got {Q0.shape[-1]}.")
    if k is not None and Q0.shape[-1] != k:
        raise ValueError(f"k={k} does not match Q0's {Q0.shape[-1]} columns; pass one of them.")
    if not isinstance(Q0, jax.core.Tracer):
        G = jnp.einsum("...ji,...jk->...ik", Q0, Q0, precision=_HIGHEST)
        eye = jnp.broadcast_to(jnp.eye(G.shape[-1], dtype=G.dtype), G.shape)
        err = float(jnp.max(jnp.abs(G - eye)))
        tol = 100 * float(jnp.finfo(Q0.dtype).eps) * S
        if not err <= tol:
            raise ValueError(
                f"Q0 must have orthonormal columns (max |Q0^T Q0 - I| <= {tol:.1e}), got "
                f"{err:.2e}; orthonormalise it with jnp.linalg.qr(Q0)[0]."
            )
    return Q0


def lyapunov_spectrum(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    carry=None,
    k: int | None = None,
    reorth_every: int = 1,
    warmup: int = 0,
    transient: int = 0,
    Q0: jax.Array | None = None,
    method: str = "auto",
    qr: str = "auto",
    mode: str = "auto",
    memory_budget: int | None = None,
    chunk: int | None = None,
    key: jax.Array | None = None,
) -> LyapunovSpectrum:
    """The ``k`` leading Lyapunov exponents of the state dynamics driven by ``xs``.

    .. math::

       J_t Q_{t-1} = Q_t R_t, \\quad Q_0^\\top Q_0 = I_k, \\qquad
       \\lambda_i = \\frac{1}{T - T_{tr} - T_w} \\sum_{t > T_{tr} + T_w} \\log |(R_t)_{ii}|

    (nats per step; Benettin et al. 1980). The first ``transient`` steps advance
    only the state (no tangent work), the next ``warmup`` steps align ``Q`` with
    the dynamics without being averaged, the rest are averaged.

    **Memory and modes.** ``mode="stacked"`` forms all ``(T, S, S)`` Jacobians
    at once (fastest for short runs); ``"chunked"`` streams the state and the
    QR chain over time and forms the Jacobians for ``chunk`` steps at a time
    (memory ``O(chunk S^2)``, independent of ``T``); ``"tangent"`` never forms
    ``J_t`` and applies the cell's tangent map to the frame, ``J_t Q`` in
    ``O(S^2 k)`` per step (:func:`jrnn.diagnostics.tangent.tangent_map`; cells
    without ``tangent`` use ``jax.linearize``). ``"auto"`` takes ``"tangent"``
    when ``4 k <= S``, else ``"stacked"`` when ``3 B T S^2`` bytes-per-entry fit
    ``memory_budget`` (default 256 MiB, :data:`~jrnn.diagnostics.tangent.DEFAULT_MEMORY_BUDGET`),
    else ``"chunked"`` with chunks of a quarter of the budget. Every mode gives
    the same result to float rounding.

    **Blocks.** With ``reorth_every = r > 1`` the product of ``r`` Jacobians is
    applied before each QR; in exact arithmetic ``diag R`` of the block is the
    product of the per-step diagonals, but the block has condition
    ``~exp(r (lambda_1 - lambda_k))``. Each block is checked (Householder QR is
    column-wise backward stable: ``R_jj`` carries a relative error
    ``~eps ||A_j|| / |R_jj|``); a block whose bound exceeds ``1e-8`` (float64
    chain) or ``1e-5`` (float32), or is not finite, is redone one step at a
    time. The check is one decision for all trajectories of a batch; under
    ``jax.vmap`` it becomes a select that runs both branches, so pass
    trajectories as a ``(B, T, d)`` batch rather than vmapping when ``r > 1``.

    **Accuracy.** A float32 chain resolves exponents to about ``1e-5`` on
    non-chaotic networks but only to ~``1e-3`` on chaotic ones (``lambda_1 > 0``:
    the tail of a float32 spectrum of a g = 2 tanh net is off by ~1.4e-3 from a
    float64 run). Use ``qr="mixed"`` (float64 chain on float32 Jacobians, with
    x64 enabled) or float64 params where that matters. ``stderr`` is the
    statistical error of the time average; ``unresolved`` flags exponents below
    the round-off floor ``log(eps) + lambda_1`` (about ``-36 + lambda_1`` per
    step in float64, ``-16 + lambda_1`` in float32), which QR cannot resolve.

    **Trust checks.** ``stationary`` is True where the averaged trajectory never
    moved (``max_t ||s_t - s_{t-1}||_inf <= 10 eps max(1, ||s||_inf)``): the
    exponents are then those of a fixed point, not of an attractor. An
    autonomous tanh network without bias started from the zero carry sits on
    the fixed point ``h = 0`` for ever; start it from a random state, e.g.
    ``carry=0.5 * jax.random.normal(key, (n,))``, and use ``transient`` steps.
    ``sum_rule_residual`` (``k = S``) is ``sum_i lambda_i - mean_t log|det J_t|``,
    zero up to rounding.

    Args:
      cell, params, xs, carry: as in :func:`step_jacobians`; ``xs`` is
        ``(T, d)`` or ``(B, T, d)`` (trajectories are processed together).
      k: number of exponents, ``1 <= k <= S`` (default ``S = cell.state_size``,
        or ``Q0``'s column count).
      reorth_every: steps between re-orthonormalisations (checked blocks, above).
      warmup: steps after the transient that align ``Q`` but are not averaged;
        ``0 <= warmup < T - transient``.
      transient: leading steps that advance the state only; ``0 <= transient < T``.
      Q0: initial frame ``(S, k)`` or ``(B, S, k)`` with orthonormal columns
        (continuation: pass the ``final_frame`` and ``final_carry`` of a previous
        segment; the segments then equal one run to rounding).
      method: Jacobian method (see :func:`step_jacobians`).
      qr: ``"compact"`` (Householder QR kept in compact form and applied with
        ``ormqr``; derivatives through the explicit chain), ``"householder"``
        (``jnp.linalg.qr``, ``Q`` formed each step), ``"cholesky"``
        (CholeskyQR2 with a Householder fallback), ``"mixed"`` (the chain in
        float64 when the inputs are float32 and x64 is enabled), or ``"auto"``
        (``"compact"`` for formed Jacobians, ``"householder"`` in tangent mode).
      mode: ``"auto"``, ``"stacked"``, ``"chunked"`` or ``"tangent"`` (above).
      memory_budget: bytes for the ``"auto"`` rule and the chunk size.
      chunk: steps per chunk in ``"chunked"`` mode (a multiple of
        ``reorth_every``; default from ``memory_budget``).
      key: PRNG key for the initial orthonormal ``Q_0`` when ``k < S`` and no
        ``Q0`` is given (default ``jax.random.key(0)``); ``k = S`` starts from
        the identity.

    Returns:
      :class:`LyapunovSpectrum`. Differentiable with respect to ``params``.

    Raises:
      ValueError: ``k`` out of ``[1, S]``, ``transient`` / ``warmup`` out of
        range, a ``Q0`` of the wrong shape or not orthonormal, unknown
        ``qr`` / ``mode``, bad ``chunk`` / ``memory_budget`` / ``reorth_every``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(16, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = 0.1 * jax.random.normal(jax.random.key(1), (200, 1))
        >>> spec = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, warmup=50)
        >>> spec.exponents.shape, spec.local.shape, spec.stderr.shape
        ((16,), (150, 16), (16,))
    """
    batch = _jac.prepare(cell, params, xs, carry)
    xs = jnp.asarray(xs)
    T, S = xs.shape[-2], cell.state_size
    if Q0 is not None:
        Q0 = _check_frame(Q0, S, k if k is None else check_positive_int(k, "k"), batch)
        k = Q0.shape[-1]
    k = S if k is None else check_positive_int(k, "k")
    if k > S:
        raise ValueError(f"k must be at most the state size {S}, got {k}.")
    r = check_positive_int(reorth_every, "reorth_every")
    transient = _check_int(transient, "transient", 0, T)
    warmup = _check_int(warmup, "warmup", 0, T - transient)
    if qr not in QR_METHODS:
        raise ValueError(f"qr must be one of {QR_METHODS}, got {qr!r}.")
    _jac._jacobian_fn(cell, params, method)  # validate eagerly
    budget = _tangent.check_budget(memory_budget)
    if chunk is not None:
        chunk = check_positive_int(chunk, "chunk")
        if chunk % r:
            raise ValueError(f"chunk must be a multiple of reorth_every={r}, got {chunk}.")
    B = 1 if batch is None else batch

    u_dt = jax.eval_shape(lambda x: cell.input_map(params, x), xs.reshape(-1, xs.shape[-1])[0])
    dtype = jnp.result_type(u_dt.dtype, *[a.dtype for a in jax.tree_util.tree_leaves(params)])
    fdtype = _frame_dtype(dtype, qr)
    T_run = T - transient
    mode = _tangent.choose_mode(
        mode, T=T_run, S=S, k=k, batch=B, itemsize=jnp.dtype(dtype).itemsize, memory_budget=budget
    )
    chain = {"auto": "compact", "mixed": "compact"}.get(qr, qr)
    if mode == "tangent" and qr in ("auto", "mixed", "compact"):
        chain = "householder"  # the tangent map needs Q itself
    if chain == "compact" and not _HAS_ORMQR:
        if qr == "compact":
            raise ValueError(
                "qr='compact' needs jax.lax.linalg.ormqr (a newer jax); use qr='householder'."
            )
        chain = "householder"
    if mode == "stacked":
        chunk = -(-T_run // r) * r
    elif mode == "chunked" and chunk is None:
        chunk = _tangent.chunk_length(S, jnp.dtype(dtype).itemsize, B, budget, r, T_run)
    plan = _Plan(
        variant="tangent" if mode == "tangent" else "jacobian",
        chain=chain,
        r=r,
        tol=_BLOCK_TOL.get(fdtype.itemsize, 1e-2),
        chunk=chunk or r,
        transient=transient,
        warmup=warmup,
        identity_start=Q0 is None and k == S,
        sum_rule=k == S,
        jac_method=method,
    )

    def one_sequence_inputs(x, c):
        return _tangent.prepared_inputs(cell, params, x, c)

    us, c0 = _jac.map_sequences(one_sequence_inputs, batch, xs, carry)
    if batch is None:
        us, c0 = us[None], jax.tree_util.tree_map(lambda a: a[None], c0)
    if Q0 is None:
        if k == S:
            F0 = jnp.eye(S, dtype=fdtype)
        else:
            key = jax.random.key(0) if key is None else key
            # The barrier makes the QR of Q_0 wait for the inputs: independent LAPACK calls
            # that XLA may run concurrently can deadlock jaxlib 0.10's CPU thread pool
            # (README, Known issues); ordered after them it never overlaps the caller's init.
            Z, us = host.together((jax.random.normal(key, (S, k), dtype), us))
            F0 = jnp.linalg.qr(Z)[0].astype(fdtype)
    else:
        F0 = Q0.astype(fdtype)
    F0 = jnp.broadcast_to(F0, (B, S, k))
    us_t = jnp.moveaxis(us, 1, 0)  # (T, B, ...)
    logs, Q_fin, c_fin, ld, mv, sc = _run_differentiable(cell, plan, params, us_t, c0, F0)

    T_avg = T_run - warmup
    nb = -(-T_avg // r)
    steps = jnp.full((nb,), r).at[-1].set(T_avg - r * (nb - 1))
    rates = (_stable_sum(logs) / T_avg).astype(dtype)  # (B, k), Benettin column order
    order = jnp.argsort(-rates, axis=-1)
    take = lambda a: jnp.take_along_axis(a, order, axis=-1)
    exponents = take(rates)
    stderr = take(_batch_means_stderr(logs, steps).astype(dtype))
    local = (logs / steps.astype(logs.dtype).reshape((-1, 1, 1))).astype(dtype)
    local = jnp.moveaxis(local, 0, -2)  # (B, T', k)
    eps = jnp.finfo(fdtype).eps
    floor = jnp.log(eps) + jnp.max(exponents, axis=-1, keepdims=True)
    unresolved = ~(exponents > floor)  # also True on NaN / -inf
    if k == S:
        residual = (jnp.sum(rates.astype(ld.dtype), axis=-1) - ld / T_avg).astype(dtype)
    else:
        residual = jnp.full((B,), jnp.nan, dtype)
    stationary = mv <= 10 * eps * jnp.maximum(1.0, sc)
    ky = kaplan_yorke_dimension(exponents, state_size=S)
    j_needed = jnp.minimum(jnp.floor(jnp.nan_to_num(ky)).astype(jnp.int32), k - 1)
    blind = jnp.take_along_axis(
        jnp.cumsum(unresolved.astype(jnp.int32), axis=-1), j_needed[..., None], axis=-1
    )[..., 0]
    ky = jnp.where(blind > 0, jnp.nan, ky)
    entropy = _entropy_rate(exponents, S)
    out = LyapunovSpectrum(
        exponents=exponents,
        local=local,
        kaplan_yorke_dimension=ky.astype(dtype),
        entropy_rate=entropy,
        stderr=stderr,
        unresolved=unresolved,
        sum_rule_residual=residual,
        stationary=stationary,
        final_frame=Q_fin,
        final_carry=c_fin,
    )
    if batch is None:
        out = jax.tree_util.tree_map(lambda a: a[0], out)
    return out


def _entropy_rate(exponents: jax.Array, state_size: int) -> jax.Array:
    """Sum of the positive exponents; NaN when undetermined (NaN input, or ``k < S``
    with ``lambda_k > 0``: more positive exponents may lie beyond the computed ones)."""
    k = exponents.shape[-1]
    h = jnp.sum(jnp.maximum(exponents, 0), axis=-1)
    bad = jnp.any(jnp.isnan(exponents), axis=-1)
    if k < state_size:
        bad = bad | (exponents[..., -1] > 0)
    return jnp.where(bad, jnp.nan, h)


class FiniteTimeExponents(NamedTuple):
    """Result of :func:`finite_time_exponents` (one sequence; a batch adds ``B``).

    Fields:
      exponents: ``(num_windows, k)`` local growth rates, nats per step, in
        Benettin column order (column ``i`` follows the ``i``-th exponent).
      mean: ``(k,)`` the mean over windows (= the Lyapunov exponents of the
        covered steps, in column order).
      std: ``(k,)`` spread (standard deviation) over windows.
      stderr: ``(k,)`` ``std / sqrt(num_windows)`` (windows treated as
        independent; valid when ``window`` exceeds the correlation time).
    """

    exponents: jax.Array  # (num_windows, k)
    mean: jax.Array  # (k,)
    std: jax.Array  # (k,)
    stderr: jax.Array  # (k,)


def finite_time_exponents(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    window: int,
    k: int | None = None,
    carry=None,
    transient: int = 0,
    warmup: int = 0,
    Q0: jax.Array | None = None,
    key: jax.Array | None = None,
    method: str = "auto",
    qr: str = "auto",
    mode: str = "auto",
    memory_budget: int | None = None,
) -> FiniteTimeExponents:
    """Finite-time Lyapunov exponents over consecutive windows of ``window`` steps.

    .. math::

       \\lambda_i^{(w)} = \\frac{1}{W} \\sum_{t \\in \\text{window } w} \\log |(R_t)_{ii}|

    with ``R_t`` from the same streamed QR chain as :func:`lyapunov_spectrum`
    (one QR per step; the frame is carried across windows, so every window
    starts aligned). They show how gradient growth fluctuates along a trajectory
    (e.g. Engelken, Wolf & Abbott 2023; Vulpiani et al., "Chaos: from simple
    models to complex systems", ch. 5). The ``(T - transient - warmup) // window``
    full windows are reported; a shorter remainder at the end is dropped.

    Args:
      cell, params, xs, carry, k, transient, warmup, Q0, key, method, qr, mode,
        memory_budget: as in :func:`lyapunov_spectrum`.
      window: steps per window, ``1 <= window <= T - transient - warmup``.

    Returns:
      :class:`FiniteTimeExponents`.

    Raises:
      ValueError: ``window`` out of range, and everything
        :func:`lyapunov_spectrum` raises.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (100, 1))
        >>> ftle = jrnn.diagnostics.finite_time_exponents(cell, params, xs, window=10, k=2)
        >>> ftle.exponents.shape
        (10, 2)
    """
    T = int(jnp.shape(xs)[-2]) if jnp.ndim(xs) >= 2 else 0
    if isinstance(window, bool) or not isinstance(window, int | jnp.integer):
        raise ValueError(f"window must be a positive int, got {window!r}.")
    avail = T - (transient if isinstance(transient, int) else 0)
    avail -= warmup if isinstance(warmup, int) else 0
    if not 1 <= int(window) <= max(avail, 0):
        raise ValueError(
            f"window must be in [1, T - transient - warmup] = [1, {avail}], got {window}."
        )
    spec = lyapunov_spectrum(
        cell,
        params,
        xs,
        carry=carry,
        k=k,
        transient=transient,
        warmup=warmup,
        Q0=Q0,
        key=key,
        method=method,
        qr=qr,
        mode=mode,
        memory_budget=memory_budget,
    )
    local = spec.local  # (..., T', k), one block per step
    nw = local.shape[-2] // window
    w = local[..., : nw * window, :].reshape(local.shape[:-2] + (nw, window, local.shape[-1]))
    ex = jnp.mean(w, axis=-2)
    std = (
        jnp.std(ex, axis=-2, ddof=1)
        if nw > 1
        else jnp.full(ex.shape[:-2] + ex.shape[-1:], jnp.nan, ex.dtype)
    )
    return FiniteTimeExponents(ex, jnp.mean(ex, axis=-2), std, std / jnp.sqrt(nw))
