"""The activation registry: the :class:`Activation` record, ``register`` / ``get`` / ``names``.

A plain dict of factories behind :func:`register`, :func:`register_family`,
:func:`unregister`, :func:`names` and :func:`get` (the Gymnasium registry's
shape): a name registered twice fails unless ``overwrite=True``, and an unknown
name gets "Did you mean ...?" from ``difflib``. Each record's ``fn`` carries its
``derivative`` as the ``jax.custom_jvp`` rule (:mod:`jrnn.activations`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import validation as _validation

__all__ = [
    "Activation",
    "get",
    "names",
    "register",
    "register_family",
    "saturation_tolerance",
    "unregister",
]

Array = jax.Array
inf = math.inf

#: A unit counts as saturated where |f'(a)| < saturation_tolerance * grad_bound.
saturation_tolerance = 0.01


@dataclasses.dataclass(frozen=True)
class Activation:
    """A scalar activation function and its analytic properties.

    Attributes:
      name: registry name, with parameters for parametric ones
        (``"leaky_relu(negative_slope=0.1)"``).
      fn: elementwise function ``f``; its ``jax.custom_jvp`` rule is
        ``derivative``, so ``jax.grad`` through ``f`` gives the same numbers.
      derivative: elementwise ``f'`` (closed form where known, else ``jax.grad``);
        NaN at NaN input; at a kink, the closed side's piece (module docstring).
      grad_bound: ``sup_x |f'(x)|``; 1/4 for sigmoid, 1 for tanh and relu.
      output_range: ``(lo, hi)`` of ``f``.
      saturating: True when ``f'`` decays to zero for large ``|x|`` on both
        sides (sigmoid, tanh, ...): the classical vanishing-gradient culprits.
      dead_below: input below which ``f'`` is exactly zero forever (relu: 0.0),
        else ``None``. Units stuck there are "dead".
      saturation_threshold: ``|x|`` beyond which ``|f'(x)| < 1% * grad_bound``
        for saturating activations (tanh: 2.99, sigmoid: 5.99), else ``None``.
      params: the parameters the activation was built with, as sorted pairs.
      kinks: points where ``f`` or ``f'`` is not analytic (a kink or a jump in
        ``f'``: relu 0, hard_tanh +-1); mean-field quadrature integrates
        piecewise between them (:func:`jrnn.theory.gaussian_expectation`).
    """

    name: str
    fn: Callable[[Array], Array]
    derivative: Callable[[Array], Array]
    grad_bound: float
    output_range: tuple[float, float] = (-inf, inf)
    saturating: bool = False
    dead_below: float | None = None
    saturation_threshold: float | None = None
    params: tuple[tuple[str, Any], ...] = ()
    kinks: tuple[float, ...] = ()

    def __post_init__(self):
        if getattr(self.fn, "_jrnn_derivative", None) is self.derivative:
            return  # already wired (dataclasses.replace of a record, re-registration)
        derivative = _nan_propagating(self.derivative)
        object.__setattr__(self, "derivative", derivative)
        object.__setattr__(self, "fn", _with_derivative(self.fn, derivative))

    def __call__(self, x: Array) -> Array:
        return self.fn(x)


def _nan_propagating(derivative: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """``derivative`` with NaN where its input is NaN (``where``-forms would give 0 or 1)."""
    if getattr(derivative, "_jrnn_nan_propagating", False):
        return derivative

    def d(x):
        x = jnp.asarray(x)
        out = derivative(x)
        if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
            return out
        return jnp.where(jnp.isnan(x), jnp.asarray(jnp.nan, jnp.result_type(out)), out)

    d._jrnn_nan_propagating = True
    d.__doc__ = getattr(derivative, "__doc__", None)
    return d


def _with_derivative(fn: Callable[[Array], Array], derivative: Callable[[Array], Array]):
    """``fn`` whose ``jax.jvp`` (hence ``jax.grad``) is ``derivative(x) * dx``.

    One derivative for every path: autodiff through a cell then uses the
    registry's closed form (its kink convention, its accurate tails) instead of
    differentiating ``fn``'s implementation (``jnp.clip`` gives 1/2 at its
    corners; ``jnp.tanh``'s rule ``1 - tanh^2`` underflows in float32).
    """

    @jax.custom_jvp
    def f(x):
        return fn(x)

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        y = f(x)
        if jax.dtypes.result_type(dx) == jax.dtypes.float0:
            return y, dx
        return y, (derivative(x) * dx).astype(jnp.result_type(y))

    f._jrnn_derivative = derivative
    f._jrnn_raw = getattr(fn, "_jrnn_raw", fn)  # the implementation, for checks against autodiff
    f.__name__ = getattr(fn, "__name__", "activation")
    f.__doc__ = getattr(fn, "__doc__", None)
    return f


# A registry entry builds an Activation from keyword parameters.
_Factory = Callable[..., Activation]
_REGISTRY: dict[str, _Factory] = {}
_PARAMETRIC: dict[str, tuple[str, ...]] = {}


def _elementwise_grad(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """``f'`` by autodiff, for any array shape."""

    def derivative(x):
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        g = jax.grad(lambda s: fn(s))
        return jnp.vectorize(g)(x)

    return derivative


