"""The activation study's figures, drawn by :mod:`jrnn.plot`: propagation, singular values,
Lyapunov exponents, training.

Every panel is one ``jrnn.plot`` call (family colours, units, exact zeros and non-finite values
marked with their count); this module only chooses the panels, titles and legends.
"""

from __future__ import annotations

import math

import numpy as np

import jrnn
import jrnn.plot
from experiments import common


def _panel_of(r: dict) -> str:
    if r["family"] != "elman":
        return "remedy cells"
    act = jrnn.activations.get(r["activation"])
    if act.saturating:
        return "saturating activations"
    if act.output_range[1] == math.inf and act.name != "identity":
        return "unbounded (ReLU family)"
    return "other activations"


PANELS = ("saturating activations", "unbounded (ReLU family)", "other activations",
          "remedy cells")


def _label(r: dict) -> str:
    if r["family"] != "elman":
        return r["family"]
    return r["activation"] + (", critical g*" if r["init"] == "critical" else "")


def _legend_below(ax, ncol: int = 1) -> None:
    """The legend under the panel, so it never hides a curve."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, ncol=ncol, loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), framealpha=0.9)


def plot_propagation(init_results: dict, props: dict, out: str, T: int) -> str:
    """Small multiples, one ``jrnn.plot.propagation`` per family: median over seeds x sequences,
    IQR band, fitted rate; critical-gain curves share their activation's colour, dashed."""
    present = [p for p in PANELS if any(_panel_of(r) == p for r in init_results.values())]
    fig, axes = jrnn.plot.subplots(1, len(present), width=5.2, height=5.6)
    for ax, panel in zip(axes[0], present):
        records = {_label(r): props[name] for name, r in init_results.items()
                   if _panel_of(r) == panel}
        jrnn.plot.propagation(records, ax=ax)
        ax.set_title(f"{panel}, T = {T}", fontsize=10)
        _legend_below(ax)
    fig.suptitle("Gradient propagation at initialisation: median over seeds x sequences, "
                 "IQR shaded; y axis not clipped, exact zeros (-inf) marked on the lower edge",
                 fontsize=10)
    return common.save_figure(fig, out, "propagation")


def plot_singular_values(svs: dict, out: str, T: int, seeds: int) -> str:
    """One box per configuration (``jrnn.plot.singular_values``), exact zeros counted."""
    fig, axes = jrnn.plot.subplots(1, 1, width=max(7.0, 0.55 * len(svs) + 3.0), height=5.0)
    ax = jrnn.plot.singular_values(svs, mode="boxes", ax=axes[0, 0])
    ax.set_title("Step-Jacobian singular values at initialisation (standard init).\n"
                 f"Box: time average over T = {T} steps of log10 sigma_i(J_t), indices i of "
                 f"{seeds} seeds pooled (one sequence each)", fontsize=10)
    ax.set_xlabel("configuration")
    _legend_below(ax, ncol=2)
    return common.save_figure(fig, out, "singular_values")


def plot_lyapunov(rows: list[dict], out: str) -> str:
    """Measured against mean-field ``lambda_max`` (``jrnn.plot.theory_vs_measured``)."""
    pts = [r for r in rows if r.get("theory_lambda_max") is not None]
    fig, axes = jrnn.plot.subplots(1, 1, width=6.4, height=6.4)
    ax = axes[0, 0]
    nan = float("nan")
    num = lambda v: nan if v is None else float(v)  # noqa: E731
    jrnn.plot.theory_vs_measured(
        [num(r["theory_lambda_max"]) for r in pts], [num(r["lyapunov_max"]) for r in pts],
        stderr=[num(r["lyapunov_max_stderr"]) for r in pts],
        labels=[r["activation"] for r in pts],
        groups=[f"Elman, {'critical g*' if r['init'] == 'critical' else 'standard'} init"
                for r in pts], ax=ax)
    left = len(rows) - len(pts)
    ax.set_title("Largest Lyapunov exponent (nats per step): mean field 0.5 ln chi vs measured"
                 + (f"\n({left} configuration(s) without a mean-field prediction not drawn)"
                    if left else ""), fontsize=10)
    return common.save_figure(fig, out, "lyapunov")


def plot_training(train_results: dict, out: str, T: int) -> str:
    """Held-out loss (``jrnn.plot.training``: median and min-max band over seeds) per group,
    and ``||dL/dh_t||`` after training."""
    groups = {"Elman activations": [n for n in train_results if n.startswith("elman")],
              "remedy cells": [n for n in train_results if not n.startswith("elman")]}
    groups = {k: v for k, v in groups.items() if v}
    fig, axes = jrnn.plot.subplots(1, len(groups) + 1, width=5.4, height=5.0)
    axes = axes[0]
    short = lambda name: name.removeprefix("elman-").removesuffix("-standard")  # noqa: E731
    base = jrnn.tasks.ADDING_BASELINE
    for ax, (title, names) in zip(axes, groups.items()):
        runs = {}
        for name in names:
            r = train_results[name]
            step = list(r["eval_step"])
            runs[short(name)] = [{"step": step, "loss": list(seed_loss)}
                                 for seed_loss in r["eval_loss_per_seed"]]
        jrnn.plot.training(runs, "loss", ax=ax, log=True)
        ax.axhline(base, color="black", linestyle="--", linewidth=1.0,
                   label=f"baseline {base:.3g} (always predict 1)")
        ax.set_ylabel("held-out MSE (median over seeds; band: min-max)")
        ax.set_title(f"Adding problem, T = {T}: {title}", fontsize=10)
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
    ax = axes[-1]
    labels = [short(n) for n in train_results]
    for sty, label, r in zip(jrnn.plot.style.styles(labels), labels, train_results.values()):
        g1 = np.asarray(r["grad_hidden_after"], np.float64)
        t = np.arange(1, g1.size + 1)
        ok = np.isfinite(g1) & (g1 > 0)
        ax.plot(t[ok], g1[ok], color=sty["color"], linestyle=sty["linestyle"], linewidth=1.2,
                label=label)
        # an exactly zero gradient has no place on a log axis: marked, with its count
        jrnn.plot.style.mark_nonfinite(ax, t, np.where(g1 == 0, -np.inf, g1),
                                       color=sty["color"], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("time step t (steps)")
    ax.set_ylabel("||dL/dh_t|| after training (median over batch and seeds)")
    ax.set_title(f"Gradient reaching each step, T = {T}", fontsize=10)
    ax.grid(True, alpha=0.25, linewidth=0.6)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    return common.save_figure(fig, out, "training")
