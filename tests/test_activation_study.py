"""Smoke test of the main job at a tiny configuration, with claims that could fail."""

import json
import math
import os

from experiments import activation_study


def test_activation_study_smoke(tmp_path):
    out = str(tmp_path / "as")
    metrics = activation_study.main(["--smoke", "--out", out])
    for f in (
        "metrics.json",
        "report.md",
        "run_info.json",
        "propagation.png",
        "singular_values.png",
        "lyapunov.png",
        "training.png",
    ):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    stored = json.load(open(os.path.join(out, "metrics.json")))
    assert stored["activations"] == ["sigmoid", "relu"]
    at_init = stored["at_init"]
    assert set(at_init) == {
        "elman-sigmoid-standard",
        "elman-sigmoid-critical",
        "elman-relu-standard",
        "elman-relu-critical",
        "lstm",
    }
    T = stored["config"]["T"]
    for r in at_init.values():
        assert len(r["log_norm_median"]) == T + 1
        assert r["log_norm_median"][0] == 0.0  # lag 0: the identity
        assert math.isfinite(r["lyapunov_max_median"])
    # sup|sigmoid'| = 1/4 with ||W_hh|| ~ 2: the Pascanu bound forces vanishing, and it does.
    sig = at_init["elman-sigmoid-standard"]
    assert sig["pascanu_bound_median"] < 1.0
    assert sig["log_norm_at_T"] < at_init["elman-relu-standard"]["log_norm_at_T"]
    # Critical relu gain is sqrt(2) (chi = g^2 / 2 = 1).
    assert stored["critical_gains"]["relu"] == pytest_approx(math.sqrt(2.0))
    assert abs(at_init["elman-relu-critical"]["mean_field"]["lambda_max"]) < 1e-6
    # Training ran for every configuration at the standard init, and the report says so.
    assert set(stored["training"]) == {"elman-sigmoid-standard", "elman-relu-standard", "lstm"}
    report = open(os.path.join(out, "report.md")).read()
    assert "## Findings" in report and "![propagation.png](propagation.png)" in report
    assert metrics["conclusions"] and all(isinstance(c, str) for c in metrics["conclusions"])


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-4)
