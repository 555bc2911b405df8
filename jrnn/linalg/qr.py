"""QR factorisations and the Benettin QR chain ``J_t Q_{t-1} = Q_t R_t``, with checked blocks.

.. math::

   A_t = J_t Q_{t-1} = Q_t R_t, \\qquad
   \\ell_t = \\log |\\operatorname{diag} R_t|

Every factorisation here returns ``(state, logs)``: the new frame (or its
compact form) and ``log |diag R|``, the only part of ``R`` the Lyapunov
exponents need (Benettin, Galgani, Giorgilli & Strelcyn 1980).

* :func:`householder` -- ``jnp.linalg.qr`` (``geqrf`` + ``orgqr``), ``Q`` formed;
* :func:`cholesky_qr2` -- CholeskyQR2 (Yamamoto et al. 2015), with a Householder
  fallback when the first pass is not orthogonal enough;
* :class:`ExplicitQR` / :class:`CompactQR` -- one step of a chain: carry ``Q``
  itself, or LAPACK's compact Householder form applied with ``ormqr`` (one
  product per step, no ``orgqr``; timings: BENCHMARKS.md);
* :func:`checked_block` -- the blocked step with its fallback, written once: a
  block of ``r`` steps is applied before one QR, accepted only when
  :func:`block_error` is at most the tolerance (:data:`BLOCK_TOLERANCE`), else
  redone one step at a time;
* :func:`qr_chain` -- the chain over a stack of Jacobians ``(..., T, S, S)``;
* :func:`adaptive_intervals`, :func:`next_interval` -- the interval controller of
  the adaptive chain: re-orthonormalise every ``2^i`` steps, ``i`` raised while
  the measured :func:`block_error` predicts the doubled block stays below the
  tolerance, lowered when a block fails its check.

Nothing here knows about cells: the diagnostics feed it Jacobians or tangent
maps (:mod:`jrnn.diagnostics.lyapunov`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jrnn import validation

__all__ = [
    "BLOCK_TOLERANCE",
    "HAS_ORMQR",
    "adaptive_intervals",
    "next_interval",
    "CompactQR",
    "ExplicitQR",
    "block_error",
    "block_tolerance",
    "checked_block",
    "cholesky_qr2",
    "householder",
    "qr_chain",
]

_HIGHEST = lax.Precision.HIGHEST

#: Whether this jax has ``lax.linalg.ormqr`` (needed by :class:`CompactQR`).
HAS_ORMQR = hasattr(lax.linalg, "ormqr")

#: Accepted relative error bound (:func:`block_error`) of a blocked QR's diagonal, by the
#: chain's itemsize: float64 allows blocks that grow columns by ~1e8 relative to ``R_jj``,
#: float32 by ~100.
BLOCK_TOLERANCE = {8: 1e-8, 4: 1e-5}


def block_tolerance(dtype) -> float:
    """:data:`BLOCK_TOLERANCE` for a chain in ``dtype`` (``1e-2`` for other widths)."""
    return BLOCK_TOLERANCE.get(jnp.dtype(dtype).itemsize, 1e-2)


def householder(A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``A (..., S, k) = Q R`` by Householder QR; returns ``(Q, log |diag R|)``."""
    Q, R = jnp.linalg.qr(A)
    return Q, jnp.log(jnp.abs(jnp.diagonal(R, axis1=-2, axis2=-1)))


def _cholesky_pass(A, wide=None):
    """``A = Q L^T``, ``L = chol(A^T A)`` formed in ``wide`` precision; returns ``Q``, ``L``."""
    W = A if wide is None else A.astype(wide)
    G = jnp.einsum("...ki,...kj->...ij", W, W, precision=_HIGHEST)
    L = jnp.linalg.cholesky(G)
    Q = lax.linalg.triangular_solve(L, W, left_side=False, lower=True, transpose_a=True)
    return Q.astype(A.dtype), L


