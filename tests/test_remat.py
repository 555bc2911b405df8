"""remat (checkpoint every k steps) changes memory, never values or gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn

B, T, D, N = 3, 13, 2, 4  # T = 13: no chunk length below divides it


def _setup(cell):
    p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), D))
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64)
    return p, xs


def _value_and_grad(cell, p, xs, remat=None, **kwargs):
    # remat=None: the default method ("auto"); else the checkpointed scan jrnn.Scan(remat=...).
    method = "auto" if remat is None else jrnn.Scan(remat=remat)

    def loss(p, xs):
        c, hs = jrnn.unroll(cell, p, xs, method=method, **kwargs)
        leaves = jax.tree_util.tree_leaves(c)
        return jnp.sum(jnp.tanh(hs) * hs) + sum(jnp.sum(l**3) for l in leaves), (c, hs)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(p, xs)


def _assert_close(a, b):
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-12), a, b
    )


CELLS = {"elman": jrnn.cells.elman(N, "relu"), "lstm": jrnn.cells.lstm(N), "gru": jrnn.cells.gru(N)}


@pytest.mark.parametrize("name, remat", [("elman", True), ("elman", 1), ("lstm", 4), ("gru", 20)])
def test_remat_same_values_and_gradients(name, remat):
    """remat=True (k = round(sqrt(13)) = 4), k = 1, k = 4 and k > T all match no remat."""
    cell = CELLS[name]
    p, xs = _setup(cell)
    _assert_close(_value_and_grad(cell, p, xs, remat=remat), _value_and_grad(cell, p, xs))


@pytest.mark.parametrize("remat", [5])
def test_remat_with_lengths_and_reverse(remat):
    cell = CELLS["lstm"]
    p, xs = _setup(cell)
    kwargs = dict(lengths=jnp.array([13, 6, 0]), reverse=True)
    got = _value_and_grad(cell, p, xs, remat=remat, **kwargs)
    _assert_close(got, _value_and_grad(cell, p, xs, **kwargs))
    np.testing.assert_array_equal(got[0][1][1][2], 0.0)


def test_remat_stack_unbatched_with_carry():
    cell = jrnn.stack([jrnn.cells.elman(N), jrnn.cells.gru(3)])
    p, xs = _setup(cell)
    xs = xs[0]
    carry = jax.tree_util.tree_map(lambda c: c + 0.3, cell.initial_carry(p))
    _assert_close(
        _value_and_grad(cell, p, xs, remat=4, carry=carry),
        _value_and_grad(cell, p, xs, carry=carry),
    )


def test_remat_lowers_memory():
    """The compiled backward keeps O(T/k + k) instead of O(T) per-step residuals."""
    cell = jrnn.cells.elman(16)
    p = cell.init(jax.random.key(0), 1)
    xs = jnp.ones((2, 400, 1), jnp.float32)

    def temp_bytes(remat):
        def loss(p):
            method = "auto" if remat is False else jrnn.Scan(remat=remat)
            carry, _ = jrnn.unroll(cell, p, xs, method=method)
            return jnp.sum(carry**2)

        mem = jax.jit(jax.grad(loss)).lower(p).compile().memory_analysis()
        return None if mem is None else mem.temp_size_in_bytes

    full, chunked = temp_bytes(False), temp_bytes(True)
    if full is None:
        pytest.skip("backend reports no memory analysis")
    assert chunked * 4 < full


def test_remat_rejects_bad_values():
    cell = jrnn.cells.elman(3)
    p = cell.init(jax.random.key(0), 2)
    # validation.check_int's convention: out of range ValueError, not an integer TypeError.
    for bad, error in ((0, ValueError), (-2, ValueError), (1.5, TypeError), ("yes", TypeError)):
        with pytest.raises(error, match="remat"):
            jrnn.unroll(cell, p, jnp.ones((4, 2)), method=jrnn.Scan(remat=bad))
