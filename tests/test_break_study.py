"""activation_study verdicts when a gradient is exactly zero (log10 norm -inf)."""

import math

from experiments.activation_study import config, verdicts


def _row(act, m):
    return {"family": "elman", "activation": act, "init": "standard", "gain": 1.0,
            "log10_norm_at_T": {"value": m, "stderr": 0.1, "n": 8},
            "lyapunov_max": {"value": 0.0, "stderr": 0.01, "n": 8},
            "diverged_trajectories": 0}


def test_exactly_zero_gradient_counts_as_vanished():
    rows = {"a": _row("sigmoid", -math.inf), "b": _row("tanh", -30.0)}
    out = {v.claim: v.verdict for v in verdicts.claims(rows, {}, {}, 100)}
    # Before: "not confirmed at this lag" and "not resolved (within error)".
    assert out["Sigmoid and tanh gradients vanish over long sequences."].startswith("confirmed")
    assert out["Sigmoid (sup|f'| = 1/4) vanishes faster than tanh (sup|f'| = 1)."] == "confirmed"
    both = {"a": _row("sigmoid", -math.inf), "b": _row("tanh", -math.inf)}
    out = {v.claim: v.verdict for v in verdicts.claims(both, {}, {}, 100)}
    assert out["Sigmoid (sup|f'| = 1/4) vanishes faster than tanh (sup|f'| = 1)."].startswith(
        "not resolved")


def test_config_rejects_empty_and_dedupes():
    import pytest

    with pytest.raises(ValueError, match="activations"):  # before: an empty study ran
        config.Config(activations=())
    with pytest.raises(ValueError, match="cells"):
        config.Config(cells=())
    assert config.Config(cells=("lstm", "lstm")).cells == ("lstm",)
    assert config.Config(activations=("relu", "relu")).activations == ("relu",)
