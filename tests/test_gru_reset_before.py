"""``jrnn.cells.gru(n, reset_after=False)``: the reset-before GRU (Cho et al. 2014, Keras'
``GRU(reset_after=False)``) against a NumPy reference, and its analytic Jacobian and tangent
map against ``jax.jacfwd``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import cells

N, D, T = 5, 3, 7


def _params(seed=0, scale=1.5):
    rng = np.random.default_rng(seed)
    return {
        "W_xh": rng.normal(size=(3 * N, D)),
        "W_hh": scale * rng.normal(size=(3 * N, N)) / np.sqrt(N),
        "b_xh": rng.normal(size=3 * N),
        "b_hh": rng.normal(size=3 * N),
    }


def _np_reset_before(p, xs):
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))
    h, out = np.zeros(N), []
    for x in xs:
        u = p["W_xh"] @ x + p["b_xh"]
        W, b = p["W_hh"], p["b_hh"]
        r = sig(u[:N] + W[:N] @ h + b[:N])
        z = sig(u[N : 2 * N] + W[N : 2 * N] @ h + b[N : 2 * N])
        n = np.tanh(u[2 * N :] + W[2 * N :] @ (r * h) + b[2 * N :])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out)


def test_reset_before_matches_numpy_and_differs_from_reset_after():
    p = _params()
    xs = np.random.default_rng(1).normal(size=(T, D))
    cell = cells.gru(N, reset_after=False)
    assert cell.name == "gru_reset_before"
    _, hs = jrnn.unroll(cell, jax.tree.map(jnp.asarray, p), jnp.asarray(xs))
    np.testing.assert_allclose(hs, _np_reset_before(p, xs), rtol=1e-12, atol=1e-12)
    _, hs_after = jrnn.unroll(cells.gru(N), jax.tree.map(jnp.asarray, p), jnp.asarray(xs))
    assert np.max(np.abs(np.asarray(hs_after) - np.asarray(hs))) > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_reset_before_jacobian_and_tangent_match_jacfwd(seed):
    cell = cells.gru(N, reset_after=False)
    p = jax.tree.map(jnp.asarray, _params(seed, scale=3.0))
    rng = np.random.default_rng(seed + 10)
    h = jnp.asarray(rng.normal(size=N))
    u = cell.input_map(p, jnp.asarray(rng.normal(size=D)))
    auto = jax.jacfwd(lambda h: cell.recur(p, h, u)[0])(h)
    np.testing.assert_allclose(cell.linear.jacobian(p, h, u), auto, rtol=1e-12, atol=1e-12)
    V = jnp.asarray(rng.normal(size=(N, 2)))
    np.testing.assert_allclose(cell.linear.tangent(p, h, u, V), auto @ V, rtol=1e-12, atol=1e-12)


def test_reset_before_init_has_gru_shapes():
    p = cells.gru(4, reset_after=False).init(jax.random.key(0), 2)
    assert {k: v.shape for k, v in p.items()} == {
        "W_xh": (12, 2), "W_hh": (12, 4), "b_xh": (12,), "b_hh": (12,)}


def test_reset_before_passes_the_cell_kit():
    from jrnn.testing import check_cell

    report = check_cell(cells.gru(2, reset_after=False), 2, dtype="float64", steps=2)["float64"]
    assert report["jacobian == jacfwd"] < 1e-12 and report["tangent == jacfwd @ V"] < 1e-12
    assert report["finite differences == jacfwd"] < 1e-6
