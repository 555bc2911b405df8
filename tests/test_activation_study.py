"""Smoke test of the main job at a tiny configuration, with claims that could fail."""

import json
import math
import os

import numpy as np
import pytest

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
    cfg = stored["config"]
    T, n_traj = cfg["T"], cfg["seeds"] * cfg["sequences"]
    for r in at_init.values():
        assert len(r["log_norm_median"]) == T + 1
        assert r["log_norm_median"][0] == 0.0  # lag 0: the identity
        # Every headline number carries its error bar over seeds x sequences.
        lam = r["lyapunov_max"]
        assert lam["n"] == n_traj and len(r["lyapunov_max_per_trajectory"]) == n_traj
        assert math.isfinite(lam["value"]) and lam["stderr"] > 0
        per = np.asarray(r["lyapunov_max_per_trajectory"])
        assert lam["value"] == pytest.approx(per.mean(), rel=1e-6)
        assert lam["stderr"] == pytest.approx(per.std(ddof=1) / math.sqrt(n_traj), rel=1e-6)
        assert r["log10_norm_at_T"]["n"] == n_traj
    # sup|sigmoid'| = 1/4 with ||W_hh|| ~ 2: the Pascanu bound forces vanishing, and it does.
    sig = at_init["elman-sigmoid-standard"]
    assert sig["pascanu_bound_median"] < 1.0
    assert sig["log_norm_at_T"] < at_init["elman-relu-standard"]["log_norm_at_T"]
    # The critical gain is input-aware: chi = 1 with the drive variance in q. For relu
    # (positively homogeneous) the drive does not move it: sqrt(2).
    assert stored["input_drive_variance"] > 0
    assert stored["critical_gains"]["relu"] == pytest.approx(math.sqrt(2.0), rel=1e-4)
    assert abs(at_init["elman-relu-critical"]["mean_field"]["lambda_max"]) < 1e-6
    assert abs(at_init["elman-sigmoid-critical"]["mean_field"]["lambda_max"]) < 1e-4
    # Training ran for every configuration at the standard init, with per-seed spread.
    assert set(stored["training"]) == {"elman-sigmoid-standard", "elman-relu-standard", "lstm"}
    for r in stored["training"].values():
        assert len(r["final_loss_per_seed"]) == cfg["seeds"]
        assert r["final_loss"]["stderr"] >= 0
    report = open(os.path.join(out, "report.md")).read()
    assert "## Findings" in report and "![propagation.png](propagation.png)" in report
    assert "## The seed article's claims" in report and "+-" in report
    verdicts = {c["claim"]: c["verdict"] for c in stored["claims"]}
    assert any("ReLU" in c for c in verdicts)
    assert all(v.split()[0] in ("confirmed", "not", "depends") for v in verdicts.values())
    assert metrics["conclusions"] and all(isinstance(c, str) for c in metrics["conclusions"])


def test_claims_follow_the_numbers():
    """The verdicts are computed: flipping the evidence flips the verdict."""

    def row(act, init, m, se=0.1, gain=1.0):
        return {"family": "elman", "activation": act, "init": init, "gain": gain,
                "log10_norm_at_T": {"value": m, "stderr": se, "n": 12},
                "lyapunov_max": {"value": 0.0, "stderr": 0.01, "n": 12},
                "diverged_trajectories": 0}

    vanish = {"a": row("sigmoid", "standard", -30.0), "b": row("tanh", "standard", -12.0)}
    out = {c["claim"]: c["verdict"] for c in activation_study.claims(vanish, {}, {}, 100)}
    assert out["Sigmoid and tanh gradients vanish over long sequences."].startswith("confirmed")
    assert out["Sigmoid (sup|f'| = 1/4) vanishes faster than tanh (sup|f'| = 1)."] == "confirmed"
    # Within error: no finding.
    close = {"a": row("sigmoid", "standard", -12.0, se=5.0),
             "b": row("tanh", "standard", -12.5, se=5.0)}
    out = {c["claim"]: c["verdict"] for c in activation_study.claims(close, {}, {}, 100)}
    assert out["Sigmoid (sup|f'| = 1/4) vanishes faster than tanh (sup|f'| = 1)."].startswith(
        "not resolved")
    # Critical rows that keep the norm make the verdict depend on the initialisation.
    crit = dict(vanish, c=row("tanh", "critical", -0.5, gain=1.3))
    out = {c["claim"]: c["verdict"] for c in activation_study.claims(crit, {}, {}, 100)}
    assert out["Sigmoid and tanh gradients vanish over long sequences."].startswith("depends")
