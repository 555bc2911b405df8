"""Gradient flossing (Engelken 2023): push the leading Lyapunov exponents to 0, then train.

Task: the delayed copy task read out at one step. The input is a stream of
random bits ``x_t = +-1``; after ``T = d + 1`` steps the network must output
``x_{T-d}``, the bit seen ``d`` steps earlier, through ``d`` distractor bits
(MSE on ``y = +-1``; baseline: always answer 0, MSE 1, accuracy 1/2). The
error signal that could teach it reaches the input through
``d h_T / d h_{T-d}``, which scales like ``exp(d lambda_1)``: a tanh RNN with
``lambda_1 < 0`` gets none at long delays and stays at the baseline.

Variants, several seeds each (vmapped into one program):

* ``tanh``: Elman tanh RNN, Keras init (orthogonal ``W_hh``), no flossing;
* ``tanh+floss``: the same after ``pre_steps`` flossing updates
  (:func:`jrnn.penalties.lyapunov_penalty`, schedule ``"before"``);
* ``critical`` / ``critical+floss``: ``W_hh ~ N(0, g*^2/n)`` at the mean-field
  critical gain (:func:`jrnn.initializers.critical`), without / with flossing;
* ``tanh+jacnorm``: the baseline penalty ``(||J_t||_rms - 1)^2`` instead of the
  spectrum (:func:`jrnn.penalties.jacobian_norm_penalty`), same schedule;
* ``lstm``: the gated reference, no flossing.

Reported: held-out accuracy and loss vs delay (median and range over seeds),
seeds solved (accuracy >= ``SOLVED_ACCURACY``), the ``k`` leading exponents at
init, after flossing and after training (measured on held-out input streams),
``log ||d h_T / d h_t||`` vs lag, and the wall time of a flossing update vs a
task update. ``--preset quick`` runs in minutes on a CPU; the default
configuration is the paper-like scale (long; checkpointed and resumable).
``--help`` lists every field of the config.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

import jrnn
from experiments import common

NAME = "flossing"
VARIANTS = ("tanh", "tanh+floss", "critical", "critical+floss", "tanh+jacnorm", "lstm")
SOLVED_ACCURACY = 0.9  # solved: held-out accuracy >= this (chance is 0.5)
BASELINE_ACCURACY = 0.6  # "at the baseline": held-out accuracy below this
CLAIM_TOL = 0.02  # |lambda_i| after flossing, nats per step



@dataclasses.dataclass(frozen=True)
class Config:
    """Delays, variants, training and flossing budgets of the flossing study."""

    delays: tuple[int, ...] = (20, 40, 60, 80, 100, 150, 200)
    """copy delays d"""
    seeds: int = 8
    """seeds per variant (vmapped)"""
    hidden: int = 64
    """hidden units"""
    batch: int = 32
    """training batch size"""
    steps: int = 2000
    """task (Adam) steps"""
    pre_steps: int = 500
    """flossing updates before training"""
    lr: float = 1e-3
    """task learning rate"""
    floss_lr: float = 1e-2
    """flossing learning rate"""
    clip: float = 1.0
    """global-norm gradient clipping"""
    k: int = 16
    """Lyapunov exponents flossed and measured"""
    floss_batch: int = 8
    """training sequences per flossing update"""
    floss_warmup: int = 10
    """warm-up steps of the flossing penalty"""
    eval_size: int = 1000
    """held-out sequences"""
    eval_every: int = 100
    """steps between held-out evaluations"""
    checkpoint_every: int = 500
    """steps between checkpoints"""
    spectrum_len: int = 500
    """steps of the held-out streams the exponents are measured on"""
    spectrum_batch: int = 8
    """held-out streams"""
    spectrum_warmup: int = 100
    """warm-up steps of the measured exponents"""
    variants: tuple[str, ...] = VARIANTS
    """variants compared"""

    def __post_init__(self):
        if not self.variants:
            raise ValueError("variants must name at least one variant, got ().")
        for v in self.variants:
            if v not in VARIANTS:
                raise ValueError(f"variant must be one of {VARIANTS}, got {v!r}.")


PRESETS = {
    "smoke": Config(
        delays=(4,), seeds=2, hidden=4, batch=4, steps=3, pre_steps=2, lr=1e-2, floss_lr=1e-2,
        clip=1.0, k=2, floss_batch=2, floss_warmup=1, eval_size=8, eval_every=3,
        checkpoint_every=3, spectrum_len=12, spectrum_batch=2, spectrum_warmup=2,
        variants=("tanh", "tanh+floss")),
    "quick": Config(
        delays=(20, 50, 100), seeds=4, hidden=32, batch=32, steps=150, pre_steps=150, lr=3e-3,
        floss_lr=1e-2, clip=1.0, k=4, floss_batch=4, floss_warmup=10, eval_size=256,
        eval_every=25, checkpoint_every=50, spectrum_len=200, spectrum_batch=4,
        spectrum_warmup=50),
    "full": Config(),
}
DEFAULT_PRESET = "full"


def _listed(cfg: Config) -> dict:
    """The config as a JSON-ready dict (tuples as lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def delayed_copy(key, batch: int, delay: int):
    """``x (batch, delay + 1, 1)`` random +-1 bits, ``y (batch, 1) = x_{T-d} = x_1``."""
    import jax
    import jax.numpy as jnp

    x = jnp.where(jax.random.bernoulli(key, 0.5, (batch, delay + 1, 1)), 1.0, -1.0)
    return x, x[:, 0]


def make_cell(variant: str, hidden: int) -> jrnn.Cell:
    if variant == "lstm":
        return jrnn.cells.lstm(hidden)
    if variant.startswith("critical"):
        return jrnn.cells.elman(hidden, "tanh", recurrent_init=jrnn.initializers.critical("tanh"))
    if variant.startswith("tanh"):
        return jrnn.cells.elman(hidden, "tanh")
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")


def _penalty(variant: str, cell, cfg: Config, delay: int):
    if variant.endswith("+floss"):
        return jrnn.penalties.lyapunov_penalty(cell, cfg.k, 0.0, batch=cfg.floss_batch,
                                           warmup=min(cfg.floss_warmup, delay - 1))
    if variant.endswith("+jacnorm"):
        return jrnn.penalties.jacobian_norm_penalty(cell, 1.0, norm="rms", batch=cfg.floss_batch)
    return None


def _diagnostics(cell, cfg: Config, seed: int, lag_len: int):
    """``params (seeds) -> (exponents (S, k), log ||d h_T/d h_t|| (S, L+1) by lag)``, jitted."""
    import jax
    import jax.numpy as jnp

    key = jax.random.key(seed + 3)
    xs = jnp.where(jax.random.bernoulli(key, 0.5, (cfg.spectrum_batch, cfg.spectrum_len, 1)),
                   1.0, -1.0)
    k = min(cfg.k, cell.state_size)

    def one(p):
        spec, prop = common.one_after_another(  # LAPACK calls in turn (jrnn.host)
            p,
            lambda q: jrnn.diagnostics.lyapunov_spectrum(cell, q, xs, k=k,
                                                         warmup=cfg.spectrum_warmup),
            lambda q: jrnn.diagnostics.propagation(cell, q, xs[0, :lag_len]),
        )
        lam = jnp.mean(spec.exponents, axis=0)
        return lam, prop.log_spectral_norm[::-1]  # index = lag T - t

    fn = jax.jit(jax.vmap(one))

    def measure(params):
        lam, logn = fn(params)
        return np.asarray(lam, np.float64), np.asarray(logn, np.float64)

    return measure


def run_one(delay: int, variant: str, cfg: Config, seed: int, out: str, on_step=None):
    """Flosses (if the variant does), trains all seeds, measures; returns (result, timings)."""
    import jax
    import jax.numpy as jnp
    import optax

    S, B = cfg.seeds, cfg.batch
    cell = make_cell(variant, cfg.hidden)
    model = jrnn.models.rnn(cell, 1)
    penalty = _penalty(variant, cell, cfg, delay)
    pre = cfg.pre_steps if penalty is not None else 0
    schedule = (jrnn.flossing.flossing_schedule("before", pre_steps=pre) if penalty is not None
                else jrnn.flossing.flossing_schedule("none"))
    opt = optax.adam(cfg.lr)
    gen = lambda key: delayed_copy(key, B, delay)
    transform = lambda f: jax.jit(jax.vmap(lambda st, key: f(st, gen(key))))
    step = jrnn.flossing.make_flossing_step(
        model.apply, jrnn.tasks.mse, opt, penalty, schedule, clip_norm=cfg.clip,
        skip_nonfinite=True, transform=transform, floss_optimizer=optax.adam(cfg.floss_lr))

    idx = jnp.arange(S)
    init_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(seed), s))(idx)
    data_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(seed + 1), s))(idx)
    params0 = jax.vmap(lambda k: model.init(k, 1))(init_keys)
    state = jax.vmap(lambda p, r: jrnn.train.init_state(p, opt, r))(params0, data_keys)
    ex, ey = delayed_copy(jax.random.key(seed + 2), cfg.eval_size, delay)

    def evaluate(p):
        pred = model.apply(p, ex)
        return {"loss": jrnn.tasks.mse(pred, ey), "accuracy": jnp.mean(jnp.sign(pred) == ey)}

    veval = jax.jit(jax.vmap(evaluate))
    config = {"delay": delay, "variant": variant, "seed": seed,
              **_listed(cfg)}
    ckpt = lambda phase: common.checkpoint_dir(out, f"d{delay}", variant, phase)
    fit = lambda st, total, phase: jrnn.train.fit(
        step, st, lambda keys, t: keys, steps=total, eval_fn=veval,
        eval_every=cfg.eval_every if phase == "train" else 0, callback=on_step,
        nan_guard=False, checkpoint_dir=ckpt(phase), checkpoint_every=cfg.checkpoint_every,
        config=config)
    lag_len = max(cfg.delays) + 1
    measure = _diagnostics(cell, cfg, seed, lag_len)
    lam0, prop0 = measure(params0["cell"])
    times = {"floss": [], "task": []}
    if pre:
        res_f = fit(state, pre, "floss")
        state = res_f.state
        times["floss"] = res_f.step_times[1:]
        lam_f, prop_f = measure(state.params["cell"])
    res = fit(state, pre + cfg.steps, "train")
    times["task"] = res.step_times[1:]
    lam_t, prop_t = measure(res.state.params["cell"])
    ev = res.eval_history
    acc = np.asarray(ev["accuracy"][-1], np.float64)
    loss = np.asarray(ev["loss"][-1], np.float64)
    r = {
        "accuracy": acc.tolist(), "loss": loss.tolist(),
        "accuracy_median": float(np.median(acc)), "accuracy_min": float(np.min(acc)),
        "accuracy_max": float(np.max(acc)), "loss_median": float(np.median(loss)),
        "solved": int(np.sum(acc >= SOLVED_ACCURACY)),
        "at_baseline": int(np.sum(acc < BASELINE_ACCURACY)), "seeds": S,
        "flossing_steps": pre,
        "eval_step": list(ev["step"]),
        "eval_accuracy_median": np.median(np.asarray(ev["accuracy"]), axis=1).tolist(),
        "exponents_init": lam0.tolist(), "exponents_trained": lam_t.tolist(),
        "log_dhT_dht_init_median": np.median(prop0, axis=0).tolist(),
        "log_dhT_dht_trained_median": np.median(prop_t, axis=0).tolist(),
        "nonfinite_updates": int((~np.asarray(res.history.get("finite", [[True]]),
                                              bool)).sum()),
    }
    if pre:
        r["exponents_flossed"] = lam_f.tolist()
        r["max_abs_exponent_flossed"] = np.max(np.abs(lam_f), axis=1).tolist()
        r["penalty_final"] = np.asarray(res_f.history["loss"][-1], np.float64).tolist()
        r["log_dhT_dht_flossed_median"] = np.median(prop_f, axis=0).tolist()
    return r, times


