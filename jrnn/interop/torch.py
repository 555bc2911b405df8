"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` state dicts to jrnn cells.

jrnn cells compute PyTorch's equations and store weights ``(out, in)`` as
PyTorch does, so importing is renaming plus one bias fold. For layer ``l``
PyTorch holds ``weight_ih_l{l} (G n, d)``, ``weight_hh_l{l} (G n, n)``,
``bias_ih_l{l}``, ``bias_hh_l{l} (G n,)`` with ``G = 1`` (RNN), ``4`` (LSTM,
gates i, f, g, o) or ``3`` (GRU, gates r, z, n), the same stacking as jrnn:

.. math::

   \\text{RNN/LSTM:}\\quad W_{xh} = W_{ih},\\ W_{hh} = W_{hh},\\ b_h = b_{ih} + b_{hh}

   \\text{GRU:}\\quad W_{xh} = W_{ih},\\ W_{hh} = W_{hh},\\ b_{xh} = b_{ih},\\ b_{hh} = b_{hh}

(the two RNN/LSTM biases only ever appear summed; the GRU keeps them apart
because ``b_hn`` sits inside ``r * (W_hn h + b_hn)``). No torch import is
needed: pass ``{name: tensor.detach().cpu().numpy()}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from jrnn.cells.base import Cell
from jrnn.cells.elman import elman
from jrnn.cells.gru import gru
from jrnn.cells.lstm import lstm
from jrnn.cells.stack import stack
from jrnn.interop._common import shape_str
from jrnn.unrolling import Bidirectional, bidirectional
from jrnn.validation import check_int

__all__ = ["from_torch_state_dict"]

_TORCH_KINDS = {
    "rnn_tanh": ("elman", "tanh", 1),
    "rnn_relu": ("elman", "relu", 1),
    "lstm": ("lstm", None, 4),
    "gru": ("gru", None, 3),
}
_TORCH_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")


def _torch_kind(kind: str, nonlinearity: str) -> tuple[str, str | None, int]:
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a string, got {type(kind).__name__}.")
    key = kind.lower()
    if key == "rnn":
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"nonlinearity must be 'tanh' or 'relu' (as in torch.nn.RNN), got {nonlinearity!r}."
            )
        key = f"rnn_{nonlinearity}"
    if key not in _TORCH_KINDS:
        raise ValueError(f"kind must be one of {sorted(_TORCH_KINDS) + ['rnn']}, got {kind!r}.")
    return _TORCH_KINDS[key]


def _make_cell(family: str, n: int, activation: str | None, use_bias: bool) -> Cell:
    if family == "elman":
        return elman(n, activation, use_bias=use_bias)
    return lstm(n) if family == "lstm" else gru(n)


def _layer_params(family: str, w_ih, w_hh, b_ih, b_hh) -> dict[str, jnp.ndarray]:
    params = {"W_xh": jnp.asarray(w_ih), "W_hh": jnp.asarray(w_hh)}
    if family == "gru":
        zeros = np.zeros(w_hh.shape[:1], w_hh.dtype)
        params["b_xh"] = jnp.asarray(zeros if b_ih is None else b_ih)
        params["b_hh"] = jnp.asarray(zeros if b_hh is None else b_hh)
    elif b_ih is not None:
        params["b_h"] = jnp.asarray(b_ih + b_hh)
    elif family == "lstm":
        params["b_h"] = jnp.zeros(w_hh.shape[:1], jnp.asarray(w_hh).dtype)
    return params


