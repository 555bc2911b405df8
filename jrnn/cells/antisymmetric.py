"""AntisymmetricRNN (Chang, Chen, Beutel & Chi 2019): a stable ODE discretised.

Forward Euler, step ``eps``, of ``dh/dt = f((W_h - W_h^T - gamma I) h + V_h x + b_h)``:

.. math::

   h_t = h_{t-1} + \\epsilon\\, f\\big((W_h - W_h^\\top - \\gamma I) h_{t-1}
         + V_h x_t + b_h\\big),
   \\qquad
   J_t = I + \\epsilon\\, \\mathrm{diag}(f'(a_t)) (W_h - W_h^\\top - \\gamma I).

The antisymmetric part has purely imaginary eigenvalues, so the continuous
system neither explodes nor vanishes (its Jacobian's eigenvalues have real
part ``-gamma f'``); the diffusion ``gamma >= 0`` keeps the Euler step stable.
Parameter names follow the paper (``W_h``, ``V_h``, ``b_h``, ``gamma``,
``epsilon``); ungated variant (the paper's eq. 7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn import initializers as inits
from jrnn.cells._core_fields import check_input_size, float_spec, input_size_of, zeros_carry
from jrnn.cells.base import Cell, Linearization, Pointwise
from jrnn.validation import check_int, check_number

__all__ = ["antisymmetric"]


def antisymmetric(
    hidden_size: int,
    activation="tanh",
    *,
    eps: float = 0.01,
    gamma: float = 0.01,
    gain: float = 1.0,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
) -> Cell:
    """AntisymmetricRNN cell with carry ``h (n,)``.

    Args:
      hidden_size: ``n``.
      activation: a registered name or :class:`~jrnn.activations.Activation`
        (the paper uses tanh).
      eps: Euler step ``epsilon > 0`` (paper: 0.01 to 1; 0.01 on pixel MNIST).
      gamma: diffusion ``gamma >= 0`` (paper: 0.01 on pixel MNIST).
      gain: ``sigma`` of the default ``W_h ~ N(0, sigma^2 / n)`` (the paper
        draws ``W_h`` Gaussian with a tuned variance).
      input_init, recurrent_init, bias_init: initialisers for ``V_h (n, d)``
        (default Glorot uniform), ``W_h (n, n)`` and ``b_h (n,)`` (zeros).

    Raises:
      ValueError: ``eps <= 0``, ``gamma < 0``, ``gain < 0`` (message names the
        argument, the value and the interval), or a bad ``hidden_size``.

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.antisymmetric(4, eps=0.1, gamma=0.01)
        >>> sorted(cell.init(jax.random.key(0), 3))
        ['V_h', 'W_h', 'b_h']
    """
    n = check_int(hidden_size, "hidden_size", low=1)
    eps = check_number(eps, "eps", low=0.0, low_open=True)
    gamma = check_number(gamma, "gamma", low=0.0)
    gain = check_number(gain, "gain", low=0.0)
    act = _activations.get(activation)
    f, df = act.fn, act.derivative
    input_init = input_init or inits.glorot_uniform()
    recurrent_init = recurrent_init or inits.scaled_normal(gain)

    def init(key, input_size):
        d = check_input_size(input_size)
        k_x, k_h, k_b = jax.random.split(key, 3)
        return {
            "W_h": recurrent_init(k_h, (n, n)),
            "V_h": input_init(k_x, (n, d)),
            "b_h": bias_init(k_b, (n,)),
        }

    def recurrent_matrix(params):
        W = params["W_h"]
        return W - W.T - gamma * jnp.eye(n, dtype=W.dtype)

    def input_map(params, x):
        return params["V_h"] @ x + params["b_h"]

    def preactivation(params, h, u):
        W = params["W_h"]
        return W @ h - W.T @ h - gamma * h + u

    def recur(params, h, u):
        h_new = h + eps * f(preactivation(params, h, u))
        return h_new, h_new

    def jacobian(params, h, u):
        d = eps * df(preactivation(params, h, u))
        return jnp.eye(n, dtype=d.dtype) + d[:, None] * recurrent_matrix(params)

    def tangent(params, h, u, V):
        d = eps * df(preactivation(params, h, u))
        W = params["W_h"]
        return V + d[:, None] * (W @ V - W.T @ V - gamma * V)

    return Cell(
        name="antisymmetric", hidden_size=n, state_size=n,
        init=init, initial_carry=zeros_carry(n, "W_h"), input_map=input_map, recur=recur,
        input_size=input_size_of("V_h"),
        param_spec=lambda d: float_spec(W_h=(n, n), V_h=(n, d), b_h=(n,)),
        config=(("activation", act.name), ("eps", eps), ("gamma", gamma)),
        linear=Linearization(jacobian, tangent),
        pointwise=Pointwise(act, preactivation),
    )  # fmt: skip
