"""jrnn.plot: each figure draws the expected artists from real records, marks non-finite values,
rejects wrong records by argument name, and saves; importing it never needs matplotlib."""

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jrnn  # noqa: E402
import jrnn.plot  # noqa: E402
from jrnn.plot import style  # noqa: E402

NF = style.NONFINITE_GID


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def records():
    """Small records of a tanh and a ReLU Elman net (the ReLU one has exact zeros)."""
    xs = jax.random.normal(jax.random.key(1), (3, 40, 1))
    out = {}
    for act in ("tanh", "relu"):
        cell = jrnn.cells.elman(4, act)
        params = cell.init(jax.random.key(0), 1)
        if act == "relu":  # two dead units: exact zeros in every J_t, -inf exponents
            params = {**params, "b_h": params["b_h"].at[:2].set(-100.0)}
        d = jrnn.diagnostics
        out[act] = {
            "spectrum": d.lyapunov_spectrum(cell, params, xs[0], transient=5),
            "batch_spectrum": d.lyapunov_spectrum(cell, params, xs),
            "propagation": d.propagation(cell, params, xs),
            "sv": d.singular_value_stats(cell, params, xs[0]),
            "sv_lean": d.singular_value_stats(cell, params, xs[0], per_step=False),
            "ftle": d.finite_time_exponents(cell, params, xs[0], window=5),
            "clv": d.covariant_lyapunov_vectors(cell, params, xs[0], warmup=10, backward=10),
        }
    return out


def _legend(ax) -> list[str]:
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg is not None else []


def _marks(ax) -> list:
    return [a for a in ax.get_children() if a.get_gid() == NF]


# ------------------------------------------------------------------ style and import


def test_import_without_matplotlib_and_hint_on_call():
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.modules['matplotlib.pyplot'] = None\n"
        "import jrnn.plot\n"
        "assert 'matplotlib.pyplot' not in [k for k, v in sys.modules.items() if v]\n"
        "try:\n"
        "    jrnn.plot.training({'step': [1], 'loss': [1.0]})\n"
        "except ImportError as e:\n"
        "    print('HINT', e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert 'pip install "jrnn[plot]"' in res.stdout


def test_importing_jrnn_plot_does_not_import_matplotlib():
    code = "import sys, jrnn.plot; print('matplotlib' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_styles_separate_families_and_repeats():
    a, b, c, d = style.styles(["elman-tanh", "elman-tanh, critical", "relu", "my model"])
    assert a["color"] == b["color"] and a["linestyle"] != b["linestyle"]
    assert len({a["color"], c["color"], d["color"]}) == 3
    assert style.family_of("gru") == "gated" and style.family_of("sigmoid") == "saturating"
    assert style.color_of("nothing known") is None
    # every known member has its own colour
    colors = [style.color_of(m) for members, _ in style.FAMILIES.values() for m in members]
    assert len(set(colors)) == len(colors)


def test_mark_nonfinite_counts_and_places_on_edge():
    _, ax = plt.subplots()
    ax.plot([0, 1, 2, 3], [1, 2, 3, 4])
    counts = style.mark_nonfinite(ax, [0, 1, 2, 3], [1.0, -np.inf, np.nan, np.inf], label="x")
    assert counts == {"-inf": 1, "+inf": 1, "nan": 1}
    marks = _marks(ax)
    assert len(marks) == 3
    assert sorted(float(m.get_ydata()[0]) for m in marks) == [0.0, 0.0, 1.0]  # axes coords
    assert all(not m.get_clip_on() for m in marks)
    labels = sorted(m.get_label() for m in marks)
    assert labels == ["x: +inf x1", "x: -inf (exact zero) x1", "x: NaN x1"]


# ------------------------------------------------------------------ spectrum


