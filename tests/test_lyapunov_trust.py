"""Trust in Lyapunov numbers (issue 12): error bars, sum-rule residual, round-off flags,
undetermined Kaplan-Yorke dimension / entropy, NaN input, fixed-point starts."""

import jax
import jax.numpy as jnp
import numpy as np

import jrnn
from jrnn.diagnostics import kaplan_yorke_dimension, lyapunov_spectrum


def _linear(W):
    n = W.shape[0]
    cell = jrnn.cells.elman(n, "identity", use_bias=False)
    return cell, {"W_xh": jnp.ones((n, 1)), "W_hh": jnp.asarray(W, jnp.float64)}


def test_kaplan_yorke_nan_input_and_truncated_spectra():
    assert np.isnan(kaplan_yorke_dimension(jnp.array([jnp.nan, -0.2])))
    assert np.isnan(kaplan_yorke_dimension(jnp.array([0.3, 0.1]), state_size=5))
    assert kaplan_yorke_dimension(jnp.array([0.3, 0.1]), state_size=2) == 2
    cell, params = _linear(np.diag([1.5, 1.2, 0.5]))
    xs = jnp.zeros((20, 1))
    part = lyapunov_spectrum(cell, params, xs, k=2)
    assert np.isnan(part.kaplan_yorke_dimension) and np.isnan(part.entropy_rate)
    assert np.isnan(part.sum_rule_residual)
    full = lyapunov_spectrum(cell, params, xs)
    lam = np.log([1.5, 1.2, 0.5])
    np.testing.assert_allclose(full.kaplan_yorke_dimension, 2 + lam[:2].sum() / abs(lam[2]))
    np.testing.assert_allclose(full.entropy_rate, lam[:2].sum(), atol=1e-12)
    assert abs(float(full.sum_rule_residual)) < 1e-12


def test_stderr_matches_the_spread_over_trajectories():
    cell = jrnn.cells.elman(8, "tanh", recurrent_init=jrnn.initializers.scaled_normal(2.0))
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 1)
    )
    xs = 0.3 * jax.random.normal(jax.random.key(1), (12, 400, 1), jnp.float64)
    spec = lyapunov_spectrum(cell, params, xs, k=2, warmup=50)
    spread = np.std(np.asarray(spec.exponents[:, 0]), ddof=1)
    typical = np.mean(np.asarray(spec.stderr[:, 0]))
    assert spread > 0 and 1 / 3 < typical / spread < 3, (typical, spread)


def test_unresolved_exponents_are_flagged_and_kept_out_of_ky():
    """A dead ReLU unit: J_t has a zero row, its exponent is -inf (below any round-off
    floor) and is flagged; the resolved ones are not."""
    cell = jrnn.cells.elman(4, "relu")
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 1)
    )
    params["b_h"] = jnp.array([-50.0, 5.0, 5.0, 5.0])
    params["W_hh"] = 0.3 * params["W_hh"]
    xs = 0.1 * jax.random.normal(jax.random.key(1), (30, 1), jnp.float64)
    spec = lyapunov_spectrum(cell, params, xs)
    assert list(np.asarray(spec.unresolved)) == [False, False, False, True]
    W = np.diag([0.5, 0.4])
    cell, params = _linear(W)
    assert not np.any(lyapunov_spectrum(cell, params, jnp.zeros((10, 1))).unresolved)


def test_fixed_point_start_is_flagged_and_random_start_is_not():
    """Autonomous tanh net without bias from the zero carry sits on h = 0 for ever: its
    exponents are log|eig W| of the fixed point. A random start with a transient leaves it."""
    n = 16
    cell = jrnn.cells.elman(
        n, "tanh", use_bias=False, recurrent_init=jrnn.initializers.scaled_normal(2.0)
    )
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 1)
    )
    xs = jnp.zeros((300, 1))
    stuck = lyapunov_spectrum(cell, params, xs, k=1)
    assert bool(stuck.stationary)
    top_eig = np.max(np.log(np.abs(np.linalg.eigvals(np.asarray(params["W_hh"])))))
    np.testing.assert_allclose(stuck.exponents[0], top_eig, atol=0.05)
    h0 = 0.5 * jax.random.normal(jax.random.key(2), (n,), jnp.float64)
    moving = lyapunov_spectrum(cell, params, xs, k=1, carry=h0, transient=100)
    assert not bool(moving.stationary)
    assert moving.exponents[0] < top_eig - 0.2
