"""Lipschitz RNN (Erichson, Azencot, Queiruga, Hodgkinson & Mahoney 2021).

Forward Euler, step ``eps``, of ``dh/dt = A h + f(W h + U x + b)`` with
``A`` and ``W`` built from free matrices so that their symmetric part is
controlled (``beta`` near 1: nearly antisymmetric; ``gamma`` shifts the
spectrum to the left):

.. math::

   A = (1 - \\beta)(M_A + M_A^\\top) + \\beta (M_A - M_A^\\top) - \\gamma_A I,
   \\qquad
   W = (1 - \\beta)(M_W + M_W^\\top) + \\beta (M_W - M_W^\\top) - \\gamma_W I,

   h_t = h_{t-1} + \\epsilon A h_{t-1} + \\epsilon f(W h_{t-1} + U x_t + b),
   \\qquad
   J_t = I + \\epsilon A + \\epsilon\\, \\mathrm{diag}(f'(a_t)) W.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn import initializers as inits
from jrnn.cells._core_fields import check_input_size, float_spec, input_size_of, zeros_carry
from jrnn.cells.base import Cell, Linearization, Pointwise
from jrnn.validation import check_int, check_number

__all__ = ["lipschitz"]


def lipschitz(
    hidden_size: int,
    activation="tanh",
    *,
    eps: float = 0.03,
    beta: float = 0.75,
    gamma_A: float = 0.001,
    gamma_W: float = 0.001,
    gain: float = 1.0,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
) -> Cell:
    """Lipschitz RNN cell with carry ``h (n,)`` (paper's pixel-MNIST defaults).

    Args:
      hidden_size: ``n``.
      activation: ``f`` (paper: tanh).
      eps: Euler step ``> 0``.
      beta: symmetric/antisymmetric mix in ``[0, 1]``.
      gamma_A, gamma_W: diagonal shifts ``>= 0``.
      gain: ``sigma`` of the default ``M_A, M_W ~ N(0, sigma^2 / n)``.
      input_init, recurrent_init, bias_init: initialisers for ``U (n, d)``
        (Glorot uniform), ``M_A, M_W (n, n)`` and ``b (n,)`` (zeros).

    Raises:
      ValueError: a hyper-parameter outside its interval (message names it,
        the value and the interval), a bad ``hidden_size``.

    Example::

        >>> import jax, jrnn
        >>> sorted(jrnn.cells.lipschitz(4).init(jax.random.key(0), 2))
        ['M_A', 'M_W', 'U', 'b']
    """
    n = check_int(hidden_size, "hidden_size", low=1)
    eps = check_number(eps, "eps", low=0.0, low_open=True)
    beta = check_number(beta, "beta", low=0.0, high=1.0)
    gamma_A = check_number(gamma_A, "gamma_A", low=0.0)
    gamma_W = check_number(gamma_W, "gamma_W", low=0.0)
    gain = check_number(gain, "gain", low=0.0)
    act = _activations.get(activation)
    f, df = act.fn, act.derivative
    input_init = input_init or inits.glorot_uniform()
    recurrent_init = recurrent_init or inits.scaled_normal(gain)

    def init(key, input_size):
        d = check_input_size(input_size)
        k_a, k_w, k_u, k_b = jax.random.split(key, 4)
        return {
            "M_A": recurrent_init(k_a, (n, n)),
            "M_W": recurrent_init(k_w, (n, n)),
            "U": input_init(k_u, (n, d)),
            "b": bias_init(k_b, (n,)),
        }

    def _mix(M, gamma):
        return (1.0 - beta) * (M + M.T) + beta * (M - M.T) - gamma * jnp.eye(n, dtype=M.dtype)

    def matrices(params):
        return _mix(params["M_A"], gamma_A), _mix(params["M_W"], gamma_W)

    def input_map(params, x):
        return params["U"] @ x + params["b"]

    def preactivation(params, h, u):
        return matrices(params)[1] @ h + u

    def recur(params, h, u):
        A, W = matrices(params)
        h_new = h + eps * (A @ h) + eps * f(W @ h + u)
        return h_new, h_new

    def jacobian(params, h, u):
        A, W = matrices(params)
        d = eps * df(W @ h + u)
        return jnp.eye(n, dtype=d.dtype) + eps * A + d[:, None] * W

    def tangent(params, h, u, V):
        A, W = matrices(params)
        d = eps * df(W @ h + u)
        return V + eps * (A @ V) + d[:, None] * (W @ V)

    return Cell(
        name="lipschitz", hidden_size=n, state_size=n,
        init=init, initial_carry=zeros_carry(n, "M_A"), input_map=input_map, recur=recur,
        input_size=input_size_of("U"),
        param_spec=lambda d: float_spec(M_A=(n, n), M_W=(n, n), U=(n, d), b=(n,)),
        linear=Linearization(jacobian, tangent),
        pointwise=Pointwise(act, preactivation),
        config=(("activation", act.name), ("eps", eps), ("beta", beta),
                ("gamma_A", gamma_A), ("gamma_W", gamma_W)),
    )  # fmt: skip
