"""Gradient flossing and the norm penalties (jrnn.penalties, jrnn.flossing):
closed forms, gradients against central finite differences in float64, one trace per
compiled step, the schedules, the errors, and a smoke run of experiments.flossing."""

import json
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from experiments import common
from jrnn import checkpoint, penalties, train
from jrnn import flossing as fl

F64 = lambda tree: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _small(n=3, d=1, T=14, B=2, act="tanh", seed=0):
    cell = jrnn.cells.elman(n, act, recurrent_init=jrnn.initializers.scaled_normal(1.3))
    params = F64(cell.init(jax.random.key(seed), d))
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, d), jnp.float64)
    return cell, params, xs


def _fd_check(f, params, n_dirs=3, eps=1e-6, rtol=2e-6):
    """Directional derivatives of ``f`` from jax.grad vs central differences (float64)."""
    g = jax.grad(f)(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    gflat, _ = jax.flatten_util.ravel_pytree(g)
    for i in range(n_dirs):
        v = jax.random.normal(jax.random.key(100 + i), flat.shape, jnp.float64)
        v = v / jnp.linalg.norm(v)
        fd = (f(unravel(flat + eps * v)) - f(unravel(flat - eps * v))) / (2 * eps)
        an = jnp.dot(gflat, v)
        assert abs(float(fd - an)) <= rtol * max(1.0, abs(float(an))) + 1e-9, (i, fd, an)


def test_lyapunov_penalty_closed_form_linear():
    # Identity activation, W_hh = diag(a): J_t = W, lambda_i = log|a_i| exactly.
    cell = jrnn.cells.elman(3, "identity")
    params = F64(cell.init(jax.random.key(0), 1))
    params["W_hh"] = jnp.diag(jnp.array([0.9, -0.5, 0.2]))
    xs = jnp.ones((2, 60, 1))
    lam = np.log([0.9, 0.5, 0.2])
    pen = penalties.lyapunov_penalty(cell, k=3, target=0.0, warmup=2)  # Q_0 = I: exact
    np.testing.assert_allclose(pen.exponents(params, xs), np.tile(lam, (2, 1)), rtol=1e-12)
    np.testing.assert_allclose(pen.fn(params, xs), np.mean(lam**2), rtol=1e-12)
    # k < S: a random Q_0 aligned by the warmup ((0.2 / 0.5)^30 ~ 1e-12), QR every 3 steps.
    tgt = np.array([-0.1, -0.5])
    pen = penalties.lyapunov_penalty(cell, k=2, target=tgt, every=3, warmup=30)
    np.testing.assert_allclose(pen.fn(params, xs), np.mean((lam[:2] - tgt) ** 2), rtol=1e-9)


@pytest.mark.parametrize("every", [1, 3])
def test_lyapunov_penalty_gradient_matches_finite_differences(every):
    # every=3 exercises the blocked chain and its per-block accuracy check.
    cell, params, xs = _small()
    pen = penalties.lyapunov_penalty(cell, k=2, target=-0.05, every=every, warmup=3)
    f = jax.jit(lambda p: pen.fn(p, xs))
    assert float(f(params)) > 0
    _fd_check(f, params)


def test_norm_penalties_gradients_and_values():
    cell, params, xs = _small(n=4, T=6)
    Js = np.asarray(jrnn.diagnostics.step_jacobians(cell, params, xs))
    for norm, nrm in (("spectral", np.linalg.norm(Js, ord=2, axis=(-2, -1))),
                      ("rms", np.linalg.norm(Js, axis=(-2, -1)) / 2.0)):
        pen = penalties.jacobian_norm_penalty(cell, 0.8, norm=norm)
        f = jax.jit(lambda p, pen=pen: pen.fn(p, xs))
        np.testing.assert_allclose(f(params), np.mean((nrm - 0.8) ** 2), rtol=1e-12)
        _fd_check(f, params, n_dirs=2)
    spec = penalties.spectral_norm_penalty(cell, 0.5)
    s1 = np.linalg.norm(np.asarray(params["W_hh"]), 2)
    f = jax.jit(lambda p: spec.fn(p, xs))
    np.testing.assert_allclose(f(params), (s1 - 0.5) ** 2, rtol=1e-12)
    _fd_check(f, params, n_dirs=2)


def test_penalty_step_traces_once_moves_exponents_and_keeps_readout():
    model = jrnn.models.rnn(jrnn.cells.elman(6), 1)
    params = model.init(jax.random.key(0), 1)
    pen = penalties.lyapunov_penalty(model.cell, k=3, warmup=5)
    counted = pen._replace(fn=chex.assert_max_traces(pen.fn, n=1))
    opt = optax.adam(2e-2)
    step = fl.make_penalty_step(counted, opt)
    state = train.init_state(params, opt, jax.random.key(1))
    xs = lambda i: jnp.sign(jax.random.normal(jax.random.key(10 + i), (4, 40, 1)))
    before = float(pen.fn(params["cell"], xs(0)))
    for i in range(25):  # new data every call, one trace
        state, m = step(state, (xs(i), None))
    after = float(pen.fn(state.params["cell"], xs(0)))
    assert after < 0.2 * before, (before, after)
    chex.assert_trees_all_equal(state.params["readout"], params["readout"])
    chex.clear_trace_counter()


def test_schedule_phases_and_flossing_step_in_fit():
    s = fl.flossing_schedule("periodic", pre_steps=2, period=3, duration=2)
    assert [s.phase(t) for t in range(10)] == ["floss"] * 2 + ["task"] * 3 + ["floss"] * 2 + [
        "task"] * 3
    assert [fl.flossing_schedule("before", pre_steps=1).phase(t) for t in (0, 1)] == [
        "floss", "task"]
    assert fl.flossing_schedule("always", pre_steps=1).phase(5) == "both"
    assert fl.flossing_schedule("none").phase(0) == "task"
    model = jrnn.models.rnn(jrnn.cells.elman(4), 1)
    opt = optax.adam(1e-2)
    pen = penalties.spectral_norm_penalty(model.cell, 0.5)  # the machinery is penalty-agnostic
    sched = fl.flossing_schedule("always", pre_steps=1)
    step = fl.make_flossing_step(model.apply, jrnn.tasks.mse, opt, pen, sched, weight=0.5)
    state = train.init_state(model.init(jax.random.key(0), 2), opt, jax.random.key(1))
    data = lambda k, t: jrnn.tasks.adding(k, 4, 10)
    res = train.fit(step, state, data, steps=2)
    assert res.history["phase"] == [1, 2] and not res.diverged
    # Update 1 minimised 0.5 * penalty alone; update 2 the task loss + 0.5 * penalty
    # (regularize); fit recorded exactly these.
    x0, _ = data(jax.random.fold_in(state.rng, 0), 0)
    s1, m1 = step(state, (x0, None))
    x, y = data(jax.random.fold_in(state.rng, 1), 1)
    _, m2 = step(s1, (x, y))
    pen_of = jax.jit(pen.fn)
    np.testing.assert_allclose(m1["loss"], 0.5 * pen_of(state.params["cell"], x0), rtol=1e-6)
    want = jrnn.tasks.mse(model.apply(s1.params, x), y) + 0.5 * pen_of(s1.params["cell"], x)
    np.testing.assert_allclose(m2["loss"], want, rtol=1e-6)
    np.testing.assert_allclose(res.history["loss"], [m1["loss"], m2["loss"]], rtol=1e-6)


def test_bad_input_errors():
    cell = jrnn.cells.elman(4)
    with pytest.raises(ValueError, match="k must be at most the cell's state size 4"):
        penalties.lyapunov_penalty(cell, k=5)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        penalties.lyapunov_penalty(cell, k=0)
    for bad in (2.0, -1.5, float("nan")):
        with pytest.raises(ValueError, match=r"target must be finite and in \[-1.0, 1.0\]"):
            penalties.lyapunov_penalty(cell, k=2, target=bad)
    with pytest.raises(ValueError, match=r"target must be a number or have shape \(2,\)"):
        penalties.lyapunov_penalty(cell, k=2, target=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        penalties.lyapunov_penalty(cell, k=2, every=0)
    with pytest.raises(ValueError, match="warmup must be an integer >= 0"):
        penalties.lyapunov_penalty(cell, k=2, warmup=-1)
    with pytest.raises(ValueError, match="qr must be one of"):
        penalties.lyapunov_penalty(cell, k=2, qr="svd")
    model = jrnn.models.rnn(cell, 1)
    with pytest.raises(TypeError, match="pass model.cell"):
        penalties.lyapunov_penalty(model, k=2)
    no_jac = cell._replace(linear=cell.linear._replace(jacobian=None))
    with pytest.raises(ValueError, match="has none; use method='auto'"):
        penalties.lyapunov_penalty(no_jac, k=2, method="analytic")
    with pytest.raises(ValueError, match="needs a cell with a recurrent_matrix"):
        penalties.spectral_norm_penalty(jrnn.cells.lstm(3))
    with pytest.raises(ValueError, match=r"target must be (a finite real number )?in \(0, 10\]"):
        penalties.jacobian_norm_penalty(cell, target=-1.0)
    pen = penalties.lyapunov_penalty(cell, k=2, warmup=8, steps=10)
    params = cell.init(jax.random.key(0), 1)
    with pytest.raises(ValueError, match="xs has T=12 steps, but warmup=8 \\+ steps=10"):
        pen.fn(params, jnp.ones((12, 1)))
    for w in (-0.1, float("inf")):
        msg = r"weight must be (a finite real number )?in \[0, inf\)"
        with pytest.raises(ValueError, match=msg):
            penalties.regularize(model.apply, jrnn.tasks.mse, pen, w)
    with pytest.raises(TypeError, match="penalty must be a jrnn.penalties.Penalty"):
        fl.make_penalty_step(pen.fn, optax.sgd(0.1))
    with pytest.raises(ValueError, match="mode must be one of"):
        fl.flossing_schedule("sometimes")
    with pytest.raises(ValueError, match="needs period >= 1 and duration >= 1"):
        fl.flossing_schedule("periodic", pre_steps=3)
    with pytest.raises(ValueError, match="needs pre_steps >= 1"):
        fl.flossing_schedule("before")


def test_flossing_experiment_smoke(tmp_path):
    from experiments import flossing

    out = str(tmp_path / "fl")
    m = flossing.main(["--preset", "smoke", "--out", out])
    with open(os.path.join(out, "metrics.json")) as fh:
        text = fh.read()
    assert "NaN" not in text and "Infinity" not in text and "time" not in text
    assert json.loads(text)["mode"] == "smoke"
    for f in ("report.md", "run_info.json", "accuracy_vs_delay.png", "spectra.png",
              "propagation.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    cfg = flossing.PRESETS["smoke"]
    for d in cfg.delays:
        for v in cfg.variants:
            r = m["runs"][f"d{d}"][v]
            assert len(r["accuracy"]) == cfg.seeds
            assert all(0.0 <= a <= 1.0 for a in r["accuracy"])
            assert all(math.isfinite(x) for x in r["loss"])
    info = json.load(open(os.path.join(out, "run_info.json")))
    assert info["seconds_per_step"]
    # Both phases checkpointed their last step under OUT/checkpoints (a rerun resumes there;
    # exact resume itself is tested in test_train / test_checkpoint).
    d = cfg.delays[0]
    last = lambda v, ph: checkpoint.latest_step(common.checkpoint_dir(out, f"d{d}", v, ph))
    assert last("tanh+floss", "floss") == cfg.pre_steps
    assert last("tanh+floss", "train") == cfg.pre_steps + cfg.steps
    assert last("tanh", "train") == cfg.steps