def claims(runs: dict, cfg: Config) -> dict:
    """The two claims of the issue, evaluated on the measured numbers."""
    S = cfg.seeds
    most = S // 2 + 1
    out = {"exponents_within_tol": {}, "lambda1_within_tol": {},
           "solved_only_with_flossing": []}
    for dkey, by_v in runs.items():
        for v, r in by_v.items():
            if "max_abs_exponent_flossed" in r and v.endswith("+floss"):
                within = int(np.sum(np.asarray(r["max_abs_exponent_flossed"]) <= CLAIM_TOL))
                out["exponents_within_tol"][f"{dkey}/{v}"] = within
                lam1 = np.abs(np.asarray(r["exponents_flossed"])[:, 0])
                out["lambda1_within_tol"][f"{dkey}/{v}"] = int(np.sum(lam1 <= CLAIM_TOL))
        if "tanh" in by_v and "tanh+floss" in by_v:
            a, b = by_v["tanh"], by_v["tanh+floss"]
            if a["at_baseline"] >= most and b["solved"] >= most:
                out["solved_only_with_flossing"].append(int(dkey[1:]))
    for name in ("exponents", "lambda1"):
        within = out[f"{name}_within_tol"].values()
        out[f"{name}_claim_holds"] = bool(within) and all(w >= most for w in within)
    out["delay_claim_holds"] = bool(out["solved_only_with_flossing"])
    out["most_seeds"] = most
    return out


