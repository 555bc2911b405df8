"""Gated-cell mean field (GRU, LSTM) against simulated networks at initialisation: the annealed
theory (per-step gain, an annealed simulation) and the tied edge of chaos (eigenvalues of the
actual Jacobian, measured Lyapunov exponents)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.theory import gated

N, D, T, SKIP = 256, 4, 160, 60


def _measured_gain(kind, sw, su, biases, seed=0):
    """Mean over steps of ||J_t||_F^2 / S (the mean squared gain of one step) at init."""
    G = 3 if kind == "gru" else 4
    cell = jrnn.cells.gru(N) if kind == "gru" else jrnn.cells.lstm(N)
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    W = sw * jax.random.normal(k1, (G * N, N)) / np.sqrt(N)
    Wx = su * jax.random.normal(k2, (G * N, D)) / np.sqrt(D)
    b = jnp.repeat(jnp.asarray(biases, float), N)
    if kind == "gru":
        params = {"W_xh": Wx, "W_hh": W, "b_xh": b, "b_hh": jnp.zeros(G * N)}
    else:
        params = {"W_xh": Wx, "W_hh": W, "b_h": b}
    xs = jax.random.normal(k3, (T, D))
    carry = jax.tree_util.tree_map(lambda a: 0.5 * jax.random.normal(k4, a.shape),
                                   cell.initial_carry(params))
    J = jrnn.diagnostics.step_jacobians(cell, params, xs, carry=carry)[SKIP:]
    return float(jnp.mean(jnp.sum(J**2, axis=(1, 2)) / J.shape[-1])), cell, params, xs


@pytest.mark.parametrize("sw, su, biases", [
    (1.0, 0.5, (0.0, 0.0, 0.0)), (2.0, 1.0, (0.0, 0.0, 0.0)), (1.0, 0.5, (0.0, 2.0, 0.0))])
def test_gru_gain_per_step(sw, su, biases):
    """N = 256, 100 steps: ||J||_F^2 / N averages N * 100 terms, sampling error < 1%; the
    annealed theory's neglect of O(N^-1/2) self-couplings and of the time correlation of
    h and n adds ~1% (measured 0.3326 / 0.5769 / 0.7684 vs 0.3316 / 0.5849 / 0.7674):
    tolerance 4% relative."""
    chi, cell, params, xs = _measured_gain("gru", sw, su, biases)
    mf = gated.annealed_gru_mean_field(sw, sigma_u=su, bias_r=biases[0], bias_z=biases[1])
    np.testing.assert_allclose(chi, float(mf.chi), rtol=0.04)
    # predict() reads the same scales off the params and input sample
    p = jrnn.predict(cell, params, xs)
    np.testing.assert_allclose(p["chi"], float(mf.chi), rtol=0.03)


@pytest.mark.parametrize("sw, su, biases", [
    (1.0, 0.5, (0.0, 1.0, 0.0, 0.0)), (2.0, 1.0, (0.0, 0.0, 0.0, 0.0)),
    (3.0, 0.5, (0.0, -1.0, 0.0, 0.0))])
def test_lstm_gain_per_step(sw, su, biases):
    """As for the GRU, plus the Gaussian approximation of the cell state (~2%: measured
    0.4495 / 0.5964 / 1.1335 vs 0.4482 / 0.5798 / 1.1213): tolerance 5% relative."""
    chi, *_ = _measured_gain("lstm", sw, su, biases)
    b = dict(zip(("bias_i", "bias_f", "bias_g", "bias_o"), biases))
    mf = gated.annealed_lstm_mean_field(sw, sigma_u=su, **b)
    np.testing.assert_allclose(chi, float(mf.chi), rtol=0.05)


def test_gated_limits_errors_and_critical_init():
    # update gate shut / forget gate open: the carry is copied, gain 1
    assert abs(float(gated.annealed_gru_mean_field(1.0, bias_z=20.0).chi) - 1) < 1e-6
    assert float(gated.annealed_lstm_mean_field(1.0, bias_f=20.0).memory) > 1 - 1e-6
    g = float(gated.annealed_critical_scale("lstm", bias_f=1.0))
    np.testing.assert_allclose(float(gated.annealed_lstm_mean_field(g, bias_f=1.0).chi), 1.0,
                               atol=1e-6)
    g = float(gated.critical_scale("lstm", bias_f=1.0))
    np.testing.assert_allclose(float(gated.lstm_edge(g, bias_f=1.0).radius), 1.0, atol=1e-9)
    W = jrnn.initializers.critical("lstm", bias_f=1.0)(jax.random.key(0), (400, 400))
    np.testing.assert_allclose(float(jnp.std(W)) * 20, g, rtol=0.02)
    with pytest.raises(ValueError, match="covers cells"):
        gated.critical_scale("elman")
    with pytest.raises(ValueError, match="covers cells"):
        jrnn.predict(jrnn.cells.indrnn(4), {"sigma_w": 1.0})
    with pytest.raises(ValueError, match="sigma_w"):
        gated.annealed_gru_mean_field(-1.0)
    with pytest.raises(ValueError, match="per-gate"):
        gated.annealed_lstm_mean_field((1.0, 1.0))
    chi = jax.vmap(lambda s: gated.annealed_gru_mean_field(s, bias_z=1.0).chi)(jnp.array([0.5, 1.0]))
    np.testing.assert_allclose(chi[1], float(gated.annealed_gru_mean_field(1.0, bias_z=1.0).chi),
                               rtol=1e-10)
