"""GRU (Cho et al. 2014) in the PyTorch / cuDNN / Flax form, gates (r, z, n).

.. math::

   r = \\sigma(u_r + W_{hr} h + b_{hr}), \\quad z = \\sigma(u_z + W_{hz} h + b_{hz})

   \\tilde n = \\tanh(u_n + r \\odot (W_{hn} h + b_{hn})), \\quad
   h' = (1 - z) \\odot \\tilde n + z \\odot h

with ``u = W_xh x + b_xh``; ``W_xh (3n, d)``, ``W_hh (3n, n)``, ``b_xh, b_hh (3n,)``.
The ``z * h`` path gives ``d h'/d h`` a ``diag(z)`` term: an open update gate
carries the gradient unchanged.

``gru(n, reset_after=False)`` is the original form of Cho et al. (2014) and
Keras' ``GRU(reset_after=False)``: the reset gate acts on ``h`` before the
recurrent product, ``\\tilde n = \\tanh(u_n + W_{hn} (r \\odot h) + b_{hn})``
(cell name ``"gru_reset_before"``; same parameters).
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
from jrnn.validation import check_int

__all__ = ["gru"]


def gru(
    hidden_size: int,
    *,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
    reset_after: bool = True,
) -> Cell:
    """GRU cell computing exactly PyTorch's ``nn.GRU`` step for the same weights.

    Args:
      hidden_size: ``n``.
      input_init, recurrent_init, bias_init: initialisers for ``W_xh (3n, d)``,
        ``W_hh (3n, n)`` (default: orthogonal per gate), ``b_xh``, ``b_hh (3n,)``.
      reset_after: ``True`` (default): PyTorch / cuDNN / Keras' default,
        ``r * (W_hn h + b_hn)``. ``False``: Cho et al. (2014) and Keras'
        ``reset_after=False``, ``W_hn (r * h) + b_hn`` (a cell named
        ``"gru_reset_before"``, with analytic Jacobian and tangent map).

    Raises:
      ValueError: ``hidden_size < 1``.
      TypeError: ``hidden_size`` not an integer, or ``reset_after`` not a bool.

    Example::

        >>> import jax, jrnn
        >>> params = jrnn.cells.gru(8).init(jax.random.key(0), 3)
        >>> [params[k].shape for k in ("W_xh", "W_hh", "b_xh", "b_hh")]
        [(24, 3), (24, 8), (24,), (24,)]
    """
    n = check_int(hidden_size, "hidden_size", low=1)
    if not isinstance(reset_after, bool | np.bool_):
        raise TypeError(
            f"reset_after must be a bool, got {type(reset_after).__name__} {reset_after!r}."
        )
    input_init = input_init or inits.glorot_uniform()
    # Orthogonal per gate, the 3 gates drawn by one vmapped (batched) QR: the same values as
    # 3 separate calls, but a single LAPACK call (see jrnn.initializers.orthogonal_blocks).
    recurrent_init = recurrent_init or inits.orthogonal_blocks(3)

    def init(key, input_size):
        d = check_input_size(input_size)
        k_x, k_h, k_bx, k_bh = jax.random.split(key, 4)
        return {
            "W_xh": input_init(k_x, (3 * n, d)),
            "W_hh": recurrent_init(k_h, (3 * n, n)),
            "b_xh": bias_init(k_bx, (3 * n,)),
            "b_hh": bias_init(k_bh, (3 * n,)),
        }

    def input_map(params, x):
        return params["W_xh"] @ x + params["b_xh"]

    # Both variants share the core; only the recurrence and its derivatives differ.
    core = dict(
        hidden_size=n, state_size=n, init=init, initial_carry=zeros_carry(n, "W_hh"),
        input_map=input_map, input_size=input_size_of("W_xh"),
        param_spec=lambda d: float_spec(W_xh=(3 * n, d), W_hh=(3 * n, n), b_xh=(3 * n,),
                                        b_hh=(3 * n,)),
    )  # fmt: skip
    if not reset_after:
        return _reset_before(n, core)

    def _gates(params, h, u):
        hh = params["W_hh"] @ h + params["b_hh"]
        r = jax.nn.sigmoid(u[:n] + hh[:n])
        z = jax.nn.sigmoid(u[n : 2 * n] + hh[n : 2 * n])
        cand = jnp.tanh(u[2 * n :] + r * hh[2 * n :])
        return r, z, cand, hh[2 * n :]

    def recur(params, h, u):
        r, z, cand, _ = _gates(params, h, u)
        h_new = (1.0 - z) * cand + z * h
        return h_new, h_new

    def jacobian(params, h, u):
        # Gate derivatives from the pre-activations (sigmoid_prime, tanh_prime) and
        # 1 - z = sigmoid(-a_z): no s (1 - s), 1 - tanh^2 or 1 - s that rounds to 0.
        hh = params["W_hh"] @ h + params["b_hh"]
        a_r, a_z = u[:n] + hh[:n], u[n : 2 * n] + hh[n : 2 * n]
        r, z, hh_n = jax.nn.sigmoid(a_r), jax.nn.sigmoid(a_z), hh[2 * n :]
        a_n = u[2 * n :] + r * hh_n
        cand = jnp.tanh(a_n)
        W = params["W_hh"]
        W_r, W_z, W_n = W[:n], W[n : 2 * n], W[2 * n :]
        dr = sigmoid_prime(a_r)[:, None] * W_r
        dz = sigmoid_prime(a_z)[:, None] * W_z
        dn = tanh_prime(a_n)[:, None] * (hh_n[:, None] * dr + r[:, None] * W_n)
        return jax.nn.sigmoid(-a_z)[:, None] * dn + (h - cand)[:, None] * dz + jnp.diag(z)

    def tangent(params, h, u, V):
        hh = params["W_hh"] @ h + params["b_hh"]
        a_r, a_z = u[:n] + hh[:n], u[n : 2 * n] + hh[n : 2 * n]
        r, z = jax.nn.sigmoid(a_r), jax.nn.sigmoid(a_z)
        a_n = u[2 * n :] + r * hh[2 * n :]
        cand = jnp.tanh(a_n)
        dH = params["W_hh"] @ V  # (3n, k)
        col = lambda v: v[:, None]
        dr = col(sigmoid_prime(a_r)) * dH[:n]
        dz = col(sigmoid_prime(a_z)) * dH[n : 2 * n]
        dn = col(tanh_prime(a_n)) * (col(hh[2 * n :]) * dr + col(r) * dH[2 * n :])
        return col(1 - z) * dn + col(h - cand) * dz + col(z) * V

    return Cell(
        name="gru", recur=recur, linear=Linearization(jacobian, tangent), fused=_fused_rule(n),
        **core,
    )


def _fused_rule(n: int) -> FusedRule:
    """Batch-major GRU step, its tangent and its transpose.

    ``r, z`` as ``0.5 tanh(a/2) + 0.5`` (one vectorised tanh), derivatives
    ``0.25 tanh_prime(a/2)`` and ``tanh_prime(a_n)`` (full relative accuracy).
    Residuals ``K = [P hn s_r, (h - n~) s_z, P]`` (B, 3n) with ``P = (1 - z) tanh'(a_n)``,
    ``s = sigma'``, and ``r``, ``z``:
    ``dh' = sum_blocks K * (du + [dhh_r, dhh_z, r dhh_n]) + z dh``.
    """

    def weights(params):
        return params["W_xh"], params["b_xh"], params["W_hh"], params["b_hh"]

    def forward(carry, u, hh, with_res):
        (h,) = carry
        a_rz = u[:, : 2 * n] + hh[:, : 2 * n]
        rz = 0.5 * jnp.tanh(0.5 * a_rz) + 0.5  # sigmoid, via tanh
        r, z = rz[:, :n], rz[:, n:]
        hn = hh[:, 2 * n :]
        a_n = u[:, 2 * n :] + r * hn
        cand = jnp.tanh(a_n)
        h_new = (1.0 - z) * cand + z * h
        if not with_res:
            return (h_new,), ()
        s = 0.25 * tanh_prime(0.5 * a_rz)
        P = (1.0 - z) * tanh_prime(a_n)
        K = jnp.concatenate([P * hn * s[:, :n], (h - cand) * s[:, n:], P], axis=-1)
        return (h_new,), (K, r, z)

    def tangent(res, dprev, du, dhh):
        K, r, z = res
        ks = K * (du + jnp.concatenate([dhh[:, : 2 * n], r * dhh[:, 2 * n :]], axis=-1))
        return (ks[:, :n] + ks[:, n : 2 * n] + ks[:, 2 * n :] + z * dprev[0],)

    def backward(res, dnew):
        K, r, z = res
        (dh,) = dnew
        du = K * jnp.concatenate([dh, dh, dh], axis=-1)
        dhh = jnp.concatenate([du[:, : 2 * n], du[:, 2 * n :] * r], axis=-1)
        return (z * dh,), du, dhh

    return FusedRule(3, weights, forward, tangent, backward)


def _reset_before(n: int, core: dict) -> Cell:
    """The reset-before GRU: ``h' = (1 - z) tanh(u_n + W_hn (r h) + b_hn) + z h``."""

    def _gates(params, h, u):
        W, b = params["W_hh"], params["b_hh"]
        a_rz = u[: 2 * n] + W[: 2 * n] @ h + b[: 2 * n]
        a_r, a_z = a_rz[:n], a_rz[n:]
        r, z = jax.nn.sigmoid(a_r), jax.nn.sigmoid(a_z)
        a_n = u[2 * n :] + W[2 * n :] @ (r * h) + b[2 * n :]
        return a_r, a_z, a_n, r, z, jnp.tanh(a_n)

    def recur(params, h, u):
        _, _, _, _, z, cand = _gates(params, h, u)
        h_new = (1.0 - z) * cand + z * h
        return h_new, h_new

    def jacobian(params, h, u):
        # d(r h)/dh = diag(r) + diag(h sigma'(a_r)) W_hr
        a_r, a_z, a_n, r, z, cand = _gates(params, h, u)
        W = params["W_hh"]
        W_r, W_z, W_n = W[:n], W[n : 2 * n], W[2 * n :]
        ds = jnp.diag(r) + (h * sigmoid_prime(a_r))[:, None] * W_r
        dn = tanh_prime(a_n)[:, None] * (W_n @ ds)
        dz = sigmoid_prime(a_z)[:, None] * W_z
        # 1 - z as sigmoid(-a_z): 1 - z rounds to 0 for a_z >~ 17 in float32.
        return jax.nn.sigmoid(-a_z)[:, None] * dn + (h - cand)[:, None] * dz + jnp.diag(z)

    def tangent(params, h, u, V):
        a_r, a_z, a_n, r, z, cand = _gates(params, h, u)
        W = params["W_hh"]
        WV = W[: 2 * n] @ V
        dsV = r[:, None] * V + (h * sigmoid_prime(a_r))[:, None] * WV[:n]
        dnV = tanh_prime(a_n)[:, None] * (W[2 * n :] @ dsV)
        dzV = sigmoid_prime(a_z)[:, None] * WV[n:]
        return jax.nn.sigmoid(-a_z)[:, None] * dnV + (h - cand)[:, None] * dzV + z[:, None] * V

    return Cell(name="gru_reset_before", recur=recur, linear=Linearization(jacobian, tangent),
                **core)  # fmt: skip

