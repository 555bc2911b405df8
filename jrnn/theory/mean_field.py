"""Mean-field theory of random recurrent networks (Poole et al. 2016; Schoenholz et al. 2017).

For ``h_{t+1} = phi(W h_t + b)`` with ``W_ij ~ N(0, sigma_w^2 / N)`` and
``b_i ~ N(0, sigma_b^2)``, as ``N -> infinity`` the pre-activation of every unit
is Gaussian with variance ``q_t``:

.. math::

   q_{t+1} = \\sigma_w^2\\, \\mathbb{E}_z\\big[\\phi(\\sqrt{q_t} z)^2\\big] + \\sigma_b^2,
   \\qquad
   \\chi = \\sigma_w^2\\, \\mathbb{E}_z\\big[\\phi'(\\sqrt{q^*} z)^2\\big],

with ``z ~ N(0, 1)``. ``chi`` is the mean squared gain of one step on a small
perturbation, so the largest Lyapunov exponent is ``0.5 ln chi``: ``chi < 1``
ordered (gradients vanish), ``chi > 1`` chaotic (they explode), ``chi = 1`` the
edge of chaos. Gaussian expectations use Gauss-Hermite quadrature; everything
is jit-able and vmappable over the gains.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import activations as _activations

__all__ = ["MeanField", "critical_gain", "gaussian_expectation", "mean_field"]


@functools.lru_cache(maxsize=16)
def _hermite(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with ``E[f(z)] ~= sum_i w_i f(x_i)``, ``z ~ N(0, 1)``."""
    x, w = np.polynomial.hermite_e.hermegauss(num_points)
    return x, w / np.sqrt(2.0 * np.pi)


_SINH_POINTS = 2000  # even: symmetric nodes, none at 0 (kinks at 0 exact)


def _float_dtype(*values):
    return jnp.result_type(*values, float)


def gaussian_expectation(fn, scale=1.0, *, num_points: int = 64) -> jax.Array:
    """``E[fn(scale * z)]`` for ``z ~ N(0, 1)``, accurate for any ``scale >= 0``.

    For ``scale <= 1`` the integrand is smooth on the Gaussian's width and
    ``num_points``-node Gauss-Hermite quadrature in ``z`` is used (exact for
    polynomials of degree ``< 2 num_points``; symmetric nodes make kinks at 0,
    as in ReLU, exact too). For ``scale > 1`` the activation's features (the
    ``O(1)`` region where ``tanh'`` lives) become spikes in ``z``, so the
    integral is taken in ``a = scale * z`` on the grid ``a = sinh(v)``,
    uniform in ``v`` with ``_SINH_POINTS`` nodes (fine near 0, coarse in the
    tails; the trapezoid rule converges geometrically for smooth integrands).
    """
    x, w = _hermite(int(num_points))
    dtype = _float_dtype(scale)
    s = jnp.asarray(scale, dtype)
    x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
    gh = jnp.sum(w * fn(jnp.minimum(s, 1.0) * x))
    # Trapezoid in v with a = sinh(v), v in [-V, V], V = asinh(10 s); no node at 0.
    s_big = jnp.maximum(s, 1.0)
    V = jnp.arcsinh(10.0 * s_big)
    v = jnp.linspace(-1.0, 1.0, _SINH_POINTS, dtype=dtype) * V
    a = jnp.sinh(v)
    density = jnp.exp(-0.5 * (a / s_big) ** 2) / (s_big * np.sqrt(2.0 * np.pi))
    dv = 2.0 * V / (_SINH_POINTS - 1)
    sinh_rule = dv * jnp.sum(fn(a) * density * jnp.cosh(v))
    return jnp.where(s <= 1.0, gh, sinh_rule)


class MeanField(NamedTuple):
    """Mean-field predictions for one gain (fields broadcast over vmapped gains).

    Fields:
      q_star: ``()`` fixed-point pre-activation variance (``inf`` where the
        iteration does not converge: unbounded activations above the critical
        gain, where the variance grows without bound).
      chi: ``()`` ``sigma_w^2 E[phi'(sqrt(q*) z)^2]``.
      lambda_max: ``()`` predicted largest Lyapunov exponent ``0.5 ln chi``.
    """

    q_star: jax.Array
    chi: jax.Array
    lambda_max: jax.Array


def _fixed_point(act, sigma_w, sigma_b, num_points, iterations):
    """``q*``: fixed-point iteration (stable branch), then safeguarded Newton."""
    dtype = _float_dtype(sigma_w, sigma_b)
    sw2 = jnp.asarray(sigma_w, dtype) ** 2
    sb2 = jnp.asarray(sigma_b, dtype) ** 2
    floor = jnp.asarray(jnp.finfo(dtype).tiny, dtype) ** 0.5

    def V(q):
        return (
            sw2 * gaussian_expectation(lambda a: act.fn(a) ** 2, jnp.sqrt(q), num_points=num_points)
            + sb2
        )

    def picard(_, q):
        return jnp.maximum(V(q), floor)

    def newton(_, q):
        g, dg = jax.jvp(lambda s: V(s) - s, (q,), (jnp.ones_like(q),))
        step = q - g / jnp.where(dg != 0, dg, 1.0)
        good = (
            (jnp.sign(step - q) == jnp.sign(V(q) - q))
            & jnp.isfinite(step)
            & (step >= 0)
            & (jnp.abs(V(jnp.maximum(step, floor)) - step) <= jnp.abs(g))
        )
        return jnp.maximum(jnp.where(good, step, V(q)), floor)

    q = jax.lax.fori_loop(0, iterations, picard, jnp.asarray(1.0, dtype))
    q = jax.lax.fori_loop(0, iterations, newton, q)
    converged = (jnp.abs(V(q) - q) <= 1e-3 * q) | (q <= 2.0 * floor)
    return jnp.where(jnp.isfinite(q) & converged, q, jnp.inf)


