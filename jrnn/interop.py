"""Weight import: PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` state dicts, Flax linen cells
and Keras 3 layers and models (and the reverse for Keras).

jrnn cells compute PyTorch's equations and store weights ``(out, in)`` as
PyTorch does, so importing is renaming plus one bias fold. For layer ``l``
PyTorch holds ``weight_ih_l{l} (G n, d)``, ``weight_hh_l{l} (G n, n)``,
``bias_ih_l{l}``, ``bias_hh_l{l} (G n,)`` with ``G = 1`` (RNN), ``4`` (LSTM,
gates i, f, g, o) or ``3`` (GRU, gates r, z, n), the same stacking as jrnn:

.. math::

   \\text{RNN/LSTM:}\\quad W_{xh} = W_{ih},\\ W_{hh} = W_{hh},\\ b_h = b_{ih} + b_{hh}

   \\text{GRU:}\\quad W_{xh} = W_{ih},\\ W_{hh} = W_{hh},\\ b_{xh} = b_{ih},\\ b_{hh} = b_{hh}

(the two RNN/LSTM biases only ever appear summed; the GRU keeps them apart
because ``b_hn`` sits inside ``r * (W_hn h + b_hn)``). Flax linen stores
``Dense`` kernels ``(in, out)``, one per gate, so they are transposed and
stacked. No torch or flax import is needed for PyTorch weights: pass
``{name: tensor.detach().cpu().numpy()}``.

Keras 3 (:func:`from_keras`, :func:`to_keras`; ``pip install jrnn[keras]``,
``KERAS_BACKEND=jax``) stores kernels ``(in, out)`` with the gates side by
side along ``out``: transposed here. LSTM gates are (i, f, c, o), jrnn's
order; GRU gates are (z, r, h), reordered to jrnn's (r, z, n).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import activations as _activations
from jrnn.cells.base import Cell
from jrnn.cells.elman import elman
from jrnn.cells.gru import gru
from jrnn.cells.lstm import lstm
from jrnn.cells.stack import stack
from jrnn.unrolling import Bidirectional, bidirectional

__all__ = ["from_flax_linen", "from_keras", "from_torch_state_dict", "to_keras"]

_TORCH_KINDS = {
    "rnn_tanh": ("elman", "tanh", 1),
    "rnn_relu": ("elman", "relu", 1),
    "lstm": ("lstm", None, 4),
    "gru": ("gru", None, 3),
}
_TORCH_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")


def _shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _torch_kind(kind: str, nonlinearity: str) -> tuple[str, str | None, int]:
    if not isinstance(kind, str):
        raise ValueError(f"kind must be a string, got {type(kind).__name__}.")
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
        expected); ``proj_size`` LSTMs; multi-layer bidirectional modules.

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
    sd: dict[str, np.ndarray] = {}
    for name, value in state_dict.items():
        if not isinstance(name, str) or not name.startswith(prefix):
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
        sd[key] = np.asarray(value)
    if "weight_hh_l0" not in sd:
        raise ValueError(
            f"state_dict is missing key {prefix + 'weight_hh_l0'!r} (got keys "
            f"{sorted(prefix + k for k in sd)}); expected a PyTorch nn.RNN/LSTM/GRU state dict."
        )
    layers = sorted({int(_TORCH_KEY.match(k).group(2)) for k in sd})
    inferred = layers[-1] + 1
    if num_layers is None:
        num_layers = inferred
    elif isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}.")
    elif inferred > num_layers:
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
            f"state_dict[{prefix + 'weight_hh_l0'!r}] has shape {_shape(w_hh0.shape)}, expected "
            f"({gates} * hidden_size, hidden_size) for kind={kind!r}."
        )
    n = w_hh0.shape[1]

    def get(key, shape):
        if key not in sd:
            raise ValueError(
                f"state_dict is missing key {prefix + key!r} (expected shape {_shape(shape)})."
            )
        arr = sd[key]
        if arr.shape != shape:
            raise ValueError(
                f"state_dict[{prefix + key!r}] has shape {_shape(arr.shape)}, expected "
                f"{_shape(shape)} (kind={kind!r}, hidden_size={n})."
            )
        return arr

    w_ih0 = sd.get("weight_ih_l0")
    if w_ih0 is None or w_ih0.ndim != 2:
        got = "missing" if w_ih0 is None else f"shape {_shape(w_ih0.shape)}"
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


# --------------------------------------------------------------------------- flax linen

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
                f"params is missing params[{name!r}][{leaf!r}] (expected shape {_shape(shape)}) "
                f"for kind={kind!r}."
            )
        arr = np.asarray(params[name][leaf])
        if arr.shape != shape:
            raise ValueError(
                f"params[{name!r}][{leaf!r}] has shape {_shape(arr.shape)}, expected "
                f"{_shape(shape)}."
            )
        return arr

    first = inputs[0][0]
    k0 = params.get(first, {}).get("kernel") if isinstance(params.get(first), Mapping) else None
    k0 = None if k0 is None else np.asarray(k0)
    if k0 is None or k0.ndim != 2:
        got = "missing" if k0 is None else f"shape {_shape(k0.shape)}"
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


# --------------------------------------------------------------------------- keras 3

# Keras activation name -> (jrnn registry name, parameters). Each pairing is also checked
# numerically when it is used (:func:`_check_activation`), so a Keras release that changes
# a definition (hard_sigmoid's slope changed from 0.2 to 1/6 in Keras 3) fails loudly.
_KERAS_ACTIVATIONS = {
    "linear": ("identity", {}),
    "tanh": ("tanh", {}),
    "sigmoid": ("sigmoid", {}),
    "relu": ("relu", {}),
    "hard_sigmoid": ("hard_sigmoid", {}),
    "hard_tanh": ("hard_tanh", {}),
    "elu": ("elu", {}),
    "selu": ("selu", {}),
    "gelu": ("gelu", {}),
    "silu": ("silu", {}),
    "swish": ("silu", {}),
    "softplus": ("softplus", {}),
    "softsign": ("softsign", {}),
    "mish": ("mish", {}),
    "leaky_relu": ("leaky_relu", {"negative_slope": 0.2}),
}
_KERAS_RNN_CELLS = ("SimpleRNNCell", "LSTMCell", "GRUCell")


def _import_keras():
    """Keras 3 on the JAX backend, or an ImportError / RuntimeError saying what to do."""
    try:
        import keras
    except ImportError as err:
        raise ImportError(
            "Keras interop needs Keras 3 (no TensorFlow): pip install jrnn[keras], and set "
            "KERAS_BACKEND=jax before keras is first imported."
        ) from err
    version = getattr(keras, "__version__", "0")
    if int(version.split(".")[0]) < 3:
        raise ImportError(f"Keras interop needs Keras 3, got keras {version}: "
                          "pip install jrnn[keras].")
    backend = keras.backend.backend()
    if backend != "jax":
        raise RuntimeError(
            f"Keras is running on the {backend!r} backend; jrnn's Keras interop needs the JAX "
            "backend: set KERAS_BACKEND=jax before keras is first imported."
        )
    return keras


def _keras_name(obj) -> str:
    return f"{type(obj).__name__} {getattr(obj, 'name', '?')!r}"


def _keras_array(variable) -> np.ndarray:
    return np.asarray(jax.device_get(variable.value))  # JAX backend: a jax.Array


def _check_activation(keras, fn, act: _activations.Activation, where: str, option: str):
    x = np.concatenate([np.linspace(-8.0, 8.0, 161), [-30.0, -1e-3, 1e-3, 30.0]])
    x = x.astype(np.float32)
    with jax.numpy_rank_promotion("allow"):  # Keras' own code broadcasts
        theirs = np.asarray(fn(jnp.asarray(x)))
    ours = np.asarray(act.fn(jnp.asarray(x)))
    err = np.max(np.abs(theirs.astype(np.float64) - ours) / (1.0 + np.abs(ours)))
    if not err <= 1e-6:
        raise ValueError(
            f"{where}: {option}={act.name!r} is defined differently in Keras and jrnn "
            f"(max relative difference {err:.3g} on [-8, 8]); register a matching jrnn "
            "activation or use another one."
        )


def _from_keras_activation(keras, fn, where: str, option: str) -> _activations.Activation:
    """The jrnn Activation equal to the Keras activation function ``fn``."""
    if fn is None:
        fn = keras.activations.get(None)
    for name, (jname, kwargs) in _KERAS_ACTIVATIONS.items():
        if keras.activations.get(name) is fn:
            act = _activations.get(jname, **kwargs)
            _check_activation(keras, fn, act, where, option)
            return act
    raise ValueError(
        f"{where}: {option}={getattr(fn, '__name__', fn)!r} has no jrnn equivalent; supported "
        f"Keras activations: {sorted(_KERAS_ACTIVATIONS)}."
    )


def _to_keras_activation(act: _activations.Activation, where: str) -> str:
    for name, (jname, kwargs) in _KERAS_ACTIVATIONS.items():
        if name != "swish" and act.name == _activations.get(jname, **kwargs).name:
            return name
    raise ValueError(
        f"{where}: activation {act.name!r} has no Keras equivalent; supported: "
        f"{sorted({_activations.get(j, **k).name for j, k in _KERAS_ACTIVATIONS.values()})}."
    )


def _keras_rnn_cell(keras, kcell, where: str) -> Cell:
    """The jrnn cell for a Keras RNN cell's configuration (no weights read)."""
    kind = type(kcell).__name__
    if kind not in _KERAS_RNN_CELLS:
        raise ValueError(
            f"{where}: cell {kind} is not supported; expected one of {list(_KERAS_RNN_CELLS)} "
            "(SimpleRNN, LSTM, GRU layers)."
        )
    n = int(kcell.units)
    if kind == "SimpleRNNCell":
        act = _from_keras_activation(keras, kcell.activation, where, "activation")
        return elman(n, act, use_bias=bool(kcell.use_bias))
    for option, want in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        fn = getattr(kcell, option)
        if fn is not keras.activations.get(want):
            raise ValueError(
                f"{where}: {option}={getattr(fn, '__name__', fn)!r} is not supported; jrnn's "
                f"{'LSTM' if kind == 'LSTMCell' else 'GRU'} uses {option}={want!r}."
            )
    return lstm(n) if kind == "LSTMCell" else gru(n, reset_after=bool(kcell.reset_after))


