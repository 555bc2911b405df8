"""The one validation layer: every public entry point checks its arguments here.

Each check raises before any tracing, with a message that names the
argument, says what came and what was expected:

* ``TypeError`` for the wrong kind of value (a string where a number is
  expected, ``'no'`` for a boolean flag, a raw key where a typed key is
  needed, complex inputs); where a number is expected it is a
  :class:`NumberTypeError`, which is also a ``ValueError``;
* ``ValueError`` for the right kind with a wrong value or shape (NaN, a value
  out of range, a missing parameter, a transposed weight).

Params are checked against the cell's ``param_spec`` (``input_size ->
{name: (shape, kind)}``; a stack's spec is the tuple of its layers' specs; a
wrapped model's is an object with a ``check(params, argument)`` method), so
a missing key, an extra key, a transposed ``W_xh`` or a ``b_h`` of shape
``(1,)`` are caught where params enter (:func:`jrnn.unroll` and everything
built on it), naming the key, the shape received and the shape expected.

This module sits at the bottom of the import graph (numpy and jax only).

Example::

    >>> import jrnn
    >>> jrnn.validation.check_number(0.5, "alpha", low=0.0)
    0.5
    >>> jrnn.validation.check_bool("no", "use_bias")
    Traceback (most recent call last):
    ...
    TypeError: use_bias must be True or False, got 'no' (str).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def dtype_kind(dtype: Any) -> str:
    """NumPy's dtype kind, with JAX's extended floats (bfloat16, float8) as ``"f"``.

    ``np.dtype(jnp.bfloat16).kind`` is ``"V"`` (an ml_dtypes void type), so checks
    written with ``.kind`` alone would call bfloat16 inputs non-numeric.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> jrnn.validation.dtype_kind(jnp.bfloat16), jrnn.validation.dtype_kind(jnp.int32)
        ('f', 'i')
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "V" and jnp.issubdtype(dtype, jnp.floating):
        return "f"
    return dtype.kind


__all__ = [
    "NumberTypeError",
    "check_bool",
    "check_int",
    "check_key",
    "check_labels",
    "check_number",
    "check_order",
    "check_params",
    "check_real_dtype",
    "check_shape",
    "check_spec",
    "check_xs_dtype",
    "dtype_kind",
    "float_inputs",
    "param_shapes",
]


def _kind(value) -> str:
    return type(value).__name__


def _shape_str(shape) -> str:
    shape = tuple(shape)
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


# --------------------------------------------------------------------------- scalars


class NumberTypeError(TypeError, ValueError):
    """A value that is not a real number where one is expected.

    A ``TypeError`` (the wrong kind of value), and also a ``ValueError``: the
    remedy cells once raised ``ValueError`` for every bad hyper-parameter, and
    code that catches that keeps working (the dual base follows numpy's
    ``AxisError(ValueError, IndexError)``).
    """


def _interval(low, high, low_open: bool, high_open: bool) -> str:
    lo = "(" if low_open or low is None else "["
    hi = ")" if high_open or high is None else "]"
    a = -math.inf if low is None else low
    b = math.inf if high is None else high
    return f"{lo}{a:g}, {b:g}{hi}"