def mean_field(
    activation,
    sigma_w,
    sigma_b=0.0,
    *,
    num_points: int = 64,
    iterations: int = 100,
) -> MeanField:
    """Fixed point ``q*``, gain ``chi`` and predicted ``lambda_max`` of a random RNN.

    .. math::

       q^* = \\sigma_w^2 \\mathbb{E}[\\phi(\\sqrt{q^*} z)^2] + \\sigma_b^2, \\quad
       \\chi = \\sigma_w^2 \\mathbb{E}[\\phi'(\\sqrt{q^*} z)^2], \\quad
       \\lambda_{\\max} = \\tfrac12 \\ln \\chi

    (Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli 2016; Molgedey, Schuchhardt
    & Schuster 1992 for the RNN Lyapunov exponent). ``q*`` is the stable fixed
    point reached from ``q = 1`` by ``iterations`` fixed-point steps, refined by
    ``iterations`` safeguarded Newton steps (so the slow, critical approach
    ``q_t ~ 1/t`` at ``chi = 1`` still converges); ``q`` is floored at
    ``sqrt(tiny)`` so ``phi'`` is evaluated just off zero (ReLU: ``E = 1/2``).

    Args:
      activation: registered name or :class:`~jrnn.activations.Activation`.
      sigma_w: weight scale (``W_ij ~ N(0, sigma_w^2 / N)``); a traced scalar,
        so ``jax.vmap(lambda g: mean_field("tanh", g))(gains)`` works.
      sigma_b: bias standard deviation.
      num_points: Gauss-Hermite nodes (even, so no node sits at 0).
      iterations: fixed-point and Newton steps (each).

    Returns:
      :class:`MeanField`.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> mf = jrnn.theory.mean_field("relu", 2.0)
        >>> float(mf.chi)  # sigma_w^2 / 2
        2.0
        >>> jax.vmap(lambda g: jrnn.theory.mean_field("tanh", g).chi)(jnp.array([0.5, 1.0]))
        Array([0.25, 1.  ], dtype=float32)
    """
    return _mean_field(_activations.get(activation), sigma_w, sigma_b, num_points, iterations)


# Where the variance map has no finite fixed point (q* = inf: the state blows up),
# chi is its limit as q -> inf, evaluated at this large q (every built-in f' is bounded).
_DIVERGED_Q = 1e8


# Compiled once per (activation, sizes): the quadrature loops are otherwise retraced
# on every eager call. Nested inside a user's jit / vmap it is inlined as usual.
@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _mean_field(act, sigma_w, sigma_b, num_points, iterations) -> MeanField:
    q = _fixed_point(act, sigma_w, sigma_b, num_points, iterations)
    dtype = q.dtype
    sw2 = jnp.asarray(sigma_w, dtype) ** 2
    chi = sw2 * gaussian_expectation(
        lambda a: act.derivative(a) ** 2,
        jnp.sqrt(jnp.where(jnp.isfinite(q), q, _DIVERGED_Q)),
        num_points=num_points,
    )
    return MeanField(q, chi, 0.5 * jnp.log(chi))


def critical_gain(
    activation,
    sigma_b=0.0,
    *,
    lower: float = 1e-2,
    upper: float = 1e2,
    bisections: int = 60,
    num_points: int = 64,
) -> jax.Array:
    """The weight scale ``sigma_w*`` with ``chi(sigma_w*) = 1`` (the edge of chaos).

    Bisection on ``log sigma_w`` in ``[lower, upper]`` (``chi`` increases with
    ``sigma_w``). Closed forms: tanh / identity with ``sigma_b = 0``: 1;
    ReLU: ``sqrt(2)`` (He et al. 2015). Returns NaN when ``chi - 1`` does not
    change sign on the bracket (e.g. sigmoid with large ``sigma_b``).

    Args:
      activation: registered name or :class:`~jrnn.activations.Activation`.
      sigma_b: bias standard deviation (traceable).
      lower, upper: bracket for ``sigma_w``.
      bisections: halvings of the log bracket (60: below float64 resolution).
      num_points: Gauss-Hermite nodes.

    Example::

        >>> import jrnn
        >>> round(float(jrnn.theory.critical_gain("relu")), 6)
        1.414214
    """
    act = _activations.get(activation)
    return _critical_gain(act, sigma_b, float(lower), float(upper), int(bisections), num_points)


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4, 5))
def _critical_gain(act, sigma_b, lower, upper, bisections, num_points):
    dtype = _float_dtype(sigma_b)

    def excess(log_g):
        return _mean_field(act, jnp.exp(log_g), sigma_b, num_points, 100).chi - 1.0

    lo = jnp.asarray(np.log(lower), dtype)
    hi = jnp.asarray(np.log(upper), dtype)
    bracketed = (excess(lo) < 0) & (excess(hi) > 0)

    def body(_, bounds):
        a, b = bounds
        mid = 0.5 * (a + b)
        below = excess(mid) < 0
        return jnp.where(below, mid, a), jnp.where(below, b, mid)

    a, b = jax.lax.fori_loop(0, bisections, body, (lo, hi))
    return jnp.where(bracketed, jnp.exp(0.5 * (a + b)), jnp.nan)
