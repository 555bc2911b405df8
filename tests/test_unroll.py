"""The scan driver: loop equivalence, lengths, reverse, remat, batching, input checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jrnn
from jrnn import cells

N, D = 6, 3

CELLS = {
    "elman": lambda: cells.elman(N, "tanh"),
    "lstm": lambda: cells.lstm(N),
    "gru": lambda: cells.gru(N),
    "indrnn": lambda: cells.indrnn(N),
    "residual": lambda: cells.residual(N, "tanh", 0.5),
    "stack": lambda: jrnn.stack([cells.gru(N), cells.elman(4, "relu")]),
}


def _setup(name, B=3, T=9, seed=0):
    cell = CELLS[name]()
    params = cell.init(jax.random.key(seed), D)
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, D))
    return cell, params, xs


def python_loop(cell, params, xs, carry=None):
    carry = cell.initial_carry(params) if carry is None else carry
    hs = []
    for x in xs:
        carry, h = cell.step(params, carry, x)
        hs.append(h)
    return carry, (jnp.stack(hs) if hs else jnp.zeros((0, cell.hidden_size)))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_scan_equals_python_loop(name):
    cell, params, xs = _setup(name)
    carry, hs = jrnn.unroll(cell, params, xs)
    for b in range(xs.shape[0]):
        c_ref, h_ref = python_loop(cell, params, xs[b])
        np.testing.assert_allclose(hs[b], h_ref, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda a: a[b], carry), c_ref, rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("name", ["elman", "lstm", "stack"])
def test_lengths_equal_truncated_sequences(name):
    cell, params, xs = _setup(name, B=4, T=8)
    lengths = jnp.array([8, 5, 1, 0])
    carry, hs = jrnn.unroll(cell, params, xs, lengths=lengths)
    for b, L in enumerate(np.asarray(lengths)):
        c_ref, h_ref = python_loop(cell, params, xs[b, :L])
        np.testing.assert_allclose(hs[b, :L], h_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(hs[b, L:], 0.0)
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda a: a[b], carry), c_ref, rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("name", ["elman", "gru"])
def test_reverse_equals_flipping(name):
    cell, params, xs = _setup(name)
    c_rev, h_rev = jrnn.unroll(cell, params, xs, reverse=True)
    c_flip, h_flip = jrnn.unroll(cell, params, xs[:, ::-1])
    np.testing.assert_allclose(h_rev, h_flip[:, ::-1], rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(c_rev, c_flip, rtol=1e-6, atol=1e-6)


def test_reverse_with_lengths_starts_at_last_valid_step():
    cell, params, xs = _setup("elman", B=2, T=7)
    lengths = jnp.array([7, 4])
    _, hs = jrnn.unroll(cell, params, xs, lengths=lengths, reverse=True)
    _, ref = jrnn.unroll(cell, params, xs[1:2, :4][:, ::-1])
    np.testing.assert_allclose(hs[1, :4], ref[0, ::-1], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(hs[1, 4:], 0.0)


def test_stack_of_one_cell_equals_the_cell():
    cell, params, xs = _setup("lstm")
    one = jrnn.stack([cell])
    (c,), hs1 = jrnn.unroll(one, (params,), xs)
    c_ref, hs = jrnn.unroll(cell, params, xs, method=jrnn.Scan())  # the same per-example scan
    np.testing.assert_array_equal(hs1, hs)
    chex.assert_trees_all_equal(c, c_ref)


def test_unbatched_equals_batched_row():
    cell, params, xs = _setup("gru")
    _, hs = jrnn.unroll(cell, params, xs)
    _, h0 = jrnn.unroll(cell, params, xs[0])
    np.testing.assert_allclose(h0, hs[0], rtol=1e-6, atol=1e-7)


def test_initial_carry_is_used():
    cell, params, xs = _setup("lstm", B=2)
    carry = (jnp.full((2, N), 0.5), jnp.full((2, N), -0.25))
    _, hs = jrnn.unroll(cell, params, xs, carry=carry)
    _, ref = python_loop(cell, params, xs[1], (carry[0][1], carry[1][1]))
    np.testing.assert_allclose(hs[1], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("remat", [True, 4, 5])
@pytest.mark.parametrize("reverse", [False, True])
def test_remat_same_outputs_and_gradients(remat, reverse):
    cell, params, xs = _setup("lstm", B=2, T=11)
    lengths = jnp.array([11, 6])

    def loss(p, **kw):
        _, hs = jrnn.unroll(cell, p, xs, lengths=lengths, reverse=reverse, **kw)
        return jnp.sum(hs**2)

    v0, g0 = jax.value_and_grad(loss)(params)
    v1, g1 = jax.value_and_grad(lambda p: loss(p, method=jrnn.Scan(remat=remat)))(params)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    chex.assert_trees_all_close(g1, g0, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", [jrnn.Fused(unroll=4), jrnn.Scan(unroll=4)])
def test_unroll_option_does_not_change_results(method):
    cell, params, xs = _setup("elman")
    np.testing.assert_allclose(
        jrnn.unroll(cell, params, xs, method=method)[1],
        jrnn.unroll(cell, params, xs)[1],
        rtol=1e-6,
    )


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_and_no_jit_agree(self):
        cell, params, xs = _setup("gru")
        lengths = jnp.array([9, 3, 6])
        f = self.variant(lambda p, x, l: jrnn.unroll(cell, p, x, lengths=l))
        chex.assert_trees_all_close(
            f(params, xs, lengths), jrnn.unroll(cell, params, xs, lengths=lengths), atol=1e-6
        )

    def test_no_retracing(self):
        cell, params, xs = _setup("elman")

        @jax.jit
        @chex.assert_max_traces(n=1)
        def run(p, x):
            return jrnn.unroll(cell, p, x)[1]

        for k in range(3):
            run(params, xs + k)


# ------------------------------------------------------------------- bad input
def test_errors_name_argument_and_shapes():
    cell, params, xs = _setup("elman")
    with pytest.raises(ValueError, match=r"xs must have shape \(T, 3\).*got \(9,\) \(rank 1\)"):
        jrnn.unroll(cell, params, xs[0, :, 0])
    with pytest.raises(ValueError, match=r"feature size 3.*got shape \(3, 9, 2\).*\(B, T, 3\)"):
        jrnn.unroll(cell, params, xs[..., :2])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 9\]"):
        jrnn.unroll(cell, params, xs, lengths=jnp.array([1, 2, 10]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\).*got \(2,\)"):
        jrnn.unroll(cell, params, xs, lengths=jnp.array([1, 2]))
    with pytest.raises(ValueError, match="lengths must be integers"):
        jrnn.unroll(cell, params, xs, lengths=jnp.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"carry leaf 0 must have shape \(3, 6\), got \(6,\)"):
        jrnn.unroll(cell, params, xs, carry=jnp.zeros(N))
    with pytest.raises(ValueError, match="carry must have the structure"):
        jrnn.unroll(cell, params, xs, carry=(jnp.zeros((3, N)), jnp.zeros((3, N))))
    with pytest.raises(ValueError, match="remat must be"):
        jrnn.unroll(cell, params, xs, method=jrnn.Scan(remat=0))


def test_errors_raised_before_tracing():
    cell, params, xs = _setup("elman")
    traced = []

    def recur(p, c, u):
        traced.append(1)
        return cell.recur(p, c, u)

    spy = cell._replace(recur=recur)
    with pytest.raises(ValueError):
        jrnn.unroll(spy, params, xs[..., :2])
    assert not traced


# ------------------------------------------------------------------- properties
@settings(max_examples=8)
@given(
    B=st.integers(1, 3),
    T=st.integers(1, 6),
    d=st.integers(1, 3),
    n=st.integers(1, 4),
    act=st.sampled_from(jrnn.activations.names()),
)
def test_property_shapes_and_loop_equivalence(B, T, d, n, act):
    cell = cells.elman(n, act)
    params = cell.init(jax.random.key(B * 100 + T), d)
    xs = 0.5 * jax.random.normal(jax.random.key(d), (B, T, d))
    carry, hs = jrnn.unroll(cell, params, xs)
    chex.assert_shape(hs, (B, T, n))
    chex.assert_shape(carry, (B, n))
    _, ref = python_loop(cell, params, xs[-1])
    np.testing.assert_allclose(hs[-1], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(carry, hs[:, -1])


def test_bidirectional_concatenates_forward_and_reverse():
    bi = jrnn.bidirectional(cells.gru(4), cells.elman(3))
    params = bi.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (2, 5, D))
    _, hs = bi.apply(params, xs)
    chex.assert_shape(hs, (2, 5, 7))
    np.testing.assert_allclose(hs[..., :4], jrnn.unroll(bi.forward, params[0], xs)[1])
    np.testing.assert_allclose(
        hs[..., 4:], jrnn.unroll(bi.backward, params[1], xs, reverse=True)[1]
    )
    with pytest.raises(ValueError, match="merge must be"):
        jrnn.bidirectional(cells.gru(4), cells.gru(4), merge="avg")