def check_number(
    value: Any,
    argument: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    traced_ok: bool = False,
) -> float:
    """``float(value)`` after checking it is a real, finite number in range.

    The one check of a real scalar argument in jrnn (cells, initialisers,
    activations, training). Messages name the argument, the interval expected
    and the value received, e.g. ``"dt must be in (0, 1], got 1.5."``; a
    missing bound prints as ``inf``.

    Args:
      value: the argument's value (a Python or numpy real scalar, or a
        0-d array).
      argument: the argument's name, for the message.
      low, high: optional bounds; ``low_open`` / ``high_open`` exclude them.
      finite: reject +-inf (NaN is rejected always: it is no number at all).
      traced_ok: a traced scalar (under ``jit`` / ``vmap``, e.g. a gain swept by
        :func:`jrnn.parallel.sweep`) is returned unchecked instead of rejected.

    Raises:
      NumberTypeError: (a ``TypeError`` and a ``ValueError``) ``value`` is not
        a real number (a string, None, a bool, a complex number, an array with
        more than one element, a traced value unless ``traced_ok``).
      ValueError: NaN/inf (when ``finite``) or out of ``[low, high]``.

    Example::

        >>> import jrnn
        >>> jrnn.validation.check_number(1.5, "dt", low=0.0, high=1.0, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: dt must be in (0, 1], got 1.5.
    """
    interval = _interval(low, high, low_open, high_open)
    where = f" in {interval}" if low is not None or high is not None else ""
    if isinstance(value, bool | np.bool_) or isinstance(value, str | bytes) or value is None:
        raise NumberTypeError(
            f"{argument} must be a real number{where}, got {value!r} ({_kind(value)})."
        )
    if isinstance(value, jax.core.Tracer):
        if traced_ok and np.shape(value) == () and dtype_kind(value.dtype) in "iuf":
            return value
        raise NumberTypeError(f"{argument} must be a concrete Python number, got a traced value.")
    if isinstance(value, np.ndarray | jax.Array):
        if np.shape(value) != () or dtype_kind(np.asarray(value).dtype) not in "iuf":
            raise NumberTypeError(
                f"{argument} must be a real scalar, got an array of shape "
                f"{_shape_str(np.shape(value))} and dtype {np.asarray(value).dtype}."
            )
        value = np.asarray(value).item()
    if not isinstance(value, numbers.Real):
        raise NumberTypeError(
            f"{argument} must be a real number{where}, got {value!r} ({_kind(value)})."
        )
    try:
        v = float(value)
    except OverflowError:  # an int (or a Fraction, ...) beyond the float range
        if isinstance(value, numbers.Integral):
            # bit_length, not str(): str() of an int over 4300 digits raises
            digits = int(abs(int(value)).bit_length() * math.log10(2)) + 1
            sign = "-" if value < 0 else ""
            got = f"an integer of about {sign}10**{digits - 1}"
        else:
            got = f"a {type(value).__name__} beyond the float range"
        raise ValueError(f"{argument} must be a finite real number{where}, got {got}.") from None
    shown = value if type(value) in (int, float) else v
    if math.isnan(v) or (finite and not math.isfinite(v)):
        what = "a finite real number" if finite else "a real number (not NaN)"
        raise ValueError(f"{argument} must be {what}{where}, got {shown!r}.")
    below = low is not None and (v < low or (low_open and v == low))
    above = high is not None and (v > high or (high_open and v == high))
    if below or above:
        raise ValueError(f"{argument} must be in {interval}, got {shown!r}.")
    return v


def check_int(
    value: Any, argument: str, *, low: int | None = None, high: int | None = None
) -> int:
    """``int(value)`` for an integer (not a bool, not a float) in ``[low, high]``.

    The one integer check of jrnn: every argument that must be an integer goes
    through it, so every such error reads the same and has the same type.

    Args:
      value: what the caller passed (Python or numpy integer).
      argument: its name, for the message.
      low, high: inclusive bounds; None means unbounded on that side.

    Raises:
      TypeError: not an integer (``2.5``, ``"3"``, ``True``, None).
      ValueError: outside ``[low, high]``.

    Example::

        >>> jrnn.validation.check_int(3, "k", low=1)
        3
    """
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{argument} must be an integer, got {value!r} (bool).")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{argument} must be an integer, got {value!r} ({_kind(value)}).") from None
    if (low is not None and v < low) or (high is not None and v > high):
        where = {
            (True, False): f">= {low}",
            (False, True): f"<= {high}",
            (True, True): f"in [{low}, {high}]",
        }[(low is not None, high is not None)]
        raise ValueError(f"{argument} must be an integer {where}, got {v}.")
    return int(v)


