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

The shared plumbing (input validation, the carries, the batch ``vmap``, the
Jacobian of one step) is the trajectory kernel :mod:`jrnn.diagnostics._trajectory`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn.cells.base import Cell
from jrnn.diagnostics._trajectory import (
    JACOBIAN_METHODS,
    carries,
    jacobian_fn,
    map_sequences,
    prepare,
)

__all__ = ["JACOBIAN_METHODS", "sequence_jacobians", "step_jacobians"]


def sequence_jacobians(cell: Cell, params, xs, carry=None, method: str = "auto"):
    """One sequence ``xs (T, d)``: ``(J (T, S, S), us, prev carries, final carry)``."""
    jac = jacobian_fn(cell, params, method)
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
    jacobian_fn(cell, params, method)  # validate eagerly
    fn = lambda x, c: sequence_jacobians(cell, params, x, c, method)[0]
    return map_sequences(fn, batch, jnp.asarray(xs), carry)
