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


def test_batch_means_use_every_averaged_block():
    """The error bar covers the same blocks as the mean: against a NumPy batch-means estimate
    over 20 contiguous batches with edges floor(j 59 / 20) (unequal sizes, weighted by
    steps)."""
    from jrnn.diagnostics._errors import batch_means_stderr

    rng = np.random.default_rng(0)
    steps = np.full(59, 3)
    steps[-1] = 2
    logs = rng.normal(size=(59, 2)) * steps[:, None] + 5.0 * (np.arange(59) == 0)[:, None]
    got = np.asarray(batch_means_stderr(jnp.asarray(logs), jnp.asarray(steps)))
    edges = (np.arange(21) * 59) // 20
    idx = [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:])]
    n = np.array([steps[i].sum() for i in idx])
    m = np.array([logs[i].sum(0) / steps[i].sum() for i in idx])
    mean = logs.sum(0) / steps.sum()
    want = np.sqrt((n[:, None] * (m - mean) ** 2).sum(0) / (19 * steps.sum()))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_start_up_transient_is_flagged_with_the_warmup_it_takes():
    """Issue 28: W_hh = [[0.1, 0], [5, 0.9]], carry (1, 1), T = 59 gave lambda_1 = -0.0743 +-
    3e-18 (exact: log 0.9 = -0.1054) because the error bar dropped the first T mod 20 steps.
    The error bar now covers the transient and ``warmup_needed`` says how long it lasts;
    rerunning with that warm-up gives log 0.9 within its error bar."""
    cell, params = _linear(np.array([[0.1, 0.0], [5.0, 0.9]]))
    h0 = jnp.ones(2, jnp.float64)
    spans = []
    for T in (59, 60):
        spec = lyapunov_spectrum(cell, params, jnp.zeros((T, 1)), carry=h0)
        assert abs(spec.exponents[0] - np.log(0.9)) > 0.02  # biased by the transient
        assert spec.stderr[0] > 0.01
        assert 3 <= int(spec.warmup_needed) < T // 2
        spans.append(float(spec.stderr[0]))
    assert max(spans) / min(spans) < 2
    need = int(lyapunov_spectrum(cell, params, jnp.zeros((59, 1)), carry=h0).warmup_needed)
    fixed = lyapunov_spectrum(cell, params, jnp.zeros((59, 1)), carry=h0, warmup=need + 5)
    np.testing.assert_allclose(fixed.exponents, np.log([0.9, 0.1]), atol=1e-9)
    assert int(fixed.warmup_needed) == 0


def test_no_transient_is_reported_on_a_stationary_chaotic_run():
    """False alarms: 12 chaotic trajectories with a warm-up report none; without one, the
    frame's alignment from the identity is a real transient and is found in some."""
    cell = jrnn.cells.elman(8, "tanh", recurrent_init=jrnn.initializers.scaled_normal(2.0))
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 1)
    )
    xs = 0.3 * jax.random.normal(jax.random.key(1), (12, 300, 1), jnp.float64)
    assert not np.any(lyapunov_spectrum(cell, params, xs, warmup=50).warmup_needed)
    assert np.any(lyapunov_spectrum(cell, params, xs).warmup_needed)



def test_float32_tail_error_is_flagged_and_warned_with_the_mixed_cure():
    """Issue 28.4: tanh g = 5 in float32. The pure float32 chain and qr="mixed" (a float64
    chain, x64 on in the tests) see the same float32 trajectory and Jacobians, so their
    difference is the float32 chain's round-off alone: every exponent it moves by more than
    the error bar is flagged ``unresolved``, the top of the spectrum is not, and the sum-rule
    warning names the cure; the mixed run is clean."""
    import warnings

    import pytest

    cell = jrnn.cells.elman(64, "tanh", recurrent_init=jrnn.initializers.scaled_normal(5.0))
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float32), cell.init(jax.random.key(0), 1)
    )
    xs = jax.random.normal(jax.random.key(1), (300, 1), jnp.float32)
    with pytest.warns(RuntimeWarning, match=r"qr='mixed'.*jax_enable_x64"):
        f32 = lyapunov_spectrum(cell, params, xs, warmup=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        mixed = lyapunov_spectrum(cell, params, xs, warmup=50, qr="mixed")
    lam32, lam, se = (np.asarray(a, np.float64) for a in (f32.exponents, mixed.exponents,
                                                          mixed.stderr))
    assert f32.exponents.dtype == mixed.exponents.dtype == jnp.float32
    off = np.abs(lam32 - lam) > se
    flagged = np.asarray(f32.unresolved)
    assert off.sum() >= 2, np.abs(lam32 - lam)  # the float32 tail is wrong here
    assert np.all(flagged[off]), (np.nonzero(off)[0], np.nonzero(flagged)[0])
    assert not np.any(flagged[:32]) and not np.any(np.asarray(mixed.unresolved))
    assert abs(float(f32.sum_rule_residual)) > 1.0 > 10 * abs(float(mixed.sum_rule_residual))
