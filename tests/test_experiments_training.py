"""Smoke tests of the training experiments at their tiny (--smoke) configs:
the contract's files exist with sane numbers, checkpoints are written under
OUT/checkpoints, and importing has no side effects."""

import argparse
import importlib
import json
import math
import os

import pytest

from experiments import common
from jrnn import checkpoint


def _load(out):
    with open(os.path.join(out, "metrics.json")) as fh:
        text = fh.read()
    assert "NaN" not in text and "Infinity" not in text
    return text, json.loads(text)


def test_long_sequence_smoke(tmp_path):
    from experiments import long_sequence

    out = str(tmp_path / "ls")
    long_sequence.main(["--smoke", "--out", out])
    text, m = _load(out)
    for f in ("report.md", "run_info.json", "adding_loss.png", "copy_loss.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    assert m["mode"] == "smoke" and set(m["runs"]) == {"adding", "copy"}
    cells = long_sequence.SMOKE["cells"]
    for task, by_len in m["runs"].items():
        for r in by_len["T6" if task == "adding" else "T3"].values():
            assert len(r["final_loss"]) == long_sequence.SMOKE["seeds"]
            assert all(math.isfinite(x) and x > 0 for x in r["final_loss"])
            assert 0 <= r["solved"] <= r["seeds"]
        assert set(by_len[next(iter(by_len))]) == set(cells)
    assert m["runs"]["adding"]["T6"]["elman-tanh"]["baseline"] == pytest.approx(1 / 6)
    report = open(os.path.join(out, "report.md")).read()
    assert "| adding | 6 | elman-tanh |" in report and "![copy_loss.png]" in report
    assert "wall_time_s" in json.load(open(os.path.join(out, "run_info.json")))
    assert "wall" not in text and "time" not in text  # no timings among results
    # Every run checkpointed its final step under OUT/checkpoints for resuming
    # (exact resume itself is tested in test_train / test_checkpoint).
    for task, T in (("adding", 6), ("copy", 3)):
        d = common.checkpoint_dir(out, task, f"T{T}", "elman-tanh")
        assert checkpoint.latest_step(d) == long_sequence.SMOKE["steps"]


def test_seed_example_smoke(tmp_path):
    from experiments import seed_example

    out = str(tmp_path / "se")
    seed_example.main(["--smoke", "--out", out, "--seed", "3"])
    _, m = _load(out)
    assert os.path.getsize(os.path.join(out, "loss_curve.png")) > 0
    assert "SimpleRNN(64" in open(os.path.join(out, "report.md")).read()
    assert m["seed"] == 3 and m["steps"] == 2 * (64 // 32)
    assert m["baseline_predict_zero"] == pytest.approx(0.5, abs=0.25)
    assert all(math.isfinite(x) and x > 0 for x in m["epoch_train_loss"] + m["test_mse"])
    assert not m["diverged"]


def test_common_contract():
    p = common.add_common_args(argparse.ArgumentParser(), "x")
    a = p.parse_args([])
    assert (a.quick, a.seed, a.out, a.smoke) == (False, 0, None, False)
    a = p.parse_args(["--quick", "--seed", "4", "--out", "d"])
    assert (a.quick, a.seed, a.out) == (True, 4, "d")
    a.coordinator_address = "localhost:1"
    with pytest.raises(ValueError, match="--num-processes"):
        common.init_distributed(a)
    assert common._clean({"b": float("nan"), "a": [1, 2.5]}) == {"b": None, "a": [1, 2.5]}
    with pytest.raises(ValueError, match="metrics"):
        common._clean({"f": object()})
    table = common.format_table(["name", "x"], [["a", 0.5], ["bb", 1e-5]])
    assert table.splitlines()[2].startswith("a ") and "1e-05" in table
    assert common.markdown_table(["a"], [[1]]).splitlines()[1] == "|---|"


@pytest.mark.parametrize("name", ["experiments.long_sequence", "experiments.seed_example"])
def test_import_has_no_side_effects(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = importlib.reload(importlib.import_module(name))
    assert callable(mod.main) and not os.listdir(tmp_path)