def test_spectrum_draws_error_bars_ky_theory_and_labels(records):
    specs = {"tanh": records["tanh"]["spectrum"], "relu": records["relu"]["spectrum"]}
    theory = jrnn.theory.spectra.annealed_spectrum("relu", 1.4, 4)  # two -inf exponents
    ax = jrnn.plot.spectrum(specs, theory=theory)
    assert ax.get_ylabel() == "Lyapunov exponent $\\lambda_i$ (nats / step)"
    assert ax.get_xlabel() == "index $i$"
    assert len(ax.containers) == 2  # one errorbar container per spectrum
    legend = _legend(ax)
    assert any(t.startswith("tanh ($D_{KY}$") for t in legend)
    assert "annealed theory" in legend
    # the theory's annihilated directions and relu's exact zeros are marked with counts
    assert "annealed theory: -inf (annihilated) x2" in legend
    n_relu = int(np.sum(np.asarray(records["relu"]["spectrum"].exponents) == -np.inf))
    assert n_relu >= 2
    assert f"relu: -inf (exact zero) x{n_relu}" in legend
    ky = [ln for ln in ax.lines if ln.get_gid() == "jrnn-kaplan-yorke"]
    finite_ky = [s for s in specs.values() if math.isfinite(float(s.kaplan_yorke_dimension))]
    assert len(ky) == len(finite_ky) and finite_ky
    (zero,) = [ln for ln in ax.lines if ln.get_gid() == style.REFERENCE_GID]
    assert list(zero.get_ydata()) == [0, 0]


def test_spectrum_normalized_index_batch_and_unresolved(records):
    spec = records["tanh"]["batch_spectrum"]
    assert spec.exponents.ndim == 2
    ax = jrnn.plot.spectrum(spec, normalize_index=True, labels=["tanh batch"])
    assert ax.get_xlabel() == "index $i / N$"
    x = ax.containers[0].lines[0].get_xdata()
    np.testing.assert_allclose(x, np.arange(1, 5) / 4)
    y = ax.containers[0].lines[0].get_ydata()
    np.testing.assert_allclose(y, np.mean(np.asarray(spec.exponents), axis=0))
    # unresolved exponents are grey, hollow and in the legend
    forced = spec._replace(unresolved=jnp.zeros_like(spec.unresolved).at[:, -1].set(True))
    ax = jrnn.plot.spectrum(forced)
    grey = [ln for ln in ax.lines if ln.get_color() == style.UNRESOLVED_COLOR]
    assert len(grey) == 1 and len(grey[0].get_xdata()) == 1
    assert "unresolved (below the round-off floor)" in _legend(ax)
    # a bare record (no stderr, no unresolved mask, no frame) still draws, without error bars
    bare = jrnn.diagnostics.LyapunovSpectrum(jnp.array([0.1, -0.3]), jnp.zeros((1, 2)),
                                             jnp.array(1.33), jnp.array(0.1))
    ax = jrnn.plot.spectrum(bare, normalize_index=True)
    np.testing.assert_allclose(ax.containers[0].lines[0].get_xdata(), [0.5, 1.0])
    assert ax.containers[0].has_yerr is False


def test_spectrum_rejects_wrong_records(records):
    with pytest.raises(TypeError, match="spectra must be a LyapunovSpectrum"):
        jrnn.plot.spectrum(42)
    with pytest.raises(TypeError, match=r"spectra\[1\] must be a LyapunovSpectrum"):
        jrnn.plot.spectrum([records["tanh"]["spectrum"], records["tanh"]["propagation"]])
    with pytest.raises(ValueError, match="labels must give one label per record"):
        jrnn.plot.spectrum(records["tanh"]["spectrum"], labels=["a", "b"])
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        jrnn.plot.spectrum(records["tanh"]["spectrum"], ax="left")
    with pytest.raises(TypeError, match="theory must be numeric"):
        jrnn.plot.spectrum(records["tanh"]["spectrum"], theory="annealed")


# ------------------------------------------------------------------ propagation


def test_propagation_decades_band_rate_and_zeros(records):
    p = records["tanh"]["propagation"]
    _, given = plt.subplots()
    ax = jrnn.plot.propagation({"tanh": p}, ax=given)
    assert ax is given
    assert ax.get_xlabel() == "lag $T - t$ (steps)"
    assert "(decades)" in ax.get_ylabel()
    line = ax.lines[0]
    decades = np.asarray(p.log_spectral_norm)[:, ::-1] / math.log(10)
    np.testing.assert_allclose(line.get_xdata(), np.arange(41))
    np.testing.assert_allclose(line.get_ydata(), np.sort(decades, axis=0)[1])  # median of 3
    assert len(ax.collections) == 1  # the band
    (label,) = [t for t in _legend(ax) if t.startswith("tanh")]
    rates = np.asarray(p.rate)
    assert "rate" in label and f"{np.mean(rates):.3g}" in label and "nats/step" in label


