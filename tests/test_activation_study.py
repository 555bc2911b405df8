"""Smoke test of the main job at a tiny configuration, with claims that could fail."""

import json
import math
import os

import numpy as np
import pytest

from experiments import activation_study
from experiments.activation_study import config, verdicts


def count_calls(monkeypatch, *names) -> dict:
    """Counts the calls of ``jrnn.plot.<name>`` (still drawing) while the test runs."""
    import jrnn.plot

    calls = dict.fromkeys(names, 0)
    for name in names:
        def counted(*args, _fn=getattr(jrnn.plot, name), _name=name, **kwargs):
            calls[_name] += 1
            return _fn(*args, **kwargs)

        monkeypatch.setattr(jrnn.plot, name, counted)
    return calls


def test_activation_study_smoke(tmp_path, monkeypatch):
    out = str(tmp_path / "as")
    calls = count_calls(monkeypatch, "training")
    metrics = activation_study.main(["--preset", "smoke", "--out", out])
    # The loss panel comes from jrnn.plot (one call for every trained configuration).
    assert calls == {"training": 1}
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
        "flossed",
    }
    cfg = stored["config"]
    T, n_traj = cfg["T"], cfg["seeds"] * cfg["sequences"]
    for r in at_init.values():
        assert len(r["log_norm_median"]) == T + 1
        assert r["log_norm_median"][0] == 0.0  # lag 0: the identity
        # Every headline number carries its error bar over seeds x sequences.
        lam = r["lyapunov_max"]
        assert lam["n"] == n_traj and len(r["lyapunov_max_per_trajectory"]) == n_traj
        per = r["lyapunov_max_per_trajectory"]
        if None in per:  # -inf (the tangent became exactly 0; the mean says so) or overflow
            assert lam["value"] is None or r["diverged_trajectories"] > 0
            continue
        per = np.asarray(per)
        assert math.isfinite(lam["value"]) and lam["stderr"] > 0
        assert lam["value"] == pytest.approx(per.mean(), rel=1e-6)
        assert lam["stderr"] == pytest.approx(per.std(ddof=1) / math.sqrt(n_traj), rel=1e-6)
        assert r["log10_norm_at_T"]["n"] == n_traj
    # sup|sigmoid'| = 1/4 with ||W_hh|| ~ 2: the Pascanu bound forces vanishing, and it does.
    sig = at_init["elman-sigmoid-standard"]
    assert sig["pascanu_bound_median"] < 1.0
    relu = at_init["elman-relu-standard"]
    if relu["log_norm_at_T"] is None:  # -inf: exactly zero (every path through an off unit)
        assert relu["exactly_zero_gradients"] > 0 and relu["log10_norm_at_T"]["value"] is None
    else:
        assert sig["log_norm_at_T"] < relu["log_norm_at_T"]
    # The critical gain is input-aware: chi = 1 with the drive variance in q. For relu
    # (positively homogeneous) the drive does not move it: sqrt(2).
    assert stored["input_drive_variance"] > 0
    assert stored["critical_gains"]["relu"] == pytest.approx(math.sqrt(2.0), rel=1e-4)
    assert abs(at_init["elman-relu-critical"]["mean_field"]["lambda_max"]) < 1e-6
    assert abs(at_init["elman-sigmoid-critical"]["mean_field"]["lambda_max"]) < 1e-4
    # Training ran for every configuration at the standard init, with per-seed spread.
    assert set(stored["training"]) == {"elman-sigmoid-standard", "elman-relu-standard", "lstm",
                                       "flossed"}
    for r in stored["training"].values():
        assert len(r["final_loss_per_seed"]) == cfg["seeds"]
        assert r["final_loss"]["stderr"] is None or r["final_loss"]["stderr"] >= 0
        assert len(r["diverged_per_seed"]) == cfg["seeds"]
    report = open(os.path.join(out, "report.md")).read()
    assert "## Other findings" in report and "![propagation.png](propagation.png)" in report
    assert "## Verdicts" in report and "+-" in report
    verdicts = {c["claim"]: c["verdict"] for c in stored["claims"]}
    assert any("ReLU" in c for c in verdicts)
    assert all(v.split()[0] in ("confirmed", "not", "depends") for v in verdicts.values())
    # Each claim appears once (the findings no longer repeat the verdicts).
    for claim in verdicts:
        assert report.count(claim) == 1, claim
    # The critical rows' lambda_max is measured again at the wide width, against theory.
    wide = at_init["elman-relu-critical"]["lyapunov_max_wide"]
    assert wide["hidden"] == cfg["lyap_hidden"] and wide["trajectories"] == n_traj
    assert wide["lyapunov_max"]["n"] + wide["diverged_trajectories"] == n_traj
    assert "lyapunov_max_wide" not in at_init["flossed"]  # no mean-field prediction
    # Provenance: a "How this was run" section with the command, commit, versions and sizes.
    how = report.split("## How this was run")[1]
    assert "python -m experiments.activation_study --preset smoke" in how
    assert "jrnn commit" in how and "jax " in how and f"T = {cfg['train_T']}" in how
    assert "checkpoints/" in how and str(tmp_path) not in report
    # No duplicated column: one mean-field column.
    header = report.split("## Summary")[1].split("\n\n")[2].splitlines()[0]
    assert header.count("mean field") == 1 and "theory chi" not in header
    assert metrics["conclusions"] and all(isinstance(c, str) for c in metrics["conclusions"])
    # run_info.json traces the numbers to the code: commit, versions, device, seed, config.
    info = json.load(open(os.path.join(out, "run_info.json")))
    assert info["preset"] == "smoke" and info["seed"] == 0
    assert info["config"]["T"] == cfg["T"] and info["config"]["cells"] == ["lstm", "flossed"]
    assert set(info["stage_times_s"]) == {"at_init_s", "lyapunov_at_width_s", "training_s",
                                          "figures_report_s"}
    assert info["command"][:3] == ["python", "-m", "experiments.activation_study"]
    assert set(info["versions"]) >= {"jrnn", "jax", "jaxlib", "flax", "optax", "chex", "numpy",
                                     "scipy"} and info["versions"]["jax"]
    assert set(info["git"]) == {"commit", "dirty"} and info["devices"]
    assert str(tmp_path) not in json.dumps(info)  # no absolute paths


