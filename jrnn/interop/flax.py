"""Flax linen recurrent cells (``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell``,
``GRUCell``) to jrnn cells.

Flax linen stores ``Dense`` kernels ``(in, out)``, one per gate, so they are
transposed and stacked into jrnn's ``(G n, in)`` layout. No flax import is
needed: the params pytree is read as nested mappings of arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from jrnn.cells.base import Cell
from jrnn.cells.elman import elman
from jrnn.cells.gru import gru
from jrnn.cells.lstm import lstm
from jrnn.interop._common import shape_str

__all__ = ["from_flax_linen"]

_FLAX_KINDS = {
    "simple": "simple",
    "simplecell": "simple",
    "lstm": "lstm",
    "lstmcell": "lstm",
    "optimizedlstmcell": "lstm",
    "optimized_lstm": "lstm",
    "gru": "gru",
    "grucell": "gru",
}
# (submodule, has bias) in gate order; input kernels first, then recurrent.
_FLAX_LAYOUT = {
    "simple": ((("i", True),), (("h", False),)),
    "lstm": (
        (("ii", False), ("if", False), ("ig", False), ("io", False)),
        (("hi", True), ("hf", True), ("hg", True), ("ho", True)),
    ),
    "gru": (
        (("ir", True), ("iz", True), ("in", True)),
        (("hr", False), ("hz", False), ("hn", True)),
    ),
}


def from_flax_linen(
    params: Mapping[str, Any],
    kind: str,
    *,
    activation: str = "tanh",
    residual: bool = False,
) -> tuple[Cell, dict[str, jnp.ndarray]]:
    """Converts the params of a ``flax.linen`` recurrent cell to a jrnn cell.

    Supported: ``SimpleCell`` (``{"i": {kernel, bias}, "h": {kernel}}``),
    ``LSTMCell`` / ``OptimizedLSTMCell`` (``ii, if, ig, io`` kernels;
    ``hi, hf, hg, ho`` kernels and biases) and ``GRUCell`` (``ir, iz, in``
    kernels and biases; ``hr, hz`` kernels; ``hn`` kernel and bias). Kernels
    are ``(in, out)`` in Flax and transposed here:

    .. math::

       W_{xh} = [K_{i\\cdot}^\\top]_{\\text{gates}}, \\quad
       W_{hh} = [K_{h\\cdot}^\\top]_{\\text{gates}}

    Flax's LSTM carry is ``(c, h)``; jrnn's is ``(h, c)``. The step outputs are
    equal for the same input sequence and zero initial carry.

    Args:
      params: the cell's param dict (``variables["params"]`` or the whole
        ``variables``; a single ``"params"`` key is unwrapped).
      kind: ``"simple"``, ``"lstm"``, ``"gru"`` or the class name
        (``"SimpleCell"``, ``"LSTMCell"``, ``"OptimizedLSTMCell"``, ``"GRUCell"``).
      activation: ``SimpleCell``'s ``activation_fn`` as a jrnn activation name
        (Flax does not store it in the params).
      residual: ``SimpleCell(residual=True)``, which computes
        ``f(W_i x + b + W_h h + h)``; folded into ``W_hh + I``.

    Returns:
      ``(cell, params)`` for a jrnn ``elman`` / ``lstm`` / ``gru`` cell.

    Raises:
      ValueError: unknown kind; a missing, unexpected or mis-shaped entry (the
        message names it, the shape received and the shape expected).

    Example::

        >>> import jax, jax.numpy as jnp, flax.linen as nn, jrnn
        >>> flax_cell = nn.GRUCell(features=4)
        >>> variables = flax_cell.init(jax.random.key(0), jnp.zeros(4), jnp.zeros(3))
        >>> cell, params = jrnn.interop.from_flax_linen(variables, "GRUCell")
        >>> params["W_xh"].shape
        (12, 3)
    """
    if not isinstance(kind, str) or kind.lower() not in _FLAX_KINDS:
        raise ValueError(f"kind must be one of {sorted(set(_FLAX_KINDS))}, got {kind!r}.")
    family = _FLAX_KINDS[kind.lower()]
    if not isinstance(params, Mapping):
        raise ValueError(
            f"params must be a mapping (a Flax param dict), got {type(params).__name__}."
        )
    if set(params) == {"params"}:
        params = params["params"]
    inputs, hiddens = _FLAX_LAYOUT[family]
    expected = {name for name, _ in inputs + hiddens}
    unexpected = sorted(set(params) - expected)
    if unexpected:
        raise ValueError(
            f"params has unexpected entries {unexpected} for kind={kind!r}; expected "
            f"{sorted(expected)}."
        )

    def entry(name, leaf, shape):
        if name not in params or leaf not in params[name]:
            raise ValueError(
                f"params is missing params[{name!r}][{leaf!r}] (expected shape {shape_str(shape)}) "
                f"for kind={kind!r}."
            )
        arr = np.asarray(params[name][leaf])
        if arr.shape != shape:
            raise ValueError(
                f"params[{name!r}][{leaf!r}] has shape {shape_str(arr.shape)}, expected "
                f"{shape_str(shape)}."
            )
        return arr

    first = inputs[0][0]
    k0 = params.get(first, {}).get("kernel") if isinstance(params.get(first), Mapping) else None
    k0 = None if k0 is None else np.asarray(k0)
    if k0 is None or k0.ndim != 2:
        got = "missing" if k0 is None else f"shape {shape_str(k0.shape)}"
        raise ValueError(f"params[{first!r}]['kernel']: {got}, expected (input_size, hidden_size).")
    d, n = k0.shape
    w_xh = np.concatenate([entry(name, "kernel", (d, n)).T for name, _ in inputs])
    w_hh = np.concatenate([entry(name, "kernel", (n, n)).T for name, _ in hiddens])
    zero = np.zeros((n,), w_hh.dtype)

    def biases(layout):
        return np.concatenate([entry(name, "bias", (n,)) if has else zero for name, has in layout])

    if family == "simple":
        if residual:
            w_hh = w_hh + np.eye(n, dtype=w_hh.dtype)
        cell = elman(n, activation)
        out = {"W_xh": w_xh, "W_hh": w_hh, "b_h": biases(inputs)}
    elif family == "lstm":
        cell = lstm(n)
        out = {"W_xh": w_xh, "W_hh": w_hh, "b_h": biases(hiddens)}
    else:
        cell = gru(n)
        out = {"W_xh": w_xh, "W_hh": w_hh, "b_xh": biases(inputs), "b_hh": biases(hiddens)}
    return cell, {k: jnp.asarray(v) for k, v in out.items()}