def cholesky_qr2(A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """CholeskyQR2 (Yamamoto, Nakatsukasa, Yanagisawa & Fukaya 2015) with a fallback.

    Returns ``(Q, log |diag R|)`` like :func:`householder`. The first pass
    squares the condition number, so for float32 ``A`` it is formed in float64
    (when x64 is enabled): ``log |R_ii|`` then carries ``eps_64 cond^2`` instead
    of ``eps_32 cond^2`` error. After it, ``G_2 = Q_1^T Q_1`` measures how
    orthogonal ``Q_1`` is; if ``max |G_2 - I| < 0.1`` (every ``A`` in the batch
    finite and well conditioned) the second pass is accurate to working
    precision, else the whole batch is redone with Householder QR.
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

    return lax.cond(ok, fast, lambda _: householder(A), None)


class ExplicitQR(NamedTuple):
    """QR chain step that carries ``Q`` itself (``S x k``); ``factor`` is :func:`householder`
    or :func:`cholesky_qr2`."""

    factor: Callable[[jax.Array], tuple[jax.Array, jax.Array]]

    def init(self, Q0):
        return Q0

    def apply(self, Q, J):  # J Q
        return jnp.einsum("...ij,...jk->...ik", J.astype(Q.dtype), Q, precision=_HIGHEST)

    def qr(self, A):
        return self.factor(A)


class CompactQR(NamedTuple):
    """Householder QR chain step that never forms ``Q``.

    The state is LAPACK's compact form ``(reflectors, tau)`` of the last QR
    (``geqrf``); the next step applies it directly, ``J_{t+1} Q_t =
    ormqr(J_{t+1})``, which costs one matrix product instead of ``orgqr``
    (forming ``Q``) plus a product. For ``k < S`` (``square=False``) ``ormqr``
    applies the full ``S x S`` reflector product and the first ``k`` columns
    are kept (the explicit chain is cheaper for ``k << S``). ``geqrf`` /
    ``ormqr`` have no differentiation rules: differentiate through
    :class:`ExplicitQR` (the same chain in exact arithmetic).
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


def block_error(A: jax.Array, logs: jax.Array) -> jax.Array:
    """``eps * max_j ||A_j|| / |R_jj|``: the relative error bound of a blocked QR's diagonal.

    Householder QR is column-wise backward stable, so ``R_jj`` carries a relative
    error ``~ eps ||A_j|| / |R_jj|``; after a block of ``r`` steps every column has
    grown like ``exp(r lambda_1)`` while ``R_jj`` grew like ``exp(r lambda_j)``.
    ``logs`` is ``log |diag R|`` of ``A``'s QR; one bound for the whole batch.
    """
    norms = jnp.log(jnp.linalg.norm(A, axis=-2))
    eps = jnp.finfo(A.dtype).eps
    return eps * jnp.exp(jnp.max(norms - logs))


def checked_block(one: Callable, block: Callable, state, xs, tol: float):
    """One re-orthonormalisation over the steps ``xs`` (leading axis ``m``), checked.

    ``one(state, x) -> (state, logs)`` advances one step and factors it;
    ``block(state, xs) -> (new_state, A, logs)`` applies all ``m`` steps to the
    frame and factors the product ``A`` once (``new_state`` holds that QR). The
    block is kept when :func:`block_error` ``(A, logs) <= tol`` (False on NaN /
    inf), else it is redone with ``one`` step by step. Returns ``(state, logs)``
    with ``logs`` summed over the block; ``m = 1`` is a plain step.
    """
    if jax.tree_util.tree_leaves(xs)[0].shape[0] == 1:
        return one(state, jax.tree_util.tree_map(lambda a: a[0], xs))
    new, A, logs = block(state, xs)
    ok = block_error(A, logs) <= tol  # False on NaN / inf

    def stepwise():
        out, ls = lax.scan(one, state, xs)
        return out, jnp.sum(ls, axis=0)

    return lax.cond(ok, lambda: (new, logs), stepwise)


def adaptive_intervals(max_interval: int) -> tuple[int, ...]:
    """The intervals of the adaptive chain: ``(1, 2, 4, ..., 2^m)``, ``2^m <= max_interval``.

    Raises ``ValueError`` naming ``max_interval`` unless it is an integer ``>= 1``.

    Example::

        >>> from jrnn.linalg import qr
        >>> qr.adaptive_intervals(40)
        (1, 2, 4, 8, 16, 32)
    """
    m = validation.check_int(max_interval, "max_interval", low=1)
    return tuple(2**i for i in range(m.bit_length()))


def next_interval(index, error, failed, interval, tol: float, eps: float, n: int):
    """Index into :func:`adaptive_intervals` for the next blocks of the adaptive chain.

    .. math::

       \\rho = \\log(e / \\varepsilon) / r, \\qquad
       r' = \\max\\{2^i : 2^i \\rho \\le \\log(\\mathrm{tol} / \\varepsilon) - 1\\}

    ``error`` is the largest :func:`block_error` ``e`` of the last blocks of ``r =
    interval`` steps: the bound grows like ``eps exp(r rho)`` with the block length
    (columns separate at rate ``rho = lambda_1 - lambda_k``-ish per step), so the
    largest block predicted to stay an e-fold below ``tol`` is allowed, raising the
    index by at most one at a time; a ``failed`` block (or a non-finite error) lowers
    it by one. Returns an int32 index in ``[0, n - 1]``; jittable.
    """
    e = jnp.maximum(jnp.asarray(error, jnp.float32), eps)
    rho = jnp.log(e / eps) / interval
    budget = math.log(tol / eps) - 1.0
    ok = jnp.isfinite(e) & ~failed
    cap = jnp.where(
        rho > 0, jnp.floor(jnp.log2(jnp.maximum(budget, 1e-30) / jnp.maximum(rho, 1e-30))), n
    )
    cap = jnp.where(budget > 0, cap, 0)
    up = jnp.minimum(index + 1, cap.astype(jnp.int32))
    new = jnp.where(ok, up, jnp.minimum(index - 1, cap.astype(jnp.int32)))
    return jnp.clip(new, 0, n - 1).astype(jnp.int32)


def qr_chain(chain, state, Js: jax.Array, *, every: int = 1, tol: float | None = None):
    """Runs the QR chain over ``Js (..., T, S, S)`` in blocks of ``every`` steps.

    ``chain`` is an :class:`ExplicitQR` or :class:`CompactQR`, ``state`` its
    state (``chain.init(Q0)``). Returns ``(state, logs (nb, ..., k), steps
    (nb,))`` with ``nb = ceil(T / every)``: ``logs`` is ``log |diag R|`` of each
    block, a short last block is padded with identities and counted with its
    true length in ``steps``. With ``every > 1`` each block is checked
    (:func:`checked_block`, tolerance ``tol``, default
    :func:`block_tolerance` of the chain's dtype).

    Example::

        >>> import jax.numpy as jnp
        >>> from jrnn.linalg import qr
        >>> Js = jnp.broadcast_to(jnp.diag(jnp.array([2.0, 0.5])), (10, 2, 2))
        >>> chain = qr.ExplicitQR(qr.householder)
        >>> _, logs, steps = qr.qr_chain(chain, chain.init(jnp.eye(2)), Js, every=4)
        >>> (logs.sum(0) / steps.sum()).round(4), steps.tolist()
        (Array([ 0.6931, -0.6931], dtype=float32), [4, 4, 2])
    """
    r = every
    T, S = Js.shape[-3], Js.shape[-1]
    if tol is None:
        tol = block_tolerance(jax.tree_util.tree_leaves(state)[0].dtype)
    nb = -(-T // r)
    pad = nb * r - T
    Js = jnp.moveaxis(Js, -3, 0)  # (T, ..., S, S)
    if pad:
        eye = jnp.broadcast_to(jnp.eye(S, dtype=Js.dtype), (pad,) + Js.shape[1:])
        Js = jnp.concatenate([Js, eye], axis=0)
    Js = Js.reshape((nb, r) + Js.shape[1:])
    steps = jnp.full((nb,), r).at[-1].set(r - pad)

    def one(state, J):
        return chain.qr(chain.apply(state, J))

    def block(state, Jb):
        A = chain.apply(state, Jb[0])
        for i in range(1, Jb.shape[0]):
            A = jnp.einsum("...ij,...jk->...ik", Jb[i].astype(A.dtype), A, precision=_HIGHEST)
        new, logs = chain.qr(A)
        return new, A, logs

    state, logs = lax.scan(lambda st, Jb: checked_block(one, block, st, Jb, tol), state, Js)
    return state, logs, steps