def test_claims_follow_the_numbers():
    """The verdicts are computed: flipping the evidence flips the verdict."""

    def row(act, init, m, se=0.1, gain=1.0):
        return {"family": "elman", "activation": act, "init": init, "gain": gain,
                "log10_norm_at_T": {"value": m, "stderr": se, "n": 12},
                "lyapunov_max": {"value": 0.0, "stderr": 0.01, "n": 12},
                "diverged_trajectories": 0}

    vanish = {"a": row("sigmoid", "standard", -30.0), "b": row("tanh", "standard", -12.0)}
    out = {v.claim: v.verdict for v in verdicts.claims(vanish, {}, {}, 100)}
    assert out["Sigmoid and tanh gradients vanish over long sequences."].startswith("confirmed")
    assert out["Sigmoid (sup|f'| = 1/4) vanishes faster than tanh (sup|f'| = 1)."] == "confirmed"
    # Within error: no finding.
    close = {"a": row("sigmoid", "standard", -12.0, se=5.0),
             "b": row("tanh", "standard", -12.5, se=5.0)}
    out = {v.claim: v.verdict for v in verdicts.claims(close, {}, {}, 100)}
    assert out["Sigmoid (sup|f'| = 1/4) vanishes faster than tanh (sup|f'| = 1)."].startswith(
        "not resolved")
    # Critical rows that keep the norm make the verdict depend on the initialisation.
    crit = dict(vanish, c=row("tanh", "critical", -0.5, gain=1.3))
    out = {v.claim: v.verdict for v in verdicts.claims(crit, {}, {}, 100)}
    assert out["Sigmoid and tanh gradients vanish over long sequences."].startswith("depends")


# ------------------------------------------------------------------ one verdict at a time
def _ms(value, stderr=0.1):
    return {"value": value, "stderr": stderr, "n": 12}


def _row(family, act=None, init="standard", log10=-1.0, lam=0.0, gain=1.0):
    return {"family": family, "activation": act, "init": init, "gain": gain,
            "log10_norm_at_T": _ms(log10), "lyapunov_max": _ms(lam, 0.01),
            "diverged_trajectories": 0}


def _trained(act=None, final=0.5, solved=0, dead=None, diverged=0, seeds=3):
    r = {"activation": act, "final_over_baseline": _ms(final, 0.01), "solved_seeds": solved,
         "final_loss_per_seed": [final] * seeds, "diverged_seeds": diverged,
         "final_loss": _ms(final / 6, 0.01)}
    if dead is not None:
        r["dead_fraction_before"] = _ms(0.0, 0.0)
        r["dead_fraction_after"] = _ms(dead, 0.01)
    return r


def _crit(act, lam, se=0.002, hidden=256, diverged=0):
    r = _row("elman", act, init="critical", log10=-0.5, gain=1.2)
    r["lyapunov_max_wide"] = {"hidden": hidden, "lyapunov_max": _ms(lam, se),
                              "diverged_trajectories": diverged, "trajectories": 12}
    return r


def _evidence(rows, training=None, gates=None, train_T=150):
    return verdicts.Evidence.of({f"r{i}": r for i, r in enumerate(rows)}, training or {},
                                gates or {}, 100, train_T)


