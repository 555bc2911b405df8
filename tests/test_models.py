"""Models (stack + readout) and initialisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import cells, initializers


def test_seed_keras_model_shapes_and_equations():
    """SimpleRNN(64, return_sequences) -> SimpleRNN(32) -> Dense(1) on input (10, 1)."""
    model = jrnn.models.rnn([cells.elman(64), cells.elman(32)], output_size=1)
    params = model.init(jax.random.key(0), 1)
    xs = jax.random.normal(jax.random.key(1), (32, 10, 1))
    out = model.apply(params, xs)
    assert out.shape == (32, 1)
    # By hand: layer 1 over the whole sequence, layer 2 over layer 1's outputs, dense on h_T.
    p1, p2 = params["cell"]
    _, h1 = jrnn.unroll(cells.elman(64), p1, xs)
    _, h2 = jrnn.unroll(cells.elman(32), p2, h1)
    r = params["readout"]
    ref = h2[:, -1] @ r["W_ho"].T + r["b_o"][None]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_return_sequences_and_lengths():
    model = jrnn.models.rnn(cells.gru(8), 3, output_activation="sigmoid", return_sequences=True)
    params = model.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (4, 6, 2))
    seq = model.apply(params, xs)
    assert seq.shape == (4, 6, 3)
    assert np.all((np.asarray(seq) > 0) & (np.asarray(seq) < 1))
    last = jrnn.models.rnn(cells.gru(8), 3, output_activation="sigmoid")
    lengths = jnp.array([6, 2, 1, 4])
    out = last.apply(params, xs, lengths=lengths)
    for b, L in enumerate([6, 2, 1, 4]):
        np.testing.assert_allclose(out[b], last.apply(params, xs[b, :L]), rtol=1e-5, atol=1e-6)


def test_empty_sequence_has_no_last_output():
    """T = 0: return_sequences=True gives the empty output unroll gives; the last-step readout
    raises a ValueError naming xs (it was an IndexError), batched or not, with lengths, jitted.
    A zero length inside a batch with T >= 1 reads out the zeroed padding output, g(b_o)."""
    seq = jrnn.models.rnn(cells.elman(3), 2, return_sequences=True)
    last = jrnn.models.rnn(cells.elman(3), 2, output_activation="sigmoid")
    params = last.init(jax.random.key(0), 1)
    assert seq.apply(params, jnp.zeros((4, 0, 1))).shape == (4, 0, 2)
    assert seq.apply(params, jnp.zeros((0, 1))).shape == (0, 2)
    assert jrnn.unroll(last.cell, params["cell"], jnp.zeros((4, 0, 1)))[1].shape == (4, 0, 3)
    for call in (
        lambda: last.apply(params, jnp.zeros((0, 1))),
        lambda: last.apply(params, jnp.zeros((4, 0, 1))),
        lambda: last.apply(params, jnp.zeros((4, 0, 1)), lengths=jnp.zeros(4, jnp.int32)),
        lambda: jax.jit(last.apply)(params, jnp.zeros((4, 0, 1))),
    ):
        with pytest.raises(ValueError, match=r"xs has T=0 steps \(shape .*return_sequences"):
            call()
    b_o = params["readout"]["b_o"] + jnp.array([0.3, -0.2])
    params["readout"]["b_o"] = b_o
    out = last.apply(params, jnp.ones((2, 3, 1)), lengths=jnp.array([0, 3]))
    np.testing.assert_allclose(out[0], jax.nn.sigmoid(b_o), rtol=1e-6)
    np.testing.assert_allclose(out[1], last.apply(params, jnp.ones((3, 1))), rtol=1e-6)


def test_model_rejects_bad_output_size():
    with pytest.raises(ValueError, match="output_size must be an integer >= 1, got 0"):
        jrnn.models.rnn(cells.elman(3), 0)


def test_initializers():
    key = jax.random.key(0)
    W = initializers.orthogonal(0.7)(key, (32, 32))
    np.testing.assert_allclose(np.linalg.svd(np.asarray(W), compute_uv=False), 0.7, rtol=1e-5)
    W = initializers.scaled_normal(2.0)(key, (400, 500))
    assert np.std(np.asarray(W)) == pytest.approx(2.0 / np.sqrt(500), rel=0.02)
    np.testing.assert_array_equal(initializers.identity(0.5)(key, (3, 3)), 0.5 * np.eye(3))
    U = np.asarray(initializers.uniform_pytorch(16)(key, (64, 16)))
    assert U.min() >= -0.25 and U.max() <= 0.25 and U.max() > 0.2
    G = np.asarray(initializers.glorot_uniform()(key, (30, 10)))
    assert np.abs(G).max() <= np.sqrt(6 / 40)
    with pytest.raises(ValueError, match="shape must be 1-D or 2-D"):
        initializers.identity()(key, (2, 2, 2))
