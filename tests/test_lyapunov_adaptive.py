"""The adaptive re-orthonormalisation interval (reorth_every="adaptive", opt-in) against the
every-step QR chain, closed forms and the mean-field line, with its bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.diagnostics import lyapunov_spectrum as _lyapunov_spectrum
from jrnn.linalg import qr as L
from jrnn.theory import mean_field


def lyapunov_spectrum(*args, **kwargs):
    """The adaptive interval unless a test asks for another (reorth_every=1: the chain)."""
    kwargs.setdefault("reorth_every", "adaptive")
    return _lyapunov_spectrum(*args, **kwargs)


def _net(n, g, seed=0, dtype=jnp.float64):
    cell = jrnn.cells.elman(n, "tanh", use_bias=False)
    W = g * jax.random.normal(jax.random.key(seed), (n, n), dtype) / np.sqrt(n)
    params = {"W_xh": jnp.zeros((n, 1), dtype), "W_hh": W}
    h0 = jax.random.normal(jax.random.key(seed + 1), (n,), dtype)
    return cell, params, h0


def test_linear_cell_exponents_are_log_abs_eigenvalues_with_long_intervals():
    """h_t = W h_{t-1} with W = O diag(d) O^T: lambda_i = log |d_i| exactly; the top 3 of 12
    separate by 0.1-0.3 nats per step, so the float64 interval grows to the maximum."""
    d = np.array([1.2, 0.9, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.08, 0.05])
    O = np.linalg.qr(np.random.default_rng(0).standard_normal((12, 12)))[0]
    cell = jrnn.cells.elman(12, "identity", use_bias=False)
    params = {"W_xh": jnp.zeros((12, 1)), "W_hh": jnp.asarray(O * d @ O.T)}
    xs, h0 = jnp.zeros((300, 1)), jnp.ones(12)
    for k, atol in [(3, 1e-12), (12, 1e-9)]:
        spec = lyapunov_spectrum(cell, params, xs, carry=h0, k=k, warmup=150)
        every = lyapunov_spectrum(cell, params, xs, carry=h0, k=k, warmup=150, reorth_every=1)
        np.testing.assert_allclose(spec.exponents, np.log(d[:k]), atol=atol)
        np.testing.assert_allclose(spec.exponents, every.exponents, atol=atol)
        assert float(every.reorth_interval) == 1.0
    top = lyapunov_spectrum(cell, params, xs, carry=h0, k=3, warmup=150)
    assert float(top.reorth_interval) > 8
    # the full spectrum spreads by 3.2 nats per step: intervals of 2-4 keep 1e-8
    assert 1.5 < float(spec.reorth_interval) < 8


def test_random_tanh_net_top_exponent_on_the_mean_field_line():
    """Molgedey et al. 1992 / Poole et al. 2016: lambda_1 = 0.5 ln chi for a random tanh net
    (N = 200, g = 2.5; the published line, as in tests/test_theory.py); the adaptive top-4
    equals the every-step chain within the block tolerance, with intervals > 4."""
    cell, params, h0 = _net(200, 2.5)
    xs = jnp.zeros((300, 1))
    spec = lyapunov_spectrum(cell, params, xs, carry=h0, k=4, warmup=100)
    every = lyapunov_spectrum(cell, params, xs, carry=h0, k=4, warmup=100, reorth_every=1)
    np.testing.assert_allclose(spec.exponents, every.exponents, atol=1e-8)
    assert abs(float(spec.exponents[0]) - mean_field("tanh", 2.5).lambda_max) < 0.04
    assert float(spec.reorth_interval) > 4
    np.testing.assert_allclose(spec.final_frame, every.final_frame, atol=1e-6)


@pytest.mark.parametrize("g", [5.0, 10.0])
def test_strongly_chaotic_full_spectrum_equals_every_step_chain(g):
    """g = 5, 10, N = 24, full spectrum: every resolved exponent as the every-step chain,
    within the chain's own rounding (eps exp(lambda_1 - lambda_i) per step), and the
    determinant identity as well as there. (Here the spread keeps the interval near 1.)"""
    cell, params, h0 = _net(24, g, seed=3)
    xs = jnp.zeros((400, 1))
    spec = lyapunov_spectrum(cell, params, xs, carry=h0, warmup=100)
    every = lyapunov_spectrum(cell, params, xs, carry=h0, warmup=100, reorth_every=1)
    lam = np.asarray(every.exponents)
    ok = lam[0] - lam < 20  # beyond, the every-step chains themselves disagree (~eps e^20)
    assert ok.sum() >= 8
    tol = 1e-8 + 1e-12 * np.exp(lam[0] - lam)  # the every-step chains differ by ~1e-13 e^(.)
    assert np.all(np.abs(np.asarray(spec.exponents) - lam)[ok] <= tol[ok])
    res, res_every = float(spec.sum_rule_residual), float(every.sum_rule_residual)
    if np.any(np.asarray(every.unresolved)):
        # g = 10: the tail lies ~37 nats below lambda_1, past float64's QR floor, so both
        # residuals are the unresolved tail's rounding (10.4-10.5 nats per step for either
        # every-step chain, compact or explicit): of the same size, not ordered
        assert abs(res - res_every) <= 0.05 * abs(res_every) + 1e-8, (res, res_every)
    else:
        assert abs(res) <= abs(res_every) + 1e-8, (res, res_every)
    assert 1.0 <= float(spec.reorth_interval)


def test_float32_path_matches_the_float32_every_step_chain():
    """float32 params (no float64 chain): the adaptive top-8 of a g = 2 net, N = 64, equals the
    float32 every-step chain on the same trajectory within float32 accuracy (block tolerance
    1e-5), with intervals > 1; a float64 chain of the same net agrees to the finite-time
    statistics only (chaotic trajectories separate), so it is not the reference."""
    cell, p64, h0 = _net(64, 2.0, seed=5)
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), p64)
    xs, h0 = jnp.zeros((300, 1), jnp.float32), h0.astype(jnp.float32)
    spec = lyapunov_spectrum(cell, p32, xs, carry=h0, k=8, warmup=100)
    ref = lyapunov_spectrum(cell, p32, xs, carry=h0, k=8, warmup=100, reorth_every=1)
    assert spec.exponents.dtype == jnp.float32
    np.testing.assert_allclose(spec.exponents, ref.exponents, atol=2e-5)
    assert float(spec.reorth_interval) > 1


def test_stderr_is_calibrated_with_blocks_longer_than_the_batches():
    """48 driven trajectories of a g = 2 net (N = 8, k = 2), 300 averaged steps: blocks of
    ~32 steps are longer than the 15 steps of a batch, so batches of whole blocks weighted by
    their steps must carry the error bar: the spread of the exponents over trajectories over
    the mean stderr is ~1 (1.73 / 1.56 when the block means were spread over their steps and
    batched per step, the blocks straddling batches)."""
    cell = jrnn.cells.elman(8, "tanh", recurrent_init=jrnn.initializers.scaled_normal(2.0))
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 1)
    )
    xs = 0.3 * jax.random.normal(jax.random.key(1), (48, 500, 1), jnp.float64)
    spec = lyapunov_spectrum(cell, params, xs, k=2, warmup=200)
    assert float(jnp.mean(spec.reorth_interval)) > 15
    ratio = np.std(np.asarray(spec.exponents), axis=0, ddof=1) / np.mean(spec.stderr, axis=0)
    assert np.all((0.7 < ratio) & (ratio < 1.4)), ratio


def test_failed_blocks_are_redone_and_tolerance_is_honoured():
    """A tolerance no block can meet forces every block back to one QR per step (interval
    about 1, result equal to the every-step chain to rounding); a loose one lengthens it."""
    cell, params, h0 = _net(16, 3.0, seed=7)
    xs = jnp.zeros((200, 1))
    every = lyapunov_spectrum(cell, params, xs, carry=h0, reorth_every=1)
    strict = lyapunov_spectrum(cell, params, xs, carry=h0, reorth_tol=1e-300)
    loose = lyapunov_spectrum(cell, params, xs, carry=h0, k=2, reorth_tol=1e-2)
    np.testing.assert_allclose(strict.exponents, every.exponents, atol=1e-10)
    assert float(strict.reorth_interval) < 1.01
    assert float(loose.reorth_interval) > 8
    short = lyapunov_spectrum(cell, params, xs, carry=h0, k=2, max_reorth_every=4)
    assert 2 < float(short.reorth_interval) <= 4


def test_gradient_comes_from_the_every_step_chain():
    cell, params, h0 = _net(8, 1.5, seed=2)
    xs = jnp.zeros((50, 1))

    def top(W, **kw):
        return lyapunov_spectrum(cell, {**params, "W_hh": W}, xs, carry=h0, k=2, **kw).exponents[0]

    g = jax.grad(top)(params["W_hh"])
    g1 = jax.grad(lambda W: top(W, reorth_every=1))(params["W_hh"])
    np.testing.assert_allclose(g, g1, atol=1e-12)


def test_next_interval_controller():
    eps = 2.0**-52
    n = len(L.adaptive_intervals(32))
    assert n == 6 and L.adaptive_intervals(1) == (1,)
    assert int(L.next_interval(2, eps, False, 4, 1e-8, eps, n)) == 3  # no growth seen: up one
    assert int(L.next_interval(2, 1e-3, True, 4, 1e-8, eps, n)) == 1  # failed: down
    # error 1e-12 after 4 steps: rho = ln(1e-12 / eps) / 4 = 2.1, budget ln(1e-8 / eps) - 1
    # = 16.6 -> the largest 2^i <= 7.9 is 4 (index 2), reached from below or above
    assert int(L.next_interval(1, 1e-12, False, 4, 1e-8, eps, n)) == 2
    assert int(L.next_interval(5, 1e-12, False, 4, 1e-8, eps, n)) == 2
    assert int(L.next_interval(3, jnp.nan, False, 4, 1e-8, eps, n)) == 2


def test_bad_arguments():
    cell, params, h0 = _net(4, 1.0)
    xs = jnp.zeros((10, 1))
    for kw, match in [
        ({"reorth_every": "sometimes"}, "reorth_every must be an integer >= 1 or 'adaptive'"),
        ({"reorth_every": 0}, "reorth_every"),
        ({"reorth_tol": 0.0}, "reorth_tol"),
        ({"reorth_tol": -1e-3}, "reorth_tol"),
        ({"reorth_tol": float("nan")}, "reorth_tol"),
        ({"reorth_tol": float("inf")}, "reorth_tol"),
        ({"max_reorth_every": 0}, "max_reorth_every"),
        ({"qr": "givens"}, "qr must be one of"),
    ]:
        with pytest.raises(ValueError, match=match):
            lyapunov_spectrum(cell, params, xs, **kw)
    with pytest.raises(ValueError, match="max_interval"):
        L.adaptive_intervals(0)
