"""experiments.flossing_chaos: the smoke run writes its contract, resumes per run, refuses
another config, and its gradient estimates follow lyapunov_penalty's formula."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from experiments import flossing_chaos as fc
from jrnn import penalties


def test_smoke_writes_the_contract_and_resumes(tmp_path):
    out = str(tmp_path / "fc")
    m = fc.main(["--preset", "smoke", "--out", out, "--seeds", "1"])
    for f in ("metrics.json", "report.md", "run_info.json", "flossing_from_chaos.png",
              os.path.join("seeds", "g3_s0.json")):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    stored = json.load(open(os.path.join(out, "metrics.json")))
    q = stored["gradient_quality"]
    assert [(r["gradient"], r["clip"]) for r in q] == [
        ("full", "none"), ("full", "median"), ("frozen", "none"), ("frozen", "median")]
    for r in q:
        assert r["finite_sequences"] == r["sequences"] == 8
        assert -1 <= r["cosine_halves"] <= 1 and r["random_direction_change_max"] > 0
    (run,) = stored["runs"]["3.0"]
    k = m["config"]["k"]
    assert len(run["exponents_after"]) == k + 1 and all(s > 0 for s in run["stderr_after"])
    assert run["max_abs_after"] == pytest.approx(max(abs(v) for v in run["exponents_after"][:k]))
    assert run["reached"] == (run["max_abs_after"] < m["config"]["tol"])
    assert stored["reached"] == {"3.0": int(run["reached"])} and run["skipped_updates"] == 0
    report = open(os.path.join(out, "report.md")).read()
    assert "Which gradient" in report and "floss_windows" in report
    # resume: the finished run is read back, not recomputed; another config is refused
    cfg = fc.PRESETS["smoke"]
    cfg1 = dataclasses.replace(cfg, seeds=1)
    calls = []
    orig = fc.jrnn.flossing.floss_windows
    fc.jrnn.flossing.floss_windows = lambda *a, **kw: calls.append(1) or orig(*a, **kw)
    try:
        again = fc.flossing_run(cfg1, 3.0, 0, 0, out)
        assert calls == [] and again == run
        with pytest.raises(ValueError, match="another config or seed"):
            fc.flossing_run(dataclasses.replace(cfg1, lr=0.5), 3.0, 0, 0, out)
        with pytest.raises(ValueError, match="another config or seed"):
            fc.flossing_run(cfg1, 3.0, 0, 5, out)
    finally:
        fc.jrnn.flossing.floss_windows = orig


def test_estimates_follow_the_penalty_and_bad_config_is_named():
    """_estimate (from per-sequence gradients) equals jax.grad of lyapunov_penalty with
    clip=None / "median" on the same batch; a non-finite sequence makes it NaN."""
    cell = fc.make_cell(fc.PRESETS["smoke"], 3.0)
    params = jax.tree_util.tree_map(lambda a: a.astype(np.float64),
                                    cell.init(jax.random.key(0), 1))
    xs = fc.bits(jax.random.key(1), 5, 20).astype(np.float64)
    flat = lambda g: np.asarray(jax.flatten_util.ravel_pytree(g)[0])
    base = penalties.lyapunov_penalty(cell, 2, warmup=5)
    per = jax.jit(jax.vmap(lambda x: jax.flatten_util.ravel_pytree(
        jax.grad(base.fn)(params, x))[0]))
    for clip in (None, "median"):
        pen = penalties.lyapunov_penalty(cell, 2, warmup=5, clip=clip)
        G = np.array(per(xs))
        np.testing.assert_allclose(fc._estimate(G, clip),
                                   flat(jax.jit(jax.grad(pen.fn))(params, xs)),
                                   rtol=1e-10, atol=1e-14)
        G[2, 0] = np.inf
        assert np.all(np.isnan(fc._estimate(G, clip)))
    for bad, match in (({"gains": ()}, "gains"), ({"snr_batch": 7}, "snr_batch"),
                       ({"k": 6}, "k must be below"), ({"eval_warmup": 120}, "eval_warmup")):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(fc.PRESETS["smoke"], **bad)


def test_unit_direction_of_an_overflowing_gradient():
    """A full gradient from chaos has entries ~1e21-1e25: its float32 norm overflows, which made
    the compared direction 0 and its first-order change exactly 0 (reported as a measurement)."""
    d = np.array([3e25, -4e25, 0.0], np.float32)
    np.testing.assert_allclose(fc._unit(d), [0.6, -0.8, 0.0], rtol=1e-7)
    np.testing.assert_allclose(fc._unit(np.array([1e-30, 0.0])), [1.0, 0.0])
    for bad in (np.zeros(3), np.array([1.0, np.nan]), np.array([np.inf, 1.0])):
        assert fc._unit(bad) is None
