"""The two Benettin runners: the state and the QR chain streamed through one scan.

.. math::

   s_t = F(s_{t-1}, u_t), \\qquad J_t Q_{t-1} = Q_t R_t

:func:`run` executes a :class:`Plan` (made by :func:`jrnn.diagnostics.lyapunov_spectrum`)
on the trajectory kernel (:mod:`jrnn.diagnostics._trajectory`) and the QR chains
(:mod:`jrnn.linalg.qr`), with an explicit batch axis:

* :func:`run_jacobians` -- ``J_t`` formed ``chunk`` steps at a time (one chunk of all
  steps is the stacked mode) and fed to :func:`jrnn.linalg.qr.qr_chain`;
* :func:`run_tangent` -- ``J_t Q`` from the cell's tangent map, ``J_t`` never formed,
  with the same checked blocks (:func:`jrnn.linalg.qr.checked_block`);
* :func:`run_adaptive` -- the adaptive interval: the frame is propagated (tangent
  map, or ``J_t`` formed one step at a time) and re-orthonormalised every ``2^i``
  steps, ``i`` chosen per chunk of ``2^m`` steps by :func:`jrnn.linalg.qr.next_interval`
  from the measured block errors; every block is checked and redone step by step when
  it fails.

Both return the raw sums that :mod:`jrnn.diagnostics.lyapunov` summarises.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jrnn.cells.base import Cell, flatten_carry
from jrnn.diagnostics._trajectory import jacobian_fn, scan_chunks, tangent_map
from jrnn.linalg.qr import (
    CompactQR,
    ExplicitQR,
    adaptive_intervals,
    block_error,
    checked_block,
    cholesky_qr2,
    householder,
    next_interval,
    qr_chain,
)

__all__ = ["Plan", "Run", "run", "run_adaptive", "run_jacobians", "run_tangent"]

_HIGHEST = lax.Precision.HIGHEST


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
    adaptive: bool = False  # interval chosen per chunk (run_adaptive); r is then 1
    r_max: int = 1  # largest interval of the adaptive chain (a power of two)


class Run(NamedTuple):
    """What a runner returns (``B`` trajectories, ``nb`` averaged blocks)."""

    logs: jax.Array  # (nb, B, k) log |diag R| per block of the averaged steps
    frame: jax.Array  # (B, S, k) Q_T
    carry: object  # the carry s_T, batched
    logdet: jax.Array  # (B,) sum_t log |det J_t| over the averaged steps (0 unless sum_rule)
    movement: jax.Array  # (B,) max_t ||s_t - s_{t-1}||_inf over the averaged steps
    scale: jax.Array  # (B,) max_t ||s_t||_inf over them
    qrs: jax.Array | None = None  # () QR factorisations done after the transient (adaptive)
    # adaptive: (log |diag R| (T', B, k) on each block's last step, 0 elsewhere; the block's
    # steps (T',) there, 0 elsewhere): the blocks themselves, for the batch-means error bar
    blocks: tuple | None = None


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


def _where(pred, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def run_adaptive(cell: Cell, plan: Plan, params, us, carry, Q0) -> Run:
    """Re-orthonormalisation every ``r = 2^i`` steps, ``i`` adapted after every QR.

    One ``lax.while_loop`` over the time index, one copy of the step and of the
    QR: the frame ``A = J_t ... J_{t0+1} Q_{t0}`` is propagated until the block
    reaches ``r`` steps (or the end of the warmup, or of the run), then factored
    and checked (:func:`jrnn.linalg.qr.block_error` ``<= plan.tol``). A passing
    block is kept and :func:`jrnn.linalg.qr.next_interval` sets the next ``r``; a
    failing one is thrown away, the state and frame return to the block start
    and its steps are redone one QR per step. ``logs`` come out per step: each
    block's ``log |diag R|`` divided by its length on every step of the block
    (their sum is the chain's; ``local`` holds block means). Forward only: the
    derivatives come from the every-step chain (:func:`run`).
    """
    B, S, k = Q0.shape
    dt = Q0.dtype
    recur, flat, us, carry = _start(cell, plan, params, us, carry)
    T_run, W = us.shape[0], plan.warmup
    rs = jnp.asarray(adaptive_intervals(plan.r_max), jnp.int32)
    factor = cholesky_qr2 if plan.chain == "cholesky" else householder
    jac = jax.vmap(jacobian_fn(cell, params, plan.jac_method))
    tan = jax.vmap(tangent_map(cell, params)) if plan.variant == "tangent" else None
    eps = float(jnp.finfo(dt).eps)

    def advance(st, u, av):  # the frame A is propagated, not factored
        c, A, ld, acc = st
        if tan is None or plan.sum_rule:
            J = jac(c, u)
        if tan is None:
            A = jnp.einsum("bij,bjk->bik", J.astype(dt), A, precision=_HIGHEST)
        else:
            A = tan(c, u, A).astype(dt)
        if plan.sum_rule:
            ld = ld + jnp.where(av, _logdet(J, dt), 0)
        c_new = recur(c, u)
        acc = _where(av, _movement(acc, flat(c), flat(c_new), dt), acc)
        return c_new, A, ld, acc

    def factored(A):
        Q, logs = factor(A)
        return Q, logs, block_error(A, logs)

    def unfactored(A):
        return A, jnp.zeros((B, k), dt), jnp.zeros((), dt)

    def body(v):
        t, t0, redo, i, qrs, st, saved, rows, lens = v
        st = advance(st, lax.dynamic_index_in_dim(us, t, keepdims=False), t >= W)
        t = t + 1
        m = t - t0
        due = (m >= jnp.where(t <= redo, 1, rs[i])) | (t == W) | (t == T_run)
        c, A, ld, acc = st
        Q, logs, err = lax.cond(due, factored, unfactored, A)
        ok = due & ((err <= plan.tol) | (m == 1))  # False on NaN; one step is the chain itself
        failed = due & ~ok
        new = (c, Q, ld, acc)
        st = _where(failed, saved, new)  # a failed block restarts from its first step
        saved = _where(ok, new, saved)
        rows = lax.dynamic_update_index_in_dim(rows, jnp.where(ok, logs, 0), t - 1, 0)
        lens = lax.dynamic_update_index_in_dim(lens, jnp.where(ok, m, 0), t - 1, 0)
        i = jnp.where(due, next_interval(i, err, failed, m, plan.tol, eps, rs.shape[0]), i)
        redo = jnp.where(failed, t, redo)  # its steps are redone one QR per step
        t = jnp.where(failed, t0, t)
        t0 = jnp.where(ok, t, t0)
        return t, t0, redo, i, qrs + due, st, saved, rows, lens

    zeros = jnp.zeros((B,), dt)
    st0 = (carry, Q0, zeros, (zeros, zeros))
    i0 = jnp.int32(0)
    rows0, lens0 = jnp.zeros((T_run, B, k), dt), jnp.zeros((T_run,), jnp.int32)
    v0 = (i0, i0, i0, i0, i0, st0, st0, rows0, lens0)
    *_, qrs, st, _, rows, lens = lax.while_loop(lambda v: v[0] < T_run, body, v0)

    def spread(cur, x):  # each step gets its block's mean (blocks end where lens > 0)
        row, ln = x
        cur = jnp.where(ln > 0, row / jnp.maximum(ln, 1).astype(dt), cur)
        return cur, cur

    _, logs = lax.scan(spread, jnp.zeros((B, k), dt), (rows[W:], lens[W:]), reverse=True)
    c_fin, Q_fin, ld, (mv, sc) = st
    return Run(logs, Q_fin, c_fin, ld, mv, sc, qrs, (rows[W:], lens[W:]))


def run(cell: Cell, plan: Plan, params, us, carry, Q0) -> Run:
    """The plan's runner on ``us (T, B, ...)`` (input-mapped, time-major), ``carry`` batched
    ``(B, ...)`` and ``Q0 (B, S, k)``.

    With the compact chain, derivatives come from the explicit chain: ``geqrf`` /
    ``ormqr`` have no differentiation rules, so the run is a ``custom_jvp`` whose
    tangent is that of the mathematically identical chain with ``Q`` formed by
    ``jnp.linalg.qr`` (forward and reverse mode). The adaptive chain (a
    ``while_loop``, not reverse-differentiable) likewise takes its derivatives,
    and under differentiation its values, from the every-step chain.
    """
    runner = run_tangent if plan.variant == "tangent" else run_jacobians
    if plan.adaptive:
        explicit = plan._replace(adaptive=False, r=1)
        forward = run_adaptive
    elif plan.chain == "compact":
        explicit = plan._replace(chain="householder")
        forward = runner
    else:
        return runner(cell, plan, params, us, carry, Q0)
    explicit_runner = run_tangent if explicit.variant == "tangent" else run_jacobians

    @jax.custom_jvp
    def fast(params, us, carry, Q0):
        return forward(cell, plan, params, us, carry, Q0)

    @fast.defjvp
    def _jvp(primals, tangents):
        out, tan = jax.jvp(lambda *a: explicit_runner(cell, explicit, *a), primals, tangents)
        if plan.adaptive:  # the every-step chain ran: one QR per step, blocks of one step
            qrs = jnp.int32(primals[1].shape[0] - plan.transient)
            ones = jnp.ones((out.logs.shape[0],), jnp.int32)
            out = out._replace(qrs=qrs, blocks=(out.logs, ones))
            int0 = lambda shape: np.zeros(shape, jax.dtypes.float0)
            tan = tan._replace(qrs=int0(()), blocks=(tan.logs, int0(ones.shape)))
        return out, tan

    return fast(params, us, carry, Q0)