def _keras_rnn_params(kcell, where: str) -> dict[str, jnp.ndarray]:
    """jrnn params from a built Keras RNN cell's weights (transposed, gates reordered)."""
    if getattr(kcell, "kernel", None) is None:
        raise ValueError(
            f"{where} has no weights yet: build it first (call it on an input, or give the "
            "model an Input shape)."
        )
    kind = type(kcell).__name__
    n = int(kcell.units)
    K = _keras_array(kcell.kernel)  # (d, G n)
    R = _keras_array(kcell.recurrent_kernel)  # (n, G n)
    B = None if kcell.bias is None else _keras_array(kcell.bias)
    zero = np.zeros((K.shape[1],), K.dtype)
    if kind == "SimpleRNNCell":
        params = {"W_xh": K.T, "W_hh": R.T}
        if B is not None:
            params["b_h"] = B
    elif kind == "LSTMCell":  # gates (i, f, c, o) in both
        params = {"W_xh": K.T, "W_hh": R.T, "b_h": zero if B is None else B}
    else:  # GRU: Keras (z, r, h) -> jrnn (r, z, n)
        order = _gru_order(n)
        if kcell.reset_after:
            b_x, b_h = (zero, zero) if B is None else (B[0], B[1])
        else:
            b_x, b_h = (zero if B is None else B), zero
        params = {"W_xh": K.T[order], "W_hh": R.T[order], "b_xh": b_x[order],
                  "b_hh": b_h[order]}
    return {k: jnp.asarray(v) for k, v in params.items()}