def _numerical_grad_bound(derivative: Callable[[Array], Array]) -> float:
    grid = np.linspace(-30.0, 30.0, 60_001, dtype=np.float32)
    return float(jnp.max(jnp.abs(derivative(jnp.asarray(grid)))))


def _check_name(name: str, overwrite: bool) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a non-empty string, got {name!r} ({type(name).__name__}).")
    if not name:
        raise ValueError("name must be a non-empty string, got ''.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"activation {name!r} is already registered; pass overwrite=True to replace it."
        )


def _check_metadata(grad_bound, output_range, dead_below, saturation_threshold, kinks) -> dict:
    """The activation's metadata, checked: none of it may contradict itself."""
    check = _validation.check_number
    out = {
        "grad_bound": None
        if grad_bound is None
        else check(grad_bound, "grad_bound", low=0.0, finite=False),
        "dead_below": None if dead_below is None else check(dead_below, "dead_below"),
        "saturation_threshold": None
        if saturation_threshold is None
        else check(saturation_threshold, "saturation_threshold", low=0.0),
    }
    if isinstance(output_range, str) or np.shape(output_range) != (2,):
        raise ValueError(
            f"output_range must be a pair (lo, hi), got {output_range!r}."
        )
    lo = check(output_range[0], "output_range[0]", finite=False)
    hi = check(output_range[1], "output_range[1]", finite=False)
    _validation.check_order(lo, hi, ("output_range[0]", "output_range[1]"), strict=False)
    out["output_range"] = (lo, hi)
    if isinstance(kinks, str) or not hasattr(kinks, "__iter__"):
        raise TypeError(f"kinks must be a tuple of real numbers, got {kinks!r}.")
    out["kinks"] = tuple(check(k, f"kinks[{i}]") for i, k in enumerate(kinks))
    return out