HEADERS = ["delay", "variant", "accuracy (median [min, max])", "loss (median)", "solved",
           "at baseline", "lambda_1 init", "lambda_1 flossed", "lambda_1 trained"]


def table_rows(runs: dict) -> list[list]:
    rows = []
    for dkey, by_v in runs.items():
        for v, r in by_v.items():
            med = lambda key, r=r: (float(np.median(np.asarray(r[key])[:, 0])) if key in r
                                    else "-")
            rows.append([
                int(dkey[1:]), v,
                f"{r['accuracy_median']:.3f} [{r['accuracy_min']:.3f}, {r['accuracy_max']:.3f}]",
                r["loss_median"], f"{r['solved']}/{r['seeds']}",
                f"{r['at_baseline']}/{r['seeds']}", med("exponents_init"),
                med("exponents_flossed"), med("exponents_trained"),
            ])
    return rows


def plot(runs: dict, cfg: Config, out: str) -> list[str]:
    plt = common.pyplot()
    delays = [int(d[1:]) for d in runs]
    variants = list(next(iter(runs.values())))
    files = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for v in variants:
        acc = np.array([runs[f"d{d}"][v]["accuracy"] for d in delays])
        loss = np.array([runs[f"d{d}"][v]["loss"] for d in delays])
        for ax, y in ((axes[0], acc), (axes[1], loss)):
            med = np.median(y, axis=1)
            err = np.stack([med - y.min(axis=1), y.max(axis=1) - med])
            ax.errorbar(delays, med, yerr=err, marker="o", capsize=3, label=v)
    axes[0].axhline(0.5, color="k", ls="--", lw=1, label="chance")
    axes[1].axhline(1.0, color="k", ls="--", lw=1, label="baseline")
    axes[0].set_ylabel("held-out accuracy (median, min-max over seeds)")
    axes[1].set_ylabel("held-out MSE")
    for ax in axes:
        ax.set_xlabel("delay d")
    axes[0].legend(fontsize=7)
    files.append(common.save_figure(fig, out, "accuracy_vs_delay"))

    dkey = f"d{max(delays)}"
    shown = [v for v in variants if v != "lstm" and v != "tanh+jacnorm"] or variants
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.5), squeeze=False,
                             constrained_layout=True)
    for ax, v in zip(axes[0], shown):
        r = runs[dkey][v]
        for key, label in (("exponents_init", "init"), ("exponents_flossed", "after flossing"),
                           ("exponents_trained", "after training")):
            if key in r:
                lam = np.asarray(r[key])
                i = np.arange(1, lam.shape[1] + 1)
                ax.errorbar(i, np.median(lam, 0), yerr=[np.median(lam, 0) - lam.min(0),
                            lam.max(0) - np.median(lam, 0)], marker="o", capsize=2, label=label)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(f"{v}, d = {max(delays)}")
        ax.set_xlabel("i")
        ax.set_ylabel("lambda_i (nats / step)")
        ax.legend(fontsize=7)
    files.append(common.save_figure(fig, out, "spectra"))

    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.5), squeeze=False,
                             constrained_layout=True)
    for ax, v in zip(axes[0], shown):
        r = runs[dkey][v]
        for key, label in (("log_dhT_dht_init_median", "init"),
                           ("log_dhT_dht_flossed_median", "after flossing"),
                           ("log_dhT_dht_trained_median", "after training")):
            if key in r:
                y = np.asarray(r[key]) / np.log(10)
                ax.plot(np.arange(len(y)), y, label=label)
        ax.set_title(v)
        ax.set_xlabel("lag T - t")
        ax.set_ylabel("log10 ||d h_T / d h_t||_2 (median)")
        ax.legend(fontsize=7)
    files.append(common.save_figure(fig, out, "propagation"))
    return files


