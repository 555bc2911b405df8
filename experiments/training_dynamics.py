"""Training dynamics: does the Lyapunov spectrum early in training predict the final loss?

Vogt et al. 2022 ("On Lyapunov exponents for RNNs: understanding information
propagation using dynamical systems tools") ask whether the Lyapunov spectrum of a
recurrent network predicts how well it will train. Here every run is monitored during
training (:func:`jrnn.train.fit` with ``monitor=jrnn.train.Monitor(...)``, which
evaluates :func:`jrnn.diagnostics.snapshot` on a fixed held-out batch at step 0, before
the first update, and every ``monitor_every`` steps):

.. math::

   \\lambda_1 \\ge \\dots \\ge \\lambda_k \\ (\\text{nats / step}), \\qquad
   r = \\tfrac{1}{T} \\log \\lVert \\partial s_T / \\partial s_0 \\rVert_F, \\qquad
   \\text{dead / saturated unit fractions}

Task: scikit-learn's digits read pixel by pixel (64 steps, :func:`jrnn.tasks.digits`),
classified from the last state: the first pixels must be carried over 64 steps.
Cells: tanh and ReLU Elman, LSTM and GRU of the same width, and Flax's own
``flax.linen.GRUCell`` wrapped by :func:`jrnn.wrap` (the path for a user's model). Variability: the
recurrent weights are scaled by a gain ``g`` at initialisation (ordered to chaotic)
and several seeds per gain; all ``gains x seeds`` runs of one cell train together on
one dataset as one vmapped program (every run sees the same batches). The question
is answered by Spearman's rank correlation between a run's ``lambda_1`` (and its
propagation rate) at step 0 / at the first monitored step and its final test loss,
per cell and pooled, with a bootstrap 95% interval over runs and a permutation
p-value; with a few runs per cell the intervals are wide and the report says so.

Run ``python -m experiments.training_dynamics`` (default preset), ``--preset quick``
(a few minutes on 2 CPU cores), ``--preset smoke`` (the test); ``--help`` lists every
field.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jrnn
from experiments import common

NAME = "training_dynamics"
CELLS = ("elman_tanh", "elman_relu", "lstm", "gru", "flax_gru")
KEYS = ("lyap_1", "propagation_rate", "saturated_fraction", "dead_fraction")
BOOTSTRAPS = 2000
PERMUTATIONS = 2000


@dataclasses.dataclass(frozen=True)
class Config:
    """Cells, widths, gains, seeds and training length of the study."""

    cells: tuple[str, ...] = CELLS
    """cells: elman_tanh, elman_relu, lstm, gru, flax_gru (flax.linen.GRUCell via jrnn.wrap)"""
    hidden: int = 32
    """units per cell"""
    gains: tuple[float, ...] = (0.5, 1.0, 1.5, 2.5)
    """factor on the initial recurrent weights W_hh"""
    seeds: int = 4
    """seeds per gain"""
    steps: int = 600
    """training steps (Adam)"""
    batch: int = 64
    """sequences per step"""
    lr: float = 3e-3
    """Adam learning rate"""
    clip: float = 1.0
    """global-norm gradient clipping"""
    monitor_every: int = 50
    """steps between snapshots"""
    monitor_batch: int = 16
    """held-out test sequences the snapshot is computed on"""
    k: int = 4
    """Lyapunov exponents per snapshot"""

    def __post_init__(self):
        for c in self.cells:
            if c not in CELLS:
                raise ValueError(f"cells must be among {CELLS}, got {c!r}.")
        if not self.gains or any(not (math.isfinite(g) and g > 0) for g in self.gains):
            raise ValueError(f"gains must be positive numbers, got {self.gains}.")


PRESETS = {
    "smoke": Config(cells=("elman_tanh",), hidden=6, gains=(0.5, 2.0), seeds=2, steps=4,
                    batch=8, monitor_every=2, monitor_batch=2, k=2),
    "quick": Config(hidden=16, gains=(0.5, 1.0, 2.0), seeds=3, steps=240, batch=32,
                    monitor_every=40, monitor_batch=8, k=3),
    "default": Config(),
    "full": Config(hidden=64, gains=(0.5, 0.75, 1.0, 1.5, 2.0, 3.0), seeds=8, steps=2000,
                   monitor_every=100, monitor_batch=32, k=8),
}
DEFAULT_PRESET = "default"


def make_cell(name: str, hidden: int):
    """A built-in cell, or ``flax_gru``: Flax's own ``nn.GRUCell`` run through :func:`jrnn.wrap`
    (its params are Flax's variables; the model's readout is jrnn's)."""
    if name == "flax_gru":
        import flax.linen as nn

        module = nn.GRUCell(features=hidden)
        variables = module.init(jax.random.key(0), jnp.zeros(hidden), jnp.zeros(1))
        return jrnn.wrap(module, params=variables)[0]
    if name.startswith("elman"):
        return jrnn.cells.elman(hidden, name.split("_")[1])
    return getattr(jrnn.cells, name)(hidden)


def scale_recurrent(params, g):
    """``W_hh -> g W_hh`` (built-in cells); for Flax's GRUCell its hidden-to-hidden kernels
    (``hr``, ``hz``, ``hn``)."""
    if "W_hh" in params:
        return dict(params, W_hh=g * params["W_hh"])
    inner = params["params"]
    scaled = {k: (dict(v, kernel=g * v["kernel"]) if k.startswith("h") else v)
              for k, v in inner.items()}
    return dict(params, params=scaled)


def train_cell(name: str, cfg: Config, seed: int, data, ckpt: str):
    """Trains every ``gain x seed`` run of one cell together; returns the fit result,
    the runs' gains and the final test loss / accuracy per run."""
    (x_tr, y_tr), (x_te, y_te) = data
    model = jrnn.models.rnn(make_cell(name, hidden=cfg.hidden), 10)
    opt = optax.adam(cfg.lr)
    step = jrnn.train.make_train_step(model.apply, jrnn.tasks.cross_entropy, opt,
                                      clip_norm=cfg.clip, skip_nonfinite=True)
    G, S = len(cfg.gains), cfg.seeds
    gains = jnp.repeat(jnp.asarray(cfg.gains, x_tr.dtype), S)
    # the same S seeds at every gain: runs differ by the gain alone, paired
    keys = jax.random.split(jax.random.key(seed), S)[jnp.tile(jnp.arange(S), G)]

    def init(key, g):
        p = model.init(key, 1)
        return jrnn.train.init_state(dict(p, cell=scale_recurrent(p["cell"], g)), opt, key)

    states = jax.vmap(init)(keys, gains)
    vstep = jax.jit(jax.vmap(step, in_axes=(0, None)))  # one dataset for every run
    data_key = jax.random.key(seed + 1)

    @jax.jit
    def batch(t):
        idx = jax.random.choice(jax.random.fold_in(data_key, t), x_tr.shape[0], (cfg.batch,))
        return x_tr[idx], y_tr[idx]

    @jax.jit
    @jax.vmap
    def evaluate(p):
        logits = model.apply(p, x_te)
        return {"loss": jrnn.tasks.cross_entropy(logits, y_te),
                "accuracy": jrnn.tasks.accuracy(logits, y_te)}

    monitor = jrnn.train.Monitor(x_te[: cfg.monitor_batch], k=cfg.k, cell=model.cell)
    res = jrnn.train.fit(
        vstep, states, lambda keys, t: batch(t), steps=cfg.steps, monitor=monitor,
        monitor_every=cfg.monitor_every, eval_fn=evaluate, eval_every=cfg.monitor_every,
        nan_guard=False, checkpoint_dir=ckpt, checkpoint_every=cfg.monitor_every,
        config={"cell": name, **{k: (list(v) if isinstance(v, tuple) else v)
                                  for k, v in dataclasses.asdict(cfg).items()}},
    )
    return res, np.asarray(gains)


# ------------------------------------------------------------------ statistics
def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a))
    r[order] = np.arange(len(a))
    for v in np.unique(a):  # average ranks of ties
        tie = a == v
        r[tie] = r[tie].mean()
    return r


