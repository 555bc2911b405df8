"""Smoke tests of the training experiments at their tiny (--smoke) configs:
the contract's files exist with sane numbers, checkpoints are written under
OUT/checkpoints, and importing has no side effects."""

import dataclasses
import importlib
import json
import math
import os

import pytest

from experiments import common
from jrnn import checkpoint


def _md_rows(text):
    """The cells of every Markdown table row in ``text``."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]


def _load(out):
    with open(os.path.join(out, "metrics.json")) as fh:
        text = fh.read()
    assert "NaN" not in text and "Infinity" not in text
    return text, json.loads(text)


def test_long_sequence_smoke(tmp_path):
    from experiments import long_sequence

    out = str(tmp_path / "ls")
    long_sequence.main(["--preset", "smoke", "--out", out])
    text, m = _load(out)
    for f in ("report.md", "run_info.json", "adding_loss.png", "copy_loss.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    assert m["mode"] == "smoke" and set(m["runs"]) == {"adding", "copy"}
    cfg = long_sequence.PRESETS["smoke"]
    cells = cfg.cells
    for task, by_len in m["runs"].items():
        for r in by_len["T6" if task == "adding" else "T3"].values():
            assert len(r["final_loss"]) == cfg.seeds
            assert all(math.isfinite(x) and x > 0 for x in r["final_loss"])
            assert 0 <= r["solved"] <= r["seeds"]
        assert set(by_len[next(iter(by_len))]) == set(cells)
    assert m["runs"]["adding"]["T6"]["elman-tanh"]["baseline"] == pytest.approx(1 / 6)
    report = open(os.path.join(out, "report.md")).read()
    assert any(row[:3] == ["adding", "6", "elman-tanh"] for row in _md_rows(report))
    assert "![copy_loss.png]" in report
    assert "wall_time_s" in json.load(open(os.path.join(out, "run_info.json")))
    assert "wall" not in text and "time" not in text  # no timings among results
    # Every run checkpointed its final step under OUT/checkpoints for resuming
    # (exact resume itself is tested in test_train / test_checkpoint).
    for task, T in (("adding", 6), ("copy", 3)):
        d = common.checkpoint_dir(out, task, f"T{T}", "elman-tanh")
        assert checkpoint.latest_step(d) == cfg.steps


def test_seed_example_smoke(tmp_path):
    from experiments import seed_example

    out = str(tmp_path / "se")
    seed_example.main(["--preset", "smoke", "--out", out, "--seed", "3"])
    _, m = _load(out)
    assert os.path.getsize(os.path.join(out, "loss_curve.png")) > 0
    assert "SimpleRNN(64" in open(os.path.join(out, "report.md")).read()
    assert m["seed"] == 3 and m["steps"] == 2 * (64 // 32)
    assert m["baseline_predict_zero"] == pytest.approx(0.5, abs=0.25)
    assert all(math.isfinite(x) and x > 0 for x in m["epoch_train_loss"] + m["test_mse"])
    assert not m["diverged"]


@dataclasses.dataclass(frozen=True)
class _Toy:
    n: int = 1
    """a number"""
    names: tuple[str, ...] = ("a",)
    """some names"""


def test_common_contract(tmp_path):
    presets = {"small": _Toy(), "big": _Toy(n=2, names=("b", "c"))}
    out = str(tmp_path / "toy")
    a = common.parse("toy", None, presets, "small", ["--out", out])
    assert (a.preset, a.config, a.seed, a.out) == ("small", _Toy(), 0, out)
    assert os.path.isdir(out) and a.run == common.Run(out=out)
    a = common.parse("toy", None, presets, "small",
                     ["--preset", "big", "--seed", "4", "--out", out, "--names", "x"])
    assert (a.preset, a.config, a.seed) == ("big", _Toy(n=2, names=("x",)), 4)
    for bad in (["--quick"], ["--preset", "quick"], ["--n", "x"]):  # never silently ignored
        with pytest.raises(SystemExit):
            common.parse("toy", None, presets, "small", bad + ["--out", out])
    with pytest.raises(ValueError, match="--num-processes"):
        common.init_distributed(common.Run(coordinator_address="localhost:1"))
    assert common._clean({"b": float("nan"), "a": [1, 2.5]}) == {"b": None, "a": [1, 2.5]}
    with pytest.raises(ValueError, match="metrics"):
        common._clean({"f": object()})
    table = common.table(["name", "x"], [["a", 0.5], ["bb", 1e-5]], markdown=False)
    assert table.splitlines()[2].startswith("a ") and "1e-05" in table
    assert common.table(["a"], [[1]]).splitlines()[1] == "|-----|"
    assert _md_rows(common.table(["name", "x"], [["a", 0.5]])) == [["name", "x"], ["-" * 8] * 2,
                                                                    ["a", "0.5000"]]


def test_run_info_traces_the_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = common.parse("toy", None, {"small": _Toy()}, "small",
                     ["--out", str(tmp_path / "o"), "--n", "3"])
    info = json.load(open(common.write_run_info(a, wall_time_s=1.5)))
    assert info["command"] == ["python", "-m", "experiments.toy", "--out", "o", "--n", "3"]
    assert info["config"] == {"type": "_Toy", "n": 3, "names": ["a"]}
    assert (info["preset"], info["seed"], info["out"], info["wall_time_s"]) == (
        "small", 0, "o", 1.5)
    assert set(info["versions"]) == set(common.PACKAGES) and info["versions"]["numpy"]
    commit = info["git"]["commit"]
    assert commit is None or (len(commit) == 40 and isinstance(info["git"]["dirty"], bool))
    assert str(tmp_path) not in json.dumps(info)


@pytest.mark.parametrize("name", ["experiments.long_sequence", "experiments.seed_example",
                                  "experiments.activation_study", "experiments.edge_of_chaos",
                                  "experiments.dead_neurons", "experiments.flossing",
                                  "experiments.flossing_chaos"])
def test_import_has_no_side_effects(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = importlib.reload(importlib.import_module(name))
    assert callable(mod.main) and not os.listdir(tmp_path)
