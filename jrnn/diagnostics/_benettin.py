"""The two Benettin runners: the state and the QR chain streamed through one scan.

.. math::

   s_t = F(s_{t-1}, u_t), \\qquad J_t Q_{t-1} = Q_t R_t

:func:`run` executes a :class:`Plan` (made by :func:`jrnn.diagnostics.lyapunov_spectrum`)
on the trajectory kernel (:mod:`jrnn.diagnostics._trajectory`) and the QR chains
(:mod:`jrnn.linalg.qr`), with an explicit batch axis:

* :func:`run_jacobians` -- ``J_t`` formed ``chunk`` steps at a time (one chunk of all
  steps is the stacked mode) and fed to :func:`jrnn.linalg.qr.qr_chain`;
* :func:`run_tangent` -- ``J_t Q`` from the cell's tangent map, ``J_t`` never formed,
  with the same checked blocks (:func:`jrnn.linalg.qr.checked_block`).

Both return the raw sums that :mod:`jrnn.diagnostics.lyapunov` summarises.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jrnn.cells.base import Cell, flatten_carry
from jrnn.diagnostics._trajectory import jacobian_fn, scan_chunks, tangent_map
from jrnn.linalg.qr import (
    CompactQR,
    ExplicitQR,
    checked_block,
    cholesky_qr2,
    householder,
    qr_chain,
)

__all__ = ["Plan", "Run", "run", "run_jacobians", "run_tangent"]


class Plan(NamedTuple):
    """Static configuration of one run of the QR chain (closed over, never traced)."""

    variant: str  # "jacobian" (J_t formed, `chunk` steps at a time) or "tangent" (J_t V)
    chain: str  # "compact", "householder" or "cholesky"
    r: int  # steps per re-orthonormalisation
    tol: float  # accepted block error bound (jrnn.linalg.qr.block_error)
    chunk: int
    transient: int
    warmup: int
    identity_start: bool
    sum_rule: bool
    jac_method: str


class Run(NamedTuple):
    """What a runner returns (``B`` trajectories, ``nb`` averaged blocks)."""

    logs: jax.Array  # (nb, B, k) log |diag R| per block of the averaged steps
    frame: jax.Array  # (B, S, k) Q_T
    carry: object  # the carry s_T, batched
    logdet: jax.Array  # (B,) sum_t log |det J_t| over the averaged steps (0 unless sum_rule)
    movement: jax.Array  # (B,) max_t ||s_t - s_{t-1}||_inf over the averaged steps
    scale: jax.Array  # (B,) max_t ||s_t||_inf over them


def _start(cell: Cell, plan: Plan, params, us, carry):
    """Batched recurrence and flattening; the transient applied (state only)."""
    recur = jax.vmap(lambda c, u: cell.recur(params, c, u)[0])
    if plan.transient:
        carry = lax.scan(lambda c, u: (recur(c, u), None), carry, us[: plan.transient])[0]
    return recur, jax.vmap(flatten_carry), us[plan.transient :], carry


def _logdet(J, dtype):
    return jnp.linalg.slogdet(J)[1].astype(dtype)


def _movement(acc, flat_old, flat_new, dtype):
    """Running ``(max ||s_t - s_{t-1}||_inf, max ||s_t||_inf)`` over ``(..., B, S)`` states."""
    red = tuple(range(flat_new.ndim - 2)) + (flat_new.ndim - 1,)
    mv = jnp.max(jnp.abs(flat_new - flat_old), axis=red).astype(dtype)
    sc = jnp.max(jnp.abs(flat_new), axis=red).astype(dtype)
    return jnp.maximum(acc[0], mv), jnp.maximum(acc[1], sc)


def _phases(fn, st, us, warmup: int, chunk: int):
    """Warmup (logs and statistics dropped), then the averaged steps."""
    u_w, u_a = us[:warmup], us[warmup:]
    if u_w.shape[0]:
        out, _ = scan_chunks(fn, st, u_w, chunk)
        st = out[:2] + st[2:]
    return scan_chunks(fn, st, u_a, chunk)


def run_jacobians(cell: Cell, plan: Plan, params, us, carry, Q0) -> Run:
    """Jacobians formed a chunk of steps at a time, each chunk through the QR chain."""
    B, S, k = Q0.shape
    recur, flat, us, carry = _start(cell, plan, params, us, carry)
    jac = jax.vmap(jacobian_fn(cell, params, plan.jac_method))  # over the batch
    if plan.chain == "compact":
        chain = CompactQR(k == S)
        cs0 = chain.init(Q0) if plan.identity_start else chain.qr(Q0)[0]
    else:
        chain = ExplicitQR(cholesky_qr2 if plan.chain == "cholesky" else householder)
        cs0 = Q0

    def fn(st, ub):  # ub (c, B, ...)
        c, cs, ld, acc = st
        c_new, prev = lax.scan(lambda cc, u: (recur(cc, u), cc), c, ub)
        Js = jax.vmap(jac)(prev, ub)  # (c, B, S, S)
        if plan.sum_rule:
            ld = ld + jnp.sum(_logdet(Js, Q0.dtype), axis=0)
        flat_prev = jax.vmap(flat)(prev)
        flat_next = jnp.concatenate([flat_prev[1:], flat(c_new)[None]], axis=0)
        acc = _movement(acc, flat_prev, flat_next, Q0.dtype)
        cs, logs, _ = qr_chain(chain, cs, jnp.moveaxis(Js, 0, 1), every=plan.r, tol=plan.tol)
        return (c_new, cs, ld, acc), logs

    zeros = jnp.zeros((B,), Q0.dtype)
    st, logs = _phases(fn, (carry, cs0, zeros, (zeros, zeros)), us, plan.warmup, plan.chunk)
    c_fin, cs, ld, (mv, sc) = st
    Q_fin = lax.linalg.householder_product(*cs) if plan.chain == "compact" else cs
    return Run(logs, Q_fin, c_fin, ld, mv, sc)


def run_tangent(cell: Cell, plan: Plan, params, us, carry, Q0) -> Run:
    """``J_t Q`` from the tangent map, one checked block of ``r`` steps per QR."""
    B, S, k = Q0.shape
    recur, flat, us, carry = _start(cell, plan, params, us, carry)
    tan = jax.vmap(tangent_map(cell, params))  # over the batch
    factor = cholesky_qr2 if plan.chain == "cholesky" else householder
    eye = jnp.broadcast_to(jnp.eye(S, dtype=Q0.dtype), (B, S, S))

    def advance(st, u):  # the frame A is propagated, not factored
        c, A, ld, acc = st
        if plan.sum_rule:
            ld = ld + _logdet(tan(c, u, eye), Q0.dtype)
        A = tan(c, u, A).astype(Q0.dtype)
        c_new = recur(c, u)
        return c_new, A, ld, _movement(acc, flat(c), flat(c_new), Q0.dtype)

    def one(st, u):
        c, A, ld, acc = advance(st, u)
        Q, logs = factor(A)
        return (c, Q, ld, acc), logs

    def block(st, ub):
        for i in range(ub.shape[0]):
            st = advance(st, ub[i])
        c, A, ld, acc = st
        Q, logs = factor(A)
        return (c, Q, ld, acc), A, logs

    def fn(st, ub):  # ub (m, B, ...), m <= r: one re-orthonormalisation
        st, logs = checked_block(one, block, st, ub, plan.tol)
        return st, logs[None]

    zeros = jnp.zeros((B,), Q0.dtype)
    st, logs = _phases(fn, (carry, Q0, zeros, (zeros, zeros)), us, plan.warmup, plan.r)
    c_fin, Q_fin, ld, (mv, sc) = st
    return Run(logs, Q_fin, c_fin, ld, mv, sc)


def run(cell: Cell, plan: Plan, params, us, carry, Q0) -> Run:
    """The plan's runner on ``us (T, B, ...)`` (input-mapped, time-major), ``carry`` batched
    ``(B, ...)`` and ``Q0 (B, S, k)``.

    With the compact chain, derivatives come from the explicit chain: ``geqrf`` /
    ``ormqr`` have no differentiation rules, so the run is a ``custom_jvp`` whose
    tangent is that of the mathematically identical chain with ``Q`` formed by
    ``jnp.linalg.qr`` (forward and reverse mode).
    """
    runner = run_tangent if plan.variant == "tangent" else run_jacobians
    if plan.chain != "compact":
        return runner(cell, plan, params, us, carry, Q0)
    explicit = plan._replace(chain="householder")

    @jax.custom_jvp
    def compact(params, us, carry, Q0):
        return runner(cell, plan, params, us, carry, Q0)

    @compact.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(lambda *a: runner(cell, explicit, *a), primals, tangents)

    return compact(params, us, carry, Q0)
