"""Regression tests from breaking the curse-of-memory diagnostics (issue 27) as a new user:
bfloat16 / float32 dtypes, empty sequences and batches, unstable linear networks under
regression; values against independent references (exact series, jax.jacfwd, the
Lyapunov-equation formula of scipy)."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sla

import jrnn

KEY = jax.random.key(0)


def _series(lam, rho, n=400):
    i = np.arange(n)
    a, da = lam**i, i * lam ** np.maximum(i - 1, 0)
    R = rho ** np.abs(i[:, None] - i[None, :])
    return np.real(a @ R @ np.conj(a)), np.real(da @ R @ np.conj(da))


def test_linear_memory_keeps_float32_and_accepts_bfloat16():
    assert jrnn.theory.linear_memory(jnp.float32(0.9)).var_h.dtype == jnp.float32
    assert jrnn.theory.linear_memory(np.float32(0.9), 0.2).ratio.dtype == jnp.float32
    lam = jnp.asarray(0.9, jnp.bfloat16)  # exactly 0.8984375
    m = jrnn.theory.linear_memory(lam, 0.5)
    assert m.var_h.dtype == jnp.bfloat16
    want = _series(float(lam), 0.5)
    np.testing.assert_allclose(float(m.var_h), want[0], rtol=2e-2)
    np.testing.assert_allclose(float(m.var_dh), want[1], rtol=2e-2)


def _elman():
    cell = jrnn.cells.elman(3, "tanh")
    return cell, cell.init(KEY, 2)


def test_sensitivity_empty_sequences_and_empty_batches():
    cell, p = _elman()
    s = jrnn.diagnostics.parameter_sensitivity(cell, p, jnp.ones((0, 2)))
    assert s.squared_norm["W_hh"].shape == (0,)
    s = jrnn.diagnostics.parameter_sensitivity(cell, p, jnp.ones((2, 0, 2)))
    assert s.normalized["b_h"].shape == (0,)
    s = jrnn.diagnostics.parameter_sensitivity(cell, p, jnp.ones((0, 4, 2)))
    assert s.squared_norm["W_hh"].shape == (4,)  # no sequence to average over: NaN
    assert np.all(np.isnan(s.squared_norm["W_hh"])) and np.all(np.isnan(s.stderr["W_hh"]))


def test_sensitivity_of_bfloat16_params_matches_jacfwd_in_float32():
    cell, p = _elman()
    pb = jax.tree.map(lambda a: a.astype(jnp.bfloat16), p)
    xs = jax.random.normal(jax.random.key(1), (5, 2)).astype(jnp.bfloat16)
    s = jrnn.diagnostics.parameter_sensitivity(cell, pb, xs)
    assert sorted(s.squared_norm) == ["W_hh", "W_xh", "b_h"]
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), pb)

    def run(params):
        c, out = cell.initial_carry(params), []
        for t in range(xs.shape[0]):
            c, _ = cell.step(params, c, xs[t].astype(jnp.float32))
            out.append(jrnn.cells.flatten_carry(c))
        return jnp.stack(out)

    J = jax.jacfwd(run)(p32)
    for name in p:
        want = np.sum(np.asarray(J[name]).reshape(5, -1) ** 2, axis=1)
        np.testing.assert_allclose(np.asarray(s.squared_norm[name], np.float32), want,
                                   rtol=5e-2, atol=1e-2)


def test_hessian_spectrum_of_bfloat16_params():
    d = jnp.array([3.0, -5.0, 1.0, 0.5])
    spec = jrnn.diagnostics.hessian_spectrum(
        lambda p, b: 0.5 * jnp.sum(d * p["w"].astype(jnp.float32) ** 2),
        {"w": jnp.ones(4, jnp.bfloat16)}, k=2)
    np.testing.assert_allclose(np.asarray(spec.eigenvalues), [-5.0, 3.0], rtol=1e-5)


def _linear(S=4, d=2, radius=0.8, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(S, S))
    W *= radius / np.max(np.abs(np.linalg.eigvals(W)))
    Wx = rng.normal(size=(S, d))
    cell = jrnn.cells.elman(S, "identity")
    return cell, {"W_xh": jnp.asarray(Wx), "W_hh": jnp.asarray(W), "b_h": jnp.zeros(S)}


def _lyapunov_curve(W, c, n):
    G = sla.solve_discrete_lyapunov(W, np.outer(c, c))  # Gamma = W Gamma W^T + c c^T
    v = [np.linalg.matrix_power(W, k) @ c for k in range(n)]
    return np.array([x @ np.linalg.solve(G, x) for x in v])


def test_memory_capacity_of_bfloat16_params_against_the_lyapunov_formula():
    cell, p = _linear()
    pb = jax.tree.map(lambda a: a.astype(jnp.bfloat16), p)
    mc = jrnn.diagnostics.memory_capacity(cell, pb, max_delay=8)
    assert mc.method == "krylov" and int(mc.rank) == 4
    W, Wx = (np.asarray(pb[k], np.float64) for k in ("W_hh", "W_xh"))
    want = _lyapunov_curve(W, Wx @ (np.ones(2) / np.sqrt(2)), 9)
    np.testing.assert_allclose(np.asarray(mc.curve, np.float64), want, atol=5e-2)


def test_unstable_linear_network_is_nan_under_regression_too():
    cell, p = _linear(radius=1.3)
    for method in ("krylov", "regression"):
        mc = jrnn.diagnostics.memory_capacity(cell, p, max_delay=3, method=method, samples=100)
        assert mc.linear and np.all(np.isnan(mc.curve)) and np.isnan(mc.total), method


def test_sensitivity_vs_memory_checks_every_set_before_drawing():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pytest

    import jrnn.plot

    lam = np.array([0.5, 0.9, 0.99])
    r = np.asarray(jrnn.theory.linear_memory(lam).ratio)
    f = jrnn.plot.sensitivity_vs_memory
    before = len(plt.get_fignums())
    with pytest.raises(ValueError, match=r"stderr\['a'\] must have 3 values.*got 2"):
        f(lam, {"a": r}, stderr={"a": r[:2]})
    with pytest.raises(ValueError, match=r"theory\['a'\] must have 3 values.*got 2"):
        f(lam, {"a": r}, theory={"a": r[:2]})
    with pytest.raises(ValueError, match=r"stderr\['a'\] must be >= 0"):
        f(lam, {"a": r}, stderr={"a": -r})
    with pytest.raises(TypeError, match="measured must be a mapping"):
        f(lam, r)
    assert len(plt.get_fignums()) == before  # no figure left behind by a refused call
    ax = f(lam, {"a": r}, stderr={"a": 0.1 * r}, theory={"a": r})
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), r)  # the theory line is r itself
    plt.close("all")


def test_float8_inputs_run_as_their_float32_values():
    # issue 33's bfloat16 fix left float8 inputs failing with a TypePromotionError
    cell = jrnn.cells.elman(4)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), cell.init(KEY, 2))
    xs = jax.random.normal(jax.random.key(1), (5, 2)).astype(jnp.float8_e4m3fn)
    _, hs = jrnn.unroll(cell, params, xs)
    _, ref = jrnn.unroll(cell, params, xs.astype(jnp.float32))
    assert hs.dtype == jnp.float32
    np.testing.assert_array_equal(hs, ref)  # float8 -> float32 is exact