def check_shape(shape: Any, argument: str = "shape") -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative integers (``(2.5, 3)`` is rejected, not truncated).

    Raises:
      TypeError: not a sequence of integers (a float dimension, a string).
      ValueError: a negative dimension.
    """
    if isinstance(shape, str | bytes) or not hasattr(shape, "__iter__"):
        raise TypeError(
            f"{argument} must be a tuple of integers, got {shape!r} ({_kind(shape)})."
        )
    shape = tuple(shape)
    return tuple(check_int(s, f"{argument}[{i}]", low=0) for i, s in enumerate(shape))


def check_order(
    low: float, high: float, arguments: tuple[str, str], *, strict: bool = True
) -> None:
    """Checks that the interval ``[low, high]`` is not empty (``low < high`` when
    ``strict``, else ``low <= high``); the two values are real numbers already.

    Raises:
      ValueError: naming both arguments and their values.
    """
    bad = low >= high if strict else low > high
    if bad:
        rel = "<" if strict else "<="
        raise ValueError(
            f"{arguments[0]} must be {rel} {arguments[1]}, got {arguments[0]}={low!r} and "
            f"{arguments[1]}={high!r}."
        )


def check_labels(labels: Any, num_classes: int, argument: str = "labels") -> None:
    """Checks integer class ``labels`` lie in ``[0, num_classes)`` (when concrete;
    traced labels pass, and the callers turn out-of-range entries into NaN).

    Raises:
      TypeError: labels that are not integers.
      ValueError: a concrete label outside ``[0, num_classes)``.
    """
    dtype = getattr(labels, "dtype", None)
    if dtype is None:
        dtype = np.asarray(labels).dtype
    if np.dtype(dtype).kind not in "iu":
        raise TypeError(f"{argument} must be integers, got dtype {dtype}.")
    if isinstance(labels, jax.core.Tracer):
        return
    arr = np.asarray(labels)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{argument} must lie in [0, C) = [0, {num_classes}), got values in "
            f"[{arr.min()}, {arr.max()}]."
        )


def check_real_dtype(tree: Any, argument: str) -> None:
    """Checks every leaf of ``tree`` has a real floating dtype (not integer, not complex).

    Raises:
      TypeError: naming the argument, the leaf's path and its dtype.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = np.asarray(leaf).dtype
        if dtype_kind(dtype) != "f":
            where = jax.tree_util.keystr(path)
            raise TypeError(
                f"{argument}{where} must have a real floating dtype, got dtype {dtype}"
                + (" (cast it with .astype(float))." if np.dtype(dtype).kind in "biu" else ".")
            )


