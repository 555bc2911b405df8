"""Tasks: shapes, the definitions (markers, delimiters, continuation), closed-form
baselines, determinism, and errors that name the argument."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jrnn import tasks

KEY = jax.random.key(0)


# ----------------------------------------------------------------------------- adding


def test_adding_definition():
    x, y = tasks.adding(KEY, 64, 11)
    chex.assert_shape(x, (64, 11, 2))
    chex.assert_shape(y, (64, 1))
    x, y = np.asarray(x), np.asarray(y)
    v, m = x[..., 0], x[..., 1]
    assert set(np.unique(m)) == {0.0, 1.0}
    half = 11 // 2
    np.testing.assert_array_equal(m[:, :half].sum(1), 1)  # one marker in each half
    np.testing.assert_array_equal(m[:, half:].sum(1), 1)
    assert v.min() >= 0 and v.max() < 1
    np.testing.assert_allclose(y[:, 0], (v * m).sum(1), rtol=1e-6)


def test_adding_baseline_is_mse_of_predicting_one():
    assert tasks.ADDING_BASELINE == tasks.adding_baseline == pytest.approx(1 / 6)
    _, y = tasks.adding(KEY, 40_000, 4)
    mse = float(tasks.mse(jnp.ones_like(y), y))
    # Var(u1 + u2) = 1/6; std of the estimate ~ 0.001 at this size.
    assert mse == pytest.approx(1 / 6, abs=0.006)


def test_adding_deterministic_and_key_dependent():
    a = tasks.adding(KEY, 8, 20)
    b = tasks.adding(KEY, 8, 20)
    c = tasks.adding(jax.random.key(1), 8, 20)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: tasks.adding(KEY, 4, 1), "length"),
        (lambda: tasks.adding(KEY, 0, 10), "batch_size"),
        (lambda: tasks.copy_memory(KEY, 4, 0), "delay"),
        (lambda: tasks.copy_memory(KEY, -1, 5), "batch_size"),
        (lambda: tasks.copy_memory(KEY, 4, 5, length=0), "length"),
        (lambda: tasks.sine(KEY, 4, 1), "length"),
        (lambda: tasks.sine(KEY, 0), "batch_size"),
        (lambda: tasks.adding(jax.random.split(KEY, 2), 4, 10), "key"),
        (lambda: tasks.digits("valid"), "split"),
        (lambda: tasks.digits("train", permuted=True), "key"),
        (lambda: tasks.digits("train", key=KEY), "key"),
        (lambda: tasks.copy_baseline(0), "delay"),
    ],
)
def test_bad_input_names_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_non_integer_size_is_a_type_error():
    with pytest.raises(TypeError, match="batch_size must be an integer, got 2.5"):
        tasks.adding(KEY, 2.5, 10)


# ----------------------------------------------------------------------------- copy


def test_copy_memory_definition():
    delay, L, n = 7, 4, 5
    x, y = tasks.copy_memory(KEY, 16, delay, n_symbols=n, length=L)
    T = delay + 2 * L
    chex.assert_shape(x, (16, T, n + 2))
    chex.assert_shape(y, (16, T))
    x, y = np.asarray(x), np.asarray(y)
    np.testing.assert_array_equal(x.sum(-1), 1)  # one-hot
    tokens = x.argmax(-1)
    symbols = tokens[:, :L]
    assert symbols.min() >= 1 and symbols.max() <= n
    np.testing.assert_array_equal(tokens[:, L : L + delay - 1], 0)
    np.testing.assert_array_equal(tokens[:, L + delay - 1], n + 1)  # the delimiter
    np.testing.assert_array_equal(tokens[:, L + delay :], 0)
    np.testing.assert_array_equal(y[:, : T - L], 0)
    np.testing.assert_array_equal(y[:, T - L :], symbols)  # recall the symbols
    assert y.dtype == np.int32


def test_copy_baseline_closed_form_via_loss():
    """The memoryless strategy's cross-entropy equals 10 ln 8 / (T + 20)."""
    delay = 30
    assert tasks.copy_baseline(delay) == pytest.approx(10 * math.log(8) / (delay + 20))
    x, y = tasks.copy_memory(KEY, 4, delay)
    T, C = y.shape[1], 9
    blank = jnp.full((T - 10, C), -1e4).at[:, 0].set(0.0)  # certain blank
    guess = jnp.zeros((10, C)).at[:, 0].set(-1e4)  # uniform over the 8 symbols
    logits = jnp.broadcast_to(jnp.concatenate([blank, guess])[None], (4, T, C))
    loss = float(tasks.sequence_cross_entropy(logits, y))
    assert loss == pytest.approx(tasks.copy_baseline(delay), rel=1e-6)


# ----------------------------------------------------------------------------- sine


