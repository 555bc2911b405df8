"""Dead neurons: does ReLU kill units during training, and do its alternatives?

The seed article's claim "ReLU can cause dead neurons that output zero
forever", measured. Elman RNNs ``h_t = f(W_hh h_{t-1} + W_xh x_t + b_h)`` with
``f`` in relu, leaky_relu, elu, gelu are trained with Adam on the adding
problem (Hochreiter & Schmidhuber 1997; baseline MSE 1/6) at several learning
rates and three initialisations of the recurrence:

* *standard*: ``W_hh ~ N(0, 1/n)``, ``b_h = 0``;
* *critical*: ``W_hh ~ N(0, g*^2/n)`` at the mean-field critical gain of ``f``
  (:func:`jrnn.theory.critical_gain`; ReLU ``sqrt 2``, He et al. 2015);
* *negative-bias*: standard ``W_hh`` with ``b_h = NEG_BIAS`` (a known way
  to start with many silent units).

Every (initialisation, learning rate, seed) of one activation is a member of
one vmapped training program (the learning rate lives in the optimizer state
through ``optax.inject_hyperparams``). At every evaluation point, on one
held-out batch:

* *inactive fraction*: units whose pre-activation ``a_{t,i}`` is ``<= 0`` at
  every step of every held-out sequence (``jrnn.diagnostics.unit_health``'s
  dead criterion applied to any activation);
* *dead fraction* (ReLU only, where it equals the inactive fraction): such a
  unit outputs 0 and has ``f'(a) = 0`` on all of those inputs, so no gradient
  reaches its incoming weights. For leaky_relu / elu / gelu an inactive unit
  still passes gradient (``f'(a) > 0`` for ``a < 0``: 0.01, ``e^a``, ``Phi(a) +
  a phi(a)``) and can come back; *revived* counts the units inactive at
  initialisation that were active at the end.

Run ``python -m experiments.dead_neurons`` (about 3 minutes on 2 CPU cores),
``--preset quick``, ``--preset full`` (larger nets, longer runs, more seeds and rates),
``--activations relu elu`` (any registered names); ``--help`` lists every field. Training is
checkpointed under ``OUT/checkpoints/ACTIVATION``; an interrupted run resumes there.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jrnn
from experiments import common

NAME = "dead_neurons"
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu")
INITS = ("standard", "critical", "negative-bias")
NEG_BIAS = -0.5
INPUT_SIZE = 2  # adding problem: (value, marker)

@dataclasses.dataclass(frozen=True)
class Config:
    """Networks, training budget and activations of the dead-neuron study."""

    hidden: int = 32
    """hidden units"""
    T: int = 20
    """adding-problem sequence length"""
    batch: int = 32
    """training batch size"""
    steps: int = 300
    """Adam steps"""
    lrs: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    """learning rates (each a member of the vmapped program)"""
    seeds: int = 3
    """seeds per (initialisation, learning rate)"""
    eval_every: int = 20
    """steps between held-out evaluations"""
    eval_size: int = 256
    """held-out sequences"""
    checkpoint_every: int = 100
    """steps between checkpoints"""
    activations: tuple[str, ...] = ACTIVATIONS
    """registered activation names"""

    def __post_init__(self):
        if not self.activations:
            raise ValueError("activations must name at least one activation, got ().")
        for name in self.activations:
            jrnn.activations.get(name)  # raises with the nearest names

    def measured(self) -> dict:
        """``metrics.json``'s ``config``: every field but the activations."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items() if k != "activations"}


PRESETS = {
    "smoke": Config(hidden=6, T=6, batch=4, steps=4, lrs=(1e-2, 1e-1), seeds=2, eval_every=2,
                    eval_size=8, checkpoint_every=2, activations=("relu",)),
    "quick": Config(steps=150, lrs=(1e-3, 1e-1), eval_every=15, checkpoint_every=50),
    "default": Config(),
    "full": Config(hidden=128, T=50, batch=64, steps=3000, lrs=(1e-4, 1e-3, 1e-2, 3e-2, 1e-1),
                   seeds=8, eval_every=100, eval_size=1000, checkpoint_every=500),
}
DEFAULT_PRESET = "default"


