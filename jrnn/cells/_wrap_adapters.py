"""The framework side of :func:`jrnn.wrap`: what each kind of model is, and how it steps.

One adapter per kind turns the user's object into a :class:`Wrapped` record, a pure step
``(params, carry, x) -> (carry, y)`` that calls the user's own code on the user's own params
pytree (no weight conversion), plus what jrnn must know to build a Cell around it: the example
params and carry, the input size where the framework can tell it, and the framework's
initialiser where it has a pure one (Flax linen). Flax is imported here only when an object is
one of its modules; Equinox only for an Equinox module, with an install hint.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["KINDS", "PytreeSpec", "Wrapped", "adapt", "float_dtype", "kind_of"]

#: What :func:`jrnn.wrap` accepts, for messages.
KINDS = (
    "a step function step(params, carry, x) -> (carry, y) with params= and carry=, "
    "a Flax linen cell (nn.RNNCellBase: __call__(carry, x) -> (carry, y)) with params= its "
    "variables, a Flax NNX cell (__call__(carry, x) -> (carry, y)) or an Equinox cell "
    "(__call__(x, carry) -> carry)"
)


class Wrapped(NamedTuple):
    """A user's model as jrnn sees it (see :func:`adapt`)."""

    label: str  # "flax.linen.GRUCell", "equinox.nn.GRUCell", "step function f", ...
    step: Callable[[Any, Any, jax.Array], tuple[Any, Any]]  # (params, carry, x) -> (carry, y)
    params: Any  # the user's pytree
    carry: Any  # an example carry (structure and shapes), or None where unknown
    input_size: int | None  # inferred from the model, or None
    init: Callable[[jax.Array, Any, jax.Array], Any] | None  # (key, carry, x) -> params
    strict_dtype: bool  # the carry's dtypes are the user's (a step function's carry=)


class PytreeSpec:
    """A wrapped model's ``param_spec``: the leaf paths, shapes and dtype kinds of its params.

    :func:`jrnn.validation.check_params` calls :meth:`check`, so a diagnostic given
    params of another structure names the leaf (``params['params']['ir']['kernel']``),
    the shape received and the shape expected. Container types are not compared: a
    ``FrozenDict`` may come where a ``dict`` was.
    """

    __slots__ = ("leaves",)

    def __init__(self, example: Any):
        self.leaves = {
            jax.tree_util.keystr(path): (tuple(np.shape(leaf)), _dtype_of(leaf).kind)
            for path, leaf in jax.tree_util.tree_leaves_with_path(example)
        }

    def __repr__(self) -> str:
        return f"PytreeSpec({len(self.leaves)} leaves)"

    def check(self, params: Any, argument: str = "params") -> None:
        """Raises ValueError (a missing / unexpected leaf, a wrong shape) or TypeError (a
        leaf of another dtype kind), naming the leaf's path."""
        got = {
            jax.tree_util.keystr(path): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        }
        missing = [p for p in self.leaves if p not in got]
        extra = [p for p in got if p not in self.leaves]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"is missing the leaves {_few(missing)}")
            if extra:
                parts.append(f"has unexpected leaves {_few(extra)}")
            raise ValueError(
                f"{argument} {' and '.join(parts)}; expected the {len(self.leaves)} leaves of "
                f"the wrapped model's params (got a {type(params).__name__})."
            )
        for path, (shape, kind) in self.leaves.items():
            leaf = got[path]
            if tuple(np.shape(leaf)) != shape:
                raise ValueError(
                    f"{argument}{path} must have shape {shape} (as the wrapped model's params), "
                    f"got {tuple(np.shape(leaf))}."
                )
            dtype = _dtype_of(leaf)
            if dtype.kind != kind and not {dtype.kind, kind} <= set("iu"):
                raise TypeError(
                    f"{argument}{path} must have dtype kind {kind!r} (as the wrapped model's "
                    f"params), got dtype {dtype}."
                )


def _few(paths: list[str]) -> str:
    more = f" (and {len(paths) - 5} more)" if len(paths) > 5 else ""
    return ", ".join(paths[:5]) + more


def _dtype_of(leaf) -> np.dtype:
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(np.asarray(leaf).dtype if dtype is None else dtype)


# --------------------------------------------------------------------------- kinds


def _mro_modules(obj) -> list[str]:
    return [getattr(c, "__module__", "") or "" for c in type(obj).__mro__]


def kind_of(obj) -> str:
    """``"linen"``, ``"nnx"``, ``"equinox"`` or ``"step"``; TypeError for anything else."""
    if isinstance(obj, type):
        raise TypeError(
            f"obj must be a model instance or a step function, got the class {obj.__name__}; "
            f"instantiate it first (e.g. {obj.__name__}(...))."
        )
    mods = _mro_modules(obj)
    if any(m.startswith("flax.linen") for m in mods):
        return "linen"
    if any(m.startswith("flax.nnx") for m in mods):
        return "nnx"
    if any(m == "equinox" or m.startswith("equinox.") for m in mods):
        return "equinox"
    if callable(obj):
        return "step"
    hint = ""
    if hasattr(obj, "recur") and hasattr(obj, "initial_carry"):
        hint = " It looks like a jrnn.Cell already: pass it to the diagnostics directly."
    raise TypeError(f"obj must be {KINDS}; got {type(obj).__name__}.{hint}")


def _label(obj, framework: str) -> str:
    cls = type(obj)
    builtin = cls.__module__.startswith(framework.split(".")[0] + ".")
    return f"{framework}.{cls.__name__}" if builtin else f"{framework} {cls.__name__}"