def spearman(x, y) -> float:
    """Spearman's rho (Pearson correlation of the ranks); NaN when a variable is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def rank_correlation(x, y, seed: int = 0, bootstraps: int = BOOTSTRAPS,
                     permutations: int = PERMUTATIONS) -> dict:
    """rho, a bootstrap 95% interval (runs resampled) and a two-sided permutation p-value,
    over the runs where both are finite."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    out = {"rho": None, "ci95": [None, None], "p_value": None, "n": int(n)}
    if n < 4:
        return out
    rho = spearman(x, y)
    rng = np.random.default_rng(seed)
    boot = [spearman(x[i], y[i]) for i in rng.integers(0, n, (bootstraps, n))]
    boot = np.asarray(boot)[np.isfinite(boot)]
    perm = np.asarray([spearman(x, rng.permutation(y)) for _ in range(permutations)])
    out["rho"] = rho
    if boot.size:
        out["ci95"] = [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]
    if math.isfinite(rho):
        out["p_value"] = float((1 + np.sum(np.abs(perm) >= abs(rho) - 1e-12)) /
                               (1 + permutations))
    return out


def summarise(name: str, res, gains: np.ndarray, seed: int) -> dict:
    """Per cell: the monitored curves (mean and stderr over runs), the final losses and the
    rank correlations of the step-0 and first-monitored-step features with them."""
    mh, ev = res.monitor_history, res.eval_history
    steps = list(mh["step"])
    final_loss = np.asarray(ev["loss"][-1], float)
    final_acc = np.asarray(ev["accuracy"][-1], float)
    curves = {}
    for key in KEYS:
        v = np.asarray(mh[key], float)  # (steps, runs)
        with np.errstate(all="ignore"), warnings.catch_warnings():  # all-NaN: not applicable
            warnings.simplefilter("ignore", RuntimeWarning)
            n = np.sum(np.isfinite(v), axis=1)
            mean = np.nanmean(np.where(np.isfinite(v), v, np.nan), axis=1) if v.size else v
            sd = np.nanstd(np.where(np.isfinite(v), v, np.nan), axis=1, ddof=1)
        curves[key] = {"mean": mean.tolist(), "stderr": (sd / np.sqrt(np.maximum(n, 1))).tolist()}
    corr = {}
    early = 1 if len(steps) > 1 else 0
    for when, i in (("step0", 0), (f"step{steps[early]}", early)):
        for key in ("lyap_1", "propagation_rate"):
            corr[f"{key}@{when}"] = rank_correlation(np.asarray(mh[key][i], float), final_loss,
                                                     seed)
    return {
        "steps": steps,
        "gains": gains.tolist(),
        "final_test_loss": final_loss.tolist(),
        "final_test_accuracy": final_acc.tolist(),
        "lyap_1_per_run": np.asarray(mh["lyap_1"], float).T.tolist(),
        "curves": curves,
        "rank_correlation": corr,
        "early_step": steps[early],
    }