# ------------------------------------------------------------------ configurations
def inactive_probe(activation) -> jrnn.activations.Activation:
    """``activation`` with ``dead_below = 0``: ``unit_health``'s dead fraction of a
    cell built with it is the fraction of units with ``a <= 0`` on every step
    (the dynamics are unchanged: same ``fn``)."""
    return dataclasses.replace(jrnn.activations.get(activation), dead_below=0.0)


@functools.cache
def critical_gain(activation: str) -> float:
    """Mean-field ``g*`` (``sigma_b = 0``), computed once per activation."""
    return float(jrnn.theory.critical_gain(activation))


def init_spec(activation: str) -> dict[str, tuple[float, float]]:
    """``{init: (recurrent gain, bias)}`` for the three initialisations."""
    g = critical_gain(activation)
    if not (math.isfinite(g) and g > 0):
        raise ValueError(
            f"activation {activation!r} has no finite mean-field critical gain (got {g}); "
            "the 'critical' initialisation needs one."
        )
    return {"standard": (1.0, 0.0), "critical": (g, 0.0), "negative-bias": (1.0, NEG_BIAS)}


def members(spec: dict, lrs, seeds: int) -> dict[str, np.ndarray]:
    """The flattened grid (init-major, then learning rate, then seed)."""
    grid = [(i, lr, s) for i in spec for lr in lrs for s in range(seeds)]
    return {
        "init": np.array([spec[i] for i, _, _ in grid], np.float64),  # (M, 2) gain, bias
        "lr": np.array([lr for _, lr, _ in grid], np.float64),
        "seed": np.array([s for _, _, s in grid], np.int32),
    }


def build(activation: str, cfg: Config, seed: int):
    """Model, jitted vmapped train step, initial states and evaluation for one activation."""
    cell = jrnn.cells.elman(cfg.hidden, activation,
                            recurrent_init=jrnn.initializers.scaled_normal(1.0))
    probe = jrnn.cells.elman(cfg.hidden, inactive_probe(activation))
    model = jrnn.models.rnn(cell, 1)
    spec = init_spec(activation)
    grid = members(spec, cfg.lrs, cfg.seeds)
    T, batch = cfg.T, cfg.batch
    # The step's optimizer reads the learning rate from each member's state.
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    step = jrnn.train.make_train_step(model.apply, jrnn.tasks.mse, opt, skip_nonfinite=True)
    vstep = jax.jit(jax.vmap(lambda st, key: step(st, jrnn.tasks.adding(key, batch, T))))

    def make_state(init, lr, s):
        params = model.init(jax.random.fold_in(jax.random.key(seed), s), INPUT_SIZE)
        p = params["cell"]
        p = dict(p, W_hh=init[0] * p["W_hh"], b_h=jnp.full_like(p["b_h"], init[1]))
        member_opt = optax.inject_hyperparams(optax.adam)(learning_rate=lr)
        return jrnn.train.init_state(dict(params, cell=p), member_opt,
                                     jax.random.fold_in(jax.random.key(seed + 1), s))

    states = jax.jit(jax.vmap(make_state))(
        jnp.asarray(grid["init"], jnp.float32), jnp.asarray(grid["lr"], jnp.float32),
        jnp.asarray(grid["seed"]))
    ex, ey = jrnn.tasks.adding(jax.random.key(seed + 2), cfg.eval_size, T)

    def evaluate(params):
        health = jrnn.diagnostics.unit_health(cell, params["cell"], ex)
        inactive = jrnn.diagnostics.unit_health(probe, params["cell"], ex)
        metrics = {"loss": jrnn.tasks.mse(model.apply(params, ex), ey),
                   "dead": health.dead_fraction, "inactive": inactive.dead_fraction}
        return metrics, inactive.dead

    veval = jax.jit(jax.vmap(evaluate))
    return model, vstep, states, veval, spec, grid


