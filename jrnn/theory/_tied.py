"""Tied-weight edge of chaos of gated cells (GRU, LSTM): the quiescent state's spectral radius.

Users train networks whose recurrent weights ``W_g ~ N(0, sigma_g^2 / N)`` are drawn once
(tied), not redrawn every step (the annealed mean field of :mod:`jrnn.theory.gated`). With
tied weights the carry path ``z h`` (``f c``) adds coherently with the recurrent one, and the
edge of the quiescent (fixed-point) state is a random-matrix question: the step Jacobian at the
fixed point is a diagonal matrix plus a random matrix with a row-dependent variance profile.

**The fixed point.** With no input, the state relaxes to the fixed point of one step, a static
(quenched) mean field: every unit ``k`` has its own biases and static Gaussian fields
``xi_g ~ N(0, sigma_g^2 Q)`` (``Q = <h^2>`` over units), so

- GRU: ``h = n = tanh(b_in + r (b_hn + xi_n))``, ``r = s(b_r + xi_r)``, ``z = s(b_z + xi_z)``;
- LSTM: ``c = i g / (1 - f)``, ``h = o tanh(c)`` with ``i, f, o = s(b + xi)``,
  ``g = tanh(b_g + xi_g)``;

``Q`` is iterated from 0 (the quiescent branch: ``Q = 0`` when the candidate biases vanish).

**The spectral radius.** GRU: ``J = D_z + X`` with ``X`` a random matrix of row variances
``v_k / N``, ``v_k = (1-z_k)^2 n'_k^2 (r_k^2 sigma_n^2 + a_hn,k^2 s'(a_r,k)^2 sigma_r^2)``.
``J - lambda`` is singular where ``X - (lambda - D_z)`` is: for a diagonal shift the circular
law (deformed Ginibre; Khoruzhenko 1996, Ahmadian, Fumarola & Miller 2015) puts ``lambda`` on
the support iff

.. math::

   F(\\lambda) = \\Big\\langle \\frac{v_k}{|\\lambda - z_k|^2} \\Big\\rangle \\ge 1,

and the spectral radius ``rho`` is the largest real root of ``F(rho) = 1`` (``z_k >= 0``, so the
rightmost point is farthest from 0). With one bias value: a disk of radius
``(1 - z) r sigma_n`` centred at ``z``. LSTM, state ``(h, c)`` (a ``2N x 2N`` block matrix
``[[B + K A, K F], [A, F]]`` with ``A = dc'/dh``, ``B = D_{t s'_o} W_o``, ``K = D_{o t'}``,
``F = D_f``, ``t = tanh(c)``): subtracting ``K`` times the second block row and taking the Schur
complement of ``F - lambda`` gives
``det(J - lambda) = det(F - lambda) det(B + D_e A - lambda)``, ``e_k = lambda o_k t'_k /
(lambda - f_k)``, a random matrix with row variances, so

.. math::

   F(\\lambda) = \\Big\\langle \\frac{\\sigma_o^2 t_k^2 s'(a_{o,k})^2}{\\lambda^2}
     + \\frac{o_k^2 t_k'^2\\, V_{A,k}}{(\\lambda - f_k)^2} \\Big\\rangle = 1, \\qquad
   V_A = \\sigma_f^2 c^2 s'(a_f)^2 + \\sigma_i^2 g^2 s'(a_i)^2 + \\sigma_g^2 i^2 g'^2.

At the quiescent state of zero biases: ``sigma_g <i o g' / (1 - f)> = 1`` (``sigma_w = 2`` at
``b_f = 0``, ``1.08`` at ``b_f = 1``); GRU: ``sigma_n <r n'> = 1`` (``sigma_w = 2``; the update
gate sets the centre, not the crossing: ``F(1) = <n'^2 (r^2 sigma_n^2 + ...)>``).

**What it predicts, and how far.** For ``rho < 1`` the quiescent state is stable and the largest
Lyapunov exponent is ``ln rho`` (exact as ``N -> inf``; at finite ``N`` the largest eigenvalue
of one draw fluctuates by ``O(N^{-1/2})``). ``rho = 1`` is the edge: ``critical_scale``. For
``rho > 1`` the state is active (chaotic or oscillating); its exponent and ``q_h`` need the
two-time (dynamic) mean field (Can, Krishnamurthy & Schwab 2020; Krishnamurthy, Can & Schwab
2022) and are reported as NaN, flagged ``active``. With input (``sigma_u > 0``) the input field
is treated as one more quenched field per unit (the *quenched-gate approximation*): a
heuristic, see :func:`jrnn.predict` for its measured accuracy. Units whose diagonal gate is
near 1 carry eigenvalues near ``z_k`` (localised modes): the radius is at least the largest
diagonal value among the units, taken as the gate value that one unit in ``m`` exceeds (``m``
the length of the bias vectors; 256 for scalar biases), and gate values above it are capped
there in ``F``. With biases ~ U(-2, 2) these modes set the radius (measured N = 128: largest
``f_k`` 0.902, largest ``|eig|`` 0.901).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jrnn.activations import sigmoid_prime, tanh_prime
from jrnn.theory._quadrature import hermite

NODES = 12  # Gauss-Hermite nodes per field (smooth integrands)
#: Nodes for the field of the diagonal (carry) gate.
DIAGONAL_NODES = 5
#: Units assumed when the biases are scalars: the localised-mode bound is the gate value that one
#: unit in this many exceeds (per-unit bias vectors use their own length).
UNITS = 256


def _top(b, sd, units):
    """Pre-activation ``a*`` that one unit in ``units`` exceeds: ``<P(b_k + sd x > a*)> = 1 /
    units`` over the units ``b (m, 1)`` and ``x ~ N(0, 1)`` (bisection; ``max b`` at ``sd =
    0``)."""
    b = b[:, 0]
    scale = jnp.maximum(sd, 1e-12)
    tail = lambda a: jnp.mean(jax.scipy.special.ndtr((b - a) / scale))  # noqa: E731

    def body(_, ac):
        a, c = ac
        m = 0.5 * (a + c)
        up = tail(m) > 1.0 / units
        return jnp.where(up, m, a), jnp.where(up, c, m)

    lo, hi = jnp.min(b) - 10 * scale, jnp.max(b) + 10 * scale
    a, c = jax.lax.fori_loop(0, 80, body, (lo, hi))
    return 0.5 * (a + c)


class TiedEdge(NamedTuple):
    """Tied-weight quiescent state of a gated network (``()`` each).

    Fields:
      q_h: ``<h^2>`` at the quiescent fixed point (NaN where ``active``).
      radius: spectral radius ``rho`` of the step Jacobian there (``N -> inf``).
      log_radius: ``ln rho``, nats per step: the largest Lyapunov exponent when ``rho < 1``
        (NaN where ``active``: the active state's exponent is not derived).
      memory: ``<z>`` (GRU) or ``<f>`` (LSTM), the mean of the diagonal carry path.
      active: ``rho > 1``: the quiescent state is unstable (chaos or oscillation).
    """

    q_h: jax.Array
    radius: jax.Array
    log_radius: jax.Array
    memory: jax.Array
    active: jax.Array


def _units(dtype, *biases):
    """Bias values broadcast to one flat ``(m,)`` vector each (``m = 1`` for scalars)."""
    arrs = jnp.broadcast_arrays(*(jnp.asarray(b, dtype) for b in biases))
    return [a.reshape(-1) for a in arrs]


def _grid(dtype, *sizes):
    """Tensor-product Gauss-Hermite rule, one size per field: nodes ``(1, P)`` each, weights
    ``(1, P)``."""
    rules = [tuple(jnp.asarray(a, dtype) for a in hermite(n)) for n in sizes]
    mesh = jnp.meshgrid(*(x for x, _ in rules), indexing="ij")
    W = functools.reduce(lambda a, b: a * b,
                         jnp.meshgrid(*(w for _, w in rules), indexing="ij"))
    return [a.ravel()[None, :] for a in mesh], W.ravel()[None, :]


def _root(F, lo, hi, bisections=60):
    """Largest ``rho`` in ``(lo, hi]`` with ``F(rho) = 1`` (``F`` decreasing there, ``F(hi) <=
    1``); ``lo`` when ``F(lo+) < 1``. Bisection in ``log(rho - lo)``."""
    span = hi - lo

    def body(_, b):
        a, c = b
        m = 0.5 * (a + c)
        above = F(lo + span * jnp.exp(m)) >= 1
        return jnp.where(above, m, a), jnp.where(above, c, m)

    a, c = jax.lax.fori_loop(0, bisections, body, (jnp.log(1e-12), jnp.asarray(0.0, span.dtype)))
    return lo + span * jnp.exp(0.5 * (a + c))


#: ``rho`` above ``1 + MARGIN`` is active: the bisection puts ``rho`` within 1e-12 of 1 at
#: :func:`critical_scale`, which is marginal (``ln rho = 0``), not active.
MARGIN = 1e-9


def _finish(Q, rho, memory):
    active = rho > 1.0 + MARGIN
    nan = jnp.nan
    return TiedEdge(jnp.where(active, nan, Q), rho,
                    jnp.where(active, nan, jnp.log(jnp.minimum(rho, 1.0))), memory, active)


@functools.partial(jax.jit, static_argnums=(7,))
def gru_edge(sw2, su2, sb2, b_r, b_z, b_in, b_hn, iterations):
    dtype = sw2["n"].dtype
    b_r, b_z, b_in, b_hn = (b[:, None] for b in _units(dtype, b_r, b_z, b_in, b_hn))
    (xr, xn, xi), w3 = _grid(dtype, NODES, NODES, NODES)
    (x1,), w1 = _grid(dtype, DIAGONAL_NODES)
    sd = lambda Q, g: jnp.sqrt(sw2[g] * Q + su2[g] + sb2)  # noqa: E731

    def fields(Q):
        a_r = b_r + sd(Q, "r") * xr
        a_hn = b_hn + jnp.sqrt(sw2["n"] * Q + sb2) * xn
        a_in = b_in + jnp.sqrt(su2["n"] + sb2) * xi
        r = jax.nn.sigmoid(a_r)
        return a_r, a_hn, r, a_in + r * a_hn

    def update(Q):
        *_, a_n = fields(Q)
        return jnp.mean(jnp.sum(w3 * jnp.tanh(a_n) ** 2, axis=1))

    Q = jax.lax.fori_loop(0, iterations, lambda _, q: update(q), jnp.asarray(0.0, dtype))
    a_r, a_hn, r, a_n = fields(Q)
    G = jnp.sum(w3 * tanh_prime(a_n) ** 2 * (r * r * sw2["n"]
                                             + (a_hn * sigmoid_prime(a_r)) ** 2 * sw2["r"]),
                axis=1, keepdims=True)  # (m, 1): v_k / (1 - z_k)^2
    units = b_z.shape[0] if b_z.shape[0] > 1 else UNITS
    lo = jax.nn.sigmoid(_top(b_z, sd(Q, "z"), units))  # the largest z_k: localised modes
    z = jnp.minimum(jax.nn.sigmoid(b_z + sd(Q, "z") * x1), lo)  # (m, NODES)
    F = lambda rho: jnp.mean(jnp.sum(w1 * G * ((1 - z) / (rho - z)) ** 2, axis=1))  # noqa: E731
    rho = _root(F, lo, lo + jnp.sqrt(jnp.mean(G)) + 1e-9)
    return _finish(Q, rho, jnp.mean(jnp.sum(w1 * z, axis=1)))


@functools.partial(jax.jit, static_argnums=(7,))
def lstm_edge(sw2, su2, sb2, b_i, b_f, b_g, b_o, iterations):
    dtype = sw2["f"].dtype
    b_i, b_f, b_g, b_o = (b[:, None] for b in _units(dtype, b_i, b_f, b_g, b_o))
    (xi, xf, xg), w3 = _grid(dtype, NODES, DIAGONAL_NODES, NODES)
    (x1,), w1 = _grid(dtype, NODES)
    sd = lambda Q, g: jnp.sqrt(sw2[g] * Q + su2[g] + sb2)  # noqa: E731

    def fields(Q):
        a_i, a_f, a_g = b_i + sd(Q, "i") * xi, b_f + sd(Q, "f") * xf, b_g + sd(Q, "g") * xg
        a_o = b_o + sd(Q, "o") * x1
        i, f, g = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g)
        # c = i g / (1 - f), with 1 - f = s(-a_f) (no cancellation)
        c = i * g / jax.nn.sigmoid(-a_f)
        return a_i, a_f, a_g, a_o, i, f, g, c

    E3 = lambda v: jnp.sum(w3 * v, axis=1)  # noqa: E731
    E1 = lambda v: jnp.sum(w1 * v, axis=1)  # noqa: E731

    def update(Q):
        *_, a_o, _, _, _, c = fields(Q)
        return jnp.mean(E1(jax.nn.sigmoid(a_o) ** 2) * E3(jnp.tanh(c) ** 2))

    Q = jax.lax.fori_loop(0, iterations, lambda _, q: update(q), jnp.asarray(0.0, dtype))
    a_i, a_f, a_g, a_o, i, f, g, c = fields(Q)
    VA = (sw2["f"] * (c * sigmoid_prime(a_f)) ** 2 + sw2["i"] * (g * sigmoid_prime(a_i)) ** 2
          + sw2["g"] * (i * tanh_prime(a_g)) ** 2)
    t1 = tanh_prime(c) ** 2
    A_o = sw2["o"] * E1(sigmoid_prime(a_o) ** 2) * E3(jnp.tanh(c) ** 2)  # (m,)
    Eo2 = E1(jax.nn.sigmoid(a_o) ** 2)

    units = b_f.shape[0] if b_f.shape[0] > 1 else UNITS
    lo = jax.nn.sigmoid(_top(b_f, sd(Q, "f"), units))  # the largest f_k: localised modes
    f_cap = jnp.minimum(f, lo)

    def F(rho):
        return jnp.mean(A_o / rho**2 + Eo2 * E3(t1 * VA / (rho - f_cap) ** 2))

    hi = lo + jnp.sqrt(jnp.mean(A_o)) + jnp.sqrt(jnp.mean(Eo2 * E3(t1 * VA))) + 1e-9
    rho = _root(F, lo, hi)
    return _finish(Q, rho, jnp.mean(E3(f)))
