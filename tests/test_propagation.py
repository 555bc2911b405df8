"""propagation (stable log-norms of d s_T / d s_t) and gradient_norms (one backward pass)."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jrnn
from jrnn.diagnostics import gradient_norms, propagation, step_jacobians

KEY0 = jax.random.key(0)


def _linear_cell(n, c, dtype, seed=0):
    """h_t = W h_{t-1} + W_xh x_t with W = c * orthogonal: d h_T / d h_t = W^(T-t)."""
    cell = jrnn.cells.elman(n, "identity", use_bias=False)
    params = cell.init(jax.random.key(seed), 1)
    W = c * jrnn.initializers.orthogonal()(jax.random.key(seed + 1), (n, n), jnp.float64)
    params = {"W_xh": params["W_xh"].astype(dtype), "W_hh": W.astype(dtype)}
    return cell, params


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("c", [0.5, 1.5])
def test_linear_cell_long_sequence_is_exact(c, dtype):
    """T = 2000: c^(T-t) spans 10^-602 .. 10^352, far outside float32 (and float64)."""
    n, T = 6, 2000
    cell, params = _linear_cell(n, c, dtype)
    xs = jnp.ones((T, 1), dtype)
    p = jax.jit(lambda p, x: propagation(cell, p, x))(params, xs)
    assert p.log_spectral_norm.shape == (T + 1,) and p.log_spectral_norm.dtype == dtype
    expected = (T - np.arange(T + 1)) * np.log(c)
    rtol = 1e-4 if dtype == jnp.float32 else 1e-10
    np.testing.assert_allclose(p.log_spectral_norm, expected, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(
        p.log_frobenius_norm, expected + 0.5 * np.log(n), rtol=rtol, atol=rtol
    )
    assert p.log_spectral_norm[-1] == 0


@pytest.mark.parametrize("name", ["elman", "lstm"])
def test_matches_direct_product_small_T(name):
    cell = jrnn.cells.elman(5, "tanh") if name == "elman" else jrnn.cells.lstm(3)
    params = cell.init(jax.random.key(3), 2)
    params = jax.tree_util.tree_map(lambda a: 1.5 * a.astype(jnp.float64), params)
    xs = jax.random.normal(jax.random.key(4), (2, 12, 2), jnp.float64)
    p = propagation(cell, params, xs)
    Js = np.asarray(step_jacobians(cell, params, xs))
    assert p.log_spectral_norm.shape == (2, 13)
    for b in range(2):
        P = np.eye(cell.state_size)
        for t in range(12, -1, -1):  # P = d s_T / d s_t
            np.testing.assert_allclose(
                p.log_spectral_norm[b, t], np.log(np.linalg.norm(P, 2)), atol=1e-10
            )
            np.testing.assert_allclose(
                p.log_frobenius_norm[b, t], np.log(np.linalg.norm(P)), atol=1e-10
            )
            if t:
                P = P @ Js[b, t - 1]


def _brute_force_norms(cell, params, xs, loss_fn):
    """T separate gradients: perturb h_t (output and carry leaf), or the carry, or x_t."""
    T = xs.shape[0]
    c0 = cell.initial_carry(params)
    flat0, unravel = ravel_pytree(c0)

    def run(x, t_star, delta, eps):
        carry, hs = c0, []
        for t in range(T):
            carry, h = cell.step(params, carry, x[t])
            if t == t_star:
                leaves, tree = jax.tree_util.tree_flatten(carry)
                # The output h is carry leaf 0 for these cells (elman h; lstm (h, c)).
                leaves[0] = leaves[0] + delta
                h = h + delta
                carry = jax.tree_util.tree_unflatten(tree, leaves)
                carry = jax.tree_util.tree_map(jnp.add, carry, unravel(eps))
            hs.append(h)
        return loss_fn(jnp.stack(hs))

    zero_h, zero_s = jnp.zeros(cell.hidden_size), jnp.zeros_like(flat0)
    hidden = [jnp.linalg.norm(jax.grad(run, 2)(xs, t, zero_h, zero_s)) for t in range(T)]
    state = [jnp.linalg.norm(jax.grad(run, 3)(xs, t, zero_h, zero_s)) for t in range(T)]
    gx = jax.grad(run)(xs, -1, zero_h, zero_s)
    return np.array(hidden), np.array(state), np.linalg.norm(gx, axis=-1)


@pytest.mark.parametrize("mode", ["stacked", "streaming"])
@pytest.mark.parametrize("name", ["elman", "lstm"])
def test_gradient_norms_match_brute_force(name, mode):
    cell = jrnn.cells.elman(4, "tanh") if name == "elman" else jrnn.cells.lstm(3)
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 2)
    )
    xs = jax.random.normal(jax.random.key(1), (6, 2), jnp.float64)
    w = jnp.linspace(-1.0, 1.0, cell.hidden_size)
    loss_fn = lambda hs: jnp.sum(jnp.tanh(hs @ w) ** 2) + jnp.sum(hs[-1] ** 3)
    g = gradient_norms(loss_fn, cell, params, xs, mode=mode)
    hidden, state, inp = _brute_force_norms(cell, params, xs, loss_fn)
    np.testing.assert_allclose(g.hidden, hidden, rtol=1e-10)
    np.testing.assert_allclose(g.state, state, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g.input, inp, rtol=1e-10)
    np.testing.assert_allclose(g.loss, loss_fn(jrnn.unroll(cell, params, xs)[1]), rtol=1e-12)
    assert g.state[-1] == 0 and np.all(g.hidden > 0)


def test_gradient_norms_batched_loss_sees_unroll_shapes():
    cell = jrnn.cells.gru(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (4, 7, 2), jnp.float32)
    loss_fn = lambda hs: jnp.mean(hs[:, -1, 0])  # hs is (B, T, n), as jrnn.unroll gives
    g = gradient_norms(loss_fn, cell, params, xs)
    assert g.hidden.shape == g.state.shape == g.input.shape == (4, 7)
    # The mean over B splits the gradient; each sequence is independent of the others.
    one = gradient_norms(lambda hs: jnp.mean(hs[-1, 0]) / 4, cell, params, xs[2])
    np.testing.assert_allclose(g.hidden[2], one.hidden, rtol=1e-5)


GN_CELLS = {
    "elman": lambda: jrnn.cells.elman(4, "tanh"),
    "lstm": lambda: jrnn.cells.lstm(3),
    "gru": lambda: jrnn.cells.gru(3),
    "stack": lambda: jrnn.stack([jrnn.cells.elman(3), jrnn.cells.lstm(2)]),
}


@pytest.mark.parametrize("name", list(GN_CELLS))
def test_gradient_norms_streaming_equals_stacked(name):
    """The reverse scan of per-step VJPs equals jax.grad through the perturbed scan, for a
    batch with a given initial carry and a loss that mixes sequences (the stack's output is
    the LSTM's h, a leaf of the last layer's carry)."""
    cell = GN_CELLS[name]()
    params = jax.tree_util.tree_map(lambda a: 1.3 * a.astype(jnp.float64), cell.init(KEY0, 2))
    xs = jax.random.normal(jax.random.key(1), (2, 6, 2), jnp.float64)
    c1 = cell.initial_carry(params)
    flat, unravel = ravel_pytree(c1)
    noise = 0.5 * jax.random.normal(jax.random.key(2), (2, flat.size), jnp.float64)
    carry = jax.vmap(unravel)(noise)
    w = jnp.linspace(-1.0, 1.0, cell.hidden_size)
    loss_fn = lambda hs: jnp.sum(jnp.tanh(hs @ w) ** 2) + jnp.mean(hs[:, -1] ** 3)
    a = gradient_norms(loss_fn, cell, params, xs, carry=carry, mode="stacked")
    b = gradient_norms(loss_fn, cell, params, xs, carry=carry, mode="streaming")
    assert b.hidden.shape == b.state.shape == b.input.shape == (2, 6)
    for field in ("loss", "hidden", "state", "input"):
        np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-12, atol=1e-14)
    assert np.all(np.asarray(b.state[:, :-1]) > 0) and np.all(np.asarray(b.state[:, -1]) == 0)


def test_gradient_norms_float32_params_float64_inputs():
    """Used to crash (scan carry float32 in, float64 out). Dtypes are promoted once, as
    jrnn.unroll does: the run is the float64 run of the same (exactly representable) params."""
    cell = jrnn.cells.gru(3)
    p32 = cell.init(KEY0, 2)
    p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p32)
    xs = jax.random.normal(jax.random.key(1), (6, 2), jnp.float64)
    seen = []

    def loss_fn(hs):
        seen.append(hs.dtype)
        return jnp.sum(hs**2)

    assert jrnn.unroll(cell, p32, xs)[1].dtype == jnp.float64
    for mode in ("stacked", "streaming"):
        got = gradient_norms(loss_fn, cell, p32, xs, mode=mode)
        want = gradient_norms(loss_fn, cell, p64, xs, mode=mode)
        for g, w_ in zip(got, want):
            assert g.dtype == jnp.float64
            np.testing.assert_allclose(g, w_, rtol=1e-13)
    assert set(seen) == {jnp.dtype(jnp.float64)}
    # Integer inputs take the params' float dtype (jax.grad cannot differentiate integers).
    ints = gradient_norms(loss_fn, cell, p32, jnp.ones((6, 2), jnp.int32), mode="streaming")
    assert ints.input.dtype == jnp.float32


def test_gradient_norms_mode_auto_follows_the_memory_budget(monkeypatch):
    prop = importlib.import_module("jrnn.diagnostics.propagation")  # the module, not the function
    calls = []
    real = prop._streaming_norms
    monkeypatch.setattr(prop, "_streaming_norms", lambda *a: calls.append(1) or real(*a))
    cell = jrnn.cells.elman(3)
    params = cell.init(KEY0, 1)
    xs, loss_fn = jnp.ones((5, 1)), lambda hs: jnp.sum(hs)
    big = gradient_norms(loss_fn, cell, params, xs)
    assert calls == []  # a few hundred bytes: stacked
    small = gradient_norms(loss_fn, cell, params, xs, memory_budget=64)
    assert calls == [1]
    np.testing.assert_allclose(small.hidden, big.hidden, rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"mode must be one of \('auto', 'stacked', 'streaming'\), got 'chunked'"
    ):
        gradient_norms(loss_fn, cell, params, xs, mode="chunked")
    with pytest.raises(ValueError, match="memory_budget must be an integer >= 1, got 0"):
        gradient_norms(loss_fn, cell, params, xs, memory_budget=0)


def test_exactly_zero_products_give_minus_inf_not_nan():
    """A ReLU net whose Jacobian product becomes exactly 0 (every unit dead): log ||d h_T / d h_t||
    is -inf for every t before that point (float64 and float32), never NaN."""
    cell = jrnn.cells.elman(4, "relu")
    for dtype in (jnp.float64, jnp.float32):
        p = jax.tree_util.tree_map(lambda a: a.astype(dtype), cell.init(jax.random.key(0), 1))
        p = {**p, "b_h": jnp.full((4,), -100.0, dtype)}  # every unit dead at every step
        xs = jnp.ones((40, 1), dtype)
        prop = jrnn.diagnostics.propagation(cell, p, xs)
        ls = np.asarray(prop.log_spectral_norm)
        assert not np.isnan(ls).any(), dtype
        assert ls[-1] == 0.0 and np.all(np.isneginf(ls[:-1])), (dtype, ls[:3])
