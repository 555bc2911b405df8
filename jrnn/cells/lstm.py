"""LSTM (Hochreiter & Schmidhuber 1997; with forget gate, Gers et al. 2000).

PyTorch's equations, gates stacked (i, f, g, o) in ``W_xh (4n, d)``,
``W_hh (4n, n)``, ``b_h (4n,)``:

.. math::

   [a_i, a_f, a_g, a_o] = W_{xh} x_t + W_{hh} h_{t-1} + b_h

   c_t = \\sigma(a_f) c_{t-1} + \\sigma(a_i) \\tanh(a_g), \\qquad
   h_t = \\sigma(a_o) \\tanh(c_t)

The carry is ``(h, c)``, so the state ``s_t = [h_t; c_t]`` has size ``2n``.
The additive cell path gives ``d c_t / d c_{t-1} = diag(f_t)``: gradients
survive as long as the forget gate stays open (the seed's second remedy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn import initializers as inits
from jrnn import validation as _validation
from jrnn.cells.base import Cell, check_positive_int

__all__ = ["lstm"]


def lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
) -> Cell:
    """LSTM cell computing exactly PyTorch's ``nn.LSTM`` step for the same weights.

    Args:
      hidden_size: ``n``.
      forget_bias: initial value of the forget slice of ``b_h`` (Jozefowicz et
        al. 2015). Only the initialisation; nothing is added inside the step.
      input_init, recurrent_init, bias_init: initialisers for the stacked
        ``W_xh (4n, d)``, ``W_hh (4n, n)`` (default: orthogonal per gate) and
        ``b_h (4n,)``.

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.lstm(8)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> [params[k].shape for k in ("W_xh", "W_hh", "b_h")]
        [(32, 3), (32, 8), (32,)]
    """
    n = check_positive_int(hidden_size, "hidden_size")
    forget_bias = _validation.check_number(forget_bias, "forget_bias")
    input_init = input_init or inits.glorot_uniform()
    # Orthogonal per gate, the 4 gates drawn by one vmapped (batched) QR: the same values as
    # 4 separate calls, but a single LAPACK call (see jrnn.initializers.orthogonal_blocks).
    recurrent_init = recurrent_init or inits.orthogonal_blocks(4)

    def init(key, input_size):
        d = check_positive_int(input_size, "input_size")
        k_x, k_h, k_b = jax.random.split(key, 3)
        b = bias_init(k_b, (4 * n,))
        b = b.at[n : 2 * n].set(forget_bias)
        return {
            "W_xh": input_init(k_x, (4 * n, d)),
            "W_hh": recurrent_init(k_h, (4 * n, n)),
            "b_h": b,
        }

    def initial_carry(params):
        z = jnp.zeros((n,), params["W_hh"].dtype)
        return (z, z)

    def input_map(params, x):
        return params["W_xh"] @ x + params["b_h"]

    def _gates(params, h, u):
        a = params["W_hh"] @ h + u
        i = jax.nn.sigmoid(a[:n])
        f = jax.nn.sigmoid(a[n : 2 * n])
        g = jnp.tanh(a[2 * n : 3 * n])
        o = jax.nn.sigmoid(a[3 * n :])
        return i, f, g, o

    def recur(params, carry, u):
        h, c = carry
        i, f, g, o = _gates(params, h, u)
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        return (h_new, c_new), h_new

    def jacobian(params, carry, u):
        h, c = carry
        i, f, g, o = _gates(params, h, u)
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        W = params["W_hh"]
        W_i, W_f, W_g, W_o = W[:n], W[n : 2 * n], W[2 * n : 3 * n], W[3 * n :]
        dc_dh = (
            (c * f * (1 - f))[:, None] * W_f
            + (g * i * (1 - i))[:, None] * W_i
            + (i * (1 - g * g))[:, None] * W_g
        )
        dc_dc = jnp.diag(f)
        dtanh = o * (1 - tc * tc)
        dh_dh = (tc * o * (1 - o))[:, None] * W_o + dtanh[:, None] * dc_dh
        dh_dc = jnp.diag(dtanh * f)
        return jnp.block([[dh_dh, dh_dc], [dc_dh, dc_dc]])

    return Cell(
        name="lstm",
        hidden_size=n,
        state_size=2 * n,
        init=init,
        initial_carry=initial_carry,
        input_map=input_map,
        recur=recur,
        input_size=lambda params: params["W_xh"].shape[1],
        jacobian=jacobian,
        param_spec=lambda d: {
            "W_xh": ((4 * n, d), "f"), "W_hh": ((4 * n, n), "f"), "b_h": ((4 * n,), "f")
        },
        config=(("forget_bias", float(forget_bias)),),
    )
