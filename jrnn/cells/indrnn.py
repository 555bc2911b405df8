"""IndRNN (Li, Li, Cook, Zhu & Gao 2018): independent recurrent units.

.. math::

   h_t = f(w_{hh} \\odot h_{t-1} + W_{xh} x_t + b_h)

Each unit recurs only onto itself, so the step Jacobian is diagonal,
``J_t = diag(f'(a_t) * w_hh)``, and ``|d h_T / d h_t|`` is a product of
scalars per unit that the recurrent weight can pin near 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn import initializers as inits
from jrnn.cells.base import Cell, check_positive_int

__all__ = ["indrnn"]


def indrnn(
    hidden_size: int,
    activation="relu",
    *,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
) -> Cell:
    """IndRNN cell with diagonal recurrent weights ``w_hh (n,)``.

    Default ``w_hh ~ U[0, 1]`` (the paper's choice for ReLU IndRNN) and
    Glorot-uniform ``W_xh``.

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.indrnn(4)
        >>> cell.init(jax.random.key(0), 2)["w_hh"].shape
        (4,)
    """
    n = check_positive_int(hidden_size, "hidden_size")
    act = _activations.get(activation)
    f, df = act.fn, act.derivative
    input_init = input_init or inits.glorot_uniform()
    recurrent_init = recurrent_init or inits.uniform(0.0, 1.0)

    def init(key, input_size):
        d = check_positive_int(input_size, "input_size")
        k_x, k_h, k_b = jax.random.split(key, 3)
        return {
            "W_xh": input_init(k_x, (n, d)),
            "w_hh": recurrent_init(k_h, (n,)),
            "b_h": bias_init(k_b, (n,)),
        }

    def initial_carry(params):
        return jnp.zeros((n,), params["w_hh"].dtype)

    def input_map(params, x):
        return params["W_xh"] @ x + params["b_h"]

    def preactivation(params, h, u):
        return params["w_hh"] * h + u

    def recur(params, h, u):
        h_new = f(preactivation(params, h, u))
        return h_new, h_new

    def jacobian(params, h, u):
        return jnp.diag(df(preactivation(params, h, u)) * params["w_hh"])

    def tangent(params, h, u, V):
        return (df(preactivation(params, h, u)) * params["w_hh"])[:, None] * V

    return Cell(
        name="indrnn",
        hidden_size=n,
        state_size=n,
        init=init,
        initial_carry=initial_carry,
        input_map=input_map,
        recur=recur,
        input_size=lambda params: params["W_xh"].shape[1],
        jacobian=jacobian,
        tangent=tangent,
        activation=act,
        preactivation=preactivation,
        recurrent_matrix=lambda params: jnp.diag(params["w_hh"]),
        param_spec=lambda d: {"W_xh": ((n, d), "f"), "w_hh": ((n,), "f"), "b_h": ((n,), "f")},
        config=(("activation", act.name),),
    )
