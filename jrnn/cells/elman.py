"""Elman cells and their remedies: the seed's RNN, IRNN and residual RNN.

.. math::

   h_t = f(W_{hh} h_{t-1} + W_{xh} x_t + b_h)                 \\quad\\text{(elman, irnn)}

   h_t = h_{t-1} + \\alpha f(W_{hh} h_{t-1} + W_{xh} x_t + b_h)  \\quad\\text{(residual)}

with exact step Jacobians ``diag(f'(a_t)) W_hh`` and
``I + alpha diag(f'(a_t)) W_hh``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn import initializers as inits
from jrnn import validation as _validation
from jrnn.cells.base import Cell, check_positive_int
from jrnn.cells.fused import FusedRule

__all__ = ["elman", "irnn", "residual"]


def _elman_family(
    name: str,
    hidden_size: int,
    activation,
    *,
    alpha: float | None,
    input_init,
    recurrent_init,
    bias_init,
    use_bias: bool,
    config: tuple,
) -> Cell:
    n = check_positive_int(hidden_size, "hidden_size")
    use_bias = _validation.check_bool(use_bias, "use_bias")
    act = _activations.get(activation)
    f, df = act.fn, act.derivative

    def init(key, input_size):
        d = check_positive_int(input_size, "input_size")
        k_x, k_h, k_b = jax.random.split(key, 3)
        params = {"W_xh": input_init(k_x, (n, d)), "W_hh": recurrent_init(k_h, (n, n))}
        if use_bias:
            params["b_h"] = bias_init(k_b, (n,))
        return params

    def initial_carry(params):
        return jnp.zeros((n,), params["W_hh"].dtype)

    def input_map(params, x):
        u = params["W_xh"] @ x
        return u + params["b_h"] if use_bias else u

    def preactivation(params, h, u):
        return params["W_hh"] @ h + u

    if alpha is None:

        def recur(params, h, u):
            h_new = f(preactivation(params, h, u))
            return h_new, h_new

        def jacobian(params, h, u):
            return df(preactivation(params, h, u))[:, None] * params["W_hh"]

        def tangent(params, h, u, V):
            return df(preactivation(params, h, u))[:, None] * (params["W_hh"] @ V)

    else:

        def recur(params, h, u):
            h_new = h + alpha * f(preactivation(params, h, u))
            return h_new, h_new

        def jacobian(params, h, u):
            d = alpha * df(preactivation(params, h, u))
            return jnp.eye(n, dtype=d.dtype) + d[:, None] * params["W_hh"]

        def tangent(params, h, u, V):
            d = alpha * df(preactivation(params, h, u))
            return V + d[:, None] * (params["W_hh"] @ V)

    def param_spec(d):
        spec = {"W_xh": ((n, d), "f"), "W_hh": ((n, n), "f")}
        return {**spec, "b_h": ((n,), "f")} if use_bias else spec

    return Cell(
        name=name,
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
        recurrent_matrix=lambda params: params["W_hh"],
        param_spec=param_spec,
        fused_rule=_fused_rule(act, alpha, use_bias),
        config=(("activation", act.name),) + config,
    )


def _fused_rule(act, alpha: float | None, use_bias: bool) -> FusedRule:
    """Batch-major step of ``h' = f(a)`` or ``h + alpha f(a)``, ``a = u + hh``.

    Residual: ``D = f'(a)`` (times ``alpha``), from the pre-activation with the
    activation's own derivative (full relative accuracy for tanh and sigmoid).
    Tangent ``dh' = D (du + dhh) (+ dh)``; backward ``delta = D dh'``.
    """
    f, df = act.fn, act.derivative

    def weights(params):
        W_xh, W_hh = params["W_xh"], params["W_hh"]
        b = params["b_h"] if use_bias else jnp.zeros(W_xh.shape[0], W_xh.dtype)
        return W_xh, b, W_hh, None

    def forward(carry, u, hh, with_res):
        (h,) = carry
        a = u + hh
        y = f(a)
        h_new = y if alpha is None else h + alpha * y
        if not with_res:
            return (h_new,), ()
        D = df(a) if alpha is None else alpha * df(a)
        return (h_new,), (D,)

    def tangent(res, dprev, du, dhh):
        dh = res[0] * (du + dhh)
        return (dh,) if alpha is None else (dprev[0] + dh,)

    def backward(res, dnew):
        (dh,) = dnew
        delta = res[0] * dh
        direct = jnp.zeros_like(dh) if alpha is None else dh
        return (direct,), delta, delta

    return FusedRule(1, weights, forward, tangent, backward)


def elman(
    hidden_size: int,
    activation="tanh",
    *,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
    use_bias: bool = True,
) -> Cell:
    """Elman (simple) RNN: ``h_t = f(W_hh h_{t-1} + W_xh x_t + b_h)``.

    The seed article's RNN and Keras' ``SimpleRNN``. Defaults follow Keras:
    Glorot-uniform ``W_xh``, orthogonal ``W_hh``, zero bias.

    Args:
      hidden_size: ``n``.
      activation: a registered name or :class:`~jrnn.activations.Activation`.
      input_init, recurrent_init, bias_init: initialisers for ``W_xh (n, d)``,
        ``W_hh (n, n)``, ``b_h (n,)``.
      use_bias: include ``b_h``.

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.elman(8, "relu")
        >>> params = cell.init(jax.random.key(0), 3)
        >>> _, hs = jrnn.unroll(cell, params, jax.numpy.ones((5, 3)))
        >>> hs.shape
        (5, 8)
    """
    return _elman_family(
        "elman",
        hidden_size,
        activation,
        alpha=None,
        input_init=input_init or inits.glorot_uniform(),
        recurrent_init=recurrent_init or inits.orthogonal(),
        bias_init=bias_init,
        use_bias=use_bias,
        config=(),
    )


def irnn(
    hidden_size: int,
    *,
    scale: float = 1.0,
    input_std: float = 0.001,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
) -> Cell:
    """IRNN (Le, Jaitly & Hinton 2015): ReLU Elman cell with ``W_hh = scale * I``.

    At initialisation every step Jacobian on active units is the identity, so
    gradients neither vanish nor explode along the active subspace. Input
    weights ``N(0, input_std^2)`` as in the paper.
    """

    scale = _validation.check_number(scale, "scale")
    input_std = _validation.check_number(input_std, "input_std", low=0.0)

    def small_normal(key, shape, dtype=jnp.float32):
        return input_std * jax.random.normal(key, shape, dtype)

    return _elman_family(
        "irnn",
        hidden_size,
        "relu",
        alpha=None,
        input_init=input_init or small_normal,
        recurrent_init=recurrent_init or inits.identity(scale),
        bias_init=bias_init,
        use_bias=True,
        config=(("scale", scale),),
    )


def residual(
    hidden_size: int,
    activation="tanh",
    alpha: float = 1.0,
    *,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
    use_bias: bool = True,
) -> Cell:
    """Residual RNN: ``h_t = h_{t-1} + alpha * f(W_hh h_{t-1} + W_xh x_t + b_h)``.

    The skip connection adds the identity to every step Jacobian,
    ``J_t = I + alpha diag(f'(a_t)) W_hh``, so ``d h_T / d h_t`` no longer
    shrinks geometrically (the seed's third remedy). Initialisers default as
    in :func:`elman`; a small ``alpha`` keeps the product of Jacobians near 1.
    """
    alpha = _validation.check_number(alpha, "alpha")
    return _elman_family(
        "residual",
        hidden_size,
        activation,
        alpha=alpha,
        input_init=input_init or inits.glorot_uniform(),
        recurrent_init=recurrent_init or inits.orthogonal(),
        bias_init=bias_init,
        use_bias=use_bias,
        config=(("alpha", alpha),),
    )
