"""Weight initialisers: ``init(key, shape, dtype=float32) -> array``.

Weights are stored ``(out, in)``, so the fan-in of a matrix is ``shape[-1]``.
Every cell factory takes its input and recurrent initialisers as arguments.

Example::

    >>> import jax, jrnn
    >>> W = jrnn.initializers.orthogonal(gain=1.5)(jax.random.key(0), (4, 4))
    >>> bool(jax.numpy.allclose(W @ W.T, 2.25 * jax.numpy.eye(4), atol=1e-5))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jrnn import validation as _validation

__all__ = [
    "Initializer",
    "constant",
    "critical",
    "glorot_uniform",
    "identity",
    "orthogonal",
    "orthogonal_blocks",
    "scaled_normal",
    "uniform_pytorch",
    "uniform",
    "zeros",
]

#: The type of every initialiser here: ``(key, shape, dtype=...) -> jax.Array``.
Initializer = Callable[..., jax.Array]


def _shape(shape) -> tuple[int, ...]:
    return _validation.check_shape(shape, "shape")


def zeros(key, shape, dtype=jnp.float32):
    """All zeros."""
    del key
    return jnp.zeros(_shape(shape), dtype)


def constant(value: float) -> Initializer:
    """All entries equal to ``value``."""
    value = _validation.check_number(value, "value", traced_ok=True)

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(_shape(shape), value, dtype)

    return init


def orthogonal(gain: float = 1.0) -> Initializer:
    """``gain * Q`` with ``Q`` Haar-orthogonal (Saxe et al. 2014).

    For square ``W`` every singular value equals ``|gain|``, so a linear RNN
    with this ``W_hh`` has every Lyapunov exponent equal to ``log|gain|``.
    """
    gain = _validation.check_number(gain, "gain", traced_ok=True)
    base = jax.nn.initializers.orthogonal(scale=gain, column_axis=-1)

    def init(key, shape, dtype=jnp.float32):
        return base(key, _shape(shape), dtype)

    return init


def orthogonal_blocks(blocks: int, gain: float = 1.0) -> Initializer:
    """``blocks`` stacked orthogonal blocks of shape ``(rows / blocks, cols)`` (one per gate).

    Block ``i`` equals ``orthogonal(gain)(jax.random.split(key, blocks)[i], ...)``; all
    blocks come from one vmapped, i.e. batched, QR. Besides being one kernel launch,
    this keeps independent LAPACK calls out of the program: jaxlib 0.10 on CPU can
    deadlock XLA's thread pool when several batched LAPACK calls run concurrently
    (see ``README.md``, Known issues).
    """
    blocks = _validation.check_int(blocks, "blocks", low=1)
    base = orthogonal(gain)

    def init(key, shape, dtype=jnp.float32):
        rows, cols = _shape(shape)
        if rows % blocks:
            raise ValueError(
                f"shape[0] must be a multiple of blocks={blocks}, got shape {tuple(shape)}."
            )
        keys = jax.random.split(key, blocks)
        W = jax.vmap(lambda k: base(k, (rows // blocks, cols), dtype))(keys)
        return W.reshape(rows, cols)

    return init


def identity(scale: float = 1.0) -> Initializer:
    """``scale * I`` (IRNN, Le, Jaitly & Hinton 2015); rectangular shapes get ``eye``."""
    scale = _validation.check_number(scale, "scale", traced_ok=True)

    def init(key, shape, dtype=jnp.float32):
        del key
        shape = _shape(shape)
        if len(shape) == 1:
            return jnp.full(shape, scale, dtype)
        if len(shape) != 2:
            raise ValueError(f"shape must be 1-D or 2-D for identity, got {shape}.")
        return scale * jnp.eye(shape[0], shape[1], dtype=dtype)

    return init


def scaled_normal(gain: float = 1.0) -> Initializer:
    """``N(0, gain^2 / fan_in)``: the random-network ensemble of mean-field theory.

    With ``gain = sigma_w`` a recurrent matrix drawn this way is the ``W`` of
    :func:`jrnn.theory.mean_field`; ``gain = 1`` is LeCun normal.
    """
    gain = _validation.check_number(gain, "gain", traced_ok=True)

    def init(key, shape, dtype=jnp.float32):
        shape = _shape(shape)
        fan_in = shape[-1] if len(shape) >= 2 else 1
        return (gain / math.sqrt(max(fan_in, 1))) * jax.random.normal(key, shape, dtype)

    return init


def uniform(low: float, high: float) -> Initializer:
    """``U[low, high)``.

    Raises:
      ValueError: ``low >= high`` or a bound that is not finite.
    """
    low = _validation.check_number(low, "low", traced_ok=True)
    high = _validation.check_number(high, "high", traced_ok=True)
    if isinstance(low, float) and isinstance(high, float) and not low < high:  # concrete
        raise ValueError(f"uniform needs low < high, got low={low}, high={high}.")

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, _shape(shape), dtype, minval=low, maxval=high)

    return init


def uniform_pytorch(hidden_size: int) -> Initializer:
    """PyTorch's RNN default: ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``."""
    hidden_size = _validation.check_int(hidden_size, "hidden_size", low=1)
    bound = 1.0 / math.sqrt(hidden_size)
    return uniform(-bound, bound)


