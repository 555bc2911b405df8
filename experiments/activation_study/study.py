"""The activation study's run: measure every configuration, train, judge, write."""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import jrnn
from experiments import common
from experiments.activation_study import measure, plots, verdicts
from experiments.activation_study.config import (
    DEFAULT_PRESET,
    NAME,
    PRESETS,
    VANISHED,
    Config,
    config_name,
    make_cell,
)
from experiments.activation_study.report import SUMMARY_HEADERS, report, summary_rows

# The stages the outer progress bar counts (each has its own bar over its configurations).
STAGES = ("at initialisation", "lambda_max at width", "training", "figures and report")


def _inits(family: str, act: str | None, sigma_u2: float) -> dict:
    inits = {"standard": 1.0}
    if family == "elman" and math.isfinite(measure.critical_gain(act, sigma_u2)):
        inits["critical"] = measure.critical_gain(act, sigma_u2)
    return inits


def measure_all(cfg: Config, plan, seed: int, sigma_u2: float, bar):
    """Every configuration at initialisation (standard and, for Elman, critical gain).

    Returns ``(init_results, props, svs, gates)``; ``props`` and ``svs`` (the batched
    ``Propagation`` and ``SingularValueStats`` records of each configuration) feed the figures
    and stay out of metrics.json.
    """
    seeds = jnp.arange(seed, seed + cfg.seeds)
    init_results, props, svs, gates = {}, {}, {}, {}
    for family, act in plan:
        bar.set_postfix_str(config_name(family, act, "standard"))
        cell = make_cell(family, act, cfg.hidden)
        inits = _inits(family, act, sigma_u2)
        raw_all = jax.device_get(jrnn.parallel.sweep(
            functools.partial(measure.measure_at_init, family, cell, cfg),
            gain=jnp.asarray(list(inits.values())), seed=seeds,
        ))
        for i, (init, gain) in enumerate(inits.items()):
            name = config_name(family, act, init)
            raw = jax.tree_util.tree_map(lambda a, i=i: a[i], raw_all)
            r = measure.summarise_init(raw, cfg)
            r.update(family=family, activation=act, init=init, cell=cell.describe())
            if family == "elman":
                r["gain"] = gain
                r["input_drive_variance"] = sigma_u2
                r["mean_field"] = measure.theory_for(act, gain, sigma_u2)
            else:
                gt = measure.gated_theory(family, cell, cfg, seed)
                if gt is not None:
                    r["gated_theory"] = gt
            init_results[name] = r
            props[name] = measure.propagation_record(raw, cfg)
            svs[name] = measure.sv_stats(raw)
        g = measure.gate_values_at_init(family, cell, cfg, seed)
        if g is not None:
            gates[family] = g
        bar.update()
    return init_results, props, svs, gates


def has_theory(family: str, act: str | None) -> bool:
    """Rows with a mean-field prediction of lambda_max: Elman, and the gated GRU / LSTM."""
    return family == "elman" or make_cell(family, act, 4).name in ("gru", "lstm")


def measure_wide(cfg: Config, plan, seed: int, sigma_u2: float, bar) -> dict:
    """``lambda_max`` at width ``cfg.lyap_hidden`` of every row with a mean-field prediction;
    ``{name: record}``. Elman rows keep the study's drive variance ``sigma_u2`` (``W_xh``
    rescaled), so their gains and predictions are those of the rows at ``cfg.hidden``."""
    seeds = jnp.arange(seed, seed + cfg.seeds)
    N = cfg.lyap_hidden
    s2 = sigma_u2
    scale = math.sqrt(sigma_u2 / measure.input_drive_variance(make_cell("elman", "tanh", N), N))
    out = {}
    for family, act in plan:
        bar.set_postfix_str(f"{config_name(family, act, 'standard')}, N = {N}")
        cell = make_cell(family, act, N)
        inits = _inits(family, act, s2)
        raw = jax.device_get(jrnn.parallel.sweep(
            functools.partial(measure.lyapunov_at_width, family, cell, cfg, scale),
            gain=jnp.asarray(list(inits.values())), seed=seeds))
        for i, (init, gain) in enumerate(inits.items()):
            lam = np.asarray(raw["lyapunov_max"][i], np.float64).ravel()
            rec = {"hidden": N, "gain": gain, "input_drive_variance": s2,
                   "lyapunov_max": measure.exponent_stats(lam),
                   "diverged_trajectories": int(np.sum(np.isnan(lam) | (lam == np.inf))),
                   "trajectories": int(lam.size)}
            if family == "elman":
                rec["theory_lambda_max"] = measure.theory_for(act, gain, s2)["lambda_max"]
            else:
                rec["theory_lambda_max"] = measure.gated_theory(family, cell, cfg,
                                                                seed)["log_growth"]
            out[config_name(family, act, init)] = rec
        bar.update()
    return out


