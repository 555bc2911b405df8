"""The activation study's run: measure every configuration, train, judge, write."""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp

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


def measure_all(cfg: Config, plan, seed: int, sigma_u2: float, bar):
    """Every configuration at initialisation (standard and, for Elman, critical gain).

    Returns ``(init_results, props, svs, lyap_rows, gates)``; ``props`` and ``svs`` (the
    batched ``Propagation`` and ``SingularValueStats`` records of each configuration) feed the
    figures and stay out of metrics.json.
    """
    seeds = jnp.arange(seed, seed + cfg.seeds)
    init_results, props, svs, lyap_rows, gates = {}, {}, {}, [], {}
    for family, act in plan:
        bar.set_postfix_str(config_name(family, act, "standard"))
        cell = make_cell(family, act, cfg.hidden)
        inits = {"standard": 1.0}
        if family == "elman" and math.isfinite(measure.critical_gain(act, sigma_u2)):
            inits["critical"] = measure.critical_gain(act, sigma_u2)
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
            lyap_rows.append({
                "config": name, "activation": act, "init": init,
                "lyapunov_max": r["lyapunov_max"]["value"],
                "lyapunov_max_stderr": r["lyapunov_max"]["stderr"],
                "theory_lambda_max": r.get("mean_field", {}).get("lambda_max"),
                "pascanu_bound": r.get("pascanu_bound_median"),
            })
        g = measure.gate_values_at_init(family, cell, cfg, seed)
        if g is not None:
            gates[family] = g
        bar.update()
    return init_results, props, svs, lyap_rows, gates


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


def main(argv=None) -> dict:
    """Runs the study; writes metrics.json, report.md, run_info.json and PNGs under ``--out``."""
    from experiments import activation_study

    args = common.parse(NAME, activation_study.__doc__, PRESETS, DEFAULT_PRESET, argv)
    cfg, mode = args.config, args.preset
    acts = cfg.activations if cfg.activations is not None else tuple(jrnn.activations.names())
    remedies = cfg.cells
    t0 = time.perf_counter()

    plan = [("elman", a) for a in acts] + [(f, None) for f in remedies]
    train_plan = plan if cfg.train else []
    bar = common.progress(len(plan) + len(train_plan) * cfg.train_steps, NAME)
    sigma_u2 = measure.input_drive_variance(make_cell("elman", "tanh", cfg.hidden), cfg.hidden)
    init_results, props, svs, lyap_rows, gates = measure_all(cfg, plan, args.seed, sigma_u2, bar)
    train_results = train_all(cfg, train_plan, args.seed, args.out, bar)
    bar.close()

    figures = [plots.plot_propagation(init_results, props, args.out, cfg.T),
               plots.plot_singular_values({k: v for k, v in svs.items()
                                           if not k.endswith("-critical")}, args.out,
                                          cfg.T, cfg.seeds),
               plots.plot_lyapunov(lyap_rows, args.out)]
    if train_results:
        figures.append(plots.plot_training(train_results, args.out, cfg.train_T))
    judged = verdicts.claims(init_results, train_results, gates, cfg.T)
    found = verdicts.findings(init_results, train_results, lyap_rows, cfg.T, gates)
    no_critical = verdicts.no_critical_gain(
        [a for a in acts if not math.isfinite(measure.critical_gain(a, sigma_u2))])
    if no_critical is not None:
        found.append(no_critical)

    rows = summary_rows(init_results, train_results)
    metrics = {
        "mode": mode, "seed": args.seed, "config": cfg.measured(), "activations": list(acts),
        "remedies": list(remedies), "vanished_threshold_ln": VANISHED,
        "input_drive_variance": sigma_u2,
        "critical_gains": {a: measure.critical_gain(a, sigma_u2) for a in acts},
        "critical_gains_undriven": {a: measure.critical_gain(a, 0.0) for a in acts},
        "gates_at_init": gates,
        "at_init": init_results, "lyapunov": lyap_rows, "training": train_results,
        "claims": [v.as_dict() for v in judged], "conclusions": found,
    }
    common.write_metrics(args.out, metrics)
    common.write_report(args.out, report(cfg, mode, rows, found, judged, figures, sigma_u2,
                                         remedies))
    wall = time.perf_counter() - t0
    common.write_run_info(args, wall_time_s=wall, mode=mode)
    common.print_table(SUMMARY_HEADERS, rows, title=f"{NAME} ({mode}), {wall:.0f} s")
    print("\n" + "\n".join(f"- {c}" for c in found))
    print(f"\nReport: {args.out}/report.md")
    return metrics
