"""experiments.training_dynamics: the smoke preset writes the contract's files with the
monitored curves from step 0, and its rank statistics agree with scipy."""

import json
import os

import numpy as np
import pytest
import scipy.stats

from experiments import training_dynamics as td


def test_spearman_and_interval_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = x + rng.normal(size=12)
    y[3] = y[4]  # a tie
    assert td.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    c = td.rank_correlation(x, y, bootstraps=200, permutations=200)
    assert c["ci95"][0] <= c["rho"] <= c["ci95"][1] and 0 < c["p_value"] <= 1
    assert td.rank_correlation(x[:3], y[:3])["rho"] is None  # too few runs: no number
    x[0] = np.nan
    assert td.rank_correlation(x, y, bootstraps=10, permutations=10)["n"] == 11


def test_smoke(tmp_path):
    out = str(tmp_path / "td")
    m = td.main(["--preset", "smoke", "--out", out])
    for f in ("report.md", "metrics.json", "run_info.json", "spectrum_over_training.png",
              "prediction.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    with open(os.path.join(out, "metrics.json")) as fh:
        text = fh.read()
    assert "NaN" not in text
    r = json.loads(text)["results"]["elman_tanh"]
    cfg = td.PRESETS["smoke"]
    assert r["steps"] == list(range(0, cfg.steps + 1, cfg.monitor_every))
    runs = len(cfg.gains) * cfg.seeds
    assert np.shape(r["lyap_1_per_run"]) == (runs, len(r["steps"]))
    # runs with a larger initial gain start with a larger lambda_1 (same seeds, scaled W_hh)
    lam0 = np.asarray(r["lyap_1_per_run"])[:, 0].reshape(len(cfg.gains), cfg.seeds)
    assert np.all(lam0[1] > lam0[0])
    assert m["pooled_rank_correlation"]["lyap_1@step0"]["n"] == runs