def train_all(cfg: Config, plan, seed: int, out: str, bar) -> dict:
    """Every configuration of ``plan`` trained on the adding problem (standard init)."""
    train_results = {}
    for family, act in plan:
        name = config_name(family, act, "standard")
        bar.set_postfix_str(f"train {name}")
        cell = make_cell(family, act, cfg.train_hidden)
        train_results[name] = measure.measure_training(
            family, cell, cfg, seed, out, name, on_step=lambda s, m: bar.update()
        )
        pw = cell.pointwise
        train_results[name]["activation"] = pw.activation.name if pw else None
    return train_results


def lyapunov_rows(init_results: dict, wide: dict) -> list[dict]:
    """One row per configuration for lyapunov.png and metrics.json: the exponent at the
    study's width, at ``lyap_hidden`` and the mean-field prediction (None where none)."""
    rows = []
    for name, r in init_results.items():
        w = wide.get(name, {})
        rows.append({
            "config": name, "family": r["family"], "activation": r["activation"],
            "init": r["init"],
            "lyapunov_max": r["lyapunov_max"]["value"],
            "lyapunov_max_stderr": r["lyapunov_max"]["stderr"],
            "lyapunov_max_wide": w.get("lyapunov_max", {}).get("value"),
            "lyapunov_max_wide_stderr": w.get("lyapunov_max", {}).get("stderr"),
            "wide_hidden": w.get("hidden"),
            "theory_lambda_max": w.get("theory_lambda_max"),
            "pascanu_bound": r.get("pascanu_bound_median"),
        })
    return rows