def pooled_correlations(results: dict, seed: int) -> dict:
    out = {}
    for feat in ("lyap_1", "propagation_rate"):
        for when in ("step0", "early"):
            xs, ys = [], []
            for r in results.values():
                i = 0 if when == "step0" else (1 if len(r["steps"]) > 1 else 0)
                xs += [row[i] for row in _per_run(r, feat)]
                ys += r["final_test_loss"]
            out[f"{feat}@{when}"] = rank_correlation(xs, ys, seed)
    return out


def _per_run(r: dict, feat: str) -> list[list[float]]:
    c = r["lyap_1_per_run"] if feat == "lyap_1" else r["_rate_per_run"]
    return c


# ------------------------------------------------------------------ report
def plot(histories: dict, out: str) -> str:
    """lambda_1 and the propagation rate of every cell over training; the saturated
    (tanh) and dead (ReLU) fractions of the Elman cells (``jrnn.plot.training``)."""
    import jrnn.plot

    fig, axes = jrnn.plot.subplots(1, 4, width=4.4, height=3.6)
    ax = list(axes[0])
    jrnn.plot.training(histories, ["lyap_1", "propagation_rate"], ax=ax[:2])
    for a, (key, cell) in zip(ax[2:], (("saturated_fraction", "elman_tanh"),
                                       ("dead_fraction", "elman_relu"))):
        if cell in histories:
            jrnn.plot.training({cell: histories[cell]}, key, ax=a)
        else:
            a.set_axis_off()
    return common.save_figure(fig, out, "spectrum_over_training")


