"""Cells against independent NumPy references of their equations and against flax.linen."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import jrnn
from jrnn import cells

N, D, T = 5, 3, 7


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------- NumPy references
def np_elman(p, xs, f):
    h = np.zeros(p["W_hh"].shape[0])
    out = []
    for x in xs:
        h = f(p["W_hh"] @ h + p["W_xh"] @ x + p["b_h"])
        out.append(h)
    return np.stack(out)


def np_residual(p, xs, f, alpha):
    h = np.zeros(p["W_hh"].shape[0])
    out = []
    for x in xs:
        h = h + alpha * f(p["W_hh"] @ h + p["W_xh"] @ x + p["b_h"])
        out.append(h)
    return np.stack(out)


def np_indrnn(p, xs, f):
    h = np.zeros(p["w_hh"].shape[0])
    out = []
    for x in xs:
        h = f(p["w_hh"] * h + p["W_xh"] @ x + p["b_h"])
        out.append(h)
    return np.stack(out)


def np_lstm(p, xs):
    """PyTorch nn.LSTM equations, one bias (b_ih + b_hh)."""
    n = p["W_hh"].shape[1]
    h, c = np.zeros(n), np.zeros(n)
    out = []
    for x in xs:
        a = p["W_xh"] @ x + p["W_hh"] @ h + p["b_h"]
        i, f, g, o = (a[k * n : (k + 1) * n] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out), (h, c)


def np_gru(p, xs):
    """PyTorch nn.GRU equations."""
    n = p["W_hh"].shape[1]
    h = np.zeros(n)
    out = []
    for x in xs:
        gi = p["W_xh"] @ x + p["b_xh"]
        gh = p["W_hh"] @ h + p["b_hh"]
        r = _sigmoid(gi[:n] + gh[:n])
        z = _sigmoid(gi[n : 2 * n] + gh[n : 2 * n])
        cand = np.tanh(gi[2 * n :] + r * gh[2 * n :])
        h = (1 - z) * cand + z * h
        out.append(h)
    return np.stack(out)


NP_ACTS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": _sigmoid,
    "identity": lambda x: x,
    "sin": np.sin,
}


def _np(params):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)


def _random_params(cell, key, d=D, scale=0.6):
    """Non-trivial params: every leaf random (biases too), so no term hides."""
    params = cell.init(key, d)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    leaves = [
        scale * jax.random.normal(k, leaf.shape, jnp.float64) for k, leaf in zip(keys, leaves)
    ]
    return jax.tree_util.tree_unflatten(tree, leaves)


XS = np.random.default_rng(0).normal(size=(T, D))


@pytest.mark.parametrize("act", sorted(NP_ACTS))
def test_elman_matches_numpy(act):
    cell = cells.elman(N, act)
    p = _random_params(cell, jax.random.key(0))
    _, hs = jrnn.unroll(cell, p, XS)
    np.testing.assert_allclose(hs, np_elman(_np(p), XS, NP_ACTS[act]), rtol=1e-10, atol=1e-12)


def test_irnn_is_relu_elman_with_identity_init():
    cell = cells.irnn(N, scale=0.9)
    p = cell.init(jax.random.key(0), D)
    np.testing.assert_allclose(p["W_hh"], 0.9 * np.eye(N), rtol=1e-7)
    assert cell.pointwise.activation.name == "relu"
    p = _random_params(cell, jax.random.key(1))
    _, hs = jrnn.unroll(cell, p, XS)
    np.testing.assert_allclose(hs, np_elman(_np(p), XS, NP_ACTS["relu"]), rtol=1e-10)


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_residual_matches_numpy(alpha):
    cell = cells.residual(N, "tanh", alpha)
    p = _random_params(cell, jax.random.key(2))
    _, hs = jrnn.unroll(cell, p, XS)
    np.testing.assert_allclose(hs, np_residual(_np(p), XS, np.tanh, alpha), rtol=1e-10)


def test_indrnn_matches_numpy():
    cell = cells.indrnn(N, "relu")
    p = _random_params(cell, jax.random.key(3))
    _, hs = jrnn.unroll(cell, p, XS)
    np.testing.assert_allclose(hs, np_indrnn(_np(p), XS, NP_ACTS["relu"]), rtol=1e-10)


def test_lstm_matches_numpy():
    cell = cells.lstm(N)
    p = _random_params(cell, jax.random.key(4))
    (h, c), hs = jrnn.unroll(cell, p, XS)
    ref_hs, (ref_h, ref_c) = np_lstm(_np(p), XS)
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c, ref_c, rtol=1e-10, atol=1e-12)


def test_gru_matches_numpy():
    cell = cells.gru(N)
    p = _random_params(cell, jax.random.key(5))
    _, hs = jrnn.unroll(cell, p, XS)
    np.testing.assert_allclose(hs, np_gru(_np(p), XS), rtol=1e-10, atol=1e-12)


def test_lstm_forget_bias_only_initialises():
    cell = cells.lstm(N, forget_bias=2.5)
    p = cell.init(jax.random.key(0), D)
    np.testing.assert_array_equal(p["b_h"][N : 2 * N], 2.5)
    np.testing.assert_array_equal(p["b_h"][:N], 0.0)
    # With the forget slice zeroed, the step is the plain equations: nothing hidden inside.
    p0 = dict(p, b_h=jnp.zeros_like(p["b_h"]))
    ref, _ = np_lstm(_np(p0), XS)
    np.testing.assert_allclose(jrnn.unroll(cell, p0, XS)[1], ref, rtol=1e-6, atol=1e-7)


def test_param_shapes_are_pytorch_layout():
    shapes = lambda c: jax.tree_util.tree_map(jnp.shape, c.init(jax.random.key(0), D))
    assert shapes(cells.elman(N)) == {"W_xh": (N, D), "W_hh": (N, N), "b_h": (N,)}
    assert shapes(cells.lstm(N)) == {"W_xh": (4 * N, D), "W_hh": (4 * N, N), "b_h": (4 * N,)}
    assert shapes(cells.gru(N)) == {
        "W_xh": (3 * N, D),
        "W_hh": (3 * N, N),
        "b_xh": (3 * N,),
        "b_hh": (3 * N,),
    }
    assert shapes(cells.indrnn(N)) == {"W_xh": (N, D), "w_hh": (N,), "b_h": (N,)}


# ------------------------------------------------------------------- flax.linen
def _flax_run(flax_cell, flax_params, carry, xs):
    outs = []
    for x in xs:
        carry, y = flax_cell.apply(flax_params, carry, x)
        outs.append(y)
    return jnp.stack(outs)


def test_elman_matches_flax_simplecell():
    cell = cells.elman(N, "tanh")
    p = _random_params(cell, jax.random.key(6))
    fp = {"params": {"i": {"kernel": p["W_xh"].T, "bias": p["b_h"]}, "h": {"kernel": p["W_hh"].T}}}
    ref = _flax_run(nn.SimpleCell(features=N, param_dtype=jnp.float64), fp, jnp.zeros(N), XS)
    np.testing.assert_allclose(jrnn.unroll(cell, p, XS)[1], ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("flax_cls", [nn.LSTMCell, nn.OptimizedLSTMCell])
def test_lstm_matches_flax(flax_cls):
    cell = cells.lstm(N)
    p = _random_params(cell, jax.random.key(7))
    W_x, W_h, b = p["W_xh"], p["W_hh"], p["b_h"]
    fp = {"params": {}}
    for k, g in enumerate("ifgo"):
        sl = slice(k * N, (k + 1) * N)
        fp["params"]["i" + g] = {"kernel": W_x[sl].T}
        fp["params"]["h" + g] = {"kernel": W_h[sl].T, "bias": b[sl]}
    zeros = jnp.zeros(N)
    ref = _flax_run(flax_cls(features=N, param_dtype=jnp.float64), fp, (zeros, zeros), XS)
    np.testing.assert_allclose(jrnn.unroll(cell, p, XS)[1], ref, rtol=1e-6, atol=1e-6)


def test_gru_matches_flax():
    cell = cells.gru(N)
    p = _random_params(cell, jax.random.key(8))
    # flax has no b_hr, b_hz (they only add to b_ir, b_iz): zero them here.
    p["b_hh"] = p["b_hh"].at[: 2 * N].set(0.0)
    fp = {"params": {}}
    for k, g in enumerate("rzn"):
        sl = slice(k * N, (k + 1) * N)
        fp["params"]["i" + g] = {"kernel": p["W_xh"][sl].T, "bias": p["b_xh"][sl]}
        fp["params"]["h" + g] = {"kernel": p["W_hh"][sl].T}
    fp["params"]["hn"]["bias"] = p["b_hh"][2 * N :]
    ref = _flax_run(nn.GRUCell(features=N, param_dtype=jnp.float64), fp, jnp.zeros(N), XS)
    np.testing.assert_allclose(jrnn.unroll(cell, p, XS)[1], ref, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------- contract
ALL_CELLS = {
    "elman": lambda: cells.elman(N, "tanh"),
    "irnn": lambda: cells.irnn(N),
    "residual": lambda: cells.residual(N, "relu", 0.5),
    "indrnn": lambda: cells.indrnn(N),
    "lstm": lambda: cells.lstm(N),
    "gru": lambda: cells.gru(N),
    "stack": lambda: jrnn.stack([cells.elman(N), cells.lstm(4)]),
}


class CellContractTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(k, k) for k in ALL_CELLS])
    def test_step_is_recur_of_input_map(self, name):
        cell = ALL_CELLS[name]()
        p = _random_params(cell, jax.random.key(9))
        carry = jax.tree_util.tree_map(
            lambda a: jnp.full_like(a, 0.3), cell.initial_carry(p)
        )
        step = self.variant(cell.step)
        c1, h1 = step(p, carry, XS[0])
        c2, h2 = cell.recur(p, carry, cell.input_map(p, XS[0]))
        chex.assert_trees_all_close((c1, h1), (c2, h2), rtol=1e-12, atol=1e-12)
        chex.assert_shape(h1, (cell.hidden_size,))
        assert cells.flatten_carry(c1).shape == (cell.state_size,)

    def test_bad_sizes_rejected(self):
        with pytest.raises(ValueError, match="hidden_size must be an integer >= 1, got 0"):
            cells.elman(0)
        with pytest.raises(ValueError, match="input_size must be an integer >= 1"):
            cells.lstm(3).init(jax.random.key(0), -1)
        with pytest.raises(ValueError, match="Did you mean 'tanh'"):
            cells.elman(3, "tanhh")


def test_stack_residual_needs_equal_widths():
    with pytest.raises(ValueError, match=r"cells\[1\].hidden_size=4"):
        jrnn.stack([cells.elman(5), cells.elman(4)], residual=True)
    with pytest.raises(ValueError, match="non-empty sequence of Cell"):
        jrnn.stack([])


def test_stack_residual_adds_layer_input():
    a, b = cells.elman(N), cells.elman(N, "relu")
    deep = jrnn.stack([a, b], residual=True)
    p = _random_params(deep, jax.random.key(10))
    _, hs = jrnn.unroll(deep, p, XS)
    h1 = np_elman(_np(p[0]), XS, np.tanh)
    h2 = np_elman(_np(p[1]), h1, NP_ACTS["relu"])
    np.testing.assert_allclose(hs, h1 + h2, rtol=1e-10)


def test_orthogonal_blocks_equal_separate_orthogonal_draws_in_one_qr():
    """Per-gate orthogonal blocks (LSTM/GRU default) equal separate draws with the split keys,
    come from a single (batched) QR in the compiled program, and are each orthogonal."""
    init = jrnn.initializers.orthogonal_blocks(4, gain=1.5)
    key = jax.random.key(3)
    W = init(key, (4 * 6, 6), jnp.float64)
    orth = jrnn.initializers.orthogonal(1.5)
    ref = jnp.concatenate([orth(k, (6, 6), jnp.float64) for k in jax.random.split(key, 4)])
    np.testing.assert_allclose(W, ref, atol=1e-12)
    for b in np.split(np.asarray(W), 4):
        np.testing.assert_allclose(b @ b.T, 2.25 * np.eye(6), atol=1e-12)
    hlo = jax.jit(lambda k: init(k, (24, 6))).lower(key).as_text()
    assert hlo.count("custom_call @lapack_sgeqrf_ffi") == 1  # one batched QR, not four
    with pytest.raises(ValueError, match="multiple of blocks=4"):
        init(key, (10, 6))
    cell = jrnn.cells.lstm(6)
    p = cell.init(key, 2)
    k_h = jax.random.split(key, 3)[1]
    np.testing.assert_allclose(p["W_hh"], jrnn.initializers.orthogonal_blocks(4)(k_h, (24, 6)))
