"""Mean-field theory: closed forms, Monte Carlo, and simulated random tanh networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.theory import critical_gain, gaussian_expectation, mean_field


def test_closed_forms_relu_identity():
    for g in (0.5, 1.0, 1.3):
        mf = mean_field("relu", g, 0.4)
        np.testing.assert_allclose(mf.chi, g**2 / 2, rtol=1e-10)
        np.testing.assert_allclose(mf.q_star, 0.4**2 / (1 - g**2 / 2), rtol=1e-8)
        np.testing.assert_allclose(mean_field("identity", g).chi, g**2, rtol=1e-12)
    assert np.isinf(mean_field("relu", 2.0, 0.1).q_star)  # variance explodes above sqrt(2)
    np.testing.assert_allclose(mean_field("relu", 2.0, 0.1).chi, 2.0, rtol=1e-6)
    np.testing.assert_allclose(critical_gain("relu"), np.sqrt(2), rtol=1e-10)
    np.testing.assert_allclose(critical_gain("identity"), 1.0, rtol=1e-10)
    np.testing.assert_allclose(critical_gain("tanh"), 1.0, rtol=1e-8)
    # tanh below criticality with sigma_b = 0: q* = 0, chi = sigma_w^2 tanh'(0)^2.
    np.testing.assert_allclose(mean_field("tanh", 0.7).chi, 0.49, rtol=1e-8)


def test_gaussian_expectation_exact_and_monte_carlo():
    for s in (0.3, 1.0, 4.0, 40.0):
        np.testing.assert_allclose(gaussian_expectation(lambda a: a**4, s), 3 * s**4, rtol=1e-8)
    z = np.random.default_rng(0).standard_normal(400_000)
    for s in (0.5, 2.0, 30.0):
        mc = np.mean((1 - np.tanh(s * z) ** 2) ** 2)
        se = np.std((1 - np.tanh(s * z) ** 2) ** 2) / np.sqrt(z.size)
        assert abs(gaussian_expectation(lambda a: (1 - jnp.tanh(a) ** 2) ** 2, s) - mc) < 4 * se


@pytest.mark.parametrize("activation, sigma_w", [("tanh", 1.7), ("sigmoid", 1.7), ("gelu", 1.2)])
def test_fixed_point_and_chi_against_monte_carlo(activation, sigma_w):
    """(GELU grows like ReLU, so its q* is finite only below sigma_w ~ sqrt(2).)"""
    act = jrnn.activations.get(activation)
    sigma_b = 0.3
    mf = mean_field(activation, sigma_w, sigma_b)
    z = np.random.default_rng(1).standard_normal(400_000)
    a = np.sqrt(float(mf.q_star)) * z
    q_mc = sigma_w**2 * np.mean(np.asarray(act.fn(a)) ** 2) + sigma_b**2
    chi_mc = sigma_w**2 * np.mean(np.asarray(act.derivative(a)) ** 2)
    np.testing.assert_allclose(mf.q_star, q_mc, rtol=5e-3)
    np.testing.assert_allclose(mf.chi, chi_mc, rtol=5e-3)
    np.testing.assert_allclose(mf.lambda_max, 0.5 * np.log(mf.chi), rtol=1e-12)


def test_vmap_and_jit_over_gains():
    gains = jnp.array([0.5, 1.0, 1.5, 3.0])
    batched = jax.jit(jax.vmap(lambda g: mean_field("tanh", g, 0.1)))(gains)
    for i, g in enumerate(gains):
        one = mean_field("tanh", float(g), 0.1)
        np.testing.assert_allclose(batched.chi[i], one.chi, rtol=1e-10)
        np.testing.assert_allclose(batched.q_star[i], one.q_star, rtol=1e-10)
    g_star = jax.jit(lambda b: critical_gain("tanh", b))(0.3)
    np.testing.assert_allclose(mean_field("tanh", g_star, 0.3).chi, 1.0, atol=1e-8)
    assert isinstance(jrnn.initializers.critical("tanh"), type(lambda: None))


def test_lyapunov_of_simulated_random_tanh_network():
    """N = 200 units, h_{t+1} = tanh(W h_t), W_ij ~ N(0, g^2 / N), 200 steps after a 100-step
    warmup, one network per gain: the largest Lyapunov exponent (lyapunov_spectrum, k=1)
    matches 0.5 ln chi within 0.04 in the chaotic phase (g > 1; measured deviations
    <= 0.02), and within 0.1 for g = 0.8, where h -> 0 and the exponent is
    ln(spectral radius of W), whose finite-N fluctuations are larger."""
    N, T = 200, 300
    cell = jrnn.cells.elman(N, "tanh")

    @jax.jit
    def simulate(g, key):
        k_w, k_h = jax.random.split(key)
        W = g * jax.random.normal(k_w, (N, N), jnp.float64) / np.sqrt(N)
        params = {"W_xh": jnp.zeros((N, 1)), "W_hh": W, "b_h": jnp.zeros(N)}
        h0 = jax.random.normal(k_h, (N,), jnp.float64)
        spec = jrnn.diagnostics.lyapunov_spectrum(
            cell, params, jnp.zeros((T, 1)), carry=h0, k=1, warmup=100
        )
        return spec.exponents[0]

    for i, (g, tol) in enumerate([(0.8, 0.1), (1.5, 0.04), (2.5, 0.04), (4.0, 0.04)]):
        measured = simulate(g, jax.random.key(i))
        predicted = mean_field("tanh", g).lambda_max
        assert abs(measured - predicted) < tol, (g, float(measured), float(predicted))


def test_diverging_variance_uses_the_large_q_limit():
    """softplus ~ relu for large inputs: once q* = inf, chi -> sigma_w^2 / 2, so g* = sqrt(2).

    (A fallback that evaluated chi at q = 1 put g* at 1.85, far from the simulated
    transition at about 1.44.)
    """
    mf = jrnn.theory.mean_field("softplus", 3.0)
    assert not np.isfinite(float(mf.q_star))
    np.testing.assert_allclose(float(mf.chi), 4.5, rtol=1e-3)
    np.testing.assert_allclose(float(jrnn.theory.critical_gain("softplus")), np.sqrt(2), rtol=1e-3)


def test_relu_fixed_point_is_zero_just_below_the_critical_gain():
    """relu without bias or drive: q -> sigma_w^2 q / 2, so q* = 0 for sigma_w < sqrt(2) and
    lambda_max = ln sigma_w - ln 2 / 2 (closed form), eager and under jax.jit. Was q* = inf at
    1.41 (eager) and 1.408 (jitted): the Newton step to the root at 0 came out a few ulp below
    0, was refused, and the remaining fixed-point steps (rate chi ~ 0.99) did not converge."""
    jitted = jax.jit(lambda s: mean_field("relu", s, 0.0).q_star)
    for s in (1.40, 1.405, 1.408, 1.41, 1.413):
        mf = mean_field("relu", s, 0.0)
        np.testing.assert_allclose(float(mf.lambda_max), np.log(s) - 0.5 * np.log(2), atol=1e-6)
        assert float(mf.q_star) < 1e-100, (s, float(mf.q_star))
        assert float(jitted(s)) < 1e-100, (s, float(jitted(s)))


def test_nan_scale_gives_nan_not_a_plausible_exponent():
    """A NaN sigma_b or sigma_u made q* = inf ("no fixed point") and lambda_max = -4.92 (tanh,
    sigma_w = 1), a plausible number computed from NaN; NaN in, NaN out (as linear_memory)."""
    for kw in ({"sigma_b": float("nan")}, {"sigma_b": 0.1, "sigma_u": float("nan")}):
        mf = mean_field("tanh", 1.0, **kw)
        assert np.isnan(float(mf.q_star)) and np.isnan(float(mf.lambda_max)), (kw, mf)
