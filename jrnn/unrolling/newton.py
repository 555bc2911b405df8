"""Parallel-in-time evaluation: Newton's method on the whole trajectory (DEER, quasi-DEER, ELK).

A sequential scan costs ``T`` dependent steps. Newton evaluation (Lim et al., ICLR 2024,
"Parallelizing non-linear sequential models over the sequence length", DEER) solves the
stacked residual of the flattened state ``s_t`` all at once,

.. math::

   r_t(s) = s_t - F(s_{t-1}, u_t) = 0, \\quad t = 1..T, \\qquad s_0 = \\text{carry},

by Newton iterations ``s^{(i+1)}``: linearising every step at the current iterate gives the
linear recurrence

.. math::

   s^{(i+1)}_t = J_t s^{(i+1)}_{t-1} + b_t, \\qquad
   J_t = \\partial F / \\partial s \\,(s^{(i)}_{t-1}, u_t), \\quad
   b_t = F(s^{(i)}_{t-1}, u_t) - J_t s^{(i)}_{t-1},

solved by ``jax.lax.associative_scan`` in ``O(log T)`` depth. Cost per iteration: ``T``
Jacobians and ``O(T S^3)`` work, ``O(T S^2)`` memory (``jacobian="full"``, DEER), or the
diagonal of each ``J_t`` only, an ``O(T S)`` solve and memory (``"diagonal"``, quasi-DEER,
Gonzalez et al., NeurIPS 2024, "Towards scalable and stable parallelization of nonlinear
RNNs"; the diagonals are read off the cell's Jacobians, formed 256 steps at a time, so
forming them still costs what ``J_t`` costs, ``O(S^2)`` per step for a dense cell).
``damping = lambda > 0`` is ELK (same paper): the Levenberg-Marquardt step
``argmin_s sum_t |s_t - J_t s_{t-1} - b_t|^2 + lambda |s_t - s^{(i)}_t|^2``, computed as a
parallel Kalman smoother (:mod:`jrnn.unrolling._newton_solve`), for either Jacobian kind;
with full Jacobians it costs a few ``S x S`` solves per combined pair, ``O(T S^3)`` work
with a larger constant than DEER's scan. Its rate is linear: about
``lambda / (sigma^2 + lambda)`` per iteration along the residual Jacobian's smallest
singular value ``sigma``, so a ``lambda`` far above ``sigma^2`` converges slowly.

Whatever the Jacobian approximation, iteration ``i`` makes the first ``i`` states exact (in
exact arithmetic), so ``T`` iterations always suffice; when the dynamics contract
(largest Lyapunov exponent ``lambda_max < 0``) a handful do, when they are chaotic Newton
needs about ``T`` (Gonzalez et al. 2025, "Predictability enables parallelization of
nonlinear state space models"; :func:`jrnn.newton.predict_iterations`). The Jacobians come
from the cell's :class:`~jrnn.cells.base.Linearization` (analytic ``jacobian``, else its
``tangent`` map applied to the identity, else ``jax.jacfwd`` of the step); a linear
recurrence (``min_gru``, ``min_lstm``, ``lru``) is solved exactly in one iteration.

Gradients are implicit (``jax.custom_vjp``): at the solution the adjoint
``a_t = g_t + J_{t+1}^T a_{t+1}`` is one more parallel linear recurrence with the exact,
full transposed Jacobians (also for ``"diagonal"``), then one vector-Jacobian product of the
step, so the gradient equals that of the sequential unroll, never backpropagated through the
iterations. Forward-mode differentiation (``jax.jvp``) is not supported.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jrnn import validation
from jrnn.cells.base import Cell, flatten_carry
from jrnn.unrolling._inputs import match_carry_dtype, per_example
from jrnn.unrolling._newton_solve import adjoint_solve, affine_solve, kalman_solve

__all__ = ["JACOBIANS", "Newton", "NewtonResult", "default_tol", "newton_run"]

#: Accepted values of ``Newton.jacobian``.
JACOBIANS = ("full", "diagonal")

#: ``max_iter=None`` means ``min(T, DEFAULT_MAX_ITER)``.
DEFAULT_MAX_ITER = 100

# Steps whose Jacobians are formed at once when only their diagonals are kept.
_DIAG_CHUNK = 256


class NewtonResult(NamedTuple):
    """What :func:`jrnn.newton.unroll` returns (leading ``(B,)`` on every field for a batch).

    Fields:
      final_carry: the carry after the last (valid) step, as :func:`jrnn.unroll` returns it.
      hs: ``(T, n)`` / ``(B, T, n)`` outputs at the last iterate.
      iterations: int, Newton iterations done (``0``: ``init`` already solved it).
      converged: bool, ``residual <= tol`` at a finite iterate.
      residual: ``max_t |s_t - F(s_{t-1}, u_t)|_inf`` of the returned states (the last
        finite iterate when the iteration diverged).
    """

    final_carry: Any
    hs: jax.Array
    iterations: jax.Array
    converged: jax.Array
    residual: jax.Array


def default_tol(dtype) -> float:
    """``tol=None``: ``eps ** 0.75`` of the state dtype (1.8e-12 float64, 6.5e-6 float32)."""
    return float(jnp.finfo(dtype).eps) ** 0.75


class Newton(NamedTuple):
    """Newton evaluation of the whole sequence at once (DEER / quasi-DEER / ELK).

    Fields:
      jacobian: ``"full"`` (DEER, ``O(T S^2)`` memory per iteration) or ``"diagonal"``
        (quasi-DEER, the diagonal of each ``J_t``: an ``O(T S)`` solve).
      damping: None (plain Newton) or ``lambda >= 0``: ELK's Levenberg-Marquardt damping
        (a parallel Kalman smoother with observation precision ``lambda``; 0 is plain
        Newton). Larger is more stable and slower. The smoother's ``S x S`` solves are
        pivoted Gauss-Jordan in XLA operations, not LAPACK (jaxlib 0.10's batched CPU
        LAPACK calls hung it, :mod:`jrnn.host`).
      max_iter: an integer ``>= 1``; None: ``min(T, 100)`` (``T`` iterations always
        suffice in exact arithmetic).
      tol: converged when ``max_t |s_t - F(s_{t-1}, u_t)|_inf <= tol``; None:
        :func:`default_tol` of the state dtype.

    As a method of :func:`jrnn.unroll`, a sequence whose iteration did not converge (or
    diverged) returns NaN ``hs`` and final carry: never a plausible but wrong trajectory.
    :func:`jrnn.newton.unroll` returns the last iterate with ``converged`` and
    ``residual`` instead. Values agree with :class:`Scan` to about ``tol`` times the
    trajectory's condition (``1e-10`` in float64 for contracting nets).

    A model uses it through its unroll keywords, ``model.apply(params, xs,
    method=jrnn.Newton())``, and training through ``functools.partial(model.apply,
    method=jrnn.Newton())`` as the ``apply_fn`` of :func:`jrnn.train.make_train_step` /
    ``fit``. ``"diagonal"`` is exact in one iteration only where ``J_t`` is diagonal in the
    flattened carry (``min_gru``, ``min_lstm``, ``indrnn``); the LRU's complex diagonal is
    a 2x2 rotation block per mode in its real carry, so quasi-DEER takes more iterations there.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.gru(8)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> xs = jax.random.normal(jax.random.key(1), (64, 2))
        >>> _, hs = jrnn.unroll(cell, params, xs, method=jrnn.Newton())
        >>> _, ref = jrnn.unroll(cell, params, xs, method=jrnn.Scan())
        >>> bool(jnp.allclose(hs, ref, atol=1e-5))
        True
    """

    jacobian: str = "full"
    damping: float | None = None
    max_iter: int | None = None
    tol: float | None = None

    def supports(self, cell: Cell) -> str | None:
        """None: Newton runs every :class:`~jrnn.Cell` (Jacobians by ``jacfwd`` if need be)."""
        if not isinstance(cell, Cell):
            return f"Newton() runs a jrnn Cell, got {type(cell).__name__}."
        return None

    def check(self) -> Newton:
        """This record with its fields checked.

        Raises:
          ValueError: ``jacobian`` not ``"full"`` / ``"diagonal"``, ``damping < 0`` or not
            finite, ``max_iter < 1``, ``tol <= 0`` or not finite.
          TypeError: a field of the wrong type.
        """
        if not isinstance(self.jacobian, str) or self.jacobian not in JACOBIANS:
            raise ValueError(
                f"jacobian must be 'full' (DEER) or 'diagonal' (quasi-DEER), got "
                f"{self.jacobian!r}."
            )
        if self.damping is not None:
            validation.check_number(self.damping, "damping", low=0.0)
        if self.max_iter is not None:
            validation.check_int(self.max_iter, "max_iter", low=1)
        if self.tol is not None:
            validation.check_number(self.tol, "tol", low=0.0, low_open=True)
        return self

    def run(self, cell: Cell, params, xs, carry, lengths, reverse: bool):
        """``(final carry, hs)`` for checked inputs; NaN for a sequence that did not converge."""
        res = newton_run(self, cell, params, xs, carry, lengths, reverse)
        ok = res.converged
        nan = lambda a: jnp.where(
            ok.reshape(ok.shape + (1,) * (a.ndim - ok.ndim)), a, jnp.full_like(a, jnp.nan)
        )
        return jax.tree_util.tree_map(nan, res.final_carry), nan(res.hs)


def _eye_like(s):
    return jnp.eye(s.shape[-1], dtype=s.dtype)


def _maps(cell: Cell, unravel, kind: str):
    """``step(params, s, u, keep) -> s'`` and ``jac(params, s, u, keep) -> J`` on flat states.

    ``keep`` False freezes the state (past a sequence's end): ``s' = s``, ``J = I``.
    ``kind="diagonal"`` returns the diagonal of ``J`` (``(S,)``).
    """

    def raw(params, s, u):
        new = flatten_carry(cell.recur(params, unravel(s), u)[0])
        return new.astype(s.dtype)

    def step(params, s, u, keep):
        return jnp.where(keep, raw(params, s, u), s)

    lin = cell.linear

    def full(params, s, u):
        if lin is not None and lin.jacobian is not None:
            J = lin.jacobian(params, unravel(s), u)
        elif lin is not None and lin.tangent is not None:
            J = lin.tangent(params, unravel(s), u, _eye_like(s))
        else:
            J = jax.jacfwd(raw, argnums=1)(params, s, u)
        return J.astype(s.dtype)

    def jac(params, s, u, keep):
        J = full(params, s, u)
        eye = _eye_like(s)
        if kind == "diagonal":
            return jnp.where(keep, jnp.diagonal(J), jnp.ones_like(s))
        return jnp.where(keep, J, eye)

    return step, jac


def _over_time(fn, params, prev, us, keep, *, chunk: int | None = None):
    """``fn(params, s, u, keep)`` at every step; ``chunk`` bounds how many run at once."""
    one = lambda args: fn(params, *args)
    if chunk is None or prev.shape[0] <= chunk:
        return jax.vmap(one)((prev, us, keep))
    return jax.lax.map(one, (prev, us, keep), batch_size=chunk)


def _solver(cell: Cell, unravel, method: Newton, max_iter: int, tol: float):
    """``solve(params, us, keep, s0, init) -> (states (T, S), iterations, residual, ok)``
    with the implicit-function gradient."""
    step, jac = _maps(cell, unravel, method.jacobian)
    _, jac_full = _maps(cell, unravel, "full")
    chunk = _DIAG_CHUNK if method.jacobian == "diagonal" else None
    damping = None if not method.damping else float(method.damping)

    def prev_of(s0, S):
        return jnp.concatenate([s0[None], S[:-1]], axis=0)

    def iterate(params, us, keep, s0, init):
        F = lambda S: _over_time(step, params, prev_of(s0, S), us, keep)
        f0 = F(init)
        res0 = jnp.max(jnp.abs(init - f0))

        def cond(st):
            k, _, _, res, bad = st
            return (~bad) & (k < max_iter) & ~(res <= tol)

        def body(st):
            k, S, f, res, _ = st
            prev = prev_of(s0, S)
            J = _over_time(jac, params, prev, us, keep, chunk=chunk)
            Jp = J * prev if J.ndim == 2 else jnp.einsum("tij,tj->ti", J, prev)
            b = f - Jp
            S_new = affine_solve(J, b, s0) if damping is None else kalman_solve(
                J, b, s0, S, damping
            )
            f_new = F(S_new)
            res_new = jnp.max(jnp.abs(S_new - f_new))
            finite = jnp.isfinite(res_new) & jnp.all(jnp.isfinite(S_new))
            pick = lambda a, b_: jnp.where(finite, a, b_)
            return k + 1, pick(S_new, S), pick(f_new, f), pick(res_new, res), ~finite

        bad0 = ~jnp.isfinite(res0)
        k, S, _, res, _ = jax.lax.while_loop(
            cond, body, (jnp.asarray(0, jnp.int32), init, f0, res0, bad0)
        )
        ok = (res <= tol) & jnp.isfinite(res)
        return S, k, res, ok

    @jax.custom_vjp
    def solve(params, us, keep, s0, init):
        return iterate(params, us, keep, s0, init)

    def fwd(params, us, keep, s0, init):
        out = iterate(params, us, keep, s0, init)
        return out, (params, us, keep, s0, out[0])

    def bwd(resid, cot):
        params, us, keep, s0, S = resid
        prev = prev_of(s0, S)
        J = _over_time(jac_full, params, prev, us, keep)
        a = adjoint_solve(J, cot[0])
        _, vjp = jax.vjp(
            lambda p, u, pv: _over_time(step, p, pv, u, keep), params, us, prev
        )
        g_params, g_us, g_prev = vjp(a)
        return g_params, g_us, None, g_prev[0], jnp.zeros_like(S)

    solve.defvjp(fwd, bwd)
    return solve


def _one(method: Newton, cell: Cell, params, xs, carry, length, reverse, init):
    """One sequence ``xs (T, d)`` -> :class:`NewtonResult` (unbatched)."""
    T = xs.shape[0]
    us = jax.vmap(lambda x: cell.input_map(params, x))(xs)
    carry = match_carry_dtype(cell, params, carry, jax.ShapeDtypeStruct(us.shape[1:], us.dtype))
    s0, unravel = ravel_pytree(carry)
    keep = jnp.ones((T,), bool) if length is None else jnp.arange(T) < length
    if reverse:
        us, keep = jnp.flip(us, 0), jnp.flip(keep, 0)
    if init is None:
        init = jnp.zeros((T,) + s0.shape, s0.dtype)
    else:
        init = jnp.asarray(init, s0.dtype)
        if reverse:
            init = jnp.flip(init, 0)
    max_iter = min(T, DEFAULT_MAX_ITER) if method.max_iter is None else int(method.max_iter)
    tol = default_tol(s0.dtype) if method.tol is None else float(method.tol)
    solve = _solver(cell, unravel, method, max_iter, tol)
    S, k, res, ok = solve(params, us, keep, s0, init)
    prev = jnp.concatenate([s0[None], S[:-1]], axis=0)
    _, hs = jax.vmap(lambda s, u: cell.recur(params, unravel(s), u))(prev, us)
    hs = jnp.where(keep[:, None], hs, jnp.zeros_like(hs))
    if reverse:
        hs = jnp.flip(hs, 0)
    return NewtonResult(unravel(S[-1]), hs, k, ok, res)


def newton_run(
    method: Newton, cell: Cell, params, xs, carry, lengths, reverse: bool, init=None
) -> NewtonResult:
    """:class:`NewtonResult` for inputs :func:`jrnn.unroll` has checked (``T >= 1``);
    ``init`` is ``None`` or flat states ``(T, S)`` / ``(B, T, S)`` in time order."""
    method = method.check()
    if init is None:
        one = lambda x, c, length: _one(method, cell, params, x, c, length, reverse, None)
        return per_example(one, cell, params, xs, carry, lengths)
    xs = jnp.asarray(xs)
    if xs.ndim == 2:
        one = lambda x, c, length: _one(method, cell, params, x, c, length, reverse, init)
        return per_example(one, cell, params, xs, carry, lengths)
    # A batched initial guess: vmap it beside the sequences.
    return jax.vmap(
        lambda x, c, length, g: newton_run(method, cell, params, x, c, length, reverse, g),
        in_axes=(0, None if carry is None else 0, None if lengths is None else 0, 0),
    )(xs, carry, lengths, init)


def state_size(cell: Cell, params) -> int:
    """``S``, the flattened carry's size (what ``init``'s last axis must be)."""
    template = jax.eval_shape(cell.initial_carry, params)
    return sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(template))