def _int_attr(obj, *names) -> int | None:
    for name in names:
        v = getattr(obj, name, None)
        if isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1:
            return int(v)
    return None


def float_dtype(tree, default=jnp.float32):
    """The result dtype of the float leaves of ``tree`` (``default`` when it has none)."""
    floats = [
        leaf
        for leaf in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(_dtype_of(leaf), jnp.floating)
    ]
    return jnp.result_type(*floats) if floats else jnp.dtype(default)


# --------------------------------------------------------------------------- adapters


def _step_function(fn, params, carry, input_size) -> Wrapped:
    name = getattr(fn, "__name__", type(fn).__name__)
    if params is None:
        raise ValueError(
            f"params is required for a step function step(params, carry, x): pass the pytree "
            f"{name} takes as its first argument, got None."
        )
    if carry is None:
        raise ValueError(
            "carry is required for a step function step(params, carry, x): pass an example "
            "carry (any pytree of float arrays, e.g. jnp.zeros(n)), got None."
        )
    return Wrapped(f"step function {name}", fn, params, carry, None, None, True)


def _linen(module, params, carry, input_size) -> Wrapped:
    label = _label(module, "flax.linen")
    if params is None:
        raise ValueError(
            f"params is required for a Flax linen module ({label}): pass its variables, e.g. "
            f"params = module.init(key, carry, x), got None."
        )
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params of a Flax linen module ({label}) must be its variables, a mapping such as "
            f"{{'params': {{...}}}}, got {type(params).__name__}."
        )
    # inferred whatever input_size says, so that wrap() reports a mismatch by name
    d = _linen_input_size(params) if type(module).__module__.startswith("flax.") else None
    dc = input_size if input_size is not None else d
    if carry is None and dc is not None and hasattr(module, "initialize_carry"):
        carry = _call_carry(label, lambda: module.initialize_carry(jax.random.key(0), (dc,)))

    def step(p, c, x):
        return module.apply(p, c, x)

    def init(key, c, x):
        return module.init(key, c, x)

    return Wrapped(label, step, params, carry, d, init, False)


def _linen_input_size(params) -> int | None:
    """A built-in linen cell's input size: the rows of its first input kernel (``i*``)."""
    inner = params.get("params", params)
    if not isinstance(inner, Mapping):
        return None
    for name in sorted(inner):
        sub = inner[name]
        if str(name).startswith("i") and isinstance(sub, Mapping) and "kernel" in sub:
            shape = np.shape(sub["kernel"])
            if len(shape) == 2:
                return int(shape[0])
    return None


def _nnx(module, params, carry, input_size) -> Wrapped:
    from flax import nnx

    label = _label(module, "flax.nnx")
    graphdef, state, rest = nnx.split(module, nnx.Param, ...)
    params = state if params is None else params
    d = _int_attr(module, "in_features", "input_size")  # wrap() reports a mismatch
    dc = input_size if input_size is not None else d
    if carry is None and dc is not None and hasattr(module, "initialize_carry"):
        carry = _call_carry(label, lambda: module.initialize_carry((dc,), nnx.Rngs(0)))

    def step(p, c, x):
        return nnx.merge(graphdef, p, rest)(c, x)

    return Wrapped(label, step, params, carry, d, None, False)


def _equinox(module, params, carry, input_size) -> Wrapped:
    try:
        import equinox as eqx
    except ImportError as err:  # pragma: no cover - an Equinox module implies Equinox
        raise ImportError(
            "wrapping an Equinox module needs equinox: pip install 'jrnn[equinox]'."
        ) from err
    label = _label(module, "equinox.nn")
    try:
        inspect.signature(module).bind(None, None)
    except (TypeError, ValueError):
        raise TypeError(
            f"obj is an Equinox module ({label}) but not a cell: expected __call__(x, carry) "
            f"-> carry (as eqx.nn.GRUCell / eqx.nn.LSTMCell)."
        ) from None
    arrays, static = eqx.partition(module, eqx.is_array)
    params = arrays if params is None else params
    d = _int_attr(module, "input_size")  # wrap() reports a mismatch with input_size=
    if carry is None and isinstance(module, eqx.nn.GRUCell | eqx.nn.LSTMCell):
        z = jnp.zeros((module.hidden_size,), float_dtype(arrays))
        carry = z if isinstance(module, eqx.nn.GRUCell) else (z, z)

    def step(p, c, x):
        new = eqx.combine(p, static)(x, c)
        return new, _eqx_output(new)

    return Wrapped(label, step, params, carry, d, None, False)


def _eqx_output(carry):
    """``y_t`` of an Equinox cell (which returns only its carry): the carry itself when it is
    one array, its first entry when it is a tuple / list (``h`` of the LSTM's ``(h, c)``),
    else all its leaves raveled and concatenated."""
    if isinstance(carry, jax.Array | np.ndarray):
        return carry
    if isinstance(carry, tuple | list) and carry and isinstance(carry[0], jax.Array):
        return carry[0]
    leaves = jax.tree_util.tree_leaves(carry)
    return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])


def _call_carry(label: str, make):
    try:
        return make()
    except Exception as err:  # noqa: BLE001 - the framework's own error, re-raised with context
        raise ValueError(
            f"{label}.initialize_carry failed ({type(err).__name__}: {err}); pass carry= "
            f"(an example carry) and input_size=."
        ) from err


def adapt(obj, params, carry, input_size) -> Wrapped:
    """The :class:`Wrapped` record of ``obj`` (TypeError / ValueError naming the argument)."""
    kind = kind_of(obj)
    return {"step": _step_function, "linen": _linen, "nnx": _nnx, "equinox": _equinox}[kind](
        obj, params, carry, input_size
    )