def plot_prediction(results: dict, out: str) -> str:
    """Final test loss against lambda_1 at init and at the first monitored step."""
    import jrnn.plot
    from jrnn.plot import style

    fig, axes = jrnn.plot.subplots(1, 2, width=4.6, height=3.6)
    names = list(results)
    for sty, name in zip(style.styles(names), names):
        r = results[name]
        lam = np.asarray(r["lyap_1_per_run"], float)
        for ax, i in zip(axes[0], (0, 1 if lam.shape[1] > 1 else 0)):
            ax.plot(lam[:, i], r["final_test_loss"], "o", color=sty["color"], label=name)
    for ax, when in zip(axes[0], ("step 0 (init)", "first monitored step")):
        style.finish(ax, xlabel=f"$\\lambda_1$ at {when} ({style.NATS})",
                     ylabel="final test loss (nats)", title=f"$\\lambda_1$ at {when}")
    return common.save_figure(fig, out, "prediction")


def _fmt_corr(c: dict) -> str:
    if c["rho"] is None or not math.isfinite(c["rho"]):
        return f"n/a (n={c['n']})"
    lo, hi = c["ci95"]
    ci = f"[{lo:+.2f}, {hi:+.2f}]" if lo is not None else "[n/a]"
    return f"{c['rho']:+.2f} {ci}, p={c['p_value']:.2f}, n={c['n']}"


def conclusions(results: dict, pooled: dict) -> list[str]:
    out = []
    for name, r in results.items():
        lam = r["curves"]["lyap_1"]["mean"]
        loss = np.asarray(r["final_test_loss"], float)
        lam_all = np.asarray(r["lyap_1_per_run"], float)  # (runs, steps)
        first = (f"{lam[0]:+.3f}" if lam[0] is not None and math.isfinite(lam[0]) else
                 f"undefined on {int(np.sum(~np.isfinite(lam_all[:, 0])))} of "
                 f"{lam_all.shape[0]} runs (-inf or NaN: J_t = 0 on some steps, e.g. a ReLU "
                 "state at exactly 0 on blank pixels)")
        out.append(f"{name}: mean lambda_1 over runs {first} at init -> {lam[-1]:+.3f} "
                   f"nats/step at step {r['steps'][-1]}; final test loss median "
                   f"{np.nanmedian(loss):.3f} (range {np.nanmin(loss):.3f}-{np.nanmax(loss):.3f}).")
    c = pooled["lyap_1@step0"]
    if c["rho"] is not None and math.isfinite(c["rho"]) and c["ci95"][0] is not None:
        sig = c["ci95"][0] > 0 or c["ci95"][1] < 0
        out.append(
            f"Pooled over cells, lambda_1 at init and the final loss have Spearman rho "
            f"{_fmt_corr(c)}: the 95% interval {'excludes' if sig else 'includes'} zero, so "
            f"this run {'does' if sig else 'does not'} show a rank association"
            f"{'' if sig else ' it can resolve'}. Pooling mixes cells, whose spectra and "
            "losses differ systematically; the per-cell rows are the within-cell test.")
    return out