def test_propagation_marks_exact_zeros():
    p = jrnn.diagnostics.Propagation(
        log_spectral_norm=jnp.array([[-jnp.inf, -3.0, -1.0, 0.0], [-5.0, -2.0, -1.0, 0.0]]),
        log_frobenius_norm=jnp.zeros((2, 4)), rate=jnp.array([-1.0, -1.5]),
        rate_stderr=jnp.array([0.1, 0.1]))
    ax = jrnn.plot.propagation(p, labels=["relu"])
    assert "relu: -inf (exact zero) x1" in _legend(ax)
    (mark,) = _marks(ax)
    assert list(mark.get_xdata()) == [3]  # lag T - t of the zero, on the lower edge
    single = p._replace(log_spectral_norm=p.log_spectral_norm[0], rate=p.rate[0],
                        rate_stderr=p.rate_stderr[0])
    ax = jrnn.plot.propagation(single, norm="spectral")
    assert len(ax.collections) == 0 and len(_marks(ax)) == 1
    assert "rate -1 +- 0.1 nats/step" in _legend(ax)[0]


def test_propagation_rejects_bad_input(records):
    with pytest.raises(TypeError, match="records must be a Propagation"):
        jrnn.plot.propagation(records["tanh"]["spectrum"])
    with pytest.raises(ValueError, match="norm must be"):
        jrnn.plot.propagation(records["tanh"]["propagation"], norm="nuclear")
    with pytest.raises(ValueError, match="band must be"):
        jrnn.plot.propagation(records["tanh"]["propagation"], band=(0.9, 0.1))


# ------------------------------------------------------------------ singular values


def test_singular_values_over_time(records):
    st = records["relu"]["sv"]
    ax = jrnn.plot.singular_values(st, labels=["relu"])
    assert ax.get_xlabel() == "step $t$"
    assert ax.get_ylabel() == "$\\log_{10} \\sigma_i(J_t)$ (decades)"
    legend = _legend(ax)
    assert "relu: quantiles 0.1-0.9" in legend and "relu: quantile 0.5" in legend
    assert "relu: $\\sigma_{max}$" in legend and "relu: $\\sigma_{min}$" in legend
    zeros = int(np.sum(np.asarray(st.sigma_min) == 0))
    assert zeros > 0
    assert f"relu sigma_min: -inf (exact zero) x{zeros}" in legend


def test_singular_values_boxes_count_zeros(records):
    stats = {"tanh": records["tanh"]["sv_lean"], "relu": records["relu"]["sv_lean"]}
    ax = jrnn.plot.singular_values(stats)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tanh", "relu"]
    boxed = [k for k, v in stats.items() if np.isfinite(np.asarray(v.mean_log)).any()]
    assert "tanh" in boxed and len(ax.patches) == len(boxed)  # a box per finite configuration
    n = int(np.sum(np.asarray(stats["relu"].mean_log) == -np.inf))
    assert n >= 2 and f"relu: -inf (exact zero) x{n}" in _legend(ax)


def test_singular_values_rejects_bad_input(records):
    with pytest.raises(TypeError, match="stats must be a SingularValueStats"):
        jrnn.plot.singular_values(records["tanh"]["propagation"])
    with pytest.raises(ValueError, match="levels must list the 3 quantile levels"):
        jrnn.plot.singular_values(records["tanh"]["sv"], levels=(0.5,))
    with pytest.raises(ValueError, match="mode='time' draws one record"):
        jrnn.plot.singular_values(records["tanh"]["sv_lean"], mode="time")
    with pytest.raises(ValueError, match="mode must be"):
        jrnn.plot.singular_values(records["tanh"]["sv"], mode="violin")


# ------------------------------------------------------------------ training


