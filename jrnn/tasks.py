"""Long-memory benchmark tasks and their losses, generated in JAX from a PRNG key.

Every generator is a pure function of its key (and Python-int sizes), so a run
is reproducible batch by batch, and a resumed run sees the batches it would
have seen (:func:`jrnn.train.fit` draws batch ``t`` from
``fold_in(rng, t)``).

* :func:`adding` — the adding problem (Hochreiter & Schmidhuber 1997; Le,
  Jaitly & Hinton 2015): sum the two marked values of a long sequence.
  Always answering 1 scores :data:`ADDING_BASELINE` ``= 1/6``.
* :func:`copy_memory` — the copy task of Arjovsky, Shah & Bengio 2016: recall
  10 symbols after a delay. The memoryless baseline is
  :func:`copy_baseline` ``= 10 ln 8 / (delay + 20)``.
* :func:`sine` — next-value regression with input ``(B, 10, 1)``, the shape of
  the seed article's Keras example.
* :func:`digits` — scikit-learn's bundled 8x8 digits read pixel by pixel
  (64 steps, 1 feature), optionally with a fixed pixel permutation
  (sequential / permuted MNIST in miniature).

Losses: :func:`mse`, :func:`sequence_cross_entropy`, :func:`cross_entropy`,
:func:`accuracy`. They check shapes eagerly and raise ``ValueError`` naming the
argument on a mismatch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import validation
from jrnn.validation import check_int

__all__ = [
    "ADDING_BASELINE",
    "SINE_BASELINE",
    "accuracy",
    "adding",
    "adding_baseline",
    "copy_baseline",
    "copy_memory",
    "cross_entropy",
    "digits",
    "mse",
    "sequence_cross_entropy",
    "sine",
]

ADDING_BASELINE = 1.0 / 6.0
"""MSE of always predicting 1 on the adding problem: ``Var(u_1 + u_2) = 2/12``."""

#: Lower-case alias of :data:`ADDING_BASELINE`.
adding_baseline = ADDING_BASELINE

SINE_BASELINE = 0.5
"""MSE of always predicting 0 on :func:`sine`: ``E[sin^2] = 1/2``."""

DIGITS_TEST_SIZE = 360
"""Number of the 1797 digits held out as the test split (about 20 %)."""

_DIGITS_SPLIT_SEED = 0


def _check_key(key, name: str = "key") -> jax.Array:
    """One PRNG key (:func:`jrnn.validation.check_key`); a batch of keys is pointed to vmap.
    A missing key (None) stays a ``ValueError``: the argument is required, not mistyped."""
    if key is None:
        raise ValueError(f"{name} must be a PRNG key (jax.random.key(seed)), got None.")
    try:
        return validation.check_key(key, name)
    except ValueError as error:
        raise ValueError(
            f"{error} Use jax.vmap to generate batches for several keys."
        ) from None


# --------------------------------------------------------------------------- adding


def adding(
    key: jax.Array, batch_size: int, length: int, *, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
    """The adding problem (Hochreiter & Schmidhuber 1997, as in Le et al. 2015).

    Each step carries two features: a value ``v_t ~ U[0, 1]`` and a marker
    ``m_t in {0, 1}`` that is 1 at exactly two steps, one drawn uniformly in the
    first half ``[0, T//2)`` and one in the second half ``[T//2, T)``. The target
    is the sum of the two marked values:

    .. math::

       y = \\sum_t m_t v_t, \\qquad
       \\mathbb{E}[(y - 1)^2] = \\mathrm{Var}(v_a + v_b) = 1/6 = \\mathrm{ADDING\\_BASELINE}.

    Args:
      key: a PRNG key.
      batch_size: ``B >= 1``.
      length: ``T >= 2`` (each half needs a step).
      dtype: float dtype of ``x`` and ``y``.

    Returns:
      ``x (B, T, 2)`` with ``x[..., 0] = v`` and ``x[..., 1] = m``; ``y (B, 1)``.

    Example::

        >>> x, y = jrnn.tasks.adding(jax.random.key(0), 32, 100)
        >>> x.shape, y.shape
        ((32, 100, 2), (32, 1))
    """
    key = _check_key(key)
    B = check_int(batch_size, "batch_size", low=1)
    T = check_int(length, "length", low=2)
    k_v, k_a, k_b = jax.random.split(key, 3)
    half = T // 2
    v = jax.random.uniform(k_v, (B, T), dtype=dtype)
    a = jax.random.randint(k_a, (B,), 0, half)
    b = jax.random.randint(k_b, (B,), half, T)
    t = jnp.arange(T)[None, :]
    m = ((t == a[:, None]) | (t == b[:, None])).astype(dtype)
    x = jnp.stack([v, m], axis=-1)
    y = jnp.sum(v * m, axis=1, keepdims=True)
    return x, y


# --------------------------------------------------------------------------- copy


def copy_baseline(delay: int, n_symbols: int = 8, length: int = 10) -> float:
    """Cross-entropy of the memoryless strategy on :func:`copy_memory`.

    Predict the blank for the first ``delay + length`` steps and a uniform
    guess over the ``n_symbols`` symbols for the last ``length``; averaged over
    the ``delay + 2 length`` steps:

    .. math::

       \\frac{\\mathrm{length} \\cdot \\ln(\\mathrm{n\\_symbols})}{\\mathrm{delay} + 2\\,
       \\mathrm{length}} \\quad (= 10 \\ln 8 / (T + 20) \\text{ in Arjovsky et al. 2016}).
    """
    delay = check_int(delay, "delay", low=1)
    n = check_int(n_symbols, "n_symbols", low=1)
    L = check_int(length, "length", low=1)
    return L * math.log(n) / (delay + 2 * L)


def copy_memory(
    key: jax.Array,
    batch_size: int,
    delay: int,
    n_symbols: int = 8,
    length: int = 10,
    *,
    dtype=jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """The copy-memory task of Arjovsky, Shah & Bengio 2016 (after Hochreiter 1997).

    Tokens: 0 is the blank, ``1..n_symbols`` the symbols, ``n_symbols + 1`` the
    delimiter. The input sequence of ``T = delay + 2 length`` steps is

    ``[s_1 .. s_length] + [0] * (delay - 1) + [delimiter] + [0] * length``

    and the target is blank everywhere except the last ``length`` steps, which
    must reproduce ``s_1 .. s_length``. The memoryless baseline is
    :func:`copy_baseline`.

    Convention: ``x`` is one-hot ``(B, T, n_symbols + 2)`` floats (so it feeds a
    cell directly); ``y`` holds integer labels ``(B, T)`` in ``{0, ..., n_symbols}``,
    so a model needs ``n_symbols + 1`` outputs with ``return_sequences=True``, and
    the loss is :func:`sequence_cross_entropy`.

    Args:
      key: a PRNG key.
      batch_size: ``B >= 1``.
      delay: ``>= 1`` steps between the last symbol and the delimiter's end of the
        blank stretch (``T`` in the paper).
      n_symbols: alphabet size (8 in the paper).
      length: number of symbols to copy (10 in the paper).
      dtype: float dtype of ``x``.

    Returns:
      ``x (B, delay + 2 length, n_symbols + 2)``, ``y (B, delay + 2 length)`` int32.

    Example::

        >>> x, y = jrnn.tasks.copy_memory(jax.random.key(0), 16, delay=100)
        >>> x.shape, y.shape
        ((16, 120, 10), (16, 120))
    """
    key = _check_key(key)
    B = check_int(batch_size, "batch_size", low=1)
    delay = check_int(delay, "delay", low=1)
    n = check_int(n_symbols, "n_symbols", low=1)
    L = check_int(length, "length", low=1)
    T = delay + 2 * L
    symbols = jax.random.randint(key, (B, L), 1, n + 1, dtype=jnp.int32)
    blank_mid = jnp.zeros((B, delay - 1), jnp.int32)
    delim = jnp.full((B, 1), n + 1, jnp.int32)
    blank_end = jnp.zeros((B, L), jnp.int32)
    tokens = jnp.concatenate([symbols, blank_mid, delim, blank_end], axis=1)
    y = jnp.concatenate([jnp.zeros((B, T - L), jnp.int32), symbols], axis=1)
    x = jax.nn.one_hot(tokens, n + 2, dtype=dtype)
    return x, y


# --------------------------------------------------------------------------- sine


def sine(
    key: jax.Array,
    batch_size: int,
    length: int = 10,
    *,
    min_freq: float = 0.1,
    max_freq: float = 0.5,
    dtype=jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """Next-value regression on sine waves: the seed article's input shape ``(10, 1)``.

    Each sequence has a random phase ``phi ~ U[0, 2 pi)`` and angular frequency
    ``omega ~ U[min_freq, max_freq]`` (radians per step):

    .. math::

       x_k = \\sin(\\phi + \\omega k),\\ k = 0..T-1, \\qquad y = \\sin(\\phi + \\omega T).

    The model has to infer the frequency from the window. Predicting 0 scores
    :data:`SINE_BASELINE` ``= 1/2``.

    Args:
      key: a PRNG key.
      batch_size: ``B >= 1``.
      length: window ``T >= 2`` (two points are needed to see a frequency).
      min_freq, max_freq: range of ``omega``.
      dtype: float dtype.

    Returns:
      ``x (B, T, 1)``, ``y (B, 1)``.

    Example::

        >>> x, y = jrnn.tasks.sine(jax.random.key(0), 32)
        >>> x.shape, y.shape
        ((32, 10, 1), (32, 1))
    """
    key = _check_key(key)
    B = check_int(batch_size, "batch_size", low=1)
    T = check_int(length, "length", low=2)
    min_freq = validation.check_number(min_freq, "min_freq", low=0.0)
    max_freq = validation.check_number(max_freq, "max_freq", low=0.0)
    if not 0 <= min_freq <= max_freq:
        raise ValueError(
            f"min_freq, max_freq must satisfy 0 <= min_freq <= max_freq, got "
            f"min_freq={min_freq}, max_freq={max_freq}."
        )
    k_phi, k_w = jax.random.split(key)
    phi = jax.random.uniform(k_phi, (B, 1), dtype=dtype, maxval=2 * math.pi)
    w = jax.random.uniform(k_w, (B, 1), dtype=dtype, minval=min_freq, maxval=max_freq)
    t = jnp.arange(T + 1, dtype=dtype)[None, :]
    s = jnp.sin(phi + w * t)
    return s[:, :T, None], s[:, T:]


# --------------------------------------------------------------------------- digits


def digits(
    split: str, permuted: bool = False, key: jax.Array | None = None, *, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
    """scikit-learn's 8x8 digits read pixel by pixel: sequential classification.

    The 1797 images of ``sklearn.datasets.load_digits`` (bundled with
    scikit-learn, no download) are read row by row as sequences of 64 steps with
    one feature, scaled from ``0..16`` to ``[0, 1]`` — a small, real analogue of
    sequential MNIST (Le et al. 2015). ``permuted=True`` reorders the pixels of
    every image by one fixed permutation drawn from ``key`` (permuted MNIST),
    which spreads the informative pixels over the whole sequence.

    The split is deterministic: a fixed permutation (``jax.random.key(0)``) of
    the images, the last :data:`DIGITS_TEST_SIZE` (360) of which form
    ``"test"`` and the rest (1437) ``"train"``.

    Args:
      split: ``"train"`` or ``"test"``.
      permuted: apply the pixel permutation from ``key``.
      key: PRNG key of the pixel permutation; required when ``permuted``. Use the
        same key for both splits.
      dtype: float dtype of ``x``.

    Returns:
      ``x (N, 64, 1)`` in ``[0, 1]``, ``y (N,)`` int32 labels in ``0..9``.

    Example::

        >>> x, y = jrnn.tasks.digits("train")
        >>> x.shape, y.shape
        ((1437, 64, 1), (1437,))
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if permuted:
        key = _check_key(key)
    elif key is not None:
        raise ValueError(
            "key is only used for permuted=True (it draws the pixel permutation); "
            "pass permuted=True or leave key=None."
        )
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jrnn.tasks.digits needs scikit-learn (pip install 'jrnn[experiments]')."
        ) from e
    data = load_digits()
    images = np.asarray(data.data, np.float32) / 16.0  # (1797, 64)
    labels = np.asarray(data.target, np.int32)
    N = images.shape[0]
    order = np.asarray(jax.random.permutation(jax.random.key(_DIGITS_SPLIT_SEED), N))
    n_test = DIGITS_TEST_SIZE
    idx = order[: N - n_test] if split == "train" else order[N - n_test :]
    x = jnp.asarray(images[idx], dtype=dtype)
    if permuted:
        perm = jax.random.permutation(key, x.shape[1])
        x = x[:, perm]
    return x[:, :, None], jnp.asarray(labels[idx])


