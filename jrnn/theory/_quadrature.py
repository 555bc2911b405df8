"""The expectation kernel shared by the theory modules: Gaussian quadrature and the variance map.

* :func:`gaussian_expectation` / :func:`quadrature_nodes`: ``E[f(mean + scale z)]``,
  ``z ~ N(0, 1)``, integrated piecewise between the integrand's kinks with
  Gauss-Legendre panels graded towards ``z = 0`` (the rule is described in
  :mod:`jrnn.theory.mean_field`); :func:`hermite`: Gauss-Hermite nodes for
  smooth (gated) integrands.
* :func:`q_chi`: the fixed point ``q*`` of the variance map
  ``V(q) = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2 + sigma_u^2`` and the gain
  ``chi = sigma_w^2 E[phi'(sqrt(q*) z)^2]``, which the mean field and the
  annealed spectra both start from.
* :func:`check_scales`, :func:`float_dtype`: the argument checks they share.

Private to :mod:`jrnn.theory` (the public names are re-exported by
:mod:`jrnn.theory.mean_field`); numpy and jax only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import validation


@functools.lru_cache(maxsize=16)
def hermite(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with ``E[f(z)] ~= sum_i w_i f(x_i)``, ``z ~ N(0, 1)``."""
    x, w = np.polynomial.hermite_e.hermegauss(num_points)
    return x, w / np.sqrt(2.0 * np.pi)


Z_MAX = 10.0  # Gaussian mass beyond |z| = 10: 1.5e-23
GRADED = 2.0 ** -np.arange(1, 21)  # 1/2 ... 2^-20: panels towards z = 0
UNIFORM = np.arange(0.5, Z_MAX + 0.25, 0.5)  # 0.5, 1, ..., 10
BREAKS = np.sort(np.concatenate([-UNIFORM, -GRADED, [0.0], GRADED, UNIFORM]))