def test_verdict_saturating_vanish():
    e = _evidence([_row("elman", "sigmoid", log10=-30.0), _row("elman", "tanh", log10=-12.0)])
    v = verdicts.saturating_vanish(e)
    assert isinstance(v, verdicts.Verdict) and v.verdict.startswith("confirmed")
    assert "lag 100" in v.evidence
    e = _evidence([_row("elman", "sigmoid", log10=-1.0), _row("elman", "tanh", log10=-0.5)])
    assert verdicts.saturating_vanish(e).verdict == "not confirmed at this lag"
    assert verdicts.saturating_vanish(_evidence([_row("elman", "relu")])) is None


def test_verdict_sigmoid_faster_than_tanh():
    fast = _evidence([_row("elman", "sigmoid", log10=-30.0), _row("elman", "tanh", log10=-12.0)])
    assert verdicts.sigmoid_faster_than_tanh(fast).verdict == "confirmed"
    slow = _evidence([_row("elman", "sigmoid", log10=-5.0), _row("elman", "tanh", log10=-12.0)])
    assert verdicts.sigmoid_faster_than_tanh(slow).verdict == "not confirmed"


def test_verdict_relu_does_not_vanish():
    kept = _evidence([_row("elman", "relu", log10=-1.0)])
    assert verdicts.relu_does_not_vanish(kept).verdict == "confirmed"
    gone = _evidence([_row("elman", "relu", log10=-30.0)])
    assert verdicts.relu_does_not_vanish(gone).verdict == "not confirmed"
    # Kept at the critical gain only: it depends on the initialisation.
    crit = _evidence([_row("elman", "relu", log10=-30.0),
                      _row("elman", "relu", init="critical", log10=-0.5, gain=1.414)])
    assert verdicts.relu_does_not_vanish(crit).verdict.startswith("depends")


def test_verdict_relu_units_die():
    dead = _evidence([], {"elman-relu-standard": _trained("relu", dead=0.25)})
    v = verdicts.relu_units_die(dead)
    assert v.verdict == "confirmed" and "relu: 0.0% -> 25.0%" in v.evidence
    alive = _evidence([], {"elman-relu-standard": _trained("relu", dead=0.0)})
    assert verdicts.relu_units_die(alive).verdict == "not observed at this training budget"
    # tanh has no dead region: nothing to judge.
    assert verdicts.relu_units_die(_evidence([], {"t": _trained("tanh", dead=0.0)})) is None


def test_every_claim_has_a_verdict_function():
    assert len(verdicts.CLAIMS) == 8
    rows = [_row("elman", "sigmoid", log10=-30.0), _row("elman", "tanh", log10=-12.0),
            _row("elman", "relu", log10=-1.0), _row("lstm", log10=-1.0),
            _row("residual", log10=-1.0), _row("flossed", log10=-1.0),
            _crit("tanh", 0.001)]
    tr = {"elman-relu-standard": _trained("relu", dead=0.1)}
    judged = verdicts.claims({f"r{i}": r for i, r in enumerate(rows)}, tr, {}, 100)
    assert [v.claim for v in judged] == [c(_evidence(rows, tr)).claim for c in verdicts.CLAIMS]


def test_cli_lists_typed_fields_and_rejects_unknown_flags(capsys):
    with pytest.raises(SystemExit) as info:
        activation_study.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for field in ("--preset", "--hidden", "--lyap-warmup", "--train-steps", "--activations",
                  "--cells", "--no-train", "--out", "--seed", "--coordinator-address"):
        assert field in text, field
    # --quick was accepted and ignored before: the preset is chosen with --preset.
    with pytest.raises(SystemExit) as info:
        activation_study.main(["--quick"])
    assert info.value.code != 0
    with pytest.raises(SystemExit):
        activation_study.main(["--preset", "quik"])


def test_config_validates_and_presets():
    assert set(config.PRESETS) == {"smoke", "quick", "default", "full"}
    assert config.PRESETS["default"] == config.Config()
    # The default run trains where the claims are at stake: long sequences, the claim cells.
    d = config.PRESETS["default"]
    assert d.train_T >= 100 and d.lyap_hidden >= 256
    assert d.trains("elman-tanh-standard") and d.trains("lstm") and d.trains("flossed")
    assert not d.trains("elman-tanh-critical") and not d.trains("elman-sin-standard")
    with pytest.raises(ValueError, match="cells must be among"):
        config.Config(cells=("lstn",))
    with pytest.raises(ValueError, match="tanh"):
        config.Config(activations=("tahn",))
    assert set(config.REMEDY_CELLS) == set(config.REMEDIES) and len(config.REMEDIES) == 16
