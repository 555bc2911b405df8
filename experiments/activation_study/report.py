"""The activation study's report: ``report_template.md`` filled in, and the summary table."""

from __future__ import annotations

import os
import string
from collections.abc import Sequence

import jrnn
from experiments import common
from experiments.activation_study.config import REMEDY_CELLS, SIGNIFICANCE, Config
from experiments.activation_study.verdicts import Verdict, fmt_pm

TEMPLATE = os.path.join(os.path.dirname(__file__), "report_template.md")
SUMMARY_HEADERS = ["config", "gain", "log10 norm at T", "lambda_max", "theory",
                   "0.5 ln chi", "theory chi", "pascanu", "adding MSE / baseline", "solved",
                   "dead before/after"]


def summary_rows(init_results: dict, train_results: dict) -> list[list]:
    """One row per configuration: propagation, exponents, theory, training, dead units."""
    rows = []
    for name, r in init_results.items():
        tr = train_results.get(name, {})
        mf = r.get("mean_field", {}).get("lambda_max")
        th_growth = r.get("mean_field", r.get("gated_theory", {})).get("log_growth")
        dead = ("-" if "dead_fraction_after" not in tr else
                f"{100 * tr['dead_fraction_before']['value']:.0f}%/"
                f"{100 * tr['dead_fraction_after']['value']:.0f}%")
        lam = fmt_pm(r["lyapunov_max"], 3)
        if r["diverged_trajectories"]:
            lam += f" ({r['diverged_trajectories']}/{r['trajectories']} diverged)"
        rows.append([
            name, f"{r['gain']:.3f}" if "gain" in r else "-",
            fmt_pm(r["log10_norm_at_T"], 1), lam, "-" if mf is None else f"{mf:.3f}",
            fmt_pm(r["log_growth"], 3), "-" if th_growth is None else f"{th_growth:.3f}",
            r.get("pascanu_bound_median", "-"),
            ("-" if not tr else f"diverged on {tr['diverged_seeds']}/"
             f"{len(tr['final_loss_per_seed'])} seeds" if tr["diverged_seeds"] else
             fmt_pm(tr["final_over_baseline"], 3)),
            f"{tr['solved_seeds']}/{len(tr['final_loss_per_seed'])}" if tr else "-", dead,
        ])
    return rows


def report(cfg: Config, mode: str, rows: list[list], found: Sequence[str],
           verdicts: Sequence[Verdict], figures: Sequence[str], sigma_u2: float,
           remedies: Sequence[str]) -> str:
    """The Markdown report: ``report_template.md`` with the numbers of this run."""
    with open(TEMPLATE) as fh:
        template = string.Template(fh.read())
    return template.substitute(
        mode=mode, hidden=cfg.hidden, T=cfg.T, sequences=cfg.sequences, seeds=cfg.seeds,
        sigma_u2=f"{sigma_u2:.4f}", significance=f"{SIGNIFICANCE:g}",
        remedies="; ".join(f"**{r}**: {REMEDY_CELLS[r][1]}" for r in remedies),
        claims=common.table(["claim", "verdict", "evidence"],
                            [[v.claim, v.verdict, v.evidence] for v in verdicts]),
        findings="\n".join(f"- {c}" for c in found),
        lyap_T=cfg.lyap_T, lyap_warmup=cfg.lyap_warmup, train_steps=cfg.train_steps,
        lr=f"{cfg.lr:g}", train_T=cfg.train_T, baseline=f"{jrnn.tasks.ADDING_BASELINE:.4f}",
        summary=common.table(SUMMARY_HEADERS, rows),
        figures="\n".join(f"![{f}]({f})" for f in figures),
    )
