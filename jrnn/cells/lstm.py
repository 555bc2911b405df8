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
import numpy as np

from jrnn import initializers as inits
from jrnn.activations import sigmoid_prime, tanh_prime
from jrnn.cells._core_fields import check_input_size, float_spec, input_size_of, zeros_carry
from jrnn.cells.base import Cell, Linearization
from jrnn.cells.fused import FusedRule
from jrnn.validation import check_int, check_number

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
        ``None`` or ``0`` means no special forget slice: ``bias_init`` fills
        all of ``b_h`` (an all-uniform initialisation, as in Vogt et al.).
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
    n = check_int(hidden_size, "hidden_size", low=1)
    if forget_bias is not None:
        forget_bias = check_number(forget_bias, "forget_bias")
    special = forget_bias is not None and forget_bias != 0.0
    input_init = input_init or inits.glorot_uniform()
    # Orthogonal per gate, the 4 gates drawn by one vmapped (batched) QR: the same values as
    # 4 separate calls, but a single LAPACK call (see jrnn.initializers.orthogonal_blocks).
    recurrent_init = recurrent_init or inits.orthogonal_blocks(4)

    def init(key, input_size):
        d = check_input_size(input_size)
        k_x, k_h, k_b = jax.random.split(key, 3)
        b = bias_init(k_b, (4 * n,))
        if special:
            b = b.at[n : 2 * n].set(forget_bias)
        return {
            "W_xh": input_init(k_x, (4 * n, d)),
            "W_hh": recurrent_init(k_h, (4 * n, n)),
            "b_h": b,
        }

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
        # Gate derivatives from the pre-activations (sigmoid_prime, tanh_prime), never
        # s (1 - s) or 1 - tanh^2 of the outputs, which round to 0 in float32 tails.
        h, c = carry
        a = params["W_hh"] @ h + u
        a_i, a_f, a_g, a_o = a[:n], a[n : 2 * n], a[2 * n : 3 * n], a[3 * n :]
        i, f, g, o = (jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g),
                      jax.nn.sigmoid(a_o))  # fmt: skip
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        W = params["W_hh"]
        W_i, W_f, W_g, W_o = W[:n], W[n : 2 * n], W[2 * n : 3 * n], W[3 * n :]
        dc_dh = (
            (c * sigmoid_prime(a_f))[:, None] * W_f
            + (g * sigmoid_prime(a_i))[:, None] * W_i
            + (i * tanh_prime(a_g))[:, None] * W_g
        )
        dc_dc = jnp.diag(f)
        dtanh = o * tanh_prime(c_new)
        dh_dh = (tc * sigmoid_prime(a_o))[:, None] * W_o + dtanh[:, None] * dc_dh
        dh_dc = jnp.diag(dtanh * f)
        return jnp.block([[dh_dh, dh_dc], [dc_dh, dc_dc]])

    def tangent(params, carry, u, V):
        # J V without J: one (4n, n) x (n, k) product, then elementwise gate derivatives.
        h, c = carry
        a = params["W_hh"] @ h + u
        a_i, a_f, a_g, a_o = a[:n], a[n : 2 * n], a[2 * n : 3 * n], a[3 * n :]
        i, f, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jax.nn.sigmoid(a_o)
        g = jnp.tanh(a_g)
        c_new = f * c + i * g
        V_h, V_c = V[:n], V[n:]
        dA = params["W_hh"] @ V_h  # (4n, k)
        dA_i, dA_f, dA_g, dA_o = dA[:n], dA[n : 2 * n], dA[2 * n : 3 * n], dA[3 * n :]
        col = lambda v: v[:, None]
        dc = (
            col(c * sigmoid_prime(a_f)) * dA_f
            + col(f) * V_c
            + col(g * sigmoid_prime(a_i)) * dA_i
            + col(i * tanh_prime(a_g)) * dA_g
        )
        dh = col(jnp.tanh(c_new) * sigmoid_prime(a_o)) * dA_o + col(o * tanh_prime(c_new)) * dc
        return jnp.concatenate([dh, dc], axis=0)

    return Cell(
        name="lstm", hidden_size=n, state_size=2 * n,
        init=init, initial_carry=zeros_carry(n, "W_hh", 2), input_map=input_map, recur=recur,
        input_size=input_size_of("W_xh"),
        param_spec=lambda d: float_spec(W_xh=(4 * n, d), W_hh=(4 * n, n), b_h=(4 * n,)),
        config=(("forget_bias", forget_bias if special else None),),
        linear=Linearization(jacobian, tangent),
        fused=_fused_rule(n),
    )  # fmt: skip


def _fused_rule(n: int) -> FusedRule:
    """Batch-major LSTM step, its tangent and its transpose.

    All four gates are one vectorised ``tanh``: ``sigmoid(a) = 0.5 tanh(a/2) + 0.5``, so
    ``act(a) = alpha tanh(alpha a) + beta`` with per-column constants (alpha = 1/2, beta = 1/2
    for i, f, o; 1, 0 for g) and ``act'(a) = alpha^2 tanh_prime(alpha a)`` (full relative
    accuracy). Residuals: ``K = act'(a) * [g, c_{t-1}, i, tanh(c_t)]`` (B, 4n), ``f`` and
    ``q = o tanh'(c_t)``; then ``dc' = f dc + K_i da_i + K_f da_f + K_g da_g`` and
    ``dh' = q dc' + K_o da_o`` with ``da = du + dhh``.
    """
    is_g = np.zeros(4 * n, bool)
    is_g[2 * n : 3 * n] = True
    alpha_np, beta_np = np.where(is_g, 1.0, 0.5), np.where(is_g, 0.0, 0.5)

    def weights(params):
        return params["W_xh"], params["b_h"], params["W_hh"], None

    def forward(carry, u, hh, with_res):
        h, c = carry
        a = u + hh
        alpha = jnp.asarray(alpha_np, a.dtype)[None, :]
        beta = jnp.asarray(beta_np, a.dtype)[None, :]
        acts = alpha * jnp.tanh(alpha * a) + beta  # sigmoid(i, f, o), tanh(g)
        i, f, g, o = (acts[:, k * n : (k + 1) * n] for k in range(4))
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        h_new = o * tc
        if not with_res:
            return (h_new, c_new), ()
        dacts = alpha * alpha * tanh_prime(alpha * a)
        K = dacts * jnp.concatenate([g, c, i, tc], axis=-1)
        return (h_new, c_new), (K, f, o * tanh_prime(c_new))

    def tangent(res, dprev, du, dhh):
        K, f, q = res
        kda = K * (du + dhh)
        dc = f * dprev[1] + kda[:, :n] + kda[:, n : 2 * n] + kda[:, 2 * n : 3 * n]
        return (q * dc + kda[:, 3 * n :], dc)

    def backward(res, dnew):
        K, f, q = res
        dh, dc = dnew
        dct = dc + q * dh
        da = K * jnp.concatenate([dct, dct, dct, dh], axis=-1)
        return (jnp.zeros_like(dh), f * dct), da, da

    return FusedRule(4, weights, forward, tangent, backward)