def report(runs: dict, cfg: Config, mode: str, figures: list[str], claim: dict,
           timing: dict) -> str:
    lines = [
        "# Gradient flossing on the delayed copy task",
        "",
        f"Mode: {mode}. {cfg.seeds} seeds per variant (vmapped), hidden size {cfg.hidden}, "
        f"batch {cfg.batch}, {cfg.steps} Adam steps (lr {cfg.lr}, clip {cfg.clip}); "
        f"flossing: {cfg.pre_steps} updates before training (Adam lr {cfg.floss_lr}) of "
        f"mean((lambda_1..{cfg.k})^2) on {cfg.floss_batch} training sequences. Exponents "
        f"measured on {cfg.spectrum_batch} held-out +-1 streams of {cfg.spectrum_len} steps "
        f"(warmup {cfg.spectrum_warmup}), nats per step.",
        "",
        f"Task: after d distractor bits output the bit seen d steps earlier; chance accuracy 0.5, "
        f"baseline MSE 1. *Solved*: accuracy >= {SOLVED_ACCURACY}; *at baseline*: "
        f"accuracy < {BASELINE_ACCURACY}.",
        "",
        common.table(HEADERS, table_rows(runs)),
        "",
        "## Claims",
        "",
        f"- lambda_1 within {CLAIM_TOL} of 0 after flossing (seeds of {cfg.seeds}, per "
        f"delay/variant): {claim['lambda1_within_tol']} -> "
        f"{'holds' if claim['lambda1_claim_holds'] else 'does NOT hold'} on most seeds.",
        f"- All {cfg.k} flossed exponents within {CLAIM_TOL} of 0 after flossing: "
        f"{claim['exponents_within_tol']} -> "
        f"{'holds' if claim['exponents_claim_holds'] else 'does NOT hold'} on most seeds.",
        f"- Delays the flossed tanh RNN solves on most seeds while the unflossed one stays at "
        f"baseline on most seeds: {claim['solved_only_with_flossing'] or 'none'} -> "
        f"{'holds' if claim['delay_claim_holds'] else 'does NOT hold'}.",
        "",
        "## Cost (wall time per update, median; this run's machine, see run_info.json)",
        "",
        common.table(["delay", "variant", "flossing update (ms)", "task update (ms)",
                               "ratio"],
                              [[d, v, 1e3 * t["floss"], 1e3 * t["task"],
                                t["floss"] / t["task"]] for (d, v), t in timing.items()]),
        "",
    ]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Runs the study and writes metrics.json, report.md and PNGs under ``--out``."""
    args = common.parse(NAME, __doc__, PRESETS, DEFAULT_PRESET, argv)
    cfg, mode = args.config, args.preset
    t0 = time.perf_counter()
    per_run = lambda v: cfg.steps + (cfg.pre_steps if "+" in v else 0)
    bar = common.progress(len(cfg.delays) * sum(per_run(v) for v in cfg.variants), NAME)
    runs: dict = {}
    timing: dict = {}
    for d in cfg.delays:
        for v in cfg.variants:
            bar.set_postfix_str(f"d={d} {v}")
            r, times = run_one(d, v, cfg, args.seed, args.out, on_step=lambda s, m: bar.update())
            runs.setdefault(f"d{d}", {})[v] = r
            if times["floss"] and times["task"]:
                timing[(d, v)] = {k: float(np.median(t)) for k, t in times.items()}
    bar.close()
    claim = claims(runs, cfg)
    figures = plot(runs, cfg, args.out)
    metrics = {"mode": mode, "seed": args.seed, "solved_accuracy": SOLVED_ACCURACY,
               "baseline_accuracy": BASELINE_ACCURACY, "claim_tolerance": CLAIM_TOL,
               "config": _listed(cfg), "runs": runs, "claims": claim}
    common.write_metrics(args.out, metrics)
    common.write_report(args.out, report(runs, cfg, mode, figures, claim, timing))
    wall = time.perf_counter() - t0
    common.write_run_info(
        args, wall_time_s=wall, mode=mode,
        seconds_per_step={f"d{d}/{v}": t for (d, v), t in timing.items()})
    common.print_table(HEADERS, table_rows(runs), title=f"{NAME} ({mode}), {wall:.0f} s")
    print(f"claims: {claim}")
    return metrics


if __name__ == "__main__":
    main()
