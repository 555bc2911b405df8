"""Flossing from a chaotic start (issue 28, point 3): the frozen-orbit gradient against
finite differences of an independent NumPy QR chain on the fixed states; finite where the
trajectory gradient overflows; non-finite updates are skipped with a warning, never applied
silently."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn


def _net(n, g, dtype, seed=0):
    cell = jrnn.cells.elman(n, "tanh", recurrent_init=jrnn.initializers.scaled_normal(g))
    params = cell.init(jax.random.key(seed), 1)
    return cell, jax.tree_util.tree_map(lambda a: a.astype(dtype), params)


def _numpy_exponents(W, U, b, xs, states, k):
    """Benettin on J_t = diag(1 - tanh(a_t)^2) W, a_t = W h_{t-1} + U x_t + b, h fixed."""
    Q = np.eye(W.shape[0])[:, :k]
    total = np.zeros(k)
    for t in range(xs.shape[0]):
        a = W @ states[t] + U @ xs[t] + b
        Q, R = np.linalg.qr((1 - np.tanh(a) ** 2)[:, None] * W @ Q)
        total += np.log(np.abs(np.diag(R)))
    return np.sort(total / xs.shape[0])[::-1]


def test_frozen_orbit_gradient_matches_finite_differences_on_the_fixed_states():
    n, k, T = 6, 2, 40
    cell, p = _net(n, 1.5, jnp.float64)
    xs = 0.5 * jax.random.normal(jax.random.key(3), (T, 1), jnp.float64)
    pen = jrnn.penalties.lyapunov_penalty(cell, k=k)
    grad = jax.grad(lambda q: jnp.sum(pen.exponents(q, xs)))(p)["W_hh"]
    W, U, b = (np.asarray(p[name]) for name in ("W_hh", "W_xh", "b_h"))
    h, states = np.zeros(n), []
    for t in range(T):  # the states of the unperturbed network, held fixed
        states.append(h)
        h = np.tanh(W @ h + U @ np.asarray(xs[t]) + b)
    fd = np.zeros_like(W)
    eps = 1e-6
    for i, j in [(0, 0), (1, 3), (4, 2), (5, 5)]:
        E = np.zeros_like(W)
        E[i, j] = eps
        up = _numpy_exponents(W + E, U, b, np.asarray(xs), states, k).sum()
        dn = _numpy_exponents(W - E, U, b, np.asarray(xs), states, k).sum()
        fd[i, j] = (up - dn) / (2 * eps)
        np.testing.assert_allclose(float(grad[i, j]), fd[i, j], rtol=1e-5, atol=1e-8)
    # the values are the exponents of the real trajectory
    plain = jrnn.diagnostics.lyapunov_spectrum(cell, p, xs, k=k).exponents
    np.testing.assert_allclose(pen.exponents(p, xs), plain, rtol=1e-12)


def test_chaotic_float32_gradient_is_finite_and_nonfinite_updates_are_skipped():
    """Issue 28: tanh N = 32, g = 3, float32, T = 300: the trajectory gradient is inf and
    was applied (Adam's moments overflow, every later update is 0)."""
    cell, p = _net(32, 3.0, jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (2, 300, 1), jnp.float32)
    frozen = jrnn.penalties.lyapunov_penalty(cell, k=4, warmup=20)
    g = jax.grad(frozen.fn)(p, xs)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(g))
    through = jrnn.penalties.lyapunov_penalty(cell, k=4, warmup=20, gradient="trajectory")
    opt = optax.adam(1e-2)
    step = jrnn.flossing.make_penalty_step(through, opt)
    state = jrnn.train.init_state(p, opt, jax.random.key(0))
    gt = jax.grad(through.fn)(p, xs)
    if all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(gt)):
        pytest.skip("trajectory gradient finite on this platform")
    with pytest.warns(RuntimeWarning, match="non-finite flossing gradient"):
        new, metrics = step(state, (xs, None))
    assert int(metrics["skipped"]) == 1 and not bool(metrics["finite"])
    np.testing.assert_array_equal(new.params["W_hh"], p["W_hh"])
    with pytest.raises(ValueError, match="gradient"):
        jrnn.penalties.lyapunov_penalty(cell, k=2, gradient="states")