# --------------------------------------------------------------------------- losses


def _check_same_shape(pred, target, pred_name="predictions", target_name="targets"):
    ps, ts = tuple(np.shape(pred)), tuple(np.shape(target))
    if ps != ts:
        raise ValueError(
            f"{pred_name} and {target_name} must have the same shape, got "
            f"{pred_name} {ps} and {target_name} {ts}."
        )


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error ``mean((predictions - targets)^2)`` over every element.

    Raises:
      ValueError: if the shapes differ (no silent broadcasting: ``(B, 1)`` vs
        ``(B,)`` would otherwise average a ``(B, B)`` matrix).
    """
    _check_same_shape(predictions, targets)
    return jnp.mean(jnp.square(predictions - targets))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy ``-log softmax(logits)[label]``.

    Args:
      logits: ``(..., C)``.
      labels: integer ``(...)`` in ``[0, C)``, the leading shape of ``logits``.

    Raises:
      ValueError: shapes that do not match, non-integer labels, or concrete
        labels outside ``[0, C)`` (``-1`` would silently score the last
        class). Traced labels (under ``jit``) out of range give NaN.
    """
    ls, ys = tuple(np.shape(logits)), tuple(np.shape(labels))
    if len(ls) < 1 or ls[:-1] != ys:
        raise ValueError(
            f"logits must have shape labels.shape + (C,), got logits {ls} and labels {ys}."
        )
    if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
        raise ValueError(f"labels must be integers, got dtype {jnp.asarray(labels).dtype}.")
    C = ls[-1]
    if not isinstance(labels, jax.core.Tracer):
        arr = np.asarray(labels)
        if arr.size and (arr.min() < 0 or arr.max() >= C):
            raise ValueError(
                f"labels must lie in [0, C) = [0, {C}), got values in [{arr.min()}, {arr.max()}]."
            )
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, jnp.expand_dims(labels, -1), axis=-1)[..., 0]
    picked = jnp.where((labels >= 0) & (labels < C), picked, jnp.nan)
    return -jnp.mean(picked)