def _gru_order(n: int) -> np.ndarray:
    """Row permutation between Keras' (z, r, h) and jrnn's (r, z, n) (its own inverse)."""
    return np.concatenate([np.arange(n, 2 * n), np.arange(n), np.arange(2 * n, 3 * n)])


def _check_keras_dtype(layer, where: str) -> None:
    compute = getattr(layer, "compute_dtype", None)
    variable = getattr(layer, "variable_dtype", None)
    if compute != variable:
        raise ValueError(
            f"{where}: dtype_policy={layer.dtype_policy.name!r} (compute {compute}, variables "
            f"{variable}) is not supported; jrnn computes in the variables' dtype. Use a "
            "float32 or float64 policy."
        )


def _keras_rnn_layer_cell(keras, layer, where: str, *, in_stack: bool) -> Cell:
    _check_keras_dtype(layer, where)
    for option in ("go_backwards", "stateful") + (("return_state",) if in_stack else ()):
        if getattr(layer, option, False):
            raise ValueError(
                f"{where}: {option}=True is not supported"
                + (" in a stacked model" if option == "return_state" else "")
                + f"; build the layer with {option}=False."
            )
    return _keras_rnn_cell(keras, layer.cell, where)


def from_keras(layer_or_model) -> tuple[Cell | Any, Any]:
    """Converts a Keras 3 recurrent layer or ``Sequential`` model to jrnn, weight for weight.

    Supported: ``SimpleRNN`` (any activation jrnn has, ``use_bias``),
    ``LSTM`` (gates (i, f, c, o) as jrnn's (i, f, g, o); ``unit_forget_bias``
    only initialises, so the stored bias is taken as it is), ``GRU`` with
    ``reset_after=True`` (bias rows ``[b_x; b_h]``) or ``False`` (one bias;
    :func:`jrnn.cells.gru` with ``reset_after=False``), the same layers as
    ``keras.layers.RNN(cell)``, their cells, and ``keras.Sequential`` stacks of
    them with an optional ``Dense`` readout. Keras kernels ``(in, out)`` are
    transposed into jrnn's ``(out, in)``; GRU gates (z, r, h) are reordered to
    jrnn's (r, z, n):

    .. math::

       W_{xh} = K^\\top, \\quad W_{hh} = R^\\top, \\quad
       W_{ho} = K_{\\text{dense}}^\\top, \\quad b_o = b_{\\text{dense}}

    The result computes the Keras model in inference mode (dropout and
    recurrent dropout off; ``Dropout`` layers are identities) from a zero
    initial state: equal outputs to float rounding, and equal gradients.

    Args:
      layer_or_model: a built Keras 3 layer, cell or ``keras.Sequential`` model
        (Keras on the JAX backend: ``KERAS_BACKEND=jax``).

    Returns:
      * a recurrent layer or cell: ``(cell, params)``; ``jrnn.unroll(cell,
        params, xs)[1]`` is the layer's ``return_sequences=True`` output;
      * a ``Sequential`` of recurrent layers: ``(jrnn.stack(cells),
        tuple_of_layer_params)`` (or ``(cell, params)`` for one layer);
      * a ``Sequential`` ending in ``Dense``: ``(model, params)`` with
        ``model`` a :class:`jrnn.models.Model` (``return_sequences`` as the
        last recurrent layer's) and ``params = {"cell": ..., "readout":
        {"W_ho", "b_o"}}``; ``model.apply(params, xs)`` equals ``keras_model(xs)``.

    Raises:
      ImportError: Keras 3 is not installed (``pip install jrnn[keras]``).
      RuntimeError: Keras runs on a backend other than JAX.
      ValueError: an unsupported layer, cell or option, naming the layer and
        the option: ``go_backwards``, ``stateful``, ``return_state`` in a
        stack, an intermediate layer without ``return_sequences=True``, a
        LSTM / GRU ``activation`` other than tanh or ``recurrent_activation``
        other than sigmoid, an activation jrnn lacks, a layer that is not
        built, ``Dense`` anywhere but last, a mixed-precision ``dtype_policy``,
        other layer types (``Bidirectional``, ``Masking``, ...), non-``Sequential``
        models.

    Example::

        >>> import os; _ = os.environ.setdefault("KERAS_BACKEND", "jax")
        >>> import keras, numpy as np, jrnn
        >>> kmodel = keras.Sequential([keras.Input((10, 1)), keras.layers.SimpleRNN(8),
        ...                            keras.layers.Dense(1)])
        >>> model, params = jrnn.interop.from_keras(kmodel)
        >>> xs = np.random.default_rng(0).normal(size=(4, 10, 1)).astype("float32")
        >>> bool(np.allclose(model.apply(params, xs), kmodel(xs), atol=1e-6))
        True
    """
    keras = _import_keras()
    from jrnn.models import rnn as _rnn

    obj = layer_or_model
    if isinstance(obj, keras.layers.RNN):
        where = _keras_name(obj)
        cell = _keras_rnn_layer_cell(keras, obj, where, in_stack=False)
        return cell, _keras_rnn_params(obj.cell, where)
    if isinstance(obj, keras.Layer) and type(obj).__name__ in _KERAS_RNN_CELLS:
        where = _keras_name(obj)
        _check_keras_dtype(obj, where)
        return _keras_rnn_cell(keras, obj, where), _keras_rnn_params(obj, where)
    if not isinstance(obj, keras.Sequential):
        if isinstance(obj, keras.Model):
            raise ValueError(
                f"layer_or_model: {_keras_name(obj)} is not supported; rebuild it as "
                "keras.Sequential([keras.Input(...), <recurrent layers>, <Dense>])."
            )
        raise ValueError(
            f"layer_or_model must be a Keras SimpleRNN / LSTM / GRU layer or cell or a "
            f"keras.Sequential model, got {_keras_name(obj)}."
        )
    layers = [
        layer for layer in obj.layers
        if not isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout)
    ]
    # Pass 1: structure and options (no weights needed). Pass 2: weights.
    cells, rnn_layers, dense, last_rnn = [], [], None, None
    for i, layer in enumerate(layers):
        where = f"{_keras_name(obj)}: layer {i} ({_keras_name(layer)})"
        if dense is not None:
            raise ValueError(
                f"{where} follows the Dense readout {dense.name!r}; only one Dense layer, "
                "last, is supported (jrnn's readout o_t = g(W_ho h_t + b_o))."
            )
        if isinstance(layer, keras.layers.RNN):
            if last_rnn is not None and not last_rnn.return_sequences:
                raise ValueError(
                    f"{where}: the layer below it ({last_rnn.name!r}) has "
                    "return_sequences=False; stacked recurrent layers need "
                    "return_sequences=True on every layer but the last."
                )
            cells.append(_keras_rnn_layer_cell(keras, layer, where, in_stack=True))
            rnn_layers.append((layer, where))
            last_rnn = layer
        elif isinstance(layer, keras.layers.Dense):
            if last_rnn is None:
                raise ValueError(f"{where}: a Dense layer needs a recurrent layer before it.")
            _check_keras_dtype(layer, where)
            dense = layer
            dense_where = where
            dense_act = _from_keras_activation(keras, layer.activation, where, "activation")
        else:
            raise ValueError(
                f"{where}: layer type {type(layer).__name__} is not supported; expected "
                "SimpleRNN, LSTM, GRU (or keras.layers.RNN of their cells), Dropout, and a "
                "final Dense."
            )
    if not cells:
        raise ValueError(f"{_keras_name(obj)} has no recurrent layer.")
    params = [_keras_rnn_params(layer.cell, where) for layer, where in rnn_layers]
    cell_params = params[0] if len(cells) == 1 else tuple(params)
    if dense is None:
        return (cells[0] if len(cells) == 1 else stack(cells)), cell_params
    if getattr(dense, "kernel", None) is None:
        raise ValueError(f"{dense_where} has no weights yet: build the model first.")
    kernel = _keras_array(dense.kernel)
    if kernel.ndim != 2:
        raise ValueError(
            f"{dense_where}: kernel of shape {_shape(kernel.shape)} is not supported."
        )
    act = dense_act
    m = kernel.shape[1]
    bias = np.zeros((m,), kernel.dtype) if dense.bias is None else _keras_array(dense.bias)
    model = _rnn(cells, m, output_activation=act,
                 return_sequences=bool(last_rnn.return_sequences))
    readout = {"W_ho": jnp.asarray(kernel.T), "b_o": jnp.asarray(bias)}
    return model, {"cell": cell_params, "readout": readout}


