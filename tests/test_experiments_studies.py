"""The edge-of-chaos and dead-neuron studies: smoke runs of the contract at their
tiny (--smoke) configs, plus the claims they rest on, checked on tiny networks
where they could fail: the matrix-free Lyapunov exponent equals the library's
Benettin/QR one; below the transition (sigma_b = 0) the measured exponent of a
tanh network is ln of W's spectral radius, close to the mean-field ln sigma_w;
the inactive-unit probe equals a direct count from the unrolled states; and a
dead ReLU unit gets exactly zero gradient (its weights never move) while a
leaky one keeps learning."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from experiments import common, dead_neurons, edge_of_chaos
from jrnn import checkpoint


def _md_rows(text):
    """The cells of every Markdown table row in ``text``."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]


def _load(out):
    with open(os.path.join(out, "metrics.json")) as fh:
        text = fh.read()
    assert "NaN" not in text and "Infinity" not in text
    return json.loads(text)


# ------------------------------------------------------------------ edge of chaos
def test_edge_of_chaos_smoke(tmp_path, monkeypatch):
    import jrnn.plot

    out = str(tmp_path / "eoc")
    calls = []
    for name in ("gain_sweep", "phase_diagram"):
        def counted(*args, _fn=getattr(jrnn.plot, name), _name=name, **kwargs):
            calls.append(_name)
            return _fn(*args, **kwargs)

        monkeypatch.setattr(jrnn.plot, name, counted)
    edge_of_chaos.main(["--preset", "smoke", "--out", out, "--sigma-b", "0"])
    assert calls == ["gain_sweep", "phase_diagram"]  # the figures come from jrnn.plot
    m = _load(out)
    for f in ("report.md", "run_info.json", "lyapunov_vs_gain.png", "driven_and_gated.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    cfg = edge_of_chaos.PRESETS["smoke"]
    assert m["mode"] == "smoke" and m["sigma_b"] == 0.0 and m["dtype"] == "float64"
    assert list(m["results"]) == list(cfg.activations) == ["tanh"]
    r = m["results"]["tanh"]
    assert r["critical_gain"] == pytest.approx(1.0, rel=1e-6)  # tanh, sigma_b = 0
    gains = np.asarray(r["gains"])
    np.testing.assert_allclose(gains, 2.0 ** np.linspace(-2, 2, cfg.gains), rtol=1e-6)
    # The mean-field exponent increases with the gain.
    line = np.asarray(r["theory_line_lambda_max"], float)
    assert np.all(np.isfinite(line)) and np.all(np.diff(line) > 0)
    N = cfg.sizes[0]
    s = r["sizes"][f"N{N}"]
    lam = np.asarray(s["lambda_per_seed"], float)
    assert lam.shape == (cfg.gains, cfg.seeds)
    assert np.all(np.isfinite(lam)) and s["nonfinite_runs"] == 0
    # Below the transition with sigma_b = 0: h -> 0 and J_t -> tanh'(0) W = W, so the
    # measured exponent is ln rho(W) (spectral radius), close to the mean-field
    # ln sigma_w (rho(W) -> sigma_w as N grows: circular law).
    i = int(np.argmin(np.abs(gains - 0.5)))
    rho = []
    for seed in range(cfg.seeds):
        _, params, _, _ = edge_of_chaos.network("tanh", N, 0.0, gains[i], seed)
        rho.append(np.max(np.abs(np.linalg.eigvals(np.asarray(params["W_hh"])))))
    np.testing.assert_allclose(lam[i], np.log(rho), atol=0.05)
    assert abs(np.median(lam[i]) - math.log(0.5)) < 0.15
    assert r["theory_lambda_max"][i] == pytest.approx(math.log(0.5), abs=1e-6)
    if s["crossing"] is not None:
        assert gains[0] < s["crossing"] < gains[-1]
    report = open(os.path.join(out, "report.md")).read()
    assert any(row[0] == "tanh" for row in _md_rows(report))
    assert "![lyapunov_vs_gain.png]" in report
    assert "## Conclusions" in report


@pytest.mark.parametrize("activation", ["relu"])
def test_matrix_free_exponent_matches_benettin_qr(activation):
    size, T, warmup, sigma_b, seed = 8, 30, 5, 0.3, 3
    gain = jnp.asarray(1.7, jnp.float64)

    @jax.jit
    def both():
        mine = edge_of_chaos.lyapunov_max(activation, size, T, warmup, sigma_b, gain, seed)
        cell, params, h0, k_v = edge_of_chaos.network(activation, size, sigma_b, gain, seed)
        ref = jrnn.diagnostics.lyapunov_spectrum(
            cell, params, jnp.zeros((T, 1), h0.dtype), carry=h0, k=1, warmup=warmup, key=k_v,
            qr="householder")
        return mine, ref.exponents[0]

    mine, ref = both()
    assert mine["lambda_max"].dtype == jnp.float64
    np.testing.assert_allclose(mine["lambda_max"], ref, rtol=1e-9, atol=1e-12)
    assert bool(mine["state_finite"]) and abs(float(ref)) > 1e-3


def test_summarise_reports_nonfinite_runs_and_excludes_them():
    gains = np.array([0.5, 1.0, 2.0, 4.0])
    theory = np.array([-0.7, -0.1, 0.3, np.nan])  # no fixed point at the last gain
    lam = np.array([[-0.8, -0.6], [-0.2, 0.0], [0.4, np.inf], [np.nan, -np.inf]])
    raw = {"lambda_max": lam, "state_finite": np.array([[1, 1], [1, 1], [1, 0], [0, 0]], bool),
           "log_state_rms": np.zeros((4, 2))}
    s = edge_of_chaos.summarise(gains, theory, 1.0, raw)
    assert s["nonfinite_runs"] == 3 and s["runs"] == 8
    assert s["nonfinite_per_gain"] == [0, 0, 1, 2]
    assert s["nonfinite_with_overflow"] == 3 and s["first_nonfinite_gain"] == 2.0
    assert s["median"][:2] == pytest.approx([-0.7, -0.1])
    assert math.isnan(s["median"][2]) and math.isnan(s["median"][3])  # no silent selection
    assert s["min"][2] == s["max"][2] == 0.4  # the band shows the finite seed
    assert s["crossing"] is None  # the only upward step has no finite median after it
    # away from g* = 1 by >= 2^0.5: only 0.5 (2 is excluded: no median there)
    assert s["compared_gains_away"] == 1 and s["max_abs_error_away"] == pytest.approx(0.0)


def test_zero_crossing_interpolates_in_log_gain():
    g = np.array([0.5, 1.0, 2.0, 4.0])
    assert edge_of_chaos.zero_crossing(g, np.array([-2.0, -1.0, 1.0, 2.0])) == pytest.approx(
        math.sqrt(2.0))
    assert edge_of_chaos.zero_crossing(g, np.array([-2.0, np.nan, 1.0, 2.0])) is None
    assert edge_of_chaos.zero_crossing(g, np.array([-2.0, -1.0, -0.5, -0.1])) is None


def test_edge_of_chaos_rejects_unknown_activation(tmp_path, capsys):
    with pytest.raises(ValueError, match="tanh"):
        edge_of_chaos.Config(activations=("tahn",))
    with pytest.raises(SystemExit) as info:  # the command line says why, with the suggestion
        edge_of_chaos.main(["--preset", "smoke", "--out", str(tmp_path), "--activations", "tahn"])
    assert info.value.code != 0
    out, err = capsys.readouterr()
    assert "tanh" in out + err
    with pytest.raises(ValueError, match="sigma_b"):
        edge_of_chaos.Config(sigma_b=-1.0)


# ------------------------------------------------------------------ dead neurons
def test_dead_neurons_smoke(tmp_path):
    out = str(tmp_path / "dn")
    dead_neurons.main(["--preset", "smoke", "--out", out])
    m = _load(out)
    for f in ("report.md", "run_info.json", "dead_fraction.png", "loss.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    cfg = dead_neurons.PRESETS["smoke"]
    assert m["mode"] == "smoke" and list(m["results"]) == list(cfg.activations)
    r = m["results"]["relu"]
    assert r["dead_applies"] and r["critical_gain"] == pytest.approx(math.sqrt(2.0), rel=1e-5)
    expected = {f"{i}/lr={lr:g}" for i in dead_neurons.INITS for lr in cfg.lrs}
    assert set(r["runs"]) == expected
    n_evals = cfg.steps // cfg.eval_every + 1  # plus step 0
    for run in r["runs"].values():
        assert run["eval_step"][0] == 0 and len(run["eval_step"]) == n_evals
        frac = np.asarray(run["inactive_median"])
        assert frac.shape == (n_evals,) and np.all((frac >= 0) & (frac <= 1))
        # For ReLU, unit_health's dead fraction is the inactive-probe fraction.
        np.testing.assert_allclose(run["dead_median"], run["inactive_median"])
        assert all(math.isfinite(x) and x > 0 for x in run["final_loss"])
        assert len(run["final_loss"]) == cfg.seeds
    assert checkpoint.latest_step(common.checkpoint_dir(out, "relu")) == cfg.steps
    report = open(os.path.join(out, "report.md")).read()
    assert any(row[:2] == ["relu", "negative-bias"] for row in _md_rows(report))
    assert "![dead_fraction.png]" in report


def test_inactive_probe_counts_units_off_on_every_step():
    n, T, B = 8, 12, 5
    cell = jrnn.cells.elman(n, "elu", recurrent_init=jrnn.initializers.scaled_normal(1.0))
    params = cell.init(jax.random.key(0), 2)
    params = dict(params, b_h=jnp.linspace(-1.5, 0.5, n))
    xs = jax.random.uniform(jax.random.key(1), (B, T, 2))
    probe = jrnn.cells.elman(n, dead_neurons.inactive_probe("elu"))
    got = jrnn.diagnostics.unit_health(probe, params, xs)
    # Direct count from the unrolled states: a_t = W_hh h_{t-1} + W_xh x_t + b_h.
    _, hs = jrnn.unroll(cell, params, xs)
    prev = jnp.concatenate([jnp.zeros((B, 1, n), hs.dtype), hs[:, :-1]], axis=1)
    a = prev @ params["W_hh"].T + xs @ params["W_xh"].T + params["b_h"][None, None, :]
    off = np.all(np.asarray(a) <= 0, axis=(0, 1))
    assert 0 < off.sum() < n  # the check is not vacuous
    np.testing.assert_array_equal(np.asarray(got.dead), off)
    assert float(got.dead_fraction) == pytest.approx(off.mean())
    # elu itself has no dead region: unit_health reports nothing dead for it.
    assert not bool(jrnn.diagnostics.unit_health(cell, params, xs).dead_applicable)


@pytest.mark.parametrize("activation, frozen", [("relu", True), ("leaky_relu", False)])
def test_inactive_relu_units_are_dead_forever(activation, frozen):
    # All units start below zero (b_h = -5): ReLU units output 0 and their weights get
    # exactly zero gradient, so training never moves them; leaky ReLU units keep learning.
    n, T = 6, 8
    cell = jrnn.cells.elman(n, activation)
    model = jrnn.models.rnn(cell, 1)
    params = model.init(jax.random.key(0), 2)
    params = dict(params, cell=dict(params["cell"], b_h=jnp.full((n,), -5.0)))
    opt = optax.adam(1e-2)
    step = jrnn.train.make_train_step(model.apply, jrnn.tasks.mse, opt)
    state = jrnn.train.init_state(params, opt, jax.random.key(1))
    for t in range(3):
        state, metrics = step(state, jrnn.tasks.adding(jax.random.key(10 + t), 8, T))
        assert np.isfinite(metrics["loss"])
    moved = [float(jnp.max(jnp.abs(state.params["cell"][k] - params["cell"][k])))
             for k in ("W_hh", "W_xh", "b_h")]
    if frozen:
        assert moved == [0.0, 0.0, 0.0]
    else:
        assert min(moved) > 1e-4
    # The readout trains either way (the loss gradient reaches b_o).
    assert float(jnp.abs(state.params["readout"]["b_o"] - params["readout"]["b_o"]).max()) > 0