def test_sine_is_a_continuation():
    """sin(a + w(k+1)) = 2 cos(w) sin(a + wk) - sin(a + w(k-1)) links x and y."""
    x, y = tasks.sine(KEY, 32, dtype=jnp.float64)
    chex.assert_shape(x, (32, 10, 1))
    chex.assert_shape(y, (32, 1))
    s = np.concatenate([np.asarray(x)[:, :, 0], np.asarray(y)], axis=1)  # (B, 11)
    # Recover 2 cos(w) from the window by least squares, then predict y.
    a, b, c = s[:, 2:10], s[:, 1:9], s[:, 0:8]
    two_cos = np.sum((a + c) * b, 1) / np.sum(b * b, 1)
    pred = two_cos * s[:, 9] - s[:, 8]
    np.testing.assert_allclose(pred, s[:, 10], atol=1e-8)
    w = np.arccos(two_cos / 2)
    assert w.min() >= 0.1 - 1e-6 and w.max() <= 0.5 + 1e-6


def test_sine_baseline():
    _, y = tasks.sine(KEY, 20_000)
    assert float(jnp.mean(y**2)) == pytest.approx(tasks.SINE_BASELINE, abs=0.02)


# ----------------------------------------------------------------------------- digits


def test_digits_split_and_scaling():
    from sklearn.datasets import load_digits

    xtr, ytr = tasks.digits("train")
    xte, yte = tasks.digits("test")
    chex.assert_shape(xtr, (1437, 64, 1))
    chex.assert_shape(xte, (360, 64, 1))
    assert float(xtr.min()) == 0.0 and float(xtr.max()) == 1.0
    assert set(np.unique(np.asarray(ytr))) == set(range(10))
    # The two splits are a partition of the 1797 images, labels kept with images.
    raw = load_digits()
    rows = np.concatenate([np.asarray(xtr)[..., 0], np.asarray(xte)[..., 0]]) * 16
    labels = np.concatenate([np.asarray(ytr), np.asarray(yte)])
    order = np.lexsort(np.column_stack([rows, labels]).T)
    ref_order = np.lexsort(np.column_stack([raw.data, raw.target]).T)
    np.testing.assert_array_equal(rows[order], raw.data[ref_order])
    np.testing.assert_array_equal(labels[order], raw.target[ref_order])
    chex.assert_trees_all_equal(tasks.digits("test"), (xte, yte))  # deterministic


def test_digits_permuted_is_one_fixed_permutation():
    x, y = tasks.digits("test")
    k = jax.random.key(3)
    xp, yp = tasks.digits("test", permuted=True, key=k)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(yp))
    perm = np.asarray(jax.random.permutation(k, 64))
    np.testing.assert_array_equal(np.asarray(xp), np.asarray(x)[:, perm])
    xp_train, _ = tasks.digits("train", permuted=True, key=k)
    xtr, _ = tasks.digits("train")
    np.testing.assert_array_equal(np.asarray(xp_train), np.asarray(xtr)[:, perm])


# ----------------------------------------------------------------------------- losses


def test_losses_against_optax_and_numpy():
    k1, k2, k3 = jax.random.split(KEY, 3)
    logits = jax.random.normal(k1, (3, 5, 7))
    labels = jax.random.randint(k2, (3, 5), 0, 7)
    ref = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    np.testing.assert_allclose(tasks.sequence_cross_entropy(logits, labels), ref, rtol=1e-6)
    np.testing.assert_allclose(
        tasks.cross_entropy(logits[:, 0], labels[:, 0]),
        optax.softmax_cross_entropy_with_integer_labels(logits[:, 0], labels[:, 0]).mean(),
        rtol=1e-6,
    )
    acc = np.mean(np.asarray(logits).argmax(-1) == np.asarray(labels))
    np.testing.assert_allclose(tasks.accuracy(logits, labels), acc)
    p, t = jax.random.normal(k3, (2, 4, 1)), jnp.ones((2, 4, 1))
    np.testing.assert_allclose(tasks.mse(p, t), np.mean((np.asarray(p) - 1) ** 2), rtol=1e-6)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: tasks.mse(jnp.zeros((4, 1)), jnp.zeros((4,))), "predictions"),
        (lambda: tasks.cross_entropy(jnp.zeros((4, 3)), jnp.zeros((5,), jnp.int32)), "logits"),
        (lambda: tasks.cross_entropy(jnp.zeros((4, 3)), jnp.zeros((4,))), "labels"),
        (lambda: tasks.sequence_cross_entropy(jnp.zeros((4, 3)), jnp.zeros((4,), int)), "logits"),
        (lambda: tasks.accuracy(jnp.zeros((4, 3)), jnp.zeros((3,), jnp.int32)), "logits"),
    ],
)
def test_loss_shape_errors(call, name):
    with pytest.raises(ValueError, match=name):
        call()
