"""Mean-field quadrature: every built-in activation against scipy.integrate.quad, Poole et al."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.theory import critical_gain, gaussian_expectation, mean_field

integrate = pytest.importorskip("scipy.integrate")


def _quad(f, s, kinks):
    """``E[f(s z)]`` by adaptive quadrature in ``a``, split at 0, the kinks, +-10^k (features of
    width 1 in ``a`` when ``s`` is large) and 4 sub-panels each."""
    L = 12.0 * s
    decades = [m * 10.0**k for k in range(-3, 6) for m in (-1, 1) if 10.0**k < L]
    edges = sorted({-L, L, 0.0, *decades, *[k for k in kinks if -L < k < L]})
    dens = lambda a: np.exp(-0.5 * (a / s) ** 2) / (s * np.sqrt(2 * np.pi))  # noqa: E731
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        grid = np.linspace(a, b, 5)
        for c, d in zip(grid[:-1], grid[1:]):
            total += integrate.quad(lambda x: float(f(x)) * dens(x), c, d,
                                    epsabs=1e-15, epsrel=1e-13, limit=200)[0]
    return total


@pytest.mark.parametrize("name", jrnn.activations.BUILTINS)
def test_every_activation_against_scipy_quad(name):
    """E[phi'(s z)^2] and E[phi(s z)^2] (the integrals of chi and of the variance map) match
    adaptive scipy quadrature to 1e-8 relative in float64, from small to huge scales
    (s = 3e4 is q = 1e9, past the large-q limit the mean field uses); sin only up to s = 10."""
    act = jrnn.activations.get(name)
    d2 = jax.jit(lambda a: act.derivative(a) ** 2)
    f2 = jax.jit(lambda a: act.fn(a) ** 2)
    scales = (0.3, 3.0, 10.0) if name == "sin" else (0.3, 3.0, 30.0, 3e4)
    for s in scales:
        got_d = gaussian_expectation(lambda a: act.derivative(a) ** 2, jnp.float64(s),
                                     kinks=act.kinks)
        got_f = gaussian_expectation(lambda a: act.fn(a) ** 2, jnp.float64(s), kinks=act.kinks)
        np.testing.assert_allclose(float(got_d), _quad(d2, s, act.kinks), rtol=1e-8)
        np.testing.assert_allclose(float(got_f), _quad(f2, s, act.kinks), rtol=1e-8)


@pytest.mark.parametrize("name", ["tanh", "softsign", "hard_tanh", "elu"])
def test_mean_field_chi_at_large_gains_against_scipy(name):
    """chi at the mean-field q* for gains 1, 5, 10 (sigma_b = 0.1) to 1e-8; q* solves the
    variance map evaluated by scipy to 1e-8."""
    act = jrnn.activations.get(name)
    d2 = lambda a: np.asarray(act.derivative(jnp.float64(a))) ** 2  # noqa: E731
    f2 = lambda a: np.asarray(act.fn(jnp.float64(a))) ** 2  # noqa: E731
    for g in (1.0, 5.0, 10.0):
        mf = mean_field(name, jnp.float64(g), 0.1)
        q = float(mf.q_star) if np.isfinite(float(mf.q_star)) else 1e8
        s = np.sqrt(q)
        np.testing.assert_allclose(float(mf.chi), g**2 * _quad(d2, s, act.kinks), rtol=1e-8)
        if np.isfinite(float(mf.q_star)):
            np.testing.assert_allclose(q, g**2 * _quad(f2, s, act.kinks) + 0.01, rtol=1e-8)


def test_poole_2016_points():
    """Poole et al. 2016 (fig. 1, tanh, sigma_b = 0.3): q* and chi to 1e-6 (their q is the
    pre-activation variance, q = sigma_w^2 E[tanh(sqrt(q) z)^2] + sigma_b^2)."""
    for sw, q, chi in [(1.3, 0.60705, 0.93981), (2.5, 4.07912, 1.58522), (4.0, 12.60415, 2.36726)]:
        mf = mean_field("tanh", jnp.float64(sw), 0.3)
        assert abs(float(mf.q_star) - q) < 1e-5 * max(q, 1) and abs(float(mf.q_star) - q) < 1e-5
        assert abs(float(mf.chi) - chi) < 1e-5


def test_softsign_critical_gain_issue_12():
    """Was 1.3985 with 64-node Gauss-Hermite (kink of softsign' at 0); the integral: 1.36105."""
    g = float(critical_gain("softsign", sigma_b=0.05))
    act = jrnn.activations.get("softsign")
    q = float(mean_field("softsign", g, 0.05).q_star)
    d2 = lambda a: np.asarray(act.derivative(jnp.float64(a))) ** 2  # noqa: E731
    np.testing.assert_allclose(g**2 * _quad(d2, np.sqrt(q), act.kinks), 1.0, rtol=1e-8)
    assert abs(g - 1.36105) < 1e-4


def test_gaussian_expectation_with_mean_and_kinks():
    # E[relu(mu + s z)] = mu Phi(mu/s) + s phi(mu/s)
    from scipy.stats import norm

    for mu, s in [(0.3, 0.01), (-1.0, 2.0), (2.0, 50.0)]:
        got = gaussian_expectation(jax.nn.relu, jnp.float64(s), mean=mu, kinks=(0.0,))
        exact = mu * norm.cdf(mu / s) + s * norm.pdf(mu / s)
        np.testing.assert_allclose(float(got), exact, rtol=1e-10)
