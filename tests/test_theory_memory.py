"""jrnn.theory.linear_memory: closed forms vs exact series vs float64 Monte Carlo."""

import jax.numpy as jnp
import numpy as np
import pytest

import jrnn


def _series(lam, rho, n=600):
    """The double series sum_{i,j} a_i conj(a_j) rho^|i-j| summed directly (truncated)."""
    i = np.arange(n)
    w_h = lam**i
    w_dh = i * lam ** np.maximum(i - 1, 0)
    R = rho ** np.abs(i[:, None] - i[None, :])
    return (np.real(w_h @ R @ np.conj(w_h)), np.real(w_dh @ R @ np.conj(w_dh)))


def _monte_carlo(lam, rho, chains=20000, steps=None, seed=0):
    """h and dh/dlam at the end of long float64 runs from a stationary input; returns the
    means of |h|^2, |dh|^2 and their standard errors."""
    rng = np.random.default_rng(seed)
    steps = steps or int(np.ceil(np.log(1e-9) / np.log(abs(lam)))) + 50
    x = rng.standard_normal(chains)
    h = np.zeros(chains, dtype=complex)
    dh = np.zeros(chains, dtype=complex)
    s = np.sqrt(1 - rho**2)
    for _ in range(steps):
        dh = lam * dh + h  # d/dlam of h_t = lam h_{t-1} + x_t
        h = lam * h + x
        x = rho * x + s * rng.standard_normal(chains)
    a, b = np.abs(h) ** 2, np.abs(dh) ** 2
    return a.mean(), b.mean(), a.std() / np.sqrt(chains), b.std() / np.sqrt(chains)


@pytest.mark.parametrize(
    "lam, rho", [(0.9, 0.0), (0.8, 0.5), (-0.7, 0.3), (0.6, -0.6), (0.85 * np.exp(0.7j), 0.4)]
)
def test_closed_forms_match_the_series_and_monte_carlo(lam, rho):
    m = jrnn.theory.linear_memory(lam, rho)
    sh, sdh = _series(lam, rho)
    np.testing.assert_allclose(float(m.var_h), sh, rtol=1e-10)
    np.testing.assert_allclose(float(m.var_dh), sdh, rtol=1e-10)
    a, b, ea, eb = _monte_carlo(lam, rho)
    assert abs(float(m.var_h) - a) < 4 * ea
    assert abs(float(m.var_dh) - b) < 4 * eb
    np.testing.assert_allclose(float(m.ratio), sdh / sh, rtol=1e-10)


def test_white_noise_forms_and_divergence():
    lam = jnp.array([0.5, 0.9, 0.99, 0.999])
    m = jrnn.theory.linear_memory(lam)
    np.testing.assert_allclose(m.var_h, 1 / (1 - lam**2), rtol=1e-12)
    np.testing.assert_allclose(m.var_dh, (1 + lam**2) / (1 - lam**2) ** 3, rtol=1e-12)
    assert np.all(np.diff(np.asarray(m.ratio)) > 0)  # the curse: the ratio grows with memory


def test_complex_equals_real_on_the_real_axis_and_vmaps():
    a = jrnn.theory.linear_memory(0.7 + 0j, 0.2)
    b = jrnn.theory.linear_memory(0.7, 0.2)
    np.testing.assert_allclose([a.var_h, a.var_dh], [b.var_h, b.var_dh], rtol=1e-14)
    grid = jrnn.theory.linear_memory(jnp.linspace(0.1, 0.9, 5), jnp.array([[0.0], [0.5]]))
    assert grid.var_h.shape == (2, 5)


@pytest.mark.parametrize(
    "lam, rho, match",
    [(1.0, 0.0, "lam must have modulus < 1"), (0.5, -1.0, "rho must have modulus < 1"),
     (np.inf, 0.0, "lam must be finite"), (0.5, 1.2, "no stationary unit-variance input"),
     (0.99j + 0.2, 0.0, "no stationary state")],
)
def test_out_of_range_raises_naming_the_argument(lam, rho, match):
    with pytest.raises(ValueError, match=match):
        jrnn.theory.linear_memory(lam, rho)


def test_complex_rho_and_strings_are_type_errors():
    with pytest.raises(TypeError, match="rho"):
        jrnn.theory.linear_memory(0.5, 0.1j)
    with pytest.raises(TypeError, match="lam"):
        jrnn.theory.linear_memory("0.5")


def test_nan_in_nan_out():
    m = jrnn.theory.linear_memory(jnp.array([0.5, jnp.nan]), 0.1)
    assert np.isfinite(m.var_h[0]) and np.isnan(m.var_h[1]) and np.isnan(m.ratio[1])
    assert np.isnan(jrnn.theory.linear_memory(0.5, np.nan).var_dh)
