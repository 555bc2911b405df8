"""minGRU, minLSTM and LRU: the papers' equations, and associative == sequential scan."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.cells import linear

B, T, D, N = 3, 9, 2, 4
LINEAR = ("min_gru", "min_lstm", "lru")


def _make(name, key=0):
    cell = getattr(jrnn.cells, name)(N) if name != "lru" else jrnn.cells.lru(N, 0.5, 0.99)
    params = cell.init(jax.random.key(key), D)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    return cell, params


def _method(parallel):
    """The associative scan, or the sequential reference."""
    return jrnn.Associative() if parallel else jrnn.Scan()


def _xs(key=1, shape=(B, T, D)):
    return jax.random.normal(jax.random.key(key), shape, jnp.float64)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _g(x):
    return np.where(x >= 0, x + 0.5, _sigmoid(x))


def _numpy_reference(name, p, xs, h0):
    """The papers' equations, step by step, in NumPy (one sequence)."""
    p = {k: np.asarray(v) for k, v in p.items()}
    outs = []
    if name == "lru":
        lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
        gamma = np.exp(p["gamma_log"])
        Bc, Cc = p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]
        h = h0[:N] + 1j * h0[N:]
        for x in xs:
            h = lam * h + gamma * (Bc @ x)
            outs.append(np.real(Cc @ h) + p["D"] @ x)
        return np.concatenate([h.real, h.imag]), np.stack(outs)
    h = h0
    for x in xs:
        h_tilde = _g(p["W_h"] @ x + p["b_h"])
        if name == "min_gru":
            z = _sigmoid(p["W_z"] @ x + p["b_z"])
            h = (1 - z) * h + z * h_tilde
        else:
            f = _sigmoid(p["W_f"] @ x + p["b_f"])
            i = _sigmoid(p["W_i"] @ x + p["b_i"])
            h = f / (f + i) * h + i / (f + i) * h_tilde
        outs.append(h)
    return h, np.stack(outs)


@pytest.mark.parametrize("name", LINEAR)
def test_matches_numpy_reference(name):
    cell, p = _make(name)
    xs = np.asarray(_xs(shape=(T, D)))
    h0 = np.asarray(jax.random.normal(jax.random.key(5), (cell.state_size,), jnp.float64))
    ref_carry, ref_hs = _numpy_reference(name, p, xs, h0)
    for parallel in (False, True):
        run = jax.jit(
            lambda p, xs, h0, m=_method(parallel): jrnn.unroll(cell, p, xs, carry=h0, method=m)
        )
        carry, hs = run(p, jnp.asarray(xs), jnp.asarray(h0))
        np.testing.assert_allclose(hs, ref_hs, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(carry, ref_carry, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize(
    "lengths, reverse, with_carry", [(None, False, True), ([9, 4, 0], True, True)]
)
def test_associative_equals_sequential(name, lengths, reverse, with_carry):
    cell, p = _make(name)
    xs = _xs()
    lengths = None if lengths is None else jnp.array(lengths)
    c0 = jax.random.normal(jax.random.key(2), (B, cell.state_size), jnp.float64)
    c0 = c0 if with_carry else None

    def loss(p, xs, c0, parallel):
        c, hs = jrnn.unroll(
            cell, p, xs, carry=c0, lengths=lengths, reverse=reverse, method=_method(parallel)
        )
        return jnp.sum(jnp.sin(hs)) + jnp.sum(c**2), (c, hs)

    grad = jax.jit(
        jax.grad(loss, argnums=(0, 1, 2) if with_carry else (0, 1), has_aux=True),
        static_argnums=3,
    )
    g_seq, (c_seq, h_seq) = grad(p, xs, c0, False)
    g_par, (c_par, h_par) = grad(p, xs, c0, True)
    np.testing.assert_allclose(h_par, h_seq, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c_par, c_seq, rtol=1e-10, atol=1e-12)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11), g_par, g_seq
    )
    if lengths is not None:  # outputs past the end are zero, carries frozen
        np.testing.assert_array_equal(h_par[2], 0.0)
        np.testing.assert_array_equal(h_par[1, 4:], 0.0)


@pytest.mark.parametrize("name", LINEAR)
def test_linear_coeffs_drive_recur(name):
    """linear_coeffs(xs) reproduces recur: s_t = a_t s_{t-1} + b_t."""
    cell, p = _make(name)
    xs = _xs(shape=(T, D))
    a, b = cell.affine.coeffs(p, xs)
    s = jax.random.normal(jax.random.key(3), (cell.state_size,), jnp.float64)
    step = jax.jit(cell.step)
    for t in range(T):
        s_next, _ = step(p, s, xs[t])
        if jnp.iscomplexobj(a):
            sc = s[:N] + 1j * s[N:]
            sc = a[t] * sc + b[t]
            expected = jnp.concatenate([sc.real, sc.imag])
        else:
            expected = a[t] * s + b[t]
        np.testing.assert_allclose(s_next, expected, rtol=1e-12, atol=1e-12)
        s = s_next


