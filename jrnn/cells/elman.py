"""Elman cells and their remedies: the seed's RNN, IRNN and residual RNN.

.. math::

   h_t = f(W_{hh} h_{t-1} + W_{xh} x_t + b_h)                 \\quad\\text{(elman, irnn)}

   h_t = h_{t-1} + \\alpha f(W_{hh} h_{t-1} + W_{xh} x_t + b_h)  \\quad\\text{(residual)}

with exact step Jacobians ``diag(f'(a_t)) W_hh`` and
``I + alpha diag(f'(a_t)) W_hh``: members of the pointwise family
(:mod:`jrnn.cells._pointwise`), with its fused rule and Pascanu bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn import initializers as inits
from jrnn import validation as _validation
from jrnn.cells._pointwise import pointwise_cell
from jrnn.cells.base import Cell

__all__ = ["elman", "irnn", "residual"]


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
    return pointwise_cell(
        "elman",
        hidden_size,
        activation,
        input_init=input_init or inits.glorot_uniform(),
        recurrent_init=recurrent_init or inits.orthogonal(),
        bias_init=bias_init,
        use_bias=use_bias,
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

    return pointwise_cell(
        "irnn",
        hidden_size,
        "relu",
        input_init=input_init or small_normal,
        recurrent_init=recurrent_init or inits.identity(scale),
        bias_init=bias_init,
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
    return pointwise_cell(
        "residual",
        hidden_size,
        activation,
        beta=1.0,
        alpha=alpha,
        input_init=input_init or inits.glorot_uniform(),
        recurrent_init=recurrent_init or inits.orthogonal(),
        bias_init=bias_init,
        use_bias=use_bias,
        config=(("alpha", alpha),),
    )
