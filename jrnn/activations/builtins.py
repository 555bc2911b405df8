"""The built-in activations, registered at import as data: one ``register(...)`` per entry.

Each entry gives the function, its closed-form derivative
(:mod:`jrnn.activations.derivatives`), ``sup |f'|``, the output range, the
saturation facts and the kinks. A typo fails at import with a line number.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jrnn.activations.derivatives import (
    SELU_ALPHA,
    SELU_SCALE,
    gelu_prime,
    gelu_tanh_prime,
    mish,
    mish_prime,
    sigmoid_prime,
    silu_prime,
    tanh_prime,
)
from jrnn.activations.registry import (
    Activation,
    inf,
    names,
    register,
    register_family,
    saturation_tolerance,
)

__all__ = ["BUILTINS"]

_SQRT2 = math.sqrt(2.0)


def _sat_threshold_sigmoid(tol: float) -> float:
    # s(1-s) = tol / 4  =>  s = (1 + sqrt(1 - tol)) / 2
    s = (1.0 + math.sqrt(1.0 - tol)) / 2.0
    return math.log(s / (1.0 - s))


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
    saturation_threshold=_sat_threshold_sigmoid(saturation_tolerance),
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
    saturation_threshold=math.atanh(math.sqrt(1.0 - saturation_tolerance)),
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
    derivative=lambda x: SELU_SCALE
    * jnp.where(x > 0, 1.0, SELU_ALPHA * jnp.exp(jnp.minimum(x, 0.0))),
    grad_bound=SELU_SCALE * SELU_ALPHA,  # the left limit at 0
    output_range=(-SELU_SCALE * SELU_ALPHA, inf),
    kinks=(0.0,),
)


def gelu(approximate: bool = False) -> Activation:
    if approximate:
        fn = lambda x: jax.nn.gelu(x, approximate=True)
        deriv = gelu_tanh_prime
        bound = 1.128993068655481  # sup on a 1e-5 grid, checked in tests
    else:
        fn = lambda x: jax.nn.gelu(x, approximate=False)
        deriv = gelu_prime
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


register(
    "silu",
    jax.nn.silu,
    derivative=silu_prime,
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
    saturation_threshold=1.0 / math.sqrt(saturation_tolerance) - 1.0,
    kinks=(0.0,),
)


register(
    "mish",
    mish,
    derivative=mish_prime,
    grad_bound=1.0884981612515676,  # at x = 1.4906, checked in tests
    output_range=(-0.3089, inf),
)
register("sin", jnp.sin, derivative=jnp.cos, grad_bound=1.0, output_range=(-1.0, 1.0))

#: The built-in names, sorted.
BUILTINS: tuple[str, ...] = tuple(names())
