"""Activation registry: known values, names, registration (the numerical properties of every
built-in are checked by jrnn.testing.check_activation in tests/test_activation_kit.py)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jrnn import activations

BUILTINS = [
    "identity", "sigmoid", "hard_sigmoid", "tanh", "hard_tanh", "relu", "leaky_relu", "elu",
    "selu", "gelu", "silu", "softplus", "softsign", "mish", "sin",
]  # fmt: skip


def test_every_builtin_is_registered():
    assert set(BUILTINS) <= set(activations.names())


# Derivative vs jax.grad, grad_bound, output_range, dead_below and saturation metadata of
# every built-in: tests/test_activation_kit.py (jrnn.testing.check_activation).


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