def run_activation(activation: str, cfg: Config, seed: int, out: str, on_step=None) -> dict:
    """Trains every member of one activation (resumable) and summarises it."""
    model, vstep, states, veval, spec, grid = build(activation, cfg, seed)
    ev0, mask0 = jax.device_get(veval(states.params))
    config = {"activation": activation, "seed": seed, "neg_bias": NEG_BIAS,
              "inits": {k: list(v) for k, v in spec.items()},
              **cfg.measured()}
    result = jrnn.train.fit(
        vstep, states, lambda keys, t: keys, steps=cfg.steps,
        eval_fn=lambda p: veval(p)[0], eval_every=cfg.eval_every, callback=on_step,
        nan_guard=False, checkpoint_dir=common.checkpoint_dir(out, activation),
        checkpoint_every=cfg.checkpoint_every, config=config,
    )
    _, mask1 = jax.device_get(veval(result.state.params))
    mask0, mask1 = np.asarray(mask0, bool), np.asarray(mask1, bool)  # (M, n)
    steps = [0] + list(result.eval_history["step"])
    curves = {k: np.concatenate([np.asarray(ev0[k], np.float64)[None],
                                 np.asarray(result.eval_history[k], np.float64)])
              for k in ("loss", "dead", "inactive")}  # (E + 1, M)
    finite = np.asarray(result.history["finite"], bool)  # (steps, M)
    dead_applies = inactive_probe(activation).dead_below == jrnn.activations.get(
        activation).dead_below
    S = cfg.seeds
    runs = {}
    for i, init in enumerate(spec):
        for j, lr in enumerate(cfg.lrs):
            sl = slice((i * len(cfg.lrs) + j) * S, (i * len(cfg.lrs) + j + 1) * S)
            m0, m1 = mask0[sl], mask1[sl]
            alive0 = (~m0).sum()
            runs[f"{init}/lr={lr:g}"] = {
                "init": init, "lr": lr, "gain": spec[init][0], "bias": spec[init][1],
                "eval_step": steps,
                "loss_median": np.median(curves["loss"][:, sl], 1).tolist(),
                "loss_per_seed": curves["loss"][:, sl].T.tolist(),  # (S, E + 1): the figure
                "inactive_per_seed": curves["inactive"][:, sl].T.tolist(),
                "inactive_median": np.median(curves["inactive"][:, sl], 1).tolist(),
                "inactive_min": curves["inactive"][:, sl].min(1).tolist(),
                "inactive_max": curves["inactive"][:, sl].max(1).tolist(),
                "dead_median": (np.median(curves["dead"][:, sl], 1).tolist()
                                if dead_applies else None),
                "final_loss": curves["loss"][-1, sl].tolist(),
                "final_loss_median": float(np.median(curves["loss"][-1, sl])),
                "inactive_init": curves["inactive"][0, sl].tolist(),
                "inactive_final": curves["inactive"][-1, sl].tolist(),
                "inactive_final_median": float(np.median(curves["inactive"][-1, sl])),
                "inactive_init_median": float(np.median(curves["inactive"][0, sl])),
                # pooled over seeds: units that went silent / came back
                "died_fraction": float((~m0 & m1).sum() / alive0) if alive0 else None,
                "revived_fraction": float((m0 & ~m1).sum() / m0.sum()) if m0.sum() else None,
                "inactive_at_init_units": int(m0.sum()),
                "skipped_updates": int((~finite[:, sl]).sum()),
            }
    return {"critical_gain": spec["critical"][0], "dead_applies": bool(dead_applies),
            "runs": runs}


# ------------------------------------------------------------------ output
HEADERS = ["activation", "init", "lr", "inactive@init", "inactive@end", "died", "revived",
           "final loss", "skipped"]


def table_rows(results: dict) -> list[list]:
    dash = lambda v: "-" if v is None else v
    rows = []
    for act, r in results.items():
        for run in r["runs"].values():
            rows.append([act, run["init"], run["lr"], run["inactive_init_median"],
                         run["inactive_final_median"], dash(run["died_fraction"]),
                         dash(run["revived_fraction"]), run["final_loss_median"],
                         run["skipped_updates"]])
    return rows


