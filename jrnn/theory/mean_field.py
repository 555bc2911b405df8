"""Mean-field theory of random recurrent networks (Poole et al. 2016; Schoenholz et al. 2017).

For ``h_{t+1} = phi(W h_t + b + u_t)`` with ``W_ij ~ N(0, sigma_w^2 / N)``,
``b_i ~ N(0, sigma_b^2)`` and an input drive ``u_t = W_xh x_t`` of per-unit
second moment ``sigma_u^2``, as ``N -> infinity`` the pre-activation of every
unit is Gaussian with variance ``q_t``:

.. math::

   q_{t+1} = \\sigma_w^2\\, \\mathbb{E}_z\\big[\\phi(\\sqrt{q_t} z)^2\\big]
             + \\sigma_b^2 + \\sigma_u^2,
   \\qquad
   \\chi = \\sigma_w^2\\, \\mathbb{E}_z\\big[\\phi'(\\sqrt{q^*} z)^2\\big],

with ``z ~ N(0, 1)``. ``chi`` is the mean squared gain of one step on a small
perturbation, so the largest Lyapunov exponent is ``0.5 ln chi``: ``chi < 1``
ordered (gradients vanish), ``chi > 1`` chaotic (they explode), ``chi = 1`` the
edge of chaos. Two copies of the network driven by the same inputs have
pre-activation correlation ``c`` obeying the correlation map (Poole et al.
2016, eq. 5); its fixed point ``c*`` and slope ``chi_c`` give the depth scales
``xi_q = -1 / ln V'(q*)`` and ``xi_c = -1 / ln chi_c`` (Schoenholz et al. 2017,
eqs. 6 and 9), the number of steps over which the variance and the correlation
of signals relax.

**Activations with a non-zero mean** (sigmoid, relu, softplus, ...). Write
``h = m 1 + dh`` with ``m = E[phi]``: ``W h = m (W 1) + W dh``. The first term is
a per-unit offset of variance ``sigma_w^2 m^2`` that is the same at every step
(quenched). We treat it as a static Gaussian input independent of the
fluctuating part (the approximation): it enters ``q`` through the second moment
``E[phi^2] = m^2 + Var phi`` exactly as above, and is shared by both copies in
the correlation map, so ``c* >= (sigma_w^2 m^2 + sigma_b^2 + sigma_u,static^2) / q*``.
``chi`` and hence the critical line are unchanged by it; inputs are what move
``g*`` (``critical_gain(..., sigma_u=...)``).

**Quadrature.** Gaussian expectations are integrated in ``z`` piecewise
between the activation's kinks (``Activation.kinks``, mapped to ``z = a /
scale``) on panels graded geometrically towards ``z = 0`` (down to ``2^-20``,
so features of width ``1 / scale`` are resolved up to ``scale ~ 10^5``) and of
width 1/2 out to ``|z| = 10``, with 16-node Gauss-Legendre on each panel: about
1e-13 relative error for every built-in activation at any gain (tests compare
with ``scipy.integrate.quad`` to 1e-8). Everything is jit-able and vmappable
over the gains.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import activations as _activations
from jrnn import validation
from jrnn.theory._quadrature import (
    check_scales,
    float_dtype,
    gaussian_expectation,
    q_chi,
    quadrature_nodes,
    variance_map,
)

__all__ = [
    "MeanField",
    "correlation_map",
    "critical_gain",
    "critical_line",
    "drive_scale",
    "gaussian_expectation",
    "mean_field",
    "quadrature_nodes",
]


def drive_scale(weight, xs, bias=None) -> jax.Array:
    """Root-mean-square input drive ``sigma_u`` of a layer, from its weight and an input sample.

    .. math::

       \\sigma_u^2 = \\frac{1}{T n} \\sum_{t, i} \\big(W_{xh} x_t\\big)_i^2
       \\quad(+\\ \\tfrac1n \\textstyle\\sum_i b_i^2 \\text{ when ``bias`` is given})

    the per-unit second moment of the input term of the pre-activation
    (including any mean of the inputs, which acts as a static bias).

    Args:
      weight: ``(n, d)`` input weights (``params["W_xh"]`` of an Elman cell).
      xs: ``(T, d)`` or ``(B, T, d)`` input sample.
      bias: optional ``(n,)`` bias whose mean square is added.

    Returns:
      ``()`` the scale ``sigma_u``.

    Raises:
      ValueError: when the feature size of ``xs`` is not ``weight.shape[1]``.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> float(jrnn.theory.drive_scale(jnp.full((3, 1), 2.0), jnp.ones((5, 1))))
        2.0
    """
    weight = jnp.asarray(weight)
    xs = jnp.asarray(xs)
    if weight.ndim != 2 or xs.ndim not in (2, 3) or xs.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"weight must be (n, d) and xs (T, d) or (B, T, d) with the same d, got weight "
            f"{weight.shape} and xs {xs.shape}."
        )
    u = xs.reshape(-1, xs.shape[-1]) @ weight.T
    second = jnp.mean(u * u)
    if bias is not None:
        second = second + jnp.mean(jnp.asarray(bias) ** 2)
    return jnp.sqrt(second)


class MeanField(NamedTuple):
    """Mean-field predictions for one gain (fields broadcast over vmapped gains).

    Fields (all ``()`` per gain; time scales in steps):
      q_star: fixed-point pre-activation variance (``inf`` where the iteration
        does not converge: unbounded activations above the critical gain).
      chi: ``sigma_w^2 E[phi'(sqrt(q*) z)^2]``, the mean squared gain per step.
      lambda_max: predicted largest Lyapunov exponent ``0.5 ln chi`` (nats per step).
      c_star: stable fixed point of the correlation map (1 in the ordered phase).
      chi_c: ``sigma_w^2 E[phi'(u_1) phi'(u_2)]`` at ``c*``, the slope of the
        correlation map there (``= chi`` where ``c* = 1``).
      xi_q: ``-1 / ln V'(q*)``, steps over which the variance relaxes.
      xi_c: ``-1 / ln chi_c``, steps over which correlations relax (``inf`` at
        the edge of chaos).
    """

    q_star: jax.Array
    chi: jax.Array
    lambda_max: jax.Array
    c_star: jax.Array = jnp.nan
    chi_c: jax.Array = jnp.nan
    xi_q: jax.Array = jnp.nan
    xi_c: jax.Array = jnp.nan


def mean_field(
    activation,
    sigma_w,
    sigma_b=0.0,
    *,
    sigma_u=0.0,
    num_points: int = 16,
    iterations: int = 100,
) -> MeanField:
    """Fixed point ``q*``, gain ``chi``, ``lambda_max``, ``c*`` and depth scales of a random RNN.

    .. math::

       q^* = \\sigma_w^2 \\mathbb{E}[\\phi(\\sqrt{q^*} z)^2] + \\sigma_b^2 + \\sigma_u^2, \\quad
       \\chi = \\sigma_w^2 \\mathbb{E}[\\phi'(\\sqrt{q^*} z)^2], \\quad
       \\lambda_{\\max} = \\tfrac12 \\ln \\chi,

       \\xi_q^{-1} = -\\ln V'(q^*), \\quad \\xi_c^{-1} = -\\ln \\chi_c, \\quad
       \\chi_c = \\sigma_w^2 \\mathbb{E}[\\phi'(u_1)\\phi'(u_2)]_{c^*}

    (Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli 2016, eqs. 3-5; Schoenholz,
    Gilmer, Ganguli & Sohl-Dickstein 2017, eqs. 6-9; Molgedey, Schuchhardt &
    Schuster 1992 for the RNN Lyapunov exponent). ``V'(q*) = sigma_w^2
    E[phi'^2 + phi phi'']`` is taken by differentiating the variance map. The
    input drive ``sigma_u`` (:func:`drive_scale`) is common to the two copies of
    the correlation map (same inputs), like the bias. ``q*`` is the stable fixed
    point reached from ``q = 1`` by ``iterations`` fixed-point steps, refined by
    safeguarded Newton steps; ``q`` is floored at ``sqrt(tiny)``. The
    correlation map integrates the pair ``(u1, u2)`` with the piecewise rule
    in both variables (the inner one re-centred on ``c u1``; about 1e-10
    relative on ``c*``, ``chi_c`` and ``xi_c`` against adaptive quadrature,
    sigma_w up to 5, every built-in activation), and ``c*`` is found by
    fixed-point steps from ``c = 0`` refined by safeguarded Newton steps.
    (Before jrnn 0.x a 48 x 48 Gauss-Hermite grid was used: it misses the
    width-``1/sqrt(q*)`` features of ``phi'`` at large ``q*`` and gave
    ``xi_c = 2.55`` for tanh at sigma_w = 4, sigma_b = 0.3, where the exact
    value is 3.6.)

    Args:
      activation: registered name or :class:`~jrnn.activations.Activation`.
      sigma_w: weight scale (``W_ij ~ N(0, sigma_w^2 / N)``); traceable, so
        ``jax.vmap(lambda g: mean_field("tanh", g))(gains)`` works.
      sigma_b: bias standard deviation (``>= 0``).
      sigma_u: root-mean-square input drive per unit (``>= 0``).
      num_points: Gauss-Legendre nodes per quadrature panel (an integer
        ``>= 1``; odd counts are as exact as even ones).
      iterations: fixed-point and Newton steps (each; an integer ``>= 1``).

    Returns:
      :class:`MeanField`.

    Raises:
      ValueError: unknown activation (the message lists the registered ones),
        a negative ``sigma_w``, ``sigma_b`` or ``sigma_u``, ``iterations`` or
        ``num_points`` below 1; TypeError: a non-integer ``iterations`` or
        ``num_points``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> mf = jrnn.theory.mean_field("relu", 1.0)
        >>> round(float(mf.chi), 6)  # sigma_w^2 / 2
        0.5
        >>> chi = jax.vmap(lambda g: jrnn.theory.mean_field("tanh", g).chi)(jnp.array([0.5, 1.0]))
        >>> [round(float(c), 6) for c in chi]
        [0.25, 1.0]
    """
    check_scales(sigma_w=sigma_w, sigma_b=sigma_b, sigma_u=sigma_u)
    num_points = validation.check_int(num_points, "num_points", low=1)
    iterations = validation.check_int(iterations, "iterations", low=1)
    act = _activations.get(activation)
    return _mean_field(act, sigma_w, sigma_b, sigma_u, num_points, iterations)


#: Gauss-Legendre nodes per panel of the 2-D rule of the correlation map (each of
#: its ~80 x 80 panels): ~1e-10 relative against adaptive quadrature (tests).
_PAIR_POINTS = 6


def _pair_expectation(fs, gs, q, c, kinks=(), num_points=_PAIR_POINTS):
    """``E[f(u1) g(u2)]`` for each pair ``(f, g)`` of ``zip(fs, gs)``, ``(u1, u2)``
    Gaussian with variances ``q`` and correlation ``c``.

    Iterated piecewise Gauss-Legendre (the 1-D rule of :func:`gaussian_expectation`
    in both variables): ``E_{z1}[f(s z1) E_{z2}[g(s c z1 + s sqrt(1 - c^2) z2)]]``,
    the inner rule re-centred on ``s c z1`` with its panels graded towards the
    inner integrand's own feature (and kinks) for every outer node. A fixed 2-D
    Gauss-Hermite grid cannot do this: at large ``q`` the features of
    ``phi'(u)`` have width ``1 / sqrt(q)`` in ``z`` and fall between its nodes.
    """
    s = jnp.sqrt(q)
    c = jnp.clip(c, -1.0, 1.0)
    a1, w1 = quadrature_nodes(s, kinks=kinks, num_points=num_points)
    inner_scale = s * jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0))

    def inner(a):
        a2, w2 = quadrature_nodes(inner_scale, mean=c * a, kinks=kinks, num_points=num_points)
        return jnp.stack([jnp.sum(w2 * g(a2)) for g in gs])

    inner_values = jax.vmap(inner)(a1)  # (nodes, len(gs))
    return tuple(jnp.sum(w1 * f(a1) * inner_values[:, i]) for i, f in enumerate(fs))


def correlation_map(activation, sigma_w, q, c, sigma_b=0.0, *, sigma_u=0.0) -> jax.Array:
    """One step of the correlation map of two copies of the network (same ``W``, ``b``, inputs).

    .. math::

       c_{t+1} = \\frac{\\sigma_w^2 \\mathbb{E}[\\phi(u_1)\\phi(u_2)] + \\sigma_b^2 + \\sigma_u^2}
                      {q^*},
       \\quad u_1 = \\sqrt{q^*} z_1,\\ u_2 = \\sqrt{q^*}(c_t z_1 + \\sqrt{1 - c_t^2} z_2)

    (Poole et al. 2016, eq. 5). Iterated piecewise Gauss-Legendre quadrature
    (:func:`mean_field`), about 1e-10 relative.

    Args:
      activation: registered name or :class:`~jrnn.activations.Activation`.
      sigma_w, q, c, sigma_b, sigma_u: scalars (traceable); ``q`` is usually ``q*``.

    Returns:
      ``()`` ``c_{t+1}``.
    """
    check_scales(sigma_w=sigma_w, sigma_b=sigma_b, sigma_u=sigma_u, q=q)
    act = _activations.get(activation)
    dtype = float_dtype(sigma_w, q, c, sigma_b, sigma_u)
    q = jnp.asarray(q, dtype)
    static2 = jnp.asarray(sigma_b, dtype) ** 2 + jnp.asarray(sigma_u, dtype) ** 2
    (pair,) = _pair_expectation((act.fn,), (act.fn,), q, jnp.asarray(c, dtype), act.kinks)
    cov = jnp.asarray(sigma_w, dtype) ** 2 * pair + static2
    return cov / q


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _mean_field(act, sigma_w, sigma_b, sigma_u, num_points, iterations) -> MeanField:
    q, chi, sw2, static2 = q_chi(act, sigma_w, sigma_b, sigma_u, num_points, iterations)
    finite = jnp.isfinite(q)
    q_f = jnp.where(finite, q, 1.0)
    V = variance_map(act, sw2, static2, num_points)
    _, dV = jax.jvp(V, (q_f,), (jnp.ones_like(q_f),))
    xi_q = jnp.where(finite, -1.0 / jnp.log(dV), jnp.nan)

    def cmap_slope(c):  # the map and its slope sw2 E[phi'(u1) phi'(u2)] (Price's theorem)
        e, de = _pair_expectation(
            (act.fn, act.derivative), (act.fn, act.derivative), q_f, c, act.kinks
        )
        return (sw2 * e + static2) / q_f, sw2 * de

    # Stable fixed point: a few fixed-point steps from c = 0 (the map is increasing
    # in c, so they rise monotonically towards the lowest fixed point), then Newton
    # steps. For c >= 0 the map is convex (its second derivative is
    # sw2 q E[phi''(u1) phi''(u2)] >= 0), so from below the fixed point Newton
    # rises monotonically without overshooting; steps are kept in [c, 1].
    def picard(_, c):
        return jnp.minimum(cmap_slope(c)[0], 1.0)

    def newton(_, c):
        m, slope = cmap_slope(c)
        step = c - (m - c) / jnp.minimum(slope - 1.0, -1e-12)
        return jnp.clip(jnp.where(jnp.isfinite(step), step, m), c, 1.0)

    c = jax.lax.fori_loop(0, 4, picard, jnp.asarray(0.0, q.dtype))
    c = jax.lax.fori_loop(0, 12, newton, c)
    c = jnp.where(chi <= 1.0, 1.0, c)  # ordered phase: c* = 1 is the stable fixed point
    chi_c = jnp.where(c >= 1.0, chi, cmap_slope(c)[1])
    xi_c = jnp.where(chi_c < 1.0, -1.0 / jnp.log(chi_c), jnp.inf)
    nan = jnp.asarray(jnp.nan, q.dtype)
    return MeanField(
        q,
        chi,
        0.5 * jnp.log(chi),
        jnp.where(finite, c, nan),
        jnp.where(finite, chi_c, nan),
        xi_q,
        jnp.where(finite, xi_c, nan),
    )


def critical_gain(
    activation,
    sigma_b=0.0,
    *,
    sigma_u=0.0,
    lower: float = 1e-2,
    upper: float = 1e2,
    bisections: int = 60,
    num_points: int = 16,
) -> jax.Array:
    """The weight scale ``sigma_w*`` with ``chi(sigma_w*) = 1`` (the edge of chaos).

    Bisection on ``log sigma_w`` in ``[lower, upper]`` (``chi`` increases with
    ``sigma_w``). The input drive ``sigma_u`` raises ``q*`` and so, for
    saturating activations, ``g*``: a network driven by inputs of scale
    ``sigma_u`` is critical at ``critical_gain(act, sigma_b, sigma_u=sigma_u)``.
    Closed forms: tanh / identity with ``sigma_b = sigma_u = 0``: 1; ReLU:
    ``sqrt(2)`` (He et al. 2015), for any drive. Returns NaN when ``chi - 1``
    does not change sign on the bracket (e.g. sigmoid with ``sigma_b = 5`` and
    ``upper = 10``: its ``chi`` grows like ``sigma_w`` and crosses 1 at 12.04,
    which the default bracket finds; ``mean_field("sigmoid", 12.04, 5.0).chi``
    is 1.0004) or
    jumps across 0 instead of crossing it: without bias or drive, gelu, silu and
    mish have a bistable variance map (``q* = 0`` and ``q* = inf`` both
    attract; which one is reached depends on the initial state), so no gain is
    critical (measured at the former "g*" 1.53 for gelu, N = 512: lambda_max =
    +0.094, the diverging branch).

    Args:
      activation: registered name or :class:`~jrnn.activations.Activation`.
      sigma_b: bias standard deviation (traceable, ``>= 0``).
      sigma_u: input drive scale (traceable, ``>= 0``; :func:`drive_scale`).
      lower, upper: bracket for ``sigma_w``, ``0 < lower < upper``.
      bisections: halvings of the log bracket (an integer ``>= 0``; 60: below
        float64 resolution).
      num_points: Gauss-Legendre nodes per quadrature panel (an integer ``>= 1``).

    Raises:
      ValueError: unknown activation, negative scales, ``lower <= 0``,
        ``lower >= upper``, a negative ``bisections``; TypeError: a
        non-number bracket, a non-integer ``bisections`` or ``num_points``.

    Example::

        >>> import jrnn
        >>> round(float(jrnn.theory.critical_gain("relu")), 4)
        1.4142
    """
    check_scales(sigma_b=sigma_b, sigma_u=sigma_u)
    lower = validation.check_number(lower, "lower", low=0.0, low_open=True)
    upper = validation.check_number(upper, "upper", low=0.0, low_open=True)
    validation.check_order(lower, upper, ("lower", "upper"))
    bisections = validation.check_int(bisections, "bisections", low=0)
    num_points = validation.check_int(num_points, "num_points", low=1)
    act = _activations.get(activation)
    return _critical_gain(act, sigma_b, sigma_u, lower, upper, bisections, num_points)


def critical_line(activation, sigma_b, *, sigma_u=0.0, **kwargs) -> jax.Array:
    """The order-to-chaos line ``sigma_w*(sigma_b)`` (Poole et al. 2016, fig. 3), vectorised.

    Args:
      activation: registered name or :class:`~jrnn.activations.Activation`.
      sigma_b: array of bias scales (any shape).
      sigma_u: input drive scale, scalar or broadcastable to ``sigma_b``.
      **kwargs: forwarded to :func:`critical_gain`.

    Returns:
      ``sigma_w*`` with the broadcast shape of ``sigma_b`` and ``sigma_u``
      (NaN where no gain on the bracket is critical).

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> line = jrnn.theory.critical_line("tanh", jnp.array([0.0, 0.3]))
        >>> bool(abs(line[0] - 1.0) < 1e-4 and 1.3 < line[1] < 1.45)
        True
    """
    check_scales(sigma_b=sigma_b, sigma_u=sigma_u)
    sb, su = jnp.broadcast_arrays(jnp.asarray(sigma_b, float), jnp.asarray(sigma_u, float))
    fn = jax.vmap(lambda b, u: critical_gain(activation, b, sigma_u=u, **kwargs))
    return fn(sb.ravel(), su.ravel()).reshape(sb.shape)


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5, 6))
def _critical_gain(act, sigma_b, sigma_u, lower, upper, bisections, num_points):
    dtype = float_dtype(sigma_b, sigma_u)

    def excess(log_g):
        return q_chi(act, jnp.exp(log_g), sigma_b, sigma_u, num_points, 100)[1] - 1.0

    lo = jnp.asarray(np.log(lower), dtype)
    hi = jnp.asarray(np.log(upper), dtype)
    bracketed = (excess(lo) < 0) & (excess(hi) > 0)

    def body(_, bounds):
        a, b = bounds
        mid = 0.5 * (a + b)
        below = excess(mid) < 0
        return jnp.where(below, mid, a), jnp.where(below, b, mid)

    a, b = jax.lax.fori_loop(0, bisections, body, (lo, hi))
    # chi jumps across 1 where the variance map is bistable (q* = 0 or inf,
    # selected by the start q = 1: gelu, silu, mish without bias or drive); no
    # gain is critical there.
    continuous = jnp.abs(excess(b) - excess(a)) < 0.05
    return jnp.where(bracketed & continuous, jnp.exp(0.5 * (a + b)), jnp.nan)
