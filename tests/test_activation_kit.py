"""Every built-in activation through jrnn.testing.check_activation: derivative vs jax.grad
on a dense float64 grid with the kinks, grad_bound attained and never exceeded,
output_range, dead_below, saturating and saturation_threshold."""

import pytest

from jrnn import activations
from jrnn.testing import check_activation

PARAMETRIC = [("leaky_relu", {"negative_slope": 0.2}), ("leaky_relu", {"negative_slope": 0.0}),
              ("elu", {"alpha": 0.5}), ("gelu", {"approximate": True})]  # fmt: skip
ACTS = [activations.get(n) for n in activations.BUILTINS] + [
    activations.get(n, **p) for n, p in PARAMETRIC
]


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
def test_builtin_activation_passes_the_kit(act):
    report = check_activation(act)
    assert report["derivative"] <= 1e-12 + 1e-9 * max(1.0, act.grad_bound)
    assert report["grad_bound"] <= 1e-6
    assert report["output_range"] == 0.0