def _grid_plot(results: dict, cfg: Config, out: str, key: str, ylabel: str, name: str,
               baseline: float | None = None, log: bool = False) -> str:
    """One panel per (init, lr): ``jrnn.plot.training`` of ``key`` per activation (median and
    min-max band over seeds); the legend once, and wherever a panel marks non-finite values."""
    import jrnn.plot

    inits, lrs = INITS, cfg.lrs
    fig, axes = jrnn.plot.subplots(len(inits), len(lrs), width=3.8, height=3.0, sharex=True,
                                   sharey=True)
    for i, init in enumerate(inits):
        for j, lr in enumerate(lrs):
            ax = axes[i][j]
            histories = {act: [{"step": r["runs"][f"{init}/lr={lr:g}"]["eval_step"], key: v}
                               for v in r["runs"][f"{init}/lr={lr:g}"][f"{key}_per_seed"]]
                         for act, r in results.items()}
            jrnn.plot.training(histories, key, ax=ax, log=log)
            if baseline is not None:
                ax.axhline(baseline, color="k", ls="--", lw=1,
                           label=f"baseline {baseline:.3g}")
            ax.set_title(f"{init}, lr = {lr:g}", fontsize=9)
            ax.set_xlabel("step" if i == len(inits) - 1 else "")
            ax.set_ylabel(ylabel if j == 0 else "", fontsize=8)
            marks = any(ln.get_gid() == jrnn.plot.style.NONFINITE_GID for ln in ax.lines)
            if (i, j) == (0, len(lrs) - 1) or marks:
                ax.legend(fontsize=6, loc="best", framealpha=0.85)
            elif ax.get_legend() is not None:
                ax.get_legend().remove()
    return common.save_figure(fig, out, name)


def plot(results: dict, cfg: Config, out: str) -> list[str]:
    return [
        _grid_plot(results, cfg, out, "inactive",
                   "inactive (relu: dead) fraction\n(median; band: min-max over seeds)",
                   "dead_fraction"),
        _grid_plot(results, cfg, out, "loss",
                   "held-out MSE\n(median; band: min-max over seeds)", "loss",
                   baseline=jrnn.tasks.ADDING_BASELINE, log=True),
    ]


def conclusions(results: dict, cfg: Config) -> list[str]:
    """Sentences computed from the measurements (nothing else)."""
    out = []
    acts = list(results)
    settings = [(i, lr) for i in INITS for lr in cfg.lrs]
    key = lambda i, lr: f"{i}/lr={lr:g}"
    for act, r in results.items():
        if not r["dead_applies"]:
            continue
        rose = [(i, lr) for i, lr in settings
                if r["runs"][key(i, lr)]["inactive_final_median"]
                > r["runs"][key(i, lr)]["inactive_init_median"]]
        best = max(settings, key=lambda s: r["runs"][key(*s)]["inactive_final_median"])
        b = r["runs"][key(*best)]
        out.append(
            f"{act}: the median dead fraction rose during training in {len(rose)} of "
            f"{len(settings)} settings; the largest final value is "
            f"{b['inactive_final_median']:.3g} "
            f"(from {b['inactive_init_median']:.3g} at initialisation) with {best[0]} "
            f"initialisation at lr = {best[1]:g}."
        )
        if len(cfg.lrs) > 1:
            mono = [i for i in INITS
                    if all(r["runs"][key(i, a)]["inactive_final_median"]
                           <= r["runs"][key(i, b_)]["inactive_final_median"]
                           for a, b_ in zip(cfg.lrs[:-1], cfg.lrs[1:]))]
            out.append(
                f"{act}: the final dead fraction is non-decreasing in the learning rate for "
                f"{len(mono)} of {len(INITS)} initialisations"
                + (f" ({', '.join(mono)})." if mono else ".")
            )
        revived = [r["runs"][key(*s)]["revived_fraction"] for s in settings]
        revived = [v for v in revived if v is not None]
        if revived:
            out.append(
                f"{act}: of the units dead at initialisation, a median {np.median(revived):.3g} "
                f"(over settings) were active again at the end."
            )
    if len(acts) > 1:
        means = {a: float(np.mean([results[a]["runs"][key(*s)]["inactive_final_median"]
                                   for s in settings])) for a in acts}
        out.append("Final inactive fraction averaged over settings: "
                   + ", ".join(f"{a} {v:.3g}" for a, v in means.items()) + ".")
        for act in acts:
            if not results[act]["dead_applies"]:
                continue
            top = [s for s in settings
                   if all(results[act]["runs"][key(*s)]["inactive_final_median"]
                          > results[o]["runs"][key(*s)]["inactive_final_median"]
                          for o in acts if o != act)]
            out.append(f"{act} ended with strictly more inactive units than every other "
                       f"activation in {len(top)} of {len(settings)} settings.")
        rev = {}
        for a in acts:
            vals = [results[a]["runs"][key(*s)]["revived_fraction"] for s in settings]
            vals = [v for v in vals if v is not None]
            if vals:
                rev[a] = float(np.median(vals))
        if rev:
            out.append("Units inactive at initialisation and active at the end (median over "
                       "settings): " + ", ".join(f"{a} {v:.3g}" for a, v in rev.items()) + ".")
        losses = {a: float(np.median([results[a]["runs"][key(*s)]["final_loss_median"]
                                      for s in settings])) for a in acts}
        out.append(f"Final held-out MSE (median over settings; baseline "
                   f"{jrnn.tasks.ADDING_BASELINE:.4f}): "
                   + ", ".join(f"{a} {v:.3g}" for a, v in losses.items()) + ".")
    skipped = {a: sum(run["skipped_updates"] for run in results[a]["runs"].values())
               for a in acts}
    if any(skipped.values()):
        out.append("Non-finite updates skipped (summed over members): "
                   + ", ".join(f"{a} {v}" for a, v in skipped.items()) + ".")
    return out


