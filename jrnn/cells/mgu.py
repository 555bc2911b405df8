"""Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016): a GRU with one gate.

The forget gate ``f`` plays the roles of both the GRU's reset and update gates.
Gates stacked (f, h) in ``W_xh (2n, d)``, ``W_hh (2n, n)``, ``b_h (2n,)`` (the
paper's ``W_f [h_{t-1}, x_t] + b_f`` and ``W_h [f_t * h_{t-1}, x_t] + b_h``
split into recurrent and input columns):

.. math::

   f_t = \\sigma(W_{hf} h_{t-1} + W_{xf} x_t + b_f), \\qquad
   \\tilde h_t = \\tanh(W_{hh}^{(h)} (f_t \\odot h_{t-1}) + W_{xh}^{(h)} x_t + b_h^{(h)}),

   h_t = (1 - f_t) \\odot h_{t-1} + f_t \\odot \\tilde h_t.

Step Jacobian (``s_f = \\sigma'(a_f)``, ``s_h = \\tanh'(a_h)``):

.. math::

   J_t = \\mathrm{diag}(1 - f_t) + \\mathrm{diag}((\\tilde h_t - h_{t-1}) s_f) W_{hf}
   + \\mathrm{diag}(f_t s_h) W_{hh}^{(h)}
     (\\mathrm{diag}(f_t) + \\mathrm{diag}(h_{t-1} s_f) W_{hf}).

A closed gate (``f -> 0``) copies the state: ``J_t -> I``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn import initializers as inits
from jrnn.activations import sigmoid_prime, tanh_prime
from jrnn.cells._core_fields import check_input_size, float_spec, input_size_of, zeros_carry
from jrnn.cells.base import Cell, Linearization
from jrnn.validation import check_int, check_number

__all__ = ["mgu"]


def mgu(
    hidden_size: int,
    *,
    forget_bias: float = 0.0,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
) -> Cell:
    """Minimal gated unit (MGU) cell with carry ``h (n,)``.

    Args:
      hidden_size: ``n``.
      forget_bias: initial value of the gate slice ``b_f`` of ``b_h`` (only the
        initialisation; nothing is added inside the step).
      input_init, recurrent_init, bias_init: initialisers for the stacked
        ``W_xh (2n, d)`` (default Glorot uniform), ``W_hh (2n, n)`` (default
        orthogonal per gate) and ``b_h (2n,)`` (default zeros).

    Raises:
      ValueError: ``hidden_size < 1`` (``TypeError`` if not an integer); ``forget_bias`` not a
        finite real number (a :class:`~jrnn.validation.NumberTypeError`, also a
        ``TypeError``, when it is not a number at all).

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.mgu(4)
        >>> [v.shape for v in cell.init(jax.random.key(0), 3).values()]
        [(8, 3), (8, 4), (8,)]
    """
    n = check_int(hidden_size, "hidden_size", low=1)
    forget_bias = check_number(forget_bias, "forget_bias")
    input_init = input_init or inits.glorot_uniform()
    recurrent_init = recurrent_init or inits.orthogonal_blocks(2)

    def init(key, input_size):
        d = check_input_size(input_size)
        k_x, k_h, k_b = jax.random.split(key, 3)
        return {
            "W_xh": input_init(k_x, (2 * n, d)),
            "W_hh": recurrent_init(k_h, (2 * n, n)),
            "b_h": bias_init(k_b, (2 * n,)).at[:n].set(forget_bias),
        }

    def input_map(params, x):
        return params["W_xh"] @ x + params["b_h"]

    def _forward(params, h, u):
        W_f, W_h = params["W_hh"][:n], params["W_hh"][n:]
        a_f = W_f @ h + u[:n]
        f = jax.nn.sigmoid(a_f)
        a_h = W_h @ (f * h) + u[n:]
        return a_f, f, a_h, jnp.tanh(a_h)

    def recur(params, h, u):
        _, f, _, cand = _forward(params, h, u)
        h_new = (1.0 - f) * h + f * cand
        return h_new, h_new

    def tangent(params, h, u, V):
        W_f, W_h = params["W_hh"][:n], params["W_hh"][n:]
        a_f, f, a_h, cand = _forward(params, h, u)
        df = sigmoid_prime(a_f)[:, None] * (W_f @ V)  # d f
        dr = f[:, None] * V + h[:, None] * df  # d (f * h)
        dcand = tanh_prime(a_h)[:, None] * (W_h @ dr)
        # 1 - f as sigmoid(-a_f): 1 - f rounds to 0 for a_f >~ 17 in float32.
        return jax.nn.sigmoid(-a_f)[:, None] * V + (cand - h)[:, None] * df + f[:, None] * dcand

    def jacobian(params, h, u):
        W_f, W_h = params["W_hh"][:n], params["W_hh"][n:]
        a_f, f, a_h, cand = _forward(params, h, u)
        Jf = sigmoid_prime(a_f)[:, None] * W_f
        Jr = jnp.diag(f) + h[:, None] * Jf
        Jc = tanh_prime(a_h)[:, None] * (W_h @ Jr)
        return jnp.diag(jax.nn.sigmoid(-a_f)) + (cand - h)[:, None] * Jf + f[:, None] * Jc

    return Cell(
        name="mgu", hidden_size=n, state_size=n,
        init=init, initial_carry=zeros_carry(n, "W_hh"), input_map=input_map, recur=recur,
        input_size=input_size_of("W_xh"),
        param_spec=lambda d: float_spec(W_xh=(2 * n, d), W_hh=(2 * n, n), b_h=(2 * n,)),
        config=(("forget_bias", forget_bias),),
        linear=Linearization(jacobian, tangent),
    )  # fmt: skip