_TO_KERAS_CELLS = ("elman", "irnn", "lstm", "gru", "gru_reset_before")


def _to_keras_layer(keras, cell: Cell, params, return_sequences: bool, where: str):
    """A Keras recurrent layer and its weight list for one jrnn cell."""
    n = cell.hidden_size
    p = {k: np.asarray(v) for k, v in params.items()}
    if cell.name in ("elman", "irnn"):
        act = _to_keras_activation(cell.activation, where)
        use_bias = "b_h" in p
        layer = keras.layers.SimpleRNN(n, activation=act, use_bias=use_bias,
                                       return_sequences=return_sequences)
        weights = [p["W_xh"].T, p["W_hh"].T] + ([p["b_h"]] if use_bias else [])
    elif cell.name == "lstm":
        layer = keras.layers.LSTM(n, return_sequences=return_sequences)
        weights = [p["W_xh"].T, p["W_hh"].T, p["b_h"]]
    elif cell.name in ("gru", "gru_reset_before"):
        order = _gru_order(n)
        after = cell.name == "gru"
        layer = keras.layers.GRU(n, reset_after=after, return_sequences=return_sequences)
        # reset-before: b_hh sits outside the reset gate, so it folds into Keras' one bias.
        bias = (np.stack([p["b_xh"][order], p["b_hh"][order]]) if after
                else (p["b_xh"] + p["b_hh"])[order])
        weights = [p["W_xh"][order].T, p["W_hh"][order].T, bias]
    else:  # pragma: no cover  (to_keras checks the names first)
        raise AssertionError(cell.name)
    return layer, weights


