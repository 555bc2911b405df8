"""jrnn.diagnostics.memory_capacity: the Krylov leverage identity vs the Lyapunov-equation
formula and closed forms, held-out regression vs the oracle, and the naive estimator's failure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import jrnn


def _linear(W, u):
    cell = jrnn.cells.elman(W.shape[0], "identity")
    return cell, {"W_xh": jnp.asarray(u)[:, None], "W_hh": jnp.asarray(W),
                  "b_h": jnp.zeros(W.shape[0])}


def _network(n=4, seed=0, radius=0.8):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n))
    W *= radius / np.max(np.abs(np.linalg.eigvals(W)))
    return W, rng.standard_normal(n)


def test_krylov_oracle_matches_the_lyapunov_equation_formula():
    W, u = _network()
    cell, params = _linear(W, u)
    mc = jrnn.diagnostics.memory_capacity(cell, params, max_delay=60)
    assert mc.method == "krylov" and mc.linear and int(mc.rank) == 4
    G = scipy.linalg.solve_discrete_lyapunov(W, np.outer(u, u))  # Gamma = W Gamma W^T + u u^T
    want = [np.linalg.matrix_power(W, k) @ u for k in range(61)]
    want = np.array([v @ np.linalg.solve(G, v) for v in want])
    np.testing.assert_allclose(mc.curve, want, atol=1e-8)
    np.testing.assert_allclose(mc.total, 4.0, atol=1e-6)  # rank K over (nearly) all delays


def test_scalar_closed_form_and_mask_neutrality():
    lam = 0.9
    cell, params = _linear(np.array([[lam]]), np.array([2.0]))
    mc = jrnn.diagnostics.memory_capacity(cell, params, max_delay=20)
    k = np.arange(21)
    np.testing.assert_allclose(mc.curve, (1 - lam**2) * lam ** (2 * k), rtol=1e-10)
    W, u = _network(seed=1)
    a = jrnn.diagnostics.memory_capacity(*_linear(W, u), max_delay=40)
    b = jrnn.diagnostics.memory_capacity(*_linear(W, 3 * u + np.array([0, 1, 0, 0.0])),
                                         max_delay=40)
    np.testing.assert_allclose(a.curve, b.curve, atol=1e-8)  # independent of the input mask


def test_lru_total_is_its_real_state_size():
    cell = jrnn.cells.lru(3, r_min=0.5, r_max=0.9)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64),
                                    cell.init(jax.random.key(0), 1))
    mc = jrnn.diagnostics.memory_capacity(cell, params, max_delay=400)
    assert mc.method == "krylov" and int(mc.rank) == 6
    np.testing.assert_allclose(mc.total, 6.0, atol=1e-6)


def test_regression_agrees_with_the_oracle_on_a_linear_cell():
    W, u = _network(seed=2)
    cell, params = _linear(W, u)
    oracle = jrnn.diagnostics.memory_capacity(cell, params, max_delay=25)
    reg = jrnn.diagnostics.memory_capacity(cell, params, max_delay=25, method="regression",
                                           samples=20_000, key=jax.random.key(1))
    assert reg.method == "regression" and np.all(reg.stderr > 0)
    assert np.all(np.abs(reg.curve - oracle.curve) < 4 * reg.stderr + 0.01)
    assert abs(float(reg.total - oracle.total)) < 0.15


def test_nonlinear_cell_uses_regression_and_small_inputs_approach_the_linearization():
    W, u = _network(n=5, seed=3, radius=0.7)
    cell = jrnn.cells.elman(5, "tanh")
    params = {"W_xh": jnp.asarray(u)[:, None], "W_hh": jnp.asarray(W), "b_h": jnp.zeros(5)}
    small = jrnn.diagnostics.memory_capacity(cell, params, max_delay=15, input_scale=0.01)
    assert small.method == "regression" and not small.linear
    lin = jrnn.diagnostics.memory_capacity(cell, params, max_delay=15, method="krylov")
    assert np.all(np.abs(small.curve - lin.curve) < 4 * small.stderr + 0.01)
    big = jrnn.diagnostics.memory_capacity(cell, params, max_delay=15, input_scale=3.0)
    assert float(big.total) < float(small.total) - 0.3  # saturation costs memory


def _naive_in_sample(states, z, max_delay, washout):
    """The estimator of much of the literature: least squares fitted and scored on the same
    samples (sample covariance inverted), summed over many delays."""
    X = states[washout:]
    X = X - X.mean(0)
    out = []
    for k in range(max_delay + 1):
        y = z[washout - k: len(z) - k]
        y = y - y.mean()
        w = np.linalg.lstsq(X, y, rcond=None)[0]
        out.append(np.corrcoef(X @ w, y)[0, 1] ** 2)
    return np.array(out)


def test_naive_in_sample_estimator_breaks_the_rank_bound():
    n, max_delay, samples = 10, 150, 300
    W, u = _network(n=n, seed=4, radius=0.9)
    cell, params = _linear(W, u)
    rng = np.random.default_rng(0)
    washout = 200
    z = rng.standard_normal(washout + samples)
    _, hs = jrnn.unroll(cell, params, jnp.asarray(z)[:, None])
    naive = _naive_in_sample(np.asarray(hs), z, max_delay, washout)
    assert naive.sum() > n + 2  # impossible: MC <= rank = n (Gonon et al. 2020)
    sound = jrnn.diagnostics.memory_capacity(cell, params, max_delay=max_delay)
    assert float(sound.total) <= n + 1e-6
    reg = jrnn.diagnostics.memory_capacity(cell, params, max_delay=max_delay,
                                           method="regression", samples=2 * samples)
    assert float(reg.total) < n + 1  # held out: no in-sample inflation


def test_bad_arguments_and_nan():
    cell, params = _linear(*_network())
    mc = jrnn.diagnostics.memory_capacity
    with pytest.raises(ValueError, match="method must be one of"):
        mc(cell, params, method="naive")
    with pytest.raises(ValueError, match="max_delay must be an integer >= 0, got -1"):
        mc(cell, params, max_delay=-1)
    with pytest.raises(ValueError, match="input_scale"):
        mc(cell, params, input_scale=0.0)
    with pytest.raises(ValueError, match=r"input_direction must have shape \(1,\)"):
        mc(cell, params, input_direction=jnp.ones(2))
    with pytest.raises(ValueError, match="samples"):
        mc(cell, params, samples=10)
    nan = mc(cell, dict(params, W_hh=params["W_hh"].at[0, 0].set(jnp.nan)), max_delay=5)
    assert np.all(np.isnan(nan.curve)) and np.isnan(nan.total)
    unstable = mc(*_linear(np.array([[1.0]]), np.array([1.0])), max_delay=5, method="krylov")
    assert np.all(np.isnan(unstable.curve))  # |lambda| = 1: no stationary state
