"""Activation functions with their analytic properties, and a registry.

An :class:`Activation` is a frozen record holding the function, its derivative
(closed form where one is known, else ``jax.grad``) and the numbers that decide
how gradients flow through a recurrent step:

.. math::

   h_t = f(W_{hh} h_{t-1} + W_{xh} x_t + b_h), \\qquad
   \\frac{\\partial h_t}{\\partial h_{t-1}} = \\mathrm{diag}(f'(a_t))\\, W_{hh},

so ``grad_bound = sup |f'|`` bounds every step's Jacobian norm by
``grad_bound * ||W_hh||`` (Pascanu, Mikolov & Bengio, 2013).

One derivative, every path. ``Activation.fn`` carries ``Activation.derivative``
as its ``jax.custom_jvp`` rule, so ``jax.grad`` / ``jax.jvp`` through a cell,
the cells' analytic Jacobians (which call ``derivative``) and the fused
backward pass all use the same numbers, also at kinks and in the saturated
tails. Two conventions hold for every record:

- **Kinks.** At a breakpoint ``x0`` of a piecewise activation the derivative is
  that of the piece valid on the *closed* side: the pieces are written
  ``where(x > 0, ...)`` and ``where(|x| < c, ...)``, as in PyTorch and
  ``jax.nn.relu``. So ``f'(0) = 0`` for relu, ``negative_slope`` for
  leaky_relu, ``alpha`` for elu, ``scale * alpha`` for selu (the ``x <= 0``
  branch), and ``f' = 0`` at hard_tanh's ``+-1`` and hard_sigmoid's ``+-3``.
- **Non-finite input.** ``derivative(nan)`` is NaN (never a plausible 0 or
  slope), so a NaN trajectory gives NaN Jacobians and gradients. The one
  exception is ``identity``, whose derivative is the constant 1: a linear
  cell's Jacobian does not depend on the state at all.

Every built-in derivative keeps full float32 relative accuracy wherever the
true value is a normal number: no ``1 - tanh^2``, ``s (1 - s)`` or
``1 + erf`` forms that round to 0 or cancel in the tails (see
:func:`tanh_prime`, :func:`sigmoid_prime`).

Example::

    >>> import jrnn
    >>> act = jrnn.activations.get("tanh")
    >>> float(act.derivative(0.0)), act.grad_bound, act.saturating
    (1.0, 1.0, True)
    >>> jrnn.activations.get("leaky_relu", negative_slope=0.1).grad_bound
    1.0
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
    "unregister",
    "saturation_tolerance",
    "sigmoid_prime",
    "tanh_prime",
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
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"activation {name!r} is already registered; pass overwrite=True to replace it."
        )


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
      grad_bound: ``sup |f'|``; default estimated on a dense grid over [-30, 30].
      output_range, saturating, dead_below, saturation_threshold, kinks: see
        :class:`Activation`.
      overwrite: replace an existing entry instead of raising.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> act = jrnn.activations.register("cube_root", jnp.cbrt, grad_bound=jnp.inf)
    """
    _check_name(name, overwrite)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}.")
    deriv = derivative if derivative is not None else _elementwise_grad(fn)
    bound = float(grad_bound) if grad_bound is not None else _numerical_grad_bound(deriv)
    act = Activation(
        name=name,
        fn=fn,
        derivative=deriv,
        grad_bound=bound,
        output_range=tuple(output_range),
        saturating=bool(saturating),
        dead_below=dead_below,
        saturation_threshold=saturation_threshold,
        kinks=tuple(float(k) for k in kinks),
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


# --------------------------------------------------------------------------- built-ins


def _sat_threshold_sigmoid(tol: float) -> float:
    # s(1-s) = tol / 4  =>  s = (1 + sqrt(1 - tol)) / 2
    s = (1.0 + math.sqrt(1.0 - tol)) / 2.0
    return math.log(s / (1.0 - s))


_SQRT2 = math.sqrt(2.0)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def tanh_prime(a: Array) -> Array:
    """``tanh'(a) = sech^2(a)`` to full relative accuracy for every ``a``.

    .. math::

       \\mathrm{sech}^2(a) = \\frac{4 e^{-2|a|}}{(1 + e^{-2|a|})^2}

    ``1 - tanh(a)^2`` rounds to exactly 0 once ``tanh(a)`` rounds to 1
    (``|a| >~ 9`` in float32, ``~19`` in float64), which turns a tiny but
    finite Jacobian entry into a ``-inf`` Lyapunov exponent. This form only
    underflows where the true value is below the smallest normal number.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> float(jrnn.activations.tanh_prime(jnp.float32(12.0))) > 0
        True
    """
    a = jnp.asarray(a)
    e = jnp.exp(-2.0 * jnp.abs(a))
    return 4.0 * e / (1.0 + e) ** 2


def sigmoid_prime(a: Array) -> Array:
    """``sigmoid'(a) = s(a)(1 - s(a))`` to full relative accuracy for every ``a``.

    .. math::

       \\sigma'(a) = \\frac{e^{-|a|}}{(1 + e^{-|a|})^2}

    ``s (1 - s)`` rounds to 0 once ``s`` rounds to 1 (``a >~ 17`` in float32).

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> float(jrnn.activations.sigmoid_prime(jnp.float32(30.0))) > 0
        True
    """
    a = jnp.asarray(a)
    e = jnp.exp(-jnp.abs(a))
    return e / (1.0 + e) ** 2


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


def _gelu_grad(x: Array) -> Array:
    """``d/dx [x Phi(x)] = Phi(x) + x phi(x)`` with ``Phi(x) = erfc(-x / sqrt 2) / 2``.

    ``(1 + erf(x / sqrt 2)) / 2`` cancels to 0 for ``x <~ -5.5`` in float32.
    """
    x = jnp.asarray(x)
    cdf = 0.5 * jax.scipy.special.erfc(-x / _SQRT2)
    return cdf + x * jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _gelu_tanh_grad(x: Array) -> Array:
    """Derivative of ``x (1 + tanh u) / 2 = x s(2u)``, ``u = c (x + k x^3)``.

    ``s(2u) (1 + 2 x u' s(-2u))``: no ``1 + tanh`` or ``1 - tanh^2`` that
    cancels or underflows in the tails.
    """
    x = jnp.asarray(x)
    two_u = 2.0 * _GELU_C * (x + _GELU_K * x**3)
    du = _GELU_C * (1.0 + 3.0 * _GELU_K * x * x)
    return jax.nn.sigmoid(two_u) * (1.0 + 2.0 * x * du * jax.nn.sigmoid(-two_u))


def _register_builtins() -> None:
    tol = saturation_tolerance
    def _one(x):
        return jnp.ones_like(x)

    _one._jrnn_nan_propagating = True  # constant: f' = 1 whatever x is (linear cells stay exact)
    register("identity", lambda x: x, derivative=_one, grad_bound=1.0)
    register(
        "sigmoid",
        jax.nn.sigmoid,
        derivative=sigmoid_prime,
        grad_bound=0.25,
        output_range=(0.0, 1.0),
        saturating=True,
        saturation_threshold=_sat_threshold_sigmoid(tol),
    )
    register(
        "hard_sigmoid",
        jax.nn.hard_sigmoid,  # relu6(x + 3) / 6
        derivative=lambda x: jnp.where(jnp.abs(x) < 3.0, 1.0 / 6.0, 0.0).astype(
            jnp.result_type(x, float)
        ),
        grad_bound=1.0 / 6.0,
        output_range=(0.0, 1.0),
        saturating=True,
        saturation_threshold=3.0,
        kinks=(-3.0, 3.0),
    )
    register(
        "tanh",
        jnp.tanh,
        derivative=tanh_prime,
        grad_bound=1.0,
        output_range=(-1.0, 1.0),
        saturating=True,
        saturation_threshold=math.atanh(math.sqrt(1.0 - tol)),
    )
    register(
        "hard_tanh",
        lambda x: jnp.clip(x, -1.0, 1.0),
        derivative=lambda x: jnp.where(jnp.abs(x) < 1.0, 1.0, 0.0).astype(
            jnp.result_type(x, float)
        ),
        grad_bound=1.0,
        output_range=(-1.0, 1.0),
        saturating=True,
        saturation_threshold=1.0,
        kinks=(-1.0, 1.0),
    )
    register(
        "relu",
        jax.nn.relu,
        derivative=lambda x: (x > 0).astype(jnp.result_type(x, float)),
        grad_bound=1.0,
        output_range=(0.0, inf),
        dead_below=0.0,
        kinks=(0.0,),
    )

    def leaky_relu(negative_slope: float = 0.01) -> Activation:
        a = float(negative_slope)
        return Activation(
            name="leaky_relu" if a == 0.01 else f"leaky_relu(negative_slope={a:g})",
            fn=lambda x: jnp.where(x > 0, x, a * x),
            derivative=lambda x: jnp.where(x > 0, 1.0, a).astype(jnp.result_type(x, float)),
            grad_bound=max(1.0, abs(a)),
            output_range=(-inf, inf) if a > 0 else (0.0, inf),
            dead_below=0.0 if a == 0 else None,
            params=(("negative_slope", a),),
            kinks=(0.0,),
        )

    register_family("leaky_relu", leaky_relu, params=("negative_slope",))

    def elu(alpha: float = 1.0) -> Activation:
        a = float(alpha)
        return Activation(
            name="elu" if a == 1.0 else f"elu(alpha={a:g})",
            fn=lambda x: jnp.where(x > 0, x, a * jnp.expm1(jnp.minimum(x, 0.0))),
            derivative=lambda x: jnp.where(x > 0, 1.0, a * jnp.exp(jnp.minimum(x, 0.0))),
            grad_bound=max(1.0, abs(a)),
            output_range=(-abs(a), inf),
            params=(("alpha", a),),
            kinks=(0.0,),
        )

    register_family("elu", elu, params=("alpha",))
    register(
        "selu",
        jax.nn.selu,
        derivative=lambda x: _SELU_SCALE
        * jnp.where(x > 0, 1.0, _SELU_ALPHA * jnp.exp(jnp.minimum(x, 0.0))),
        grad_bound=_SELU_SCALE * _SELU_ALPHA,  # the left limit at 0
        output_range=(-_SELU_SCALE * _SELU_ALPHA, inf),
        kinks=(0.0,),
    )

    def gelu(approximate: bool = False) -> Activation:
        if approximate:
            fn = lambda x: jax.nn.gelu(x, approximate=True)
            deriv = _gelu_tanh_grad
            bound = 1.128993068655481  # sup on a 1e-5 grid, checked in tests
        else:
            fn = lambda x: jax.nn.gelu(x, approximate=False)
            deriv = _gelu_grad
            bound = 0.5 * (1.0 + math.erf(1.0)) + _SQRT2 * math.exp(-1.0) / math.sqrt(
                2.0 * math.pi
            )
        return Activation(
            name="gelu" if not approximate else "gelu(approximate=True)",
            fn=fn,
            derivative=deriv,
            grad_bound=bound,
            # min of x Phi(x) is -0.16997; the tanh approximation dips to -0.170039
            output_range=(-0.1701, inf) if approximate else (-0.17, inf),
            params=(("approximate", bool(approximate)),),
        )

    register_family("gelu", gelu, params=("approximate",))

    def _silu_grad(x):
        # s(x) (1 + x s(-x)): 1 - s(x) would cancel for large x.
        return jax.nn.sigmoid(x) * (1.0 + x * jax.nn.sigmoid(-x))

    register(
        "silu",
        jax.nn.silu,
        derivative=_silu_grad,
        grad_bound=1.0998393201285286,  # at x = 2.3994 (numerical sup, checked in tests)
        output_range=(-0.2785, inf),
    )
    register(
        "softplus",
        jax.nn.softplus,
        derivative=jax.nn.sigmoid,
        grad_bound=1.0,
        output_range=(0.0, inf),
    )
    register(
        "softsign",
        jax.nn.soft_sign,
        derivative=lambda x: 1.0 / (1.0 + jnp.abs(x)) ** 2,
        grad_bound=1.0,
        output_range=(-1.0, 1.0),
        saturating=True,
        saturation_threshold=1.0 / math.sqrt(tol) - 1.0,
        kinks=(0.0,),
    )

    def _mish(x):
        return x * jnp.tanh(jax.nn.softplus(x))

    def _mish_grad(x):
        sp = jax.nn.softplus(x)
        return jnp.tanh(sp) + x * tanh_prime(sp) * jax.nn.sigmoid(x)

    register(
        "mish",
        _mish,
        derivative=_mish_grad,
        grad_bound=1.0884981612515676,  # at x = 1.4906, checked in tests
        output_range=(-0.3089, inf),
    )
    register("sin", jnp.sin, derivative=jnp.cos, grad_bound=1.0, output_range=(-1.0, 1.0))


_register_builtins()
BUILTINS: tuple[str, ...] = tuple(names())
