"""Activation registry: closed-form derivatives, gradient bounds, registry behaviour."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jrnn import activations

BUILTINS = [
    "identity", "sigmoid", "hard_sigmoid", "tanh", "hard_tanh", "relu", "leaky_relu", "elu",
    "selu", "gelu", "silu", "softplus", "softsign", "mish", "sin",
]  # fmt: skip

# Dense float64 grid that avoids the kinks of piecewise functions (0, +-1, +-3).
GRID = np.linspace(-12.0, 12.0, 24_001) + 1e-4
PARAMETRIC = [("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 0.5}),
              ("gelu", {"approximate": True})]  # fmt: skip


def _all_acts():
    return [activations.get(n) for n in BUILTINS] + [activations.get(n, **p) for n, p in PARAMETRIC]


def test_every_builtin_is_registered():
    assert set(BUILTINS) <= set(activations.names())


@pytest.mark.parametrize("act", _all_acts(), ids=lambda a: a.name)
def test_derivative_matches_autodiff(act):
    # act.fn carries act.derivative as its custom_jvp rule; differentiate the raw function.
    raw = act.fn.fun if isinstance(act.fn, jax.custom_jvp) else act.fn
    x = jnp.asarray(GRID)
    auto = jax.vmap(jax.grad(raw))(x)
    np.testing.assert_allclose(act.derivative(x), auto, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", _all_acts(), ids=lambda a: a.name)
def test_grad_bound_is_the_supremum(act):
    fine = jnp.asarray(np.linspace(-30.0, 30.0, 600_001))
    sup = float(jnp.max(jnp.abs(act.derivative(fine))))
    # Never exceeded, and attained (to grid resolution) somewhere.
    assert sup <= act.grad_bound * (1 + 1e-9)
    assert sup >= act.grad_bound * (1 - 1e-6) or act.name == "selu"
    if act.name == "selu":  # the bound is the left limit at 0, approached but not attained
        assert sup >= act.grad_bound * (1 - 1e-3)


@pytest.mark.parametrize("act", _all_acts(), ids=lambda a: a.name)
def test_output_range_holds(act):
    y = np.asarray(act.fn(jnp.asarray(np.linspace(-40.0, 40.0, 8001))))
    lo, hi = act.output_range
    assert y.min() >= lo - 1e-3 and y.max() <= hi + 1e-9


@pytest.mark.parametrize("act", _all_acts(), ids=lambda a: a.name)
def test_saturation_and_dead_region_metadata(act):
    if act.saturation_threshold is not None:
        assert act.saturating
        x = jnp.asarray([act.saturation_threshold * 1.001, -act.saturation_threshold * 1.001])
        d = np.abs(np.asarray(act.derivative(x)))
        assert np.all(d <= activations.saturation_tolerance * act.grad_bound * (1 + 1e-6))
        # and the derivative is still above the tolerance just inside the threshold
        inside = np.abs(np.asarray(act.derivative(jnp.asarray([act.saturation_threshold * 0.9]))))
        assert inside[0] > activations.saturation_tolerance * act.grad_bound
    if act.dead_below is not None:
        below = jnp.asarray(np.linspace(act.dead_below - 10, act.dead_below - 1e-3, 100))
        np.testing.assert_array_equal(act.derivative(below), 0.0)


def test_known_values():
    assert activations.get("sigmoid").grad_bound == 0.25
    tanh_threshold = math.atanh(math.sqrt(0.99))
    assert activations.get("tanh").saturation_threshold == pytest.approx(tanh_threshold)
    assert activations.get("relu").dead_below == 0.0
    assert activations.get("leaky_relu").dead_below is None
    leaky = activations.get("leaky_relu", negative_slope=0.1)
    assert leaky.name == "leaky_relu(negative_slope=0.1)"
    assert not activations.get("relu").saturating and activations.get("tanh").saturating


def test_unknown_name_suggests_nearest_and_lists_all():
    with pytest.raises(ValueError) as err:
        activations.get("tanhh")
    msg = str(err.value)
    assert "Did you mean 'tanh'" in msg and "'tanhh'" in msg
    for name in BUILTINS:
        assert name in msg


def test_bad_params_rejected():
    with pytest.raises(ValueError, match=r"params of activation 'relu' must be among \[\]"):
        activations.get("relu", negative_slope=0.1)
    with pytest.raises(ValueError, match="negative_slope"):
        activations.get("leaky_relu", slope=0.1)


def test_register_and_duplicate_protection():
    try:
        act = activations.register("cube", lambda x: x**3 / 3.0, output_range=(-np.inf, np.inf))
        assert "cube" in activations.names()
        # derivative by autodiff, bound estimated on [-30, 30]
        np.testing.assert_allclose(act.derivative(jnp.asarray([2.0, -3.0])), [4.0, 9.0])
        assert act.grad_bound == pytest.approx(900.0, rel=1e-3)
        with pytest.raises(ValueError, match="already registered"):
            activations.register("cube", jnp.tanh)
        act2 = activations.register("cube", jnp.tanh, grad_bound=1.0, overwrite=True)
        assert activations.get("cube") is act2
        with pytest.raises(ValueError, match="already registered"):
            activations.register("tanh", jnp.tanh)
    finally:
        if "cube" in activations.names():
            activations.unregister("cube")
    assert "cube" not in activations.names()


def test_callable_and_record_pass_through():
    act = activations.get("tanh")
    assert activations.get(act) is act
    wrapped = activations.get(jnp.arctan)
    assert wrapped.grad_bound == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(wrapped.derivative(jnp.asarray([1.0])), [0.5])