def test_training_bands_units_and_nonfinite():
    runs = [{"step": [1, 2, 3], "loss": [1.0, 0.5, 0.25], "lambda_1": [-0.1, -0.2, -0.3]},
            {"step": [1, 2], "loss": [1.2, float("nan")], "lambda_1": [-0.1, -0.15]}]
    axes = jrnn.plot.training({"tanh": runs, "lstm": runs[:1]}, keys=("loss", "lambda_1"))
    assert len(axes) == 2
    loss_ax, lam_ax = axes
    assert loss_ax.get_yscale() == "log" and lam_ax.get_yscale() == "linear"
    assert lam_ax.get_ylabel() == "lambda_1 (nats / step)"
    assert loss_ax.get_xlabel() == "training step"
    legend = _legend(loss_ax)
    assert "tanh (median of 2, band: min-max)" in legend and "lstm" in legend
    assert "tanh: NaN x1" in legend
    (mark,) = _marks(loss_ax)
    assert list(mark.get_xdata()) == [2]
    tanh = loss_ax.lines[0]
    np.testing.assert_allclose(tanh.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(tanh.get_ydata(), [1.1, 0.5, 0.25])  # NaN is marked, not averaged
    assert len(loss_ax.collections) == 1  # one band (lstm has a single run)


def test_training_reads_per_seed_lists_of_a_batched_state():
    batched = {"step": [1, 2], "loss": [[1.0, 3.0], [0.5, 1.5]]}  # (steps, seeds)
    ax = jrnn.plot.training(batched)
    assert _legend(ax) == ["run (median of 2, band: min-max)"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [2.0, 1.0])


def test_training_takes_fit_results():
    import optax

    model = jrnn.models.rnn(jrnn.cells.elman(3, "tanh"), 1)
    opt = optax.sgd(1e-2)
    step = jrnn.train.make_train_step(model.apply, jrnn.tasks.mse, opt)
    results = []
    for seed in range(2):
        state = jrnn.train.init_state(model.init(jax.random.key(seed), 2), opt,
                                      jax.random.key(seed))
        results.append(jrnn.train.fit(step, state, lambda k, t: jrnn.tasks.adding(k, 4, 5),
                                      steps=3))
    ax = jrnn.plot.training(results, labels=["elman"])
    assert _legend(ax) == ["elman (median of 2, band: min-max)"]
    ax = jrnn.plot.training(results[0], keys="grad_norm")
    assert ax.get_ylabel() == "grad_norm"


def test_training_rejects_bad_input():
    with pytest.raises(TypeError, match="history must be a FitResult"):
        jrnn.plot.training(3.0)
    with pytest.raises(TypeError, match=r"history\['a'\]\[0\] must be a FitResult"):
        jrnn.plot.training({"a": [{"loss": [1.0]}]})
    with pytest.raises(ValueError, match="history has no 'accuracy'"):
        jrnn.plot.training({"step": [1], "loss": [1.0]}, keys="accuracy")
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="ax must give one Axes per key"):
        jrnn.plot.training({"step": [1], "loss": [1.0], "x": [1.0]}, keys=("loss", "x"),
                           ax=[ax])


# ------------------------------------------------------------------ exponents figures


def test_phase_diagram_line_scatter_and_nonfinite():
    grid = np.linspace(0.0, 0.6, 4)
    measured = {"sigma_w": [0.8, 1.2, 2.0], "sigma_b": [0.0, 0.3, 0.3],
                "lambda_max": [-0.3, -np.inf, 0.2]}
    ax = jrnn.plot.phase_diagram(["tanh", "relu"], values=grid, measured=measured)
    assert ax.get_xlabel() == "weight scale $\\sigma_w$"
    assert ax.get_ylabel() == "bias scale $\\sigma_b$"
    tanh = ax.lines[0]
    np.testing.assert_allclose(tanh.get_xdata(),
                               np.asarray(jrnn.theory.critical_line("tanh", grid)), rtol=1e-12)
    np.testing.assert_allclose(ax.lines[1].get_xdata(), math.sqrt(2), rtol=1e-6)  # ReLU
    (scatter,) = ax.collections
    np.testing.assert_allclose(scatter.get_array(), [-0.3, 0.2])
    assert "measured $\\lambda_1$: -inf (exact zero) x1" in _legend(ax)
    assert len(ax.figure.axes) == 2  # the colour bar
    assert "nats / step" in ax.figure.axes[1].get_ylabel()
    ax = jrnn.plot.phase_diagram("relu", vary="sigma_u", values=[0.0, 0.5])
    assert ax.get_ylabel() == "input drive $\\sigma_u$"


def test_phase_diagram_holds_the_other_scale():
    grid = np.array([0.0, 0.5, 1.0])
    ax = jrnn.plot.phase_diagram("tanh", vary="sigma_u", values=grid, sigma_b=0.05)
    np.testing.assert_allclose(
        ax.lines[0].get_xdata(),
        np.asarray(jrnn.theory.critical_line("tanh", np.full(3, 0.05), sigma_u=grid)),
        rtol=1e-12)
    ax = jrnn.plot.phase_diagram("tanh", values=grid, sigma_u=0.5)
    np.testing.assert_allclose(
        ax.lines[0].get_xdata(),
        np.asarray(jrnn.theory.critical_line("tanh", grid, sigma_u=0.5)), rtol=1e-12)