@functools.lru_cache(maxsize=8)
def legendre(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on ``[0, 1]``."""
    x, w = np.polynomial.legendre.leggauss(num_points)
    return 0.5 * (x + 1.0), 0.5 * w


def float_dtype(*values):
    return jnp.result_type(*values, float)


def gaussian_expectation(
    fn, scale=1.0, *, mean=0.0, kinks=(), num_points: int = 16
) -> jax.Array:
    """``E[fn(mean + scale * z)]`` for ``z ~ N(0, 1)``, accurate for any ``scale >= 0``.

    .. math::

       \\mathbb{E}[f(\\mu + s z)] = \\sum_{\\text{panels } [z_j, z_{j+1}]}
         \\int_{z_j}^{z_{j+1}} f(\\mu + s z)\\, \\frac{e^{-z^2/2}}{\\sqrt{2\\pi}}\\, dz

    The panel ends are fixed (graded geometrically from ``|z| = 1/2`` down to
    ``2^-20``, then every 1/2 out to ``|z| = 10``) plus the kinks of ``fn``
    mapped to ``z = (k - mean) / scale``, so every panel holds an analytic
    integrand; each is integrated with ``num_points``-node Gauss-Legendre.
    Smooth features of width ``1 / scale`` in ``z`` are resolved for
    ``scale <~ 10^5``; oscillating ``fn`` (``sin``) needs ``scale <~ 30``.

    Args:
      fn: elementwise function of the pre-activation.
      scale: standard deviation ``s >= 0`` (traceable).
      mean: mean ``mu`` (traceable).
      kinks: points (in the pre-activation) where ``fn`` or its derivative is
        not analytic, e.g. ``Activation.kinks``.
      num_points: Gauss-Legendre nodes per panel (an integer ``>= 1``; odd and
        even both exact for polynomials of degree ``2 num_points - 1``).

    Returns:
      ``()`` array, the expectation (float64 when x64 is on and the inputs are).

    Raises:
      ValueError: a concrete negative ``scale``, ``num_points < 1``;
        TypeError: a non-integer ``num_points``.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> e = jrnn.theory.gaussian_expectation(jax.nn.relu, 2.0, kinks=(0.0,))
        >>> bool(abs(e - 2.0 / jnp.sqrt(2 * jnp.pi)) < 1e-6)
        True
    """
    check_scales(scale=scale)
    a, w = quadrature_nodes(scale, mean=mean, kinks=kinks, num_points=num_points)
    return jnp.sum(w * fn(a))


def quadrature_nodes(scale=1.0, *, mean=0.0, kinks=(), num_points: int = 16):
    """Nodes ``a`` and weights ``w`` with ``E[f(mean + scale z)] ~= sum(w * f(a))``.

    The rule of :func:`gaussian_expectation`, exposed so that several
    expectations over the same Gaussian (or a root-find over a parameter of
    the integrand) evaluate the activation once.

    Returns:
      ``(a, w)``, each of shape ``(P * num_points,)`` for ``P`` panels.
    """
    dtype = float_dtype(scale, mean)
    s = jnp.asarray(scale, dtype)
    mu = jnp.asarray(mean, dtype)
    x, w = legendre(validation.check_int(num_points, "num_points", low=1))
    x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
    breaks = jnp.asarray(BREAKS, dtype)
    if len(kinks):
        s_safe = jnp.maximum(s, jnp.finfo(dtype).tiny)
        zk = (jnp.asarray(kinks, dtype) - mu) / s_safe
        breaks = jnp.sort(jnp.concatenate([breaks, jnp.clip(zk, -Z_MAX, Z_MAX)]))
    lo, width = breaks[:-1], jnp.diff(breaks)
    z = lo[:, None] + width[:, None] * x[None, :]
    weight = (width[:, None] * w[None, :]) * jnp.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    return (mu + s * z).ravel(), weight.ravel()


def variance_map(act, sw2, static2, num_points):
    def V(q):
        e = gaussian_expectation(
            lambda a: act.fn(a) ** 2, jnp.sqrt(q), kinks=act.kinks, num_points=num_points
        )
        return sw2 * e + static2

    return V


def fixed_point(act, sw2, static2, num_points, iterations):
    """``q*``: fixed-point iteration (stable branch), then safeguarded Newton."""
    dtype = sw2.dtype
    floor = jnp.asarray(jnp.finfo(dtype).tiny, dtype) ** 0.5
    V = variance_map(act, sw2, static2, num_points)

    def picard(_, q):
        return jnp.maximum(V(q), floor)

    def newton(_, q):
        g, dg = jax.jvp(lambda s: V(s) - s, (q,), (jnp.ones_like(q),))
        # A root at 0 (e.g. relu with no bias below sqrt 2: V linear) puts the exact step at
        # 0 and its rounding a few ulp either side; below the floor it is the floor.
        step = jnp.maximum(q - g / jnp.where(dg != 0, dg, 1.0), floor)
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
    q = jnp.where(jnp.isfinite(q) & converged, q, jnp.inf)
    return jnp.where(jnp.isnan(sw2) | jnp.isnan(static2), jnp.nan, q)  # NaN in, NaN out


def check_scales(**scales) -> None:
    for name, v in scales.items():
        if isinstance(v, jax.core.Tracer):
            continue
        arr = np.asarray(v)
        if arr.dtype.kind in "fiu" and np.any(arr < 0):
            raise ValueError(
                f"{name} must be a non-negative standard deviation, got {v!r}; pass the "
                f"scale (sigma), not a signed value."
            )


# Where the variance map has no finite fixed point (q* = inf: the state blows up),
# chi is its limit as q -> inf, evaluated at this large q (every built-in f' is bounded).
DIVERGED_Q = 1e8


def q_chi(act, sigma_w, sigma_b, sigma_u, num_points, iterations):
    dtype = float_dtype(sigma_w, sigma_b, sigma_u)
    sw2 = jnp.asarray(sigma_w, dtype) ** 2
    static2 = jnp.asarray(sigma_b, dtype) ** 2 + jnp.asarray(sigma_u, dtype) ** 2
    q = fixed_point(act, sw2, static2, num_points, iterations)
    q_eval = jnp.where(jnp.isinf(q), DIVERGED_Q, q)  # q* = NaN (NaN scales): chi NaN
    chi = sw2 * gaussian_expectation(
        lambda a: act.derivative(a) ** 2, jnp.sqrt(q_eval), kinks=act.kinks, num_points=num_points
    )
    return q, chi, sw2, static2