@pytest.mark.parametrize("name", LINEAR)
def test_jacobian_matches_jacfwd(name):
    cell, p = _make(name)
    x = _xs(shape=(D,))
    s = jax.random.normal(jax.random.key(4), (cell.state_size,), jnp.float64)
    u = cell.input_map(p, x)
    auto = jax.jacfwd(lambda c: cell.recur(p, c, u)[0])(s)
    np.testing.assert_allclose(cell.linear.jacobian(p, s, u), auto, rtol=1e-12, atol=1e-14)


def test_lru_ring_initialisation():
    r_min, r_max, max_phase = 0.4, 0.9, math.pi / 4
    cell = jrnn.cells.lru(512, r_min, r_max, max_phase)
    p = cell.init(jax.random.key(0), 3)
    mod = np.exp(-np.exp(np.asarray(p["nu_log"], np.float64)))
    phase = np.exp(np.asarray(p["theta_log"], np.float64))
    assert mod.min() >= r_min - 1e-6 and mod.max() <= r_max + 1e-6
    assert phase.min() >= 0 and phase.max() <= max_phase + 1e-6
    # Uniform on the ring: |lambda|^2 is uniform on [r_min^2, r_max^2].
    q = (mod**2 - r_min**2) / (r_max**2 - r_min**2)
    assert abs(q.mean() - 0.5) < 0.05 and abs(np.median(phase) / max_phase - 0.5) < 0.08
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - mod**2), rtol=1e-5)
    assert cell.state_size == 1024 and p["D"].shape == (512, 3)


@pytest.mark.parametrize("bad", [dict(r_min=0.9, r_max=0.5), dict(r_max=1.5), dict(max_phase=0)])
def test_lru_rejects_bad_ring(bad):
    with pytest.raises(ValueError):
        jrnn.cells.lru(4, **bad)


def test_g_and_log_g():
    x = jnp.linspace(-30.0, 30.0, 2001, dtype=jnp.float64)
    np.testing.assert_allclose(linear.g(x), _g(np.asarray(x)), rtol=1e-14)
    np.testing.assert_allclose(linear.log_g(x), np.log(_g(np.asarray(x))), rtol=1e-12, atol=1e-14)
    assert float(linear.g(jnp.float64(0.0))) == 0.5 == float(jax.nn.sigmoid(0.0))  # continuous


@pytest.mark.parametrize("name", ["min_gru", "min_lstm"])
def test_log_space_scan_matches_sequential(name):
    """The paper's log-space scan == the sequential recurrence (positive initial state)."""
    cell, p = _make(name)
    xs = _xs(shape=(T, D))
    h0 = linear.g(jax.random.normal(jax.random.key(6), (N,), jnp.float64))
    coeffs = linear.min_gru_log_coeffs if name == "min_gru" else linear.min_lstm_log_coeffs
    log_a, log_b = coeffs(p, xs)
    hs = linear.parallel_scan_log(log_a, log_b, jnp.log(h0))
    _, ref = jax.jit(lambda p, xs, h0: jrnn.unroll(cell, p, xs, carry=h0, method=jrnn.Scan()))(
        p, xs, h0
    )
    np.testing.assert_allclose(hs, ref, rtol=1e-10)


def test_parallel_argument_errors():
    cell = jrnn.cells.elman(3)
    p = cell.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="affine capability"):
        jrnn.unroll(cell, p, jnp.ones((4, 2)), method=jrnn.Associative())
    mg = jrnn.cells.min_gru(3)
    pm = mg.init(jax.random.key(0), 2)
    with pytest.raises(TypeError, match="remat"):  # remat with the associative scan: not writable
        jrnn.Associative(remat=2)
    with pytest.raises(ValueError, match="method"):
        jrnn.unroll(mg, pm, jnp.ones((4, 2)), method="yes")


def test_unbatched_float32_parallel():
    cell = jrnn.cells.min_lstm(8)
    p = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (64, 3), jnp.float32)
    run = jax.jit(
        lambda p, xs, par: jrnn.unroll(cell, p, xs, method=_method(par))[1], static_argnums=2
    )
    h_par, h_seq = run(p, xs, True), run(p, xs, False)
    assert h_par.dtype == jnp.float32
    np.testing.assert_allclose(h_par, h_seq, rtol=1e-5, atol=1e-6)