def report(results: dict, cfg: Config, mode: str, figures: list[str]) -> str:
    lines = [
        "# Dead neurons during training",
        "",
        f"Mode: {mode}. Elman RNN (hidden {cfg.hidden}) + linear readout on the adding "
        f"problem (T = {cfg.T}, batch {cfg.batch}), {cfg.steps} Adam steps, no "
        f"clipping, {cfg.seeds} seeds per setting, all settings of one activation in one "
        f"vmapped program. Initialisations: standard W_hh ~ N(0, 1/n); critical "
        f"W_hh ~ N(0, g*^2/n); negative-bias: standard with b_h = {NEG_BIAS}. Measured on "
        f"{cfg.eval_size} held-out sequences.",
        "",
        "*inactive*: fraction of units whose pre-activation is <= 0 at every step of every "
        "held-out sequence (median over seeds). For relu these units are *dead*: output 0, "
        "zero gradient into their weights (equal to `jrnn.diagnostics.unit_health`'s dead "
        "fraction). For the other activations they still pass gradient. *died*: units active "
        "at initialisation and inactive at the end; *revived*: inactive at initialisation, "
        "active at the end (both pooled over seeds). A dead relu unit's own weights get no "
        "gradient, but its pre-activation also depends on the other units' states, so it "
        "can fire again when they change. *skipped*: non-finite updates not applied "
        "(no clipping: a diverging member keeps its last finite parameters).",
        "",
        common.table(HEADERS, table_rows(results)),
        "",
        "## Conclusions (computed from the numbers above)",
        "",
    ]
    lines += [f"- {s}" for s in conclusions(results, cfg)]
    lines += [""] + [f"![{f}]({f})" for f in figures]
    lines += ["", "Rows: initialisation; columns: learning rate; lines: median over seeds "
              "(band: min-max); dashed: the adding baseline 1/6."]
    return "\n".join(lines)


# ------------------------------------------------------------------ main
def main(argv=None) -> dict:
    """Runs the study; writes metrics.json, report.md and PNGs under ``--out``."""
    args = common.parse(NAME, __doc__, PRESETS, DEFAULT_PRESET, argv)
    cfg, mode = args.config, args.preset
    acts = cfg.activations
    t0 = time.perf_counter()
    bar = common.progress(len(acts) * cfg.steps, NAME)
    results = {}
    for act in acts:
        bar.set_postfix_str(act)
        results[act] = run_activation(act, cfg, args.seed, args.out,
                                      on_step=lambda s, m: bar.update())
    bar.close()
    figures = plot(results, cfg, args.out)
    metrics = {
        "mode": mode, "seed": args.seed, "activations": list(acts), "inits": list(INITS),
        "neg_bias": NEG_BIAS, "baseline": jrnn.tasks.ADDING_BASELINE,
        "config": cfg.measured(),
        "results": results, "conclusions": conclusions(results, cfg),
    }
    common.write_metrics(args.out, metrics)
    common.write_report(args.out, report(results, cfg, mode, figures))
    wall = time.perf_counter() - t0
    common.write_run_info(args, wall_time_s=wall, mode=mode)
    common.print_table(HEADERS, table_rows(results), title=f"{NAME} ({mode}), {wall:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