def register(
    name: str,
    fn: Callable[[Array], Array],
    *,
    derivative: Callable[[Array], Array] | None = None,
    grad_bound: float | None = None,
    output_range: tuple[float, float] = (-inf, inf),
    saturating: bool = False,
    dead_below: float | None = None,
    saturation_threshold: float | None = None,
    kinks: tuple[float, ...] = (),
    overwrite: bool = False,
) -> Activation:
    """Registers an elementwise activation under ``name`` and returns its record.

    Args:
      name: registry key.
      fn: elementwise function.
      derivative: closed-form ``f'``; default ``jax.grad(fn)`` elementwise.
      grad_bound: ``sup |f'|`` (``>= 0``, ``inf`` allowed); default estimated on a
        dense grid over [-30, 30].
      output_range, saturating, dead_below, saturation_threshold, kinks: see
        :class:`Activation`.
      overwrite: replace an existing entry instead of raising.

    Raises:
      ValueError: ``name`` already registered without ``overwrite=True``, or
        metadata that contradicts itself (``grad_bound < 0``, an
        ``output_range`` with ``lo > hi``, a negative ``saturation_threshold``,
        NaN anywhere); TypeError: a non-callable ``fn`` or ``derivative``, a
        non-number in the metadata.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> act = jrnn.activations.register("cube_root", jnp.cbrt, grad_bound=jnp.inf)
    """
    _check_name(name, overwrite)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}.")
    if derivative is not None and not callable(derivative):
        raise TypeError(f"derivative must be callable or None, got {type(derivative).__name__}.")
    meta = _check_metadata(grad_bound, output_range, dead_below, saturation_threshold, kinks)
    deriv = derivative if derivative is not None else _elementwise_grad(fn)
    bound = meta["grad_bound"] if grad_bound is not None else _numerical_grad_bound(deriv)
    act = Activation(
        name=name,
        fn=fn,
        derivative=deriv,
        grad_bound=bound,
        output_range=meta["output_range"],
        saturating=_validation.check_bool(saturating, "saturating"),
        dead_below=meta["dead_below"],
        saturation_threshold=meta["saturation_threshold"],
        kinks=meta["kinks"],
    )
    _REGISTRY[name] = lambda: act
    _PARAMETRIC[name] = ()
    return act


def register_family(
    name: str, factory: _Factory, *, params: tuple[str, ...], overwrite: bool = False
) -> None:
    """Registers a parametric activation: ``factory(**params) -> Activation``.

    Example::

        >>> import jrnn
        >>> def scaled_tanh(gain=1.0):
        ...     return jrnn.activations.Activation(
        ...         name=f"scaled_tanh(gain={gain})",
        ...         fn=lambda x: gain * jnp.tanh(x),
        ...         derivative=lambda x: gain * jrnn.activations.tanh_prime(x),
        ...         grad_bound=abs(gain), output_range=(-abs(gain), abs(gain)),
        ...         saturating=True)
        >>> jrnn.activations.register_family("scaled_tanh", scaled_tanh, params=("gain",))
    """
    _check_name(name, overwrite)
    _REGISTRY[name] = factory
    _PARAMETRIC[name] = tuple(params)


def unregister(name: str) -> None:
    """Removes ``name`` from the registry (raises like :func:`get` if absent)."""
    _lookup(name)
    del _REGISTRY[name]
    del _PARAMETRIC[name]


def names() -> list[str]:
    """All registered activation names, sorted."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> _Factory:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"activation must be a registered name, got {name!r}.{hint} "
            f"Registered: {', '.join(names())}."
        )
    return _REGISTRY[name]


def get(name: str | Activation | Callable[[Array], Array], **params: Any) -> Activation:
    """Looks up an activation by name, building parametric ones from ``params``.

    Args:
      name: a registered name, an :class:`Activation` (returned as is) or a
        plain callable (wrapped, properties estimated numerically).
      **params: parameters of a parametric activation, e.g.
        ``get("leaky_relu", negative_slope=0.1)``.

    Raises:
      ValueError: unknown name (with the nearest names and the full list), or a
        parameter the activation does not take.
      TypeError: ``name`` is neither a string, an Activation nor a callable.
    """
    if isinstance(name, Activation):
        if params:
            raise ValueError(f"params must be empty when an Activation is given, got {params}.")
        return name
    if callable(name) and not isinstance(name, str):
        fn = name
        deriv = _elementwise_grad(fn)
        return Activation(
            name=getattr(fn, "__name__", "custom"),
            fn=fn,
            derivative=deriv,
            grad_bound=_numerical_grad_bound(deriv),
        )
    if not isinstance(name, str):
        raise TypeError(
            f"activation must be a registered name, an Activation or a callable, got {name!r} "
            f"({type(name).__name__}). Registered: {', '.join(names())}."
        )
    factory = _lookup(name)
    allowed = _PARAMETRIC[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"params of activation {name!r} must be among {list(allowed)}, got {unknown}."
        )
    return factory(**_validation.check_factory_args(factory, params, f"activation {name!r}"))
