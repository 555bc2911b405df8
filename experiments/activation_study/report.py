"""The activation study's report: ``report_template.md`` filled in, and the summary table."""

from __future__ import annotations

import json
import math
import os
import string
from collections.abc import Sequence

import jrnn
from experiments import common
from experiments.activation_study.config import (
    DIVERGED_FACTOR,
    EDGE_TOLERANCE,
    REMEDY_CELLS,
    SIGNIFICANCE,
    Config,
    config_name,
)
from experiments.activation_study.verdicts import Verdict, fmt_pm

TEMPLATE = os.path.join(os.path.dirname(__file__), "report_template.md")
SUMMARY_HEADERS = ["config", "gain", "log10 norm at T", "lambda_max", "lambda_max, wide",
                   "mean field 0.5 ln chi", "measured 0.5 ln chi", "pascanu",
                   "adding MSE / baseline", "solved", "dead before/after"]


def _num(v, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def summary_rows(init_results: dict, train_results: dict) -> list[list]:
    """One row per configuration: propagation, exponents, theory, training, dead units."""
    rows = []
    for name, r in init_results.items():
        tr = train_results.get(name, {})
        wide = r.get("lyapunov_max_wide")
        theory = r.get("mean_field", r.get("gated_theory", {})).get("log_growth")
        dead = ("-" if "dead_fraction_after" not in tr else
                f"{100 * tr['dead_fraction_before']['value']:.0f}%/"
                f"{100 * tr['dead_fraction_after']['value']:.0f}%")
        lam = fmt_pm(r["lyapunov_max"], 3)
        if r["diverged_trajectories"]:
            lam += f" ({r['diverged_trajectories']}/{r['trajectories']} diverged)"
        lam_w = "-" if wide is None else fmt_pm(wide["lyapunov_max"], 3) + (
            f" ({wide['diverged_trajectories']}/{wide['trajectories']} diverged)"
            if wide["diverged_trajectories"] else "")
        n = len(tr.get("final_loss_per_seed", ()))
        rows.append([
            name, f"{r['gain']:.3f}" if "gain" in r else "-",
            fmt_pm(r["log10_norm_at_T"], 1), lam, lam_w, _num(theory),
            fmt_pm(r["log_growth"], 3), _num(r.get("pascanu_bound_median")),
            ("not trained" if not tr else f"diverged on {tr['diverged_seeds']}/{n} seeds"
             if tr["diverged_seeds"] else fmt_pm(tr["final_over_baseline"], 3)),
            f"{tr['solved_seeds']}/{n}" if tr else "-", dead,
        ])
    return rows


def how_run(cfg: Config, mode: str, info: dict, trained: Sequence[str]) -> str:
    """The "How this was run" section: command, commit, versions, configuration, time."""
    git = info.get("git", {})
    commit = (git.get("commit") or "unknown")[:12] + (" (uncommitted changes)"
                                                       if git.get("dirty") else "")
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items() if v)
    cpu = info.get("stage_cpu_times_s", {})
    stages = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.0f} s"
                       + (f" ({cpu[k]:.0f} s CPU)" if k in cpu else "")
                       for k, v in info.get("stage_times_s", {}).items())
    return "\n".join([
        f"- Command: `{' '.join(info.get('command', []))}` (preset `{mode}`, seed "
        f"{info.get('seed')}); outputs in `{info.get('out')}/`, training checkpoints in "
        f"`{info.get('out')}/checkpoints/` (a rerun resumes from them).",
        f"- jrnn commit {commit}; {versions}; Python {info.get('python')}; backend "
        f"{info.get('backend')} ({info.get('device_kind')}, {info.get('cpu_count')} CPUs).",
        f"- At initialisation: width N = {cfg.hidden}, lag T = {cfg.T}, {cfg.sequences} input "
        f"sequences x {cfg.seeds} seeds; lambda_max from {cfg.lyap_T}-step trajectories "
        f"(warm-up {cfg.lyap_warmup}) at N = {cfg.hidden} and again at N = {cfg.lyap_hidden}.",
        f"- Training (adding problem): T = {cfg.train_T}, width {cfg.train_hidden}, batch "
        f"{cfg.train_batch}, {cfg.train_steps} Adam steps (lr {cfg.lr:g}, clip {cfg.clip:g}), "
        f"{cfg.seeds} seeds, {cfg.eval_size} held-out sequences; trained: "
        f"{', '.join(trained) or 'none'}.",
        f"- Flossed row: {cfg.floss_steps} Adam steps (lr {cfg.floss_lr:g}) on the "
        f"{cfg.floss_k} leading exponents, {cfg.floss_batch} sequences of "
        f"{cfg.floss_warmup} + {cfg.floss_T} steps per update.",
        f"- Wall time {info.get('wall_time_s', float('nan')):.0f} s ({stages}; CPU time counts "
        "all threads of this process and is less sensitive than wall time to other jobs on the "
        "machine); see `run_info.json` for the full config and the device.",
    ])


def report(cfg: Config, mode: str, rows: list[list], found: Sequence[str],
           verdicts: Sequence[Verdict], figures: Sequence[str], sigma_u2: float,
           remedies: Sequence[str], run_info_path: str, train_plan) -> str:
    """The Markdown report: ``report_template.md`` with the numbers of this run."""
    with open(TEMPLATE) as fh:
        template = string.Template(fh.read())
    with open(run_info_path) as fh:
        info = json.load(fh)
    trained = [config_name(f, a, "standard") for f, a in train_plan]
    return template.substitute(
        mode=mode, hidden=cfg.hidden, T=cfg.T, sequences=cfg.sequences, seeds=cfg.seeds,
        sigma_u2=f"{sigma_u2:.4f}", significance=f"{SIGNIFICANCE:g}",
        edge_tol=f"{EDGE_TOLERANCE:g}", diverged=f"{DIVERGED_FACTOR:g}",
        edge_factor=f"{math.exp(100 * EDGE_TOLERANCE):.1f}", lyap_hidden=cfg.lyap_hidden,
        remedies="; ".join(f"**{r}**: {REMEDY_CELLS[r][1]}" for r in remedies),
        claims=common.table(["claim", "verdict", "evidence"],
                            [[v.claim, v.verdict, v.evidence] for v in verdicts]),
        findings="\n".join(f"- {c}" for c in found),
        lyap_T=cfg.lyap_T, lyap_warmup=cfg.lyap_warmup, train_steps=cfg.train_steps,
        lr=f"{cfg.lr:g}", train_T=cfg.train_T, baseline=f"{jrnn.tasks.ADDING_BASELINE:.4f}",
        summary=common.table(SUMMARY_HEADERS, rows),
        figures="\n".join(f"![{f}]({f})" for f in figures),
        how=how_run(cfg, mode, info, trained),
    )