def test_phase_diagram_rejects_bad_input():
    with pytest.raises(ValueError, match="vary must be"):
        jrnn.plot.phase_diagram("tanh", vary="sigma_w")
    with pytest.raises(TypeError, match="measured must be a mapping"):
        jrnn.plot.phase_diagram("tanh", values=[0.0], measured=[1, 2, 3])
    with pytest.raises(ValueError, match="measured is missing"):
        jrnn.plot.phase_diagram("tanh", values=[0.0], measured={"sigma_w": [1.0]})


def test_gain_sweep_theory_band_and_nonfinite():
    g = np.array([0.5, 1.0, 2.0])
    meas = np.array([[-0.7, -0.1, 0.3], [-np.inf, 0.0, np.nan], [-0.6, 0.05, 0.25]])
    ax = jrnn.plot.gain_sweep(g, {"N=8": meas}, activation="tanh")
    assert ax.get_xscale() == "log"
    legend = _legend(ax)
    assert "N=8 (median of 3)" in legend and "$g^*$ = 1" in legend
    assert "N=8: -inf (exact zero) x1" in legend and "N=8: NaN x1" in legend
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [-0.7, 0.0, 0.25])
    with pytest.raises(ValueError, match="G = len\\(sigma_w\\) = 3"):
        jrnn.plot.gain_sweep(g, np.zeros((2, 4)))
    with pytest.raises(TypeError, match="sigma_w must be numeric"):
        jrnn.plot.gain_sweep("wide", [0.0])


def test_gain_sweep_draws_no_theory_without_a_fixed_point():
    # relu with sigma_b > 0: q* is infinite above g* = sqrt(2), so 0.5 ln chi has no fixed
    # point to stand on there and is not drawn.
    g = np.array([0.5, 1.0, 4.0])
    ax = jrnn.plot.gain_sweep(g, [-0.7, -0.3, 1.0], activation="relu", sigma_b=0.05)
    (theory,) = [ln for ln in ax.lines if ln.get_label().startswith("mean field")]
    assert 0.5 <= theory.get_xdata().min() and theory.get_xdata().max() <= math.sqrt(2) + 1e-6



def test_gain_sweep_theory_line_needs_positive_finite_gains():
    # with activation: 0 raised NumPy's "Geometric sequence cannot include zero" (not naming
    # sigma_w); a negative, NaN or inf gain drew a 2-, 0- or 1-point theory line silently.
    for bad in ([0.0, 1.0, 2.0], [-1.0, 2.0, 3.0], [np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0]):
        with pytest.raises(ValueError, match="sigma_w must be finite and > 0"):
            jrnn.plot.gain_sweep(np.array(bad), np.zeros(3), activation="tanh")
    jrnn.plot.gain_sweep(np.array([0.0, 1.0, 2.0]), np.zeros(3))  # no theory line: allowed

def test_theory_vs_measured_marks_missing_coordinates():
    ax = jrnn.plot.theory_vs_measured([-0.3, 0.1, 0.0], [-0.28, 0.12, -np.inf],
                                      stderr=[0.01, 0.02, np.nan],
                                      labels=["tanh", "sin", "relu"])
    assert len(ax.containers) == 1
    assert "measured, measured: -inf (exact zero) x1" in _legend(ax)
    assert {t.get_text() for t in ax.texts} >= {"tanh", "sin"}
    with pytest.raises(ValueError, match="measured must have one entry per point"):
        jrnn.plot.theory_vs_measured([0.0, 1.0], [0.0])


def test_ftle_histograms_and_means(records):
    fte = records["tanh"]["ftle"]
    ax = jrnn.plot.ftle({"tanh": fte, "relu": records["relu"]["ftle"]}, columns=(0, 1))
    assert ax.get_xlabel() == "finite-time exponent (nats / step)"
    assert len(ax.patches) == 4 - sum(  # one step histogram per record and column
        not np.isfinite(np.asarray(r["ftle"].exponents)[:, c]).any()
        for r in (records["tanh"], records["relu"]) for c in (0, 1))
    mean = float(np.mean(np.asarray(fte.exponents)[:, 0]))
    assert any(t.startswith(f"tanh $\\lambda_{{1}}$: {mean:.3g}") for t in _legend(ax))
    with pytest.raises(ValueError, match="columns entries must be in"):
        jrnn.plot.ftle(fte, columns=(7,))
    with pytest.raises(TypeError, match="records must be a FiniteTimeExponents"):
        jrnn.plot.ftle(records["tanh"]["clv"])