def from_torch_state_dict(
    state_dict: Mapping[str, Any],
    kind: str,
    *,
    num_layers: int | None = None,
    nonlinearity: str = "tanh",
    prefix: str = "",
) -> tuple[Cell | Bidirectional, Any]:
    """Converts a PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` state dict to a jrnn cell.

    The converted cell computes PyTorch's outputs exactly (batch-first
    ``(B, T, d)`` inputs, zero initial state): ``jrnn.unroll(cell, params,
    xs)[1]`` equals ``module(torch.from_numpy(xs))[0]`` for a module built with
    ``batch_first=True``.

    Args:
      state_dict: ``{"weight_ih_l0": array, ...}`` as ``module.state_dict()``
        with NumPy (or array-like) values. ``bias=False`` modules (no
        ``bias_*`` keys) give an Elman cell with ``use_bias=False`` and
        zero biases for LSTM / GRU (which always carry a bias in jrnn).
      kind: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"``, ``"gru"`` (PyTorch's
        ``mode`` strings, case-insensitive), or ``"rnn"`` with ``nonlinearity``.
      num_layers: expected layer count; default: inferred from the keys.
      nonlinearity: for ``kind="rnn"``: ``"tanh"`` or ``"relu"``.
      prefix: only keys starting with ``prefix`` (e.g. ``"encoder.rnn."``) are
        read, with the prefix removed.

    Returns:
      ``(cell, params)``: a jrnn cell and its params for one layer; a
      :func:`jrnn.stack` and the tuple of layer params for several; a
      :func:`jrnn.bidirectional` and ``(forward_params, backward_params)``
      for a one-layer ``bidirectional=True`` module (apply with
      ``bi.apply(params, xs)``).

    Raises:
      ValueError: unknown ``kind``; a missing, unexpected or mis-shaped key
        (the message names the key, the shape received and the shape
        expected); a ``prefix`` no key starts with; ``proj_size`` LSTMs;
        multi-layer bidirectional modules.
      TypeError: integer, bool or complex weights (PyTorch's are float).

    Example::

        >>> import numpy as np, jrnn
        >>> rng = np.random.default_rng(0)
        >>> sd = {"weight_ih_l0": rng.normal(size=(12, 2)),
        ...       "weight_hh_l0": rng.normal(size=(12, 3)),
        ...       "bias_ih_l0": rng.normal(size=12), "bias_hh_l0": rng.normal(size=12)}
        >>> cell, params = jrnn.interop.from_torch_state_dict(sd, "lstm")
        >>> cell.name, params["b_h"].shape
        ('lstm', (12,))
    """
    family, activation, gates = _torch_kind(kind, nonlinearity)
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"state_dict must be a mapping of parameter names to arrays, got "
            f"{type(state_dict).__name__}."
        )
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {prefix!r} ({type(prefix).__name__}).")
    sd: dict[str, np.ndarray] = {}
    skipped = []
    for name, value in state_dict.items():
        if not isinstance(name, str) or not name.startswith(prefix):
            skipped.append(name)
            continue
        key = name[len(prefix) :]
        match = _TORCH_KEY.match(key)
        if match is None:
            raise ValueError(
                f"state_dict has an unexpected key {name!r}; expected weight_ih_l<k>, "
                f"weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k> (optionally with _reverse)."
            )
        if match.group(1) == "weight_hr":
            raise ValueError(
                f"state_dict has key {name!r}: LSTMs with proj_size > 0 have no jrnn "
                "equivalent; use proj_size=0."
            )
        arr = np.asarray(value)
        if not jnp.issubdtype(arr.dtype, jnp.floating):  # bfloat16 is kind 'V'
            raise TypeError(
                f"state_dict[{name!r}] must hold real floating weights, got dtype {arr.dtype}"
                + (" (cast with .float())." if arr.dtype.kind in "biu" else ".")
            )
        sd[key] = arr
    if not sd and skipped and prefix:
        raise ValueError(
            f"prefix {prefix!r} matches none of the state_dict's {len(skipped)} keys (e.g. "
            f"{sorted(map(str, skipped))[:4]}); pass the prefix the keys start with, or "
            "prefix='' for a module's own state_dict."
        )
    if "weight_hh_l0" not in sd:
        raise ValueError(
            f"state_dict is missing key {prefix + 'weight_hh_l0'!r} (got keys "
            f"{sorted(prefix + k for k in sd)}); expected a PyTorch nn.RNN/LSTM/GRU state dict."
        )
    layers = sorted({int(_TORCH_KEY.match(k).group(2)) for k in sd})
    inferred = layers[-1] + 1
    if num_layers is None:
        num_layers = inferred
    else:
        num_layers = check_int(num_layers, "num_layers", low=1)
    if inferred > num_layers:
        extra = sorted(prefix + k for k in sd if int(_TORCH_KEY.match(k).group(2)) >= num_layers)
        raise ValueError(
            f"state_dict has keys for {inferred} layers but num_layers={num_layers}: "
            f"unexpected keys {extra}."
        )
    bidir = any(k.endswith("_reverse") for k in sd)
    has_bias = "bias_ih_l0" in sd or "bias_hh_l0" in sd
    if bidir and num_layers > 1:
        raise ValueError(
            f"bidirectional state dicts are supported for num_layers=1 only, got {num_layers} "
            "layers (keys ending in _reverse): layer l+1 reads both directions of layer l, "
            "which a jrnn.stack cannot express."
        )

    w_hh0 = sd["weight_hh_l0"]
    if w_hh0.ndim != 2 or w_hh0.shape[0] != gates * w_hh0.shape[-1]:
        raise ValueError(
            f"state_dict[{prefix + 'weight_hh_l0'!r}] has shape {shape_str(w_hh0.shape)}, expected "
            f"({gates} * hidden_size, hidden_size) for kind={kind!r}."
        )
    n = w_hh0.shape[1]

    def get(key, shape):
        if key not in sd:
            raise ValueError(
                f"state_dict is missing key {prefix + key!r} (expected shape {shape_str(shape)})."
            )
        arr = sd[key]
        if arr.shape != shape:
            raise ValueError(
                f"state_dict[{prefix + key!r}] has shape {shape_str(arr.shape)}, expected "
                f"{shape_str(shape)} (kind={kind!r}, hidden_size={n})."
            )
        return arr

    w_ih0 = sd.get("weight_ih_l0")
    if w_ih0 is None or w_ih0.ndim != 2:
        got = "missing" if w_ih0 is None else f"shape {shape_str(w_ih0.shape)}"
        raise ValueError(
            f"state_dict[{prefix + 'weight_ih_l0'!r}]: {got}, expected ({gates * n}, input_size)."
        )
    d = w_ih0.shape[1]
    cells, params = [], []
    for layer in range(num_layers):
        directions = ("", "_reverse") if bidir else ("",)
        for suffix in directions:
            tag = f"_l{layer}{suffix}"
            w_ih = get("weight_ih" + tag, (gates * n, d))
            w_hh = get("weight_hh" + tag, (gates * n, n))
            b_ih = get("bias_ih" + tag, (gates * n,)) if has_bias else None
            b_hh = get("bias_hh" + tag, (gates * n,)) if has_bias else None
            params.append(_layer_params(family, w_ih, w_hh, b_ih, b_hh))
            cells.append(_make_cell(family, n, activation, has_bias))
        d = n
    if bidir:
        return bidirectional(cells[0], cells[1]), (params[0], params[1])
    if num_layers == 1:
        return cells[0], params[0]
    return stack(cells), tuple(params)