def sequence_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy averaged over batch and time: the copy-task loss.

    ``logits (B, T, C)``, ``labels (B, T)`` int; compare with :func:`copy_baseline`.
    """
    if np.ndim(logits) != 3:
        raise ValueError(
            f"logits must have shape (B, T, C) (use return_sequences=True), got "
            f"{tuple(np.shape(logits))}."
        )
    return cross_entropy(logits, labels)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of positions where ``argmax(logits, -1) == labels``.

    Args:
      logits: ``(..., C)``.
      labels: integer ``(...)`` in ``[0, C)``.

    Raises:
      ValueError: shapes that do not match, or concrete labels outside
        ``[0, C)`` (a label no argmax can equal would silently count as
        wrong); traced labels (under ``jit``) out of range give NaN.
      TypeError: non-integer labels.
    """
    ls, ys = tuple(np.shape(logits)), tuple(np.shape(labels))
    if len(ls) < 1 or ls[:-1] != ys:
        raise ValueError(
            f"logits must have shape labels.shape + (C,), got logits {ls} and labels {ys}."
        )
    C = ls[-1]
    validation.check_labels(labels, C, "labels")
    labels = jnp.asarray(labels)
    hit = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    valid = jnp.all((labels >= 0) & (labels < C))
    return jnp.where(valid, jnp.mean(hit), jnp.nan)
