"""Random-matrix predictions: the annealed Lyapunov spectrum and singular values of products.

Both treat the step Jacobians of a random Elman net ``J_t = D_t W`` with
``D_t = diag(phi'(sqrt(q*) z_t))`` as free (asymptotically independent,
rotation-invariant) factors: the *annealed* approximation, in which the
diagonal of every step is drawn afresh and ``W`` is not correlated with it.

**Lyapunov spectrum** (Newman 1986 for Gaussian products; Tucci 2010 and
Kargin 2014 for free products). For products of i.i.d. isotropic matrices
``A_t`` the Lyapunov exponent at fraction ``x = k / N`` from the top is
``lambda(x) = -0.5 ln S(-x)`` with ``S`` the S-transform of ``A^T A``. For
``A = D W``, ``W_ij ~ N(0, sigma_w^2 / N)``, ``S = S_{D^2} / (sigma_w^2 (1 + z))``,
which reduces to a one-dimensional root find:

.. math::

   \\mathbb{E}_z\\Big[\\frac{d\\, t}{1 + d\\, t}\\Big] = x, \\quad
   d = \\phi'(\\sqrt{q^*} z)^2, \\qquad
   \\lambda(x) = \\tfrac12 \\ln \\frac{\\sigma_w^2\\, x}{t(x)}.

As ``x -> 0`` it gives ``0.5 ln chi``; for ``D = I`` Newman's triangle law
``0.5 ln(sigma_w^2 (1 - x))``. Fractions ``x`` beyond ``P(d > 0)`` (ReLU:
1/2) get ``-inf``: those directions are annihilated every step. The method:
bisection on ``ln t`` (monotone), 80 halvings, with the expectation on the fixed
piecewise Gauss-Legendre rule of :func:`~jrnn.theory.quadrature_nodes`
(``phi'`` evaluated once): about 1e-12 per exponent, ``O(N)`` work.

**Singular values of products** (Pennington, Schoenholz & Ganguli 2017, 2018).
For ``J = prod_{t=1}^T D_t W`` the squared singular values have S-transform
``S_J = (S_{D^2} S_{W W^T})^T``; expanding ``S(z) = (1 - v z + ...) / m_1``:

.. math::

   m_1 = \\chi^T, \\qquad
   \\frac{m_2}{m_1^2} - 1 = T\\Big(\\frac{\\mathbb{E}[d^2]}{\\mathbb{E}[d]^2} - 1
   + s_W\\Big), \\quad s_W = 1 \\text{ (Gaussian)}, 0 \\text{ (orthogonal)},

(their eq. 13-16), and the upper support edge is ``1 / max_{z > 0} chi_J(z)``
with ``chi_J(z) = S_J(z) z / (1 + z)``. The lower edge is 0 for Gaussian ``W``
and for every activation whose ``phi'`` is not bounded away from zero.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn.theory._quadrature import DIVERGED_Q, check_scales, q_chi, quadrature_nodes
from jrnn.validation import check_int

__all__ = [
    "AnnealedSpectrum",
    "ProductSingularValues",
    "annealed_spectrum",
    "product_singular_values",
]


class AnnealedSpectrum(NamedTuple):
    """Predicted Lyapunov spectrum of a random Elman net (annealed random-matrix theory).

    Fields:
      exponents: ``(N,)`` descending, nats per step (``-inf`` where annihilated).
      kaplan_yorke: ``()`` Kaplan-Yorke dimension of ``exponents``.
      entropy_rate: ``()`` sum of the positive exponents (nats per step, Pesin).
      q_star: ``()`` the mean-field variance used.
    """

    exponents: jax.Array
    kaplan_yorke: jax.Array
    entropy_rate: jax.Array
    q_star: jax.Array


def _d_rule(act, q):
    a, w = quadrature_nodes(jnp.sqrt(q), kinks=act.kinks)
    return act.derivative(a) ** 2, w


def _solve_t(d, w, x):
    """``t`` with ``sum(w d t / (1 + d t)) = x`` (bisection on ``ln t``); ``inf`` if none."""

    def F(log_t):
        t = jnp.exp(log_t)
        return jnp.sum(w * d * t / (1.0 + d * t))

    lo = jnp.asarray(-80.0, d.dtype)
    hi = jnp.asarray(80.0, d.dtype)

    def body(_, b):
        a, c = b
        m = 0.5 * (a + c)
        below = F(m) < x
        return jnp.where(below, m, a), jnp.where(below, c, m)

    a, c = jax.lax.fori_loop(0, 80, body, (lo, hi))
    return jnp.where(F(hi) >= x, jnp.exp(0.5 * (a + c)), jnp.inf)


def annealed_spectrum(
    activation, sigma_w, n: int, sigma_b=0.0, *, sigma_u=0.0
) -> AnnealedSpectrum:
    """The annealed random-matrix prediction of all ``n`` Lyapunov exponents.

    ``lambda_k = 0.5 ln(sigma_w^2 x_k / t(x_k))`` with ``x_k = (k - 1/2) / n`` and
    ``t`` from ``E[d t / (1 + d t)] = x`` (module docstring). Tracks the bulk
    of measured spectra of large chaotic networks; the edges carry ``O(1/N)``
    and quenched-disorder corrections.

    Args:
      activation: registered name or :class:`~jrnn.activations.Activation`.
      sigma_w: weight scale (traceable).
      n: number of units (static).
      sigma_b, sigma_u: bias and input-drive scales (traceable, ``>= 0``).

    Returns:
      :class:`AnnealedSpectrum`.

    Raises:
      TypeError: ``n`` not an integer.
      ValueError: unknown activation, negative scales or ``n < 1``.

    Example::

        >>> import jrnn
        >>> s = jrnn.theory.spectra.annealed_spectrum("identity", 1.0, 4)
        >>> [round(float(l), 4) for l in s.exponents]  # 0.5 ln(1 - x), x = 1/8, 3/8, ...
        [-0.0668, -0.235, -0.4904, -1.0397]
    """
    check_scales(sigma_w=sigma_w, sigma_b=sigma_b, sigma_u=sigma_u)
    n = check_int(n, "n (the number of units)", low=1)
    act = _activations.get(activation)
    return _annealed(act, sigma_w, sigma_b, sigma_u, n)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _annealed(act, sigma_w, sigma_b, sigma_u, n):
    q, chi, sw2, _ = q_chi(act, sigma_w, sigma_b, sigma_u, 16, 100)

    d, w = _d_rule(act, jnp.where(jnp.isfinite(q), q, DIVERGED_Q))
    x = (jnp.arange(n, dtype=sw2.dtype) + 0.5) / n
    t = jax.vmap(lambda xi: _solve_t(d, w, xi))(x)
    lam = 0.5 * jnp.log(sw2 * x / t)
    partial = jnp.cumsum(jnp.where(jnp.isfinite(lam), lam, -jnp.inf))
    j = jnp.sum(partial >= 0)
    s_j = jnp.where(j > 0, partial[jnp.clip(j - 1, 0, n - 1)], 0.0)
    nxt = jnp.abs(lam[jnp.clip(j, 0, n - 1)])
    ky = jnp.where(j == 0, 0.0, jnp.where(j == n, float(n), j + s_j / nxt))
    ky = jnp.where(jnp.isfinite(q), ky, jnp.nan)
    entropy = jnp.sum(jnp.where(lam > 0, lam, 0.0))
    return AnnealedSpectrum(lam, ky, entropy, q)


class ProductSingularValues(NamedTuple):
    """Predicted squared singular values of ``d h_T / d h_0`` (Pennington et al. 2017).

    Fields (``()`` each):
      mean: ``m_1 = chi^T``, mean of the squared singular values.
      normalised_variance: ``m_2 / m_1^2 - 1``.
      upper_edge: right end of the support of the squared singular values.
      lower_edge: left end (0 where the theory says so, else NaN: not computed).
    """

    mean: jax.Array
    normalised_variance: jax.Array
    upper_edge: jax.Array
    lower_edge: jax.Array


def _chi_inverse(d, w, z):
    """``u`` in ``(0, 1 / max d)`` with ``psi(u) = E[d u / (1 - d u)] = z``; NaN if none."""
    dmax = jnp.max(jnp.where(w > 0, d, 0.0))

    def psi(u):
        return jnp.sum(w * d * u / (1.0 - d * u))

    def body(_, b):
        a, c = b
        m = 0.5 * (a + c)
        below = psi(m / dmax) < z
        return jnp.where(below, m, a), jnp.where(below, c, m)

    a, c = jax.lax.fori_loop(0, 80, body, (jnp.zeros_like(z), jnp.ones_like(z)))
    u = 0.5 * (a + c) / dmax
    return jnp.where(jnp.abs(psi(u) - z) <= 1e-6 * z, u, jnp.nan)


def product_singular_values(
    activation, sigma_w, depth: int, sigma_b=0.0, *, weights: str = "gaussian", sigma_u=0.0
) -> ProductSingularValues:
    """Moments and upper edge of the squared singular values of a ``depth``-step Jacobian.

    Args:
      activation: registered name or :class:`~jrnn.activations.Activation`.
      sigma_w: weight scale (traceable); orthogonal ``W`` is ``sigma_w`` times
        a Haar-orthogonal matrix.
      depth: number of steps ``T`` in the product (static, ``>= 1``).
      sigma_b, sigma_u: bias and input-drive scales (traceable, ``>= 0``).
      weights: ``"gaussian"`` or ``"orthogonal"``.

    Returns:
      :class:`ProductSingularValues`.

    Raises:
      TypeError: ``depth`` not an integer.
      ValueError: unknown activation or ``weights``, negative scales, ``depth < 1``.

    Example::

        >>> import jrnn
        >>> p = jrnn.theory.spectra.product_singular_values("identity", 1.0, 1)
        >>> [round(float(v), 4) for v in (p.mean, p.normalised_variance, p.upper_edge)]
        [1.0, 1.0, 4.0]
    """
    check_scales(sigma_w=sigma_w, sigma_b=sigma_b, sigma_u=sigma_u)
    if weights not in ("gaussian", "orthogonal"):
        raise ValueError(f"weights must be 'gaussian' or 'orthogonal', got {weights!r}.")
    depth = check_int(depth, "depth (the number of steps)", low=1)
    act = _activations.get(activation)
    return _products(act, sigma_w, sigma_b, sigma_u, depth, weights == "gaussian")


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _products(act, sigma_w, sigma_b, sigma_u, depth, gaussian):
    q, chi, sw2, _ = q_chi(act, sigma_w, sigma_b, sigma_u, 16, 100)
    d, w = _d_rule(act, jnp.where(jnp.isfinite(q), q, 1.0))
    m1 = jnp.sum(w * d)
    m2 = jnp.sum(w * d * d)
    s_w = 1.0 if gaussian else 0.0
    var = depth * (m2 / (m1 * m1) - 1.0 + s_w)
    # chi_J(z) = z / (1 + z) * (S_d(z) S_W(z))^T, S_d(z) = chi_d(z) (1 + z) / z.
    zs = jnp.exp(jnp.linspace(-9.0, 5.0, 1401, dtype=m1.dtype))

    def log_chi(z):
        u = _chi_inverse(d, w, z)
        log_sd = jnp.log(u) + jnp.log1p(z) - jnp.log(z)
        log_sw = -jnp.log(sw2) - (jnp.log1p(z) if gaussian else 0.0)
        return jnp.log(z) - jnp.log1p(z) + depth * (log_sd + log_sw)

    lc = jax.vmap(log_chi)(zs)
    upper = jnp.exp(-jnp.nanmax(lc))
    lower = jnp.where(gaussian | (jnp.min(jnp.where(w > 0, d, jnp.inf)) < 1e-12), 0.0, jnp.nan)
    finite = jnp.isfinite(q)
    nan = jnp.nan
    return ProductSingularValues(
        jnp.where(finite, chi**depth, nan),
        jnp.where(finite, var, nan),
        jnp.where(finite, upper, nan),
        jnp.where(finite, lower, nan),
    )
