"""Streaming tangent dynamics: tangent maps, streaming == stacked, continuation, closed forms
at T = 20000, FTLE, parameter grids, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.diagnostics import finite_time_exponents, lyapunov_spectrum, propagation, tangent_map
from jrnn.diagnostics._trajectory import carries, choose_mode, state_step

CELLS = {
    "elman": lambda: jrnn.cells.elman(5, "tanh"),
    "irnn": lambda: jrnn.cells.irnn(4),
    "residual": lambda: jrnn.cells.residual(5, alpha=0.3),
    "indrnn": lambda: jrnn.cells.indrnn(4, "tanh"),
    "lstm": lambda: jrnn.cells.lstm(3),
    "gru": lambda: jrnn.cells.gru(4),
    "min_gru": lambda: jrnn.cells.min_gru(4),
    "min_lstm": lambda: jrnn.cells.min_lstm(4),
    "lru": lambda: jrnn.cells.lru(3),
    "stack": lambda: jrnn.stack([jrnn.cells.elman(3), jrnn.cells.lstm(2)]),
}


def _setup(name, dtype=jnp.float64, T=24, gain=None):
    cell = CELLS[name]()
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), cell.init(jax.random.key(0), 2))
    xs = jax.random.normal(jax.random.key(1), (T, 2), dtype)
    return cell, params, xs


def test_tangent_maps_equal_jacobian_times_frame():
    """Every analytic tangent (and the linearize fallback) is J_t V with J_t from jacfwd."""
    for name in CELLS:
        cell, params, xs = _setup(name)
        assert cell.linear is not None and cell.linear.tangent is not None, name
        us, prev, _ = carries(cell, params, xs)
        c, u = jax.tree_util.tree_map(lambda a: a[7], prev), us[7]
        step = state_step(cell, params)
        Jt = jax.jacfwd(step)(jrnn.cells.flatten_carry(c), u)
        V = jax.random.normal(jax.random.key(2), (cell.state_size, 3), jnp.float64)
        no_tangent = cell._replace(linear=cell.linear._replace(tangent=None))
        for fn in (tangent_map(cell, params), tangent_map(no_tangent, params)):
            np.testing.assert_allclose(fn(c, u, V), Jt @ V, atol=1e-13, err_msg=name)


@pytest.mark.parametrize(
    "name,dtype",
    [("elman", jnp.float32), ("elman", jnp.float64), ("lstm", jnp.float32)]
    + [(n, jnp.float64) for n in ("gru", "lru", "stack")],
)
def test_streaming_equals_stacked(name, dtype):
    """chunked (k = S, chunks of 4 not dividing T) and tangent (k < S) modes equal the
    stacked path to float rounding, per step (r = 1, elman) and in checked blocks (r = 2)."""
    cell, params, xs = _setup(name, dtype)
    atol = 1e-11 if dtype == jnp.float64 else 2e-5
    kw = dict(warmup=3, transient=2, reorth_every=1 if name == "elman" else 2)
    ref = lyapunov_spectrum(cell, params, xs, mode="stacked", **kw)
    got = lyapunov_spectrum(cell, params, xs, mode="chunked", chunk=4, **kw)
    np.testing.assert_allclose(got.exponents, ref.exponents, atol=atol)
    np.testing.assert_allclose(got.local, ref.local, atol=10 * atol)
    np.testing.assert_allclose(got.final_frame, ref.final_frame, atol=1e3 * atol)
    ref = lyapunov_spectrum(cell, params, xs, mode="stacked", k=2, **kw)
    got = lyapunov_spectrum(cell, params, xs, mode="tangent", k=2, **kw)
    np.testing.assert_allclose(got.exponents, ref.exponents, atol=atol)


@pytest.mark.parametrize("k,mode", [(4, "chunked"), (1, "tangent")])
def test_segments_equal_one_run(k, mode):
    cell, params, xs = _setup("elman", T=40)
    kw = dict(mode=mode, k=k, chunk=3) if mode == "chunked" else dict(mode=mode, k=k)
    kw["reorth_every"] = 1  # per-step identity; adaptive blocks restart at each segment
    one = lyapunov_spectrum(cell, params, xs, **kw)
    a = lyapunov_spectrum(cell, params, xs[:17], **kw)
    b = lyapunov_spectrum(cell, params, xs[17:], carry=a.final_carry, Q0=a.final_frame, **kw)
    np.testing.assert_allclose(np.concatenate([a.local, b.local]), one.local, atol=1e-12)
    np.testing.assert_allclose(b.final_frame, one.final_frame, atol=1e-12)


def test_linear_closed_form_and_sum_rule_at_T_20000_streaming():
    """W = c * orthogonal: every exponent is log c, also after 20000 streamed steps; the
    sum rule holds; float32 keeps 1e-5 (stable summation of the logs)."""
    n, c, T = 4, 1.3, 20000
    W = c * jrnn.initializers.orthogonal()(jax.random.key(0), (n, n), jnp.float64)
    cell = jrnn.cells.elman(n, "identity", use_bias=False)
    for dtype, tol in ((jnp.float64, 1e-11), (jnp.float32, 1e-5)):
        params = {"W_xh": jnp.ones((n, 1), dtype), "W_hh": W.astype(dtype)}
        xs = jnp.zeros((T, 1), dtype)
        spec = lyapunov_spectrum(cell, params, xs, mode="chunked", chunk=2000)
        np.testing.assert_allclose(spec.exponents, np.log(c), atol=tol)
        assert abs(float(spec.sum_rule_residual)) < n * tol
        top = lyapunov_spectrum(cell, params, xs, mode="tangent", k=1)
        np.testing.assert_allclose(top.exponents, np.log(c), atol=tol)


def test_ftle_windows_average_to_the_exponents():
    cell, params, xs = _setup("elman", T=130)
    kw = dict(k=3, warmup=10, mode="tangent")
    ftle = finite_time_exponents(cell, params, xs, window=20, **kw)
    spec = lyapunov_spectrum(cell, params, xs[:130], **kw)
    assert ftle.exponents.shape == (6, 3)
    np.testing.assert_allclose(np.sort(ftle.mean)[::-1], spec.exponents, atol=1e-12)
    np.testing.assert_allclose(ftle.mean, np.mean(ftle.exponents, axis=0), atol=1e-14)
    assert np.all(ftle.std > 0) and np.all(np.isfinite(ftle.stderr))


def test_grid_of_gains_and_seeds_equals_a_loop():
    cell = jrnn.cells.elman(6, "tanh")
    xs = jax.random.normal(jax.random.key(3), (40, 1), jnp.float64)

    def top(gain, seed):
        params = cell.init(jax.random.key(seed), 1)
        W = gain * jax.random.normal(jax.random.key(seed + 7), (6, 6)) / jnp.sqrt(6.0)
        params = {**params, "W_hh": W}
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
        return lyapunov_spectrum(cell, params, xs, k=1, warmup=5).exponents

    gains, seeds = jnp.array([0.8, 1.6, 2.4]), jnp.arange(2)
    grid = jrnn.parallel.sweep(top, gain=gains, seed=seeds)
    one = jax.jit(top)
    loop = np.array([[one(g, s) for s in seeds] for g in gains])
    assert grid.shape == (3, 2, 1)
    np.testing.assert_allclose(grid, loop, atol=1e-12)


def test_propagation_streaming_equals_stacked_and_float32_T_20000():
    cell, params, xs = _setup("lstm", T=30)
    a = propagation(cell, params, xs, mode="stacked")
    b = propagation(cell, params, xs, mode="streaming")
    np.testing.assert_allclose(b.log_spectral_norm, a.log_spectral_norm, atol=1e-11)
    np.testing.assert_allclose(b.log_frobenius_norm, a.log_frobenius_norm, atol=1e-11)
    # float32 at T = 20000, closed form (T - t) log c; with and without x64 (Kahan path).
    n, c, T = 4, 1.5, 20000
    W = c * jrnn.initializers.orthogonal()(jax.random.key(0), (n, n), jnp.float32)
    cell = jrnn.cells.elman(n, "identity", use_bias=False)
    params = {"W_xh": jnp.ones((n, 1), jnp.float32), "W_hh": W}
    expected = (T - np.arange(T + 1)) * np.log(c)
    for x64 in (True, False):
        with jax.enable_x64(x64):
            p = propagation(cell, params, jnp.zeros((T, 1), jnp.float32), mode="streaming")
            rel = np.abs(np.asarray(p.log_spectral_norm, np.float64) - expected)
            assert np.max(rel / np.maximum(expected, 1.0)) < 1e-3, x64
            np.testing.assert_allclose(p.rate, np.log(c), rtol=1e-5)
            assert p.rate_stderr < 1e-5


def test_mode_auto_follows_the_memory_budget():
    kw = dict(S=512, batch=1, itemsize=8, memory_budget=256 * 2**20)
    assert choose_mode("auto", T=1500, k=512, **kw) == "chunked"  # 9 GB stacked
    assert choose_mode("auto", T=20, k=512, **kw) == "stacked"
    assert choose_mode("auto", T=1500, k=64, **kw) == "tangent"


def test_bad_input_names_the_argument():
    cell, params, xs = _setup("elman", T=20)
    S = cell.state_size
    cases = [
        (dict(k=0), "k must be"),
        (dict(k=S + 1), "k must be at most"),
        (dict(transient=20), "transient"),
        (dict(transient=5, warmup=15), "warmup"),
        (dict(Q0=jnp.eye(S + 1)), "Q0 must have shape"),
        (dict(Q0=2.0 * jnp.eye(S)[:, :2]), "orthonormal"),
        (dict(Q0=jnp.eye(S)[:, :2], k=3), "does not match"),
        (dict(mode="fast"), "mode must be one of"),
        (dict(mode="chunked", chunk=3, reorth_every=2), "chunk must be a multiple"),
        (dict(memory_budget=0), "memory_budget"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            lyapunov_spectrum(cell, params, xs, **kwargs)
    for w in (0, 21, 16):
        with pytest.raises(ValueError, match="window"):
            finite_time_exponents(cell, params, xs, window=w, warmup=5)
