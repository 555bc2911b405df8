"""Exact per-step state Jacobians ``J_t = d s_t / d s_{t-1}`` of any cell.

The state ``s_t`` is the flattened carry (:func:`jrnn.cells.flatten_carry`):
``h`` for Elman-type cells, ``[h; c]`` for the LSTM, all layers' carries for a
:func:`jrnn.stack`. With ``u_t = input_map(x_t)`` hoisted over all steps,

.. math::

   s_t = \\mathrm{vec}\\,\\mathrm{recur}(s_{t-1}, u_t)_0, \\qquad
   J_t = \\frac{\\partial s_t}{\\partial s_{t-1}} \\in \\mathbb{R}^{S \\times S}.

The carries are produced by one ``lax.scan`` (cheap: no Jacobian inside the
loop); the ``T`` Jacobians are then computed in parallel with ``vmap``, so a
full stack costs about one batched matrix product.

This module also holds the plumbing shared by every diagnostic: input
validation, state flattening and the batch ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jrnn.cells.base import Cell, flatten_carry
from jrnn.unrolling import check_inputs, match_carry_dtype

__all__ = ["JACOBIAN_METHODS", "step_jacobians"]

#: Accepted values of ``method`` in :func:`step_jacobians`.
JACOBIAN_METHODS = ("auto", "analytic", "jacfwd", "jacrev")


def _unflattener(cell: Cell, params) -> Callable[[jax.Array], Any]:
    """``s (S,) -> carry`` inverse of :func:`flatten_carry` (``ravel_pytree`` order)."""
    template = jax.eval_shape(cell.initial_carry, params)
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), template)
    _, unravel = ravel_pytree(zeros)
    return unravel


def state_step(cell: Cell, params) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(s_{t-1} (S,), u_t) -> s_t (S,)``: the recurrence on the flat state."""
    unravel = _unflattener(cell, params)

    def step(s, u):
        return flatten_carry(cell.recur(params, unravel(s), u)[0])

    return step


def prepare(cell: Cell, params, xs, carry) -> int | None:
    """Validates the common ``(cell, params, xs, carry)`` arguments; returns B or None."""
    batch, _ = check_inputs(cell, params, xs, carry)
    return batch


def map_sequences(fn: Callable, batch: int | None, xs, carry, *extra):
    """Applies ``fn(xs, carry, *extra)`` to one sequence or vmaps it over a batch.

    ``carry=None`` means the cell's zero carry (``fn`` must handle ``None``).
    """
    if batch is None:
        return fn(xs, carry, *extra)
    in_axes = (0, None if carry is None else 0) + (None,) * len(extra)
    return jax.vmap(fn, in_axes=in_axes)(xs, carry, *extra)


def carries(cell: Cell, params, xs: jax.Array, carry=None):
    """One sequence: ``(us (T, ...), prev (T, ...) carries s_0..s_{T-1}, final carry)``."""
    carry = cell.initial_carry(params) if carry is None else carry
    us = jax.vmap(lambda x: cell.input_map(params, x))(xs)
    carry = match_carry_dtype(cell, params, carry, jax.ShapeDtypeStruct(us.shape[1:], us.dtype))

    def body(c, u):
        new_c, _ = cell.recur(params, c, u)
        return new_c, c

    final, prev = jax.lax.scan(body, carry, us)
    return us, prev, final


def _jacobian_fn(cell: Cell, params, method: str):
    """``(carry, u) -> J (S, S)`` for ``method``; validates the method."""
    if method not in JACOBIAN_METHODS:
        raise ValueError(f"method must be one of {JACOBIAN_METHODS}, got {method!r}.")
    if method == "analytic" and cell.jacobian is None:
        raise ValueError(
            f"method='analytic' needs a cell with an analytic jacobian, but cell "
            f"{cell.describe()} has none; use method='jacfwd', 'jacrev' or 'auto'."
        )
    if method in ("analytic", "auto") and cell.jacobian is not None:
        return lambda c, u: cell.jacobian(params, c, u)
    step = state_step(cell, params)
    diff = jax.jacrev if method == "jacrev" else jax.jacfwd
    return lambda c, u: diff(step)(flatten_carry(c), u)


def sequence_jacobians(cell: Cell, params, xs, carry=None, method: str = "auto"):
    """One sequence ``xs (T, d)``: ``(J (T, S, S), us, prev carries, final carry)``."""
    jac = _jacobian_fn(cell, params, method)
    us, prev, final = carries(cell, params, xs, carry)
    return jax.vmap(jac)(prev, us), us, prev, final


def step_jacobians(
    cell: Cell, params, xs: jax.Array, *, carry=None, method: str = "auto"
) -> jax.Array:
    """Exact state Jacobians ``J_t = d s_t / d s_{t-1}`` for every step.

    .. math::

       J_t = \\frac{\\partial\\, \\mathrm{vec}(s_t)}{\\partial\\, \\mathrm{vec}(s_{t-1})},
       \\qquad \\text{e.g. elman: } J_t = \\mathrm{diag}(f'(a_t))\\, W_{hh},

    with ``s_t`` the flattened carry (``S = cell.state_size``: ``n`` for Elman,
    ``2n`` for the LSTM's ``(h, c)``, the sum over layers for a stack). The
    product ``J_T ... J_{t+1}`` is ``d s_T / d s_t``, the factor that vanishes or
    explodes in backpropagation through time (Bengio, Simard & Frasconi 1994;
    Pascanu, Mikolov & Bengio 2013).

    Args:
      cell: any :class:`~jrnn.cells.base.Cell`, including a stack.
      params: the cell's parameters.
      xs: ``(T, d)`` or ``(B, T, d)``.
      carry: initial carry (batched like ``xs``); default the cell's zeros.
      method: ``"analytic"`` (the cell's closed form; ValueError if it has
        none), ``"jacfwd"`` / ``"jacrev"`` (autodiff of one step), or
        ``"auto"`` (analytic where available, else ``jacfwd``, the faster
        autodiff mode for square Jacobians). All agree to float rounding.

    Returns:
      ``(T, S, S)``, or ``(B, T, S, S)`` for a batch. An entry of ``J_t``
      that depends on a NaN (state, input or parameter) is NaN: every
      registered activation's derivative maps NaN to NaN (never to a
      ``where``-form's 0 or slope), on the analytic and the autodiff paths
      alike. A Jacobian that does not depend on the state (linear cells,
      ``identity``) stays exact on an overflowed trajectory.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.lstm(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> jrnn.diagnostics.step_jacobians(cell, params, jnp.ones((3, 10, 2))).shape
        (3, 10, 8, 8)
    """
    batch = prepare(cell, params, xs, carry)
    _jacobian_fn(cell, params, method)  # validate eagerly
    fn = lambda x, c: sequence_jacobians(cell, params, x, c, method)[0]
    return map_sequences(fn, batch, jnp.asarray(xs), carry)
