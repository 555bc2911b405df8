"""Closed-form derivatives of the built-in activations, accurate in the tails.

Each keeps full float32 relative accuracy wherever the true value is a normal
number: no ``1 - tanh^2``, ``s (1 - s)`` or ``1 + erf`` forms that round to 0
or cancel in the tails. :func:`tanh_prime` and :func:`sigmoid_prime` are public
(``jrnn.activations.tanh_prime``; the gated cells use them); the others are the
derivatives :mod:`jrnn.activations.builtins` registers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = [
    "SELU_ALPHA",
    "SELU_SCALE",
    "gelu_prime",
    "gelu_tanh_prime",
    "mish",
    "mish_prime",
    "sigmoid_prime",
    "silu_prime",
    "tanh_prime",
]

Array = jax.Array

_SQRT2 = math.sqrt(2.0)
#: SELU's alpha (Klambauer et al. 2017): the negative saturation value is -alpha * scale.
SELU_ALPHA = 1.6732632423543772848170429916717
#: SELU's scale lambda (Klambauer et al. 2017): the self-normalising fixed point (0, 1).
SELU_SCALE = 1.0507009873554804934193349852946


def tanh_prime(a: Array) -> Array:
    """``tanh'(a) = sech^2(a)`` to full relative accuracy for every ``a``.

    .. math::

       \\mathrm{sech}^2(a) = \\frac{4 e^{-2|a|}}{(1 + e^{-2|a|})^2}

    ``1 - tanh(a)^2`` rounds to exactly 0 once ``tanh(a)`` rounds to 1
    (``|a| >~ 9`` in float32, ``~19`` in float64), which turns a tiny but
    finite Jacobian entry into a ``-inf`` Lyapunov exponent. This form only
    underflows where the true value is below the smallest normal number.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> float(jrnn.activations.tanh_prime(jnp.float32(12.0))) > 0
        True
    """
    a = jnp.asarray(a)
    e = jnp.exp(-2.0 * jnp.abs(a))
    return 4.0 * e / (1.0 + e) ** 2


def sigmoid_prime(a: Array) -> Array:
    """``sigmoid'(a) = s(a)(1 - s(a))`` to full relative accuracy for every ``a``.

    .. math::

       \\sigma'(a) = \\frac{e^{-|a|}}{(1 + e^{-|a|})^2}

    ``s (1 - s)`` rounds to 0 once ``s`` rounds to 1 (``a >~ 17`` in float32).

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> float(jrnn.activations.sigmoid_prime(jnp.float32(30.0))) > 0
        True
    """
    a = jnp.asarray(a)
    e = jnp.exp(-jnp.abs(a))
    return e / (1.0 + e) ** 2


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


def gelu_prime(x: Array) -> Array:
    """``d/dx [x Phi(x)] = Phi(x) + x phi(x)`` with ``Phi(x) = erfc(-x / sqrt 2) / 2``.

    ``(1 + erf(x / sqrt 2)) / 2`` cancels to 0 for ``x <~ -5.5`` in float32.
    """
    x = jnp.asarray(x)
    cdf = 0.5 * jax.scipy.special.erfc(-x / _SQRT2)
    return cdf + x * jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def gelu_tanh_prime(x: Array) -> Array:
    """Derivative of ``x (1 + tanh u) / 2 = x s(2u)``, ``u = c (x + k x^3)``.

    ``s(2u) (1 + 2 x u' s(-2u))``: no ``1 + tanh`` or ``1 - tanh^2`` that
    cancels or underflows in the tails.
    """
    x = jnp.asarray(x)
    two_u = 2.0 * _GELU_C * (x + _GELU_K * x**3)
    du = _GELU_C * (1.0 + 3.0 * _GELU_K * x * x)
    return jax.nn.sigmoid(two_u) * (1.0 + 2.0 * x * du * jax.nn.sigmoid(-two_u))


def silu_prime(x: Array) -> Array:
    """``silu'(x) = s(x) (1 + x s(-x))``: ``1 - s(x)`` would cancel for large ``x``."""
    return jax.nn.sigmoid(x) * (1.0 + x * jax.nn.sigmoid(-x))


def mish(x: Array) -> Array:
    """``mish(x) = x tanh(softplus(x))`` (Misra 2019)."""
    return x * jnp.tanh(jax.nn.softplus(x))


def mish_prime(x: Array) -> Array:
    """``mish'(x) = tanh(sp) + x sech^2(sp) s(x)``, ``sp = softplus(x)``."""
    sp = jax.nn.softplus(x)
    return jnp.tanh(sp) + x * tanh_prime(sp) * jax.nn.sigmoid(x)