def main(argv=None) -> dict:
    """Runs the study; writes metrics.json, report.md, run_info.json and PNGs under ``--out``."""
    from experiments import activation_study

    args = common.parse(NAME, activation_study.__doc__, PRESETS, DEFAULT_PRESET, argv)
    cfg, mode = args.config, args.preset
    acts = cfg.activations if cfg.activations is not None else tuple(jrnn.activations.names())
    remedies = cfg.cells
    t0 = time.perf_counter()
    timings, cpu = {}, {}  # wall and process CPU seconds per stage (CPU: load-independent)

    plan = [("elman", a) for a in acts] + [(f, None) for f in remedies]
    wide_plan = [(f, a) for f, a in plan if has_theory(f, a)]
    train_plan = [(f, a) for f, a in plan if cfg.trains(config_name(f, a, "standard"))]
    stages = common.progress(len(STAGES), f"{NAME} ({mode})", position=0, unit="stage")

    def stage(i, total, unit):
        stages.set_postfix_str(STAGES[i])
        return common.progress(total, STAGES[i], position=1, leave=False, unit=unit)

    sigma_u2 = measure.input_drive_variance(make_cell("elman", "tanh", cfg.hidden), cfg.hidden)
    t, c = time.perf_counter(), time.process_time()
    bar = stage(0, len(plan), "config")
    init_results, props, svs, gates = measure_all(cfg, plan, args.seed, sigma_u2, bar)
    bar.close()
    stages.update()
    timings["at_init_s"] = time.perf_counter() - t
    cpu["at_init_s"] = time.process_time() - c
    print(f"[{NAME}] stage at_init: {timings['at_init_s']:.0f} s ({cpu['at_init_s']:.0f} s CPU)",
          flush=True)

    t, c = time.perf_counter(), time.process_time()
    bar = stage(1, len(wide_plan), "config")
    wide = measure_wide(cfg, wide_plan, args.seed, sigma_u2, bar)
    bar.close()
    stages.update()
    timings["lyapunov_at_width_s"] = time.perf_counter() - t
    cpu["lyapunov_at_width_s"] = time.process_time() - c
    print(f"[{NAME}] stage lyapunov_at_width: {timings['lyapunov_at_width_s']:.0f} s "
          f"({cpu['lyapunov_at_width_s']:.0f} s CPU)", flush=True)
    for name, w in wide.items():
        init_results[name]["lyapunov_max_wide"] = w
    lyap_rows = lyapunov_rows(init_results, wide)

    t, c = time.perf_counter(), time.process_time()
    bar = stage(2, len(train_plan) * cfg.train_steps, "step")
    train_results = train_all(cfg, train_plan, args.seed, args.out, bar)
    bar.close()
    stages.update()
    timings["training_s"] = time.perf_counter() - t
    cpu["training_s"] = time.process_time() - c
    print(f"[{NAME}] stage training: {timings['training_s']:.0f} s ({cpu['training_s']:.0f} s CPU)",
          flush=True)

    t, c = time.perf_counter(), time.process_time()
    stages.set_postfix_str(STAGES[3])
    e = verdicts.Evidence.of(init_results, train_results, gates, cfg.T, cfg.train_T)
    judged = verdicts.judge(e)
    no_critical = [a for a in acts if not math.isfinite(measure.critical_gain(a, sigma_u2))]
    found = verdicts.findings(e, lyap_rows, no_critical)

    rows = summary_rows(init_results, train_results)
    metrics = {
        "mode": mode, "seed": args.seed, "config": cfg.measured(), "activations": list(acts),
        "remedies": list(remedies), "vanished_threshold_ln": VANISHED,
        "trained": [config_name(f, a, "standard") for f, a in train_plan],
        "input_drive_variance": sigma_u2,
        "critical_gains": {a: measure.critical_gain(a, sigma_u2) for a in acts},
        "critical_gains_undriven": {a: measure.critical_gain(a, 0.0) for a in acts},
        "gates_at_init": gates,
        "at_init": init_results, "lyapunov": lyap_rows, "training": train_results,
        "claims": [v.as_dict() for v in judged], "conclusions": found,
    }
    common.write_metrics(args.out, metrics)  # before the figures: the numbers come first
    figures = [plots.plot_propagation(init_results, props, args.out, cfg.T),
               plots.plot_singular_values(init_results, svs, args.out, cfg.T, cfg.seeds),
               plots.plot_lyapunov(lyap_rows, args.out, cfg)]
    if train_results:
        figures.append(plots.plot_training(train_results, args.out, cfg.train_T))
    wall = time.perf_counter() - t0
    timings["figures_report_s"] = time.perf_counter() - t
    cpu["figures_report_s"] = time.process_time() - c
    info = common.write_run_info(args, wall_time_s=wall, mode=mode, stage_times_s=timings,
                                 stage_cpu_times_s=cpu)
    common.write_report(args.out, report(cfg, mode, rows, found, judged, figures, sigma_u2,
                                         remedies, info, train_plan))
    stages.update()
    stages.close()
    common.print_table(SUMMARY_HEADERS, rows, title=f"{NAME} ({mode}), {wall:.0f} s")
    common.print_table(["claim", "verdict"], [[v.claim, v.verdict] for v in judged])
    print(f"\nReport: {args.out}/report.md; checkpoints: {args.out}/checkpoints/")
    return metrics