def test_ftle_marks_nonfinite_windows(records):
    fte = records["tanh"]["ftle"]
    bad = fte._replace(exponents=fte.exponents.at[0, 0].set(-jnp.inf).at[1, 0].set(jnp.nan))
    ax = jrnn.plot.ftle(bad, labels=["tanh"])
    legend = _legend(ax)
    assert any("-inf (exact zero) x1" in t for t in legend)
    assert any("NaN x1" in t for t in legend)
    assert all(float(m.get_xdata()[0]) == 0.0 for m in _marks(ax))  # left edge (axes coords)


def test_clv_angles_pooled_pairs_and_nan(records):
    clv = records["tanh"]["clv"]
    ax = jrnn.plot.clv_angles(clv)
    assert ax.get_xlabel() == "angle between CLVs $i$ and $i+1$ (degrees)"
    assert ax.get_xlim() == (0.0, 90.0)
    assert len(ax.patches) == 1 and _legend(ax)[0].startswith("all pairs: median")
    ax = jrnn.plot.clv_angles({"tanh": clv}, pairs=(0, 2), log=True)
    assert len(ax.patches) == 2 and ax.get_yscale() == "log"
    assert any(t.startswith("tanh CLV 1-2") for t in _legend(ax))
    bad = clv._replace(angles=clv.angles.at[0, 0].set(jnp.nan))
    ax = jrnn.plot.clv_angles(bad)
    assert any("NaN x1" in t for t in _legend(ax))
    with pytest.raises(ValueError, match="pairs entries must be in"):
        jrnn.plot.clv_angles(clv, pairs=(3,))
    with pytest.raises(TypeError, match="records must be a CovariantVectors"):
        jrnn.plot.clv_angles(records["tanh"]["ftle"])


# ------------------------------------------------------------------ smoke


def test_every_figure_saves(records, tmp_path):
    r, q = records["tanh"], records["relu"]
    fig, axes = jrnn.plot.subplots(3, 4)
    axes = axes.ravel()
    jrnn.plot.spectrum({"tanh": r["spectrum"], "relu": q["spectrum"]}, ax=axes[0],
                       theory=jrnn.theory.spectra.annealed_spectrum("tanh", 1.0, 4))
    jrnn.plot.propagation({"tanh": r["propagation"], "relu": q["propagation"]}, ax=axes[1])
    jrnn.plot.singular_values(q["sv"], ax=axes[2])
    jrnn.plot.singular_values({"tanh": r["sv"], "relu": q["sv"]}, ax=axes[3])
    jrnn.plot.training({"step": [1, 2], "loss": [1.0, 0.5], "x": [0, 1]}, keys=("loss", "x"),
                       ax=axes[4:6])
    jrnn.plot.phase_diagram("tanh", values=np.linspace(0.0, 0.6, 4), ax=axes[6],  # as above:
                            measured={"sigma_w": [1.0], "sigma_b": [0.2], "lambda_max": [0.1]})
    jrnn.plot.gain_sweep([0.5, 1.0, 2.0], [-0.5, 0.0, 0.2], activation="tanh", ax=axes[7])
    jrnn.plot.theory_vs_measured([0.1], [0.2], ax=axes[8])
    jrnn.plot.ftle(r["ftle"], ax=axes[9])
    jrnn.plot.clv_angles({"tanh": r["clv"], "relu": q["clv"]}, ax=axes[10])
    fig.savefig(tmp_path / "all.png", dpi=60)
    assert (tmp_path / "all.png").stat().st_size > 10_000
    for name, fn in [("spectrum", lambda: jrnn.plot.spectrum(r["spectrum"])),
                     ("propagation", lambda: jrnn.plot.propagation(r["propagation"])),
                     ("ftle", lambda: jrnn.plot.ftle(q["ftle"]))]:
        fn().figure.savefig(tmp_path / f"{name}.png", dpi=60)
        assert (tmp_path / f"{name}.png").stat().st_size > 1_000