def glorot_uniform(gain: float = 1.0) -> Initializer:
    """Glorot/Xavier uniform (Keras' default kernel initialiser), fan-in = ``shape[-1]``."""
    gain = _validation.check_number(gain, "gain", traced_ok=True)

    def init(key, shape, dtype=jnp.float32):
        shape = _shape(shape)
        fan_out, fan_in = (shape[0], shape[-1]) if len(shape) >= 2 else (shape[0], shape[0])
        limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(key, shape, dtype, minval=-limit, maxval=limit)

    return init


def critical(
    activation, sigma_b: float = 0.0, *, sigma_u: float = 0.0, **gate_biases
) -> Initializer:
    """``N(0, g*^2 / fan_in)`` at the mean-field critical gain ``g*``.

    For an activation (Elman cells), ``g*`` solves ``chi(g) = g^2 E[f'(sqrt(q*)
    z)^2] = 1`` with ``q*`` including the bias and input drive (``sigma_u``,
    :func:`jrnn.theory.drive_scale`; Poole et al. 2016; see
    :func:`jrnn.theory.critical_gain`): the edge of chaos, where a random
    network neither forgets nor amplifies perturbations exponentially. For
    ``"gru"`` / ``"lstm"`` it is the recurrent scale (all gates) at which the
    tied network's quiescent state loses stability, the spectral radius of its step Jacobian
    reaching 1 (:func:`jrnn.theory.gated.critical_scale`; GRU 2.0, LSTM ``b_f = 1``: 1.076;
    measured ``lambda_1`` 0 within the finite-size spread at N = 256); ``gate_biases`` such as
    ``bias_z=1.0`` or ``bias_f=1.0`` as in :func:`jrnn.theory.gated.gru_edge`.

    Raises:
      ValueError: unknown activation / cell, or no critical scale on the bracket.
    """
    from jrnn import theory  # theory's mean field depends on activations only

    if activation in ("gru", "lstm"):
        gain = float(theory.gated.critical_scale(
            activation, sigma_u=sigma_u, sigma_b=sigma_b, **gate_biases))
    else:
        if gate_biases:
            raise ValueError(
                f"gate biases {sorted(gate_biases)} apply to 'gru' / 'lstm' only, got "
                f"activation {activation!r}."
            )
        gain = float(theory.critical_gain(activation, sigma_b=sigma_b, sigma_u=sigma_u))
    if not math.isfinite(gain):
        raise ValueError(
            f"no critical gain for {activation!r} with sigma_b={sigma_b}, sigma_u={sigma_u} "
            f"{gate_biases or ''} on the search bracket."
        )
    return scaled_normal(gain)