def report(results: dict, pooled: dict, cfg: Config, mode: str, figures) -> str:
    rows = []
    for name, r in results.items():
        for key, c in r["rank_correlation"].items():
            rows.append([name, key, _fmt_corr(c)])
    for key, c in pooled.items():
        rows.append(["pooled", key, _fmt_corr(c)])
    curve_rows = []
    for name, r in results.items():
        for i, s in enumerate(r["steps"]):
            cu = r["curves"]
            curve_rows.append([name, s] + [
                f"{cu[k]['mean'][i]:+.4f} ± {cu[k]['stderr'][i]:.4f}"
                if cu[k]["mean"][i] is not None and math.isfinite(cu[k]["mean"][i]) else "n/a"
                for k in KEYS])
    lines = [
        "# Training dynamics: the Lyapunov spectrum during training (Vogt et al. 2022)",
        "",
        f"Mode: {mode}. Sequential digits (64 steps, 1 pixel per step, 10 classes; 1437 train, "
        f"360 test). Cells {list(cfg.cells)} of width {cfg.hidden}; initial W_hh scaled by "
        f"g in {list(cfg.gains)}, {cfg.seeds} seeds per gain; Adam lr {cfg.lr}, clip "
        f"{cfg.clip}, batch {cfg.batch}, {cfg.steps} steps; all runs of one cell train as one "
        "vmapped program on the same batches. Snapshots (`jrnn.diagnostics.snapshot`, "
        f"k = {cfg.k}) on {cfg.monitor_batch} held-out test sequences at step 0 and every "
        f"{cfg.monitor_every} steps, through `jrnn.train.fit(monitor=...)`; dtype "
        f"{jnp.zeros(()).dtype}.",
        "",
        "## Does the spectrum early in training predict the final test loss?",
        "",
        "Spearman rho between a run's feature and its final test loss, bootstrap 95% interval "
        f"({BOOTSTRAPS} resamples of runs), two-sided permutation p-value ({PERMUTATIONS} "
        "permutations). Positive rho: larger (less negative) exponent, higher loss.",
        "",
        common.table(["cell", "feature", "rho [95% CI], p, n"], rows),
        "",
        "## Conclusions (computed from the numbers above)",
        "",
    ]
    lines += [f"- {s}" for s in conclusions(results, pooled)]
    lines += ["", "## Monitored quantities (mean ± stderr over runs)", "",
              common.table(["cell", "step"] + list(KEYS), curve_rows), ""]
    for f in figures:
        lines += [f"![{f}]({f})", ""]
    lines += ["Curves: median over runs, band min-max (`jrnn.plot.training`). Dead fraction "
              "applies to ReLU, saturation to tanh; gated cells have neither (n/a)."]
    return "\n".join(lines)


# ------------------------------------------------------------------ main
def main(argv=None) -> dict:
    """Runs the study; writes metrics.json, report.md, run_info.json and figures."""
    args = common.parse(NAME, __doc__, PRESETS, DEFAULT_PRESET, argv)
    cfg, mode = args.config, args.preset
    t0 = time.perf_counter()
    data = (jrnn.tasks.digits("train"), jrnn.tasks.digits("test"))
    results, histories = {}, {}
    for name in cfg.cells:
        res, gains = train_cell(name, cfg, args.seed, data,
                                common.checkpoint_dir(args.out, mode, name))
        r = summarise(name, res, gains, args.seed)
        r["_rate_per_run"] = np.asarray(res.monitor_history["propagation_rate"], float).T.tolist()
        results[name] = r
        histories[name] = res.monitor_history
        print(f"{name}: done at {time.perf_counter() - t0:.0f} s", flush=True)
    pooled = pooled_correlations(results, args.seed)
    for r in results.values():
        r["propagation_rate_per_run"] = r.pop("_rate_per_run")
    figures = [plot(histories, args.out), plot_prediction(results, args.out)]
    metrics = {"mode": mode, "seed": args.seed, "config": dataclasses.asdict(cfg),
               "dtype": str(jnp.zeros(()).dtype), "results": results,
               "pooled_rank_correlation": pooled,
               "conclusions": conclusions(results, pooled)}
    common.write_metrics(args.out, metrics)
    common.write_report(args.out, report(results, pooled, cfg, mode, figures))
    wall = time.perf_counter() - t0
    common.write_run_info(args, wall_time_s=wall, mode=mode)
    print(f"{NAME} ({mode}): {wall:.0f} s")
    for line in conclusions(results, pooled):
        print("-", line)
    return metrics


if __name__ == "__main__":
    main()