def check_bool(value: Any, argument: str) -> bool:
    """``value`` if it is ``True`` or ``False`` (numpy bools too).

    Strings such as ``'no'`` or ``'false'`` are rejected instead of being taken
    as true.

    Raises:
      TypeError: anything else.
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{argument} must be True or False, got {value!r} ({_kind(value)}).")


def check_key(key: Any, argument: str = "key", *, batched: bool | None = False) -> Any:
    """Checks ``key`` is a PRNG key: a typed key (``jax.random.key``) or a raw
    ``uint32 (2,)`` key (``jax.random.PRNGKey``).

    Args:
      key: the value to check.
      argument: its name, for the message.
      batched: False: one key; True: a batch of keys with one leading axis;
        None: either.

    Raises:
      TypeError: not a key (None, an int seed, a float array).
      ValueError: a key array of the wrong shape.
    """
    if key is None or isinstance(key, int | float | str):
        raise TypeError(
            f"{argument} must be a PRNG key (jax.random.key(seed)), got {key!r} ({_kind(key)})."
        )
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    if not typed:
        if dtype is None or np.dtype(dtype) != np.uint32 or np.shape(key)[-1:] != (2,):
            raise TypeError(
                f"{argument} must be a PRNG key (jax.random.key(seed), or a uint32 (2,) "
                f"jax.random.PRNGKey), got {_kind(key)} of dtype {dtype} and shape "
                f"{_shape_str(np.shape(key))}."
            )
    ndim = np.ndim(key) - (0 if typed else 1)
    allowed = {False: (0,), True: (1,), None: (0, 1)}[batched]
    if ndim not in allowed:
        want = {False: "one key", True: "a batch of keys (K,)", None: "one key or (K,) keys"}
        raise ValueError(
            f"{argument} must be {want[batched]}, got a key array of shape "
            f"{_shape_str(np.shape(key)[:ndim])}."
        )
    return key


# --------------------------------------------------------------------------- inputs


def check_xs_dtype(xs: Any, argument: str = "xs") -> None:
    """Rejects complex and non-numeric inputs; integer and bool inputs are allowed
    (:func:`float_inputs` casts them).

    Raises:
      TypeError: complex or non-numeric dtype.
    """
    dtype = getattr(xs, "dtype", None)
    if dtype is None:
        dtype = np.asarray(xs).dtype
    kind = dtype_kind(dtype)
    if kind == "c":
        raise TypeError(
            f"{argument} must be real, got complex dtype {dtype}; pass jnp.real(xs) or stack "
            "the real and imaginary parts as features."
        )
    if kind not in "biuf":
        raise TypeError(f"{argument} must be a numeric array, got dtype {dtype}.")


def float_inputs(xs: Any, params: Any) -> jax.Array:
    """``xs`` as an array; integer, bool and 8-bit float inputs cast to the params' float
    dtype (float8 types have no implicit promotion path in JAX; the cast is exact)."""
    xs = jnp.asarray(xs)
    if xs.dtype.kind in "biu" or (dtype_kind(xs.dtype) == "f" and xs.dtype.itemsize == 1):
        leaves = [
            leaf
            for leaf in jax.tree_util.tree_leaves(params)
            if dtype_kind(getattr(leaf, "dtype", np.float32)) == "f"
        ]
        dtype = jnp.result_type(*leaves) if leaves else jnp.float32
        xs = xs.astype(dtype)
    return xs


# --------------------------------------------------------------------------- params


def _is_spec_leaf(x) -> bool:
    return (
        isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple) and isinstance(x[1], str)
    )


def param_shapes(cell, input_size: int):
    """The cell's expected params as ``{name: (shape, kind)}`` (a tuple of those
    for a stack), or None when the cell declares no ``param_spec``."""
    spec = getattr(cell, "param_spec", None)
    return None if spec is None else spec(int(input_size))


def _keys_str(keys) -> str:
    return ", ".join(repr(k) for k in sorted(keys, key=str))


def _check_tree(spec, params, where: str, argument: str, context: str) -> None:
    if spec is None:
        return
    if callable(getattr(spec, "check", None)):  # a spec object (a wrapped model's params)
        spec.check(params, argument + where)
        return
    if isinstance(spec, tuple) and not _is_spec_leaf(spec):  # a stack: one spec per layer
        if not isinstance(params, tuple | list) or len(params) != len(spec):
            got = (
                f"a {_kind(params)} of {len(params)} entries"
                if isinstance(params, tuple | list)
                else f"a {_kind(params)}"
            )
            raise ValueError(
                f"{argument}{where} must be a tuple of {len(spec)} layer params (one per "
                f"stacked cell), got {got}."
            )
        for i, (s, p) in enumerate(zip(spec, params)):
            _check_tree(s, p, f"{where}[{i}]", argument, f" (layer {i} of the stack)")
        return
    if not isinstance(params, dict):
        raise ValueError(
            f"{argument}{where} must be a dict with keys {_keys_str(spec)}, got {_kind(params)}."
        )
    missing = set(spec) - set(params)
    extra = set(params) - set(spec)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"is missing {_keys_str(missing)}")
        if extra:
            parts.append(f"has unexpected keys {_keys_str(extra)}")
        hint = ""
        if {"cell", "readout"} <= set(params):
            hint = " These look like model params: pass params['cell'] to the cell."
        raise ValueError(
            f"{argument}{where} {' and '.join(parts)}; expected exactly the keys "
            f"{_keys_str(spec)}{context}.{hint}"
        )
    for name, (shape, kind) in spec.items():
        leaf = params[name]
        got = tuple(np.shape(leaf))
        if got != tuple(shape):
            hint = ""
            if len(got) == 2 and got[::-1] == tuple(shape):
                hint = " (transposed? weights are stored (out, in))"
            raise ValueError(
                f"{argument}{where}[{name!r}] must have shape {_shape_str(shape)}{context}, "
                f"got {_shape_str(got)}{hint}."
            )
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = np.asarray(leaf).dtype
        if dtype_kind(dtype) != kind:
            want = {"f": "a real floating dtype", "c": "a complex dtype"}.get(kind, kind)
            raise TypeError(f"{argument}{where}[{name!r}] must have {want}, got dtype {dtype}.")


def check_params(cell, params, input_size: int | None = None, argument: str = "params") -> None:
    """Checks ``params`` against ``cell.param_spec`` (a no-op for cells without one).

    Args:
      cell: a :class:`~jrnn.cells.base.Cell`.
      params: the params to check.
      input_size: the feature size ``d`` the params must accept (from ``xs``
        when known); None infers it from ``params``.
      argument: the argument's name, for the message.

    Raises:
      ValueError: a missing or extra key, a wrong shape (naming the key, the
        shape received and the shape expected); TypeError: a wrong dtype kind.
    """
    if getattr(cell, "param_spec", None) is None:
        return
    if input_size is None:
        # Key names do not depend on the input size: check them first so that
        # reading d from the params cannot fail with a bare KeyError.
        _check_keys_only(cell.param_spec(1), params, "", argument)
        try:
            input_size = int(cell.input_size(params))
        except (IndexError, TypeError, ValueError):
            input_size = None
        if input_size is None or input_size < 1:
            raise ValueError(
                f"{argument} do not define a positive input size for {cell.describe()}: "
                f"check the shapes of the input weights."
            )
    spec = cell.param_spec(int(input_size))
    context = f" (hidden_size={cell.hidden_size}, input_size={int(input_size)})"
    _check_tree(spec, params, "", argument, context)


def check_spec(params: Any, spec: dict, argument: str = "params") -> None:
    """Checks a dict of arrays against ``spec = {name: (shape, kind)}`` (the form of
    a cell's ``param_spec``), for params that belong to no cell (a model's readout).

    Raises:
      ValueError: a missing or extra key, a wrong shape; TypeError: a wrong dtype kind.
    """
    _check_tree(spec, params, "", argument, "")


def _check_keys_only(spec, params, where: str, argument: str) -> None:
    if spec is None:
        return
    shapes_free = _strip_shapes(spec, params)
    _check_tree(shapes_free, params, where, argument, "")


def _strip_shapes(spec, params):
    """The spec with each shape replaced by the shape found (keys and nesting only)."""
    if spec is None or callable(getattr(spec, "check", None)):
        return spec
    if isinstance(spec, tuple) and not _is_spec_leaf(spec):
        ps = params if isinstance(params, tuple | list) else ()
        return tuple(_strip_shapes(s, ps[i] if i < len(ps) else None) for i, s in enumerate(spec))
    if not isinstance(params, dict):
        return spec
    return {
        k: ((tuple(np.shape(params[k])), kind) if k in params else (shape, kind))
        for k, (shape, kind) in spec.items()
    }


# --------------------------------------------------------------------------- factories


def check_factory_args(factory, params: dict, owner: str) -> dict:
    """Checks keyword ``params`` for ``factory`` by the type of each default.

    A parameter whose default is a bool must be a bool (``'no'`` is rejected);
    one whose default is a number must be a finite real number (NaN, inf and
    strings are rejected). Used for parametric activations
    (``get("elu", alpha=...)``).

    Returns:
      ``params`` with numbers as floats.

    Raises:
      TypeError / ValueError: naming ``owner`` and the parameter.
    """
    import inspect

    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return dict(params)
    out = {}
    for key, value in params.items():
        p = signature.parameters.get(key)
        default = None if p is None else p.default
        label = f"{owner} parameter {key}"
        if isinstance(default, bool):
            out[key] = check_bool(value, label)
        elif isinstance(default, numbers.Real) or isinstance(value, str) or value is None:
            out[key] = check_number(value, label)
        else:
            out[key] = value
    return out