def to_keras(model_or_cell, params, *, layers=None):
    """Builds the Keras 3 ``Sequential`` model that computes a jrnn cell or model.

    The inverse of :func:`from_keras`: ``elman`` / ``irnn`` cells become
    ``SimpleRNN`` (activation mapped by name), ``lstm`` becomes ``LSTM``,
    ``gru`` ``GRU(reset_after=True)`` and ``gru(reset_after=False)``
    ``GRU(reset_after=False)`` (whose single bias is ``b_xh + b_hh``: the
    recurrent bias sits outside the reset gate there); a model's readout
    becomes ``Dense``. Weights are transposed to Keras' ``(in, out)`` and the
    GRU gates reordered to (z, r, h). The Keras model takes ``(B, T, d)``
    inputs of any length ``T``.

    Args:
      model_or_cell: a :class:`jrnn.models.Model`, a cell, or a list of cells
        (a stack, bottom to top).
      params: the matching params (``{"cell", "readout"}`` for a model, a
        tuple of layer params for a stack or list of cells).
      layers: for a model or cell that is a :func:`jrnn.stack`: the cells it
        was built from (a stack does not keep them); checked against the
        stack's description.

    Returns:
      A built ``keras.Sequential``. For a cell or list of cells every layer
      has ``return_sequences=True`` (the output is ``jrnn.unroll``'s ``hs``);
      for a model the top layer has the model's ``return_sequences``.

    Raises:
      ImportError / RuntimeError: as :func:`from_keras`.
      ValueError: a cell family or activation Keras lacks (``residual``,
        ``indrnn``, ...), a residual stack, a stack without ``layers`` or
        with ``layers`` that do not match it, params of the wrong structure.

    Example::

        >>> import os; _ = os.environ.setdefault("KERAS_BACKEND", "jax")
        >>> import jax, numpy as np, jrnn
        >>> model = jrnn.models.rnn(jrnn.cells.gru(4), 1)
        >>> params = model.init(jax.random.key(0), 2)
        >>> kmodel = jrnn.interop.to_keras(model, params)
        >>> xs = np.ones((3, 5, 2), "float32")
        >>> bool(np.allclose(kmodel(xs), model.apply(params, xs), atol=1e-6))
        True
    """
    keras = _import_keras()
    from jrnn.models import Model

    readout = None
    if isinstance(model_or_cell, Model):
        if not isinstance(params, Mapping) or set(params) != {"cell", "readout"}:
            raise ValueError("params must be a model's params {'cell': ..., 'readout': ...}, "
                             f"got {type(params).__name__}.")
        cell, cell_params, readout = model_or_cell.cell, params["cell"], params["readout"]
        top_sequences = model_or_cell.return_sequences
    elif isinstance(model_or_cell, Cell):
        cell, cell_params, top_sequences = model_or_cell, params, True
    elif isinstance(model_or_cell, list | tuple) and all(
            isinstance(c, Cell) for c in model_or_cell):
        cell, cell_params, top_sequences = None, params, True
        layers = list(model_or_cell)
    else:
        raise ValueError(f"model_or_cell must be a jrnn Model, Cell or list of Cells, got "
                         f"{type(model_or_cell).__name__}.")
    if cell is not None and cell.name == "stack":
        config = dict(cell.config)
        if config.get("residual"):
            raise ValueError("model_or_cell: a residual stack has no Keras equivalent.")
        if layers is None:
            raise ValueError(
                "layers: a jrnn.stack does not keep its cells; pass layers=[cell, ...] as given "
                "to jrnn.stack / jrnn.models.rnn."
            )
        got = tuple(c.describe() for c in layers)
        if got != tuple(config["layers"]):
            raise ValueError(f"layers {list(got)} do not match the stack's cells "
                             f"{list(config['layers'])}.")
    elif cell is not None:
        layers, cell_params = [cell], (cell_params,)
    for i, c in enumerate(layers):  # every cell convertible, before any weight is read
        if c.name not in _TO_KERAS_CELLS:
            raise ValueError(
                f"layer {i}: cell {c.describe()} has no Keras equivalent; supported: elman / "
                "irnn (SimpleRNN), lstm (LSTM), gru (GRU), gru(reset_after=False) "
                "(GRU(reset_after=False))."
            )
        if c.activation is not None:
            _to_keras_activation(c.activation, f"layer {i}")
    if (not isinstance(cell_params, list | tuple) or len(cell_params) != len(layers)
            or not all(isinstance(p, Mapping) and "W_xh" in p for p in cell_params)):
        raise ValueError(
            f"params: expected {len(layers)} layer param dicts with 'W_xh', ..., got "
            f"{type(params).__name__} {str(params)[:80]}."
        )
    d = int(np.shape(cell_params[0]["W_xh"])[1])
    d_in = d
    for i, (c, p) in enumerate(zip(layers, cell_params)):  # shapes, before Keras sees them
        spec = jax.eval_shape(lambda k, c=c, d_in=d_in: c.init(k, d_in), jax.random.key(0))
        for name, shape in ((k, v.shape) for k, v in spec.items()):
            if name in p and tuple(np.shape(p[name])) != tuple(shape):
                raise ValueError(
                    f"params: layer {i} ({c.describe()}) {name!r} has shape "
                    f"{tuple(np.shape(p[name]))}, expected {tuple(shape)} for input size {d_in}."
                )
        d_in = c.hidden_size
    built, weights = [], []
    for i, (c, p) in enumerate(zip(layers, cell_params)):
        last = i == len(layers) - 1
        layer, w = _to_keras_layer(keras, c, p, top_sequences or not last, f"layer {i}")
        built.append(layer)
        weights.append(w)
    if readout is not None:
        act = _to_keras_activation(model_or_cell.output_activation, "readout")
        built.append(keras.layers.Dense(model_or_cell.output_size, activation=act))
        weights.append([np.asarray(readout["W_ho"]).T, np.asarray(readout["b_o"])])
    with jax.numpy_rank_promotion("allow"):  # Keras' initialisers broadcast
        kmodel = keras.Sequential([keras.Input((None, d))] + built)
        for layer, w in zip(built, weights):
            layer.set_weights(w)
    return kmodel
