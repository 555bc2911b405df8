"""The activation study's figures: propagation, singular values, Lyapunov exponents, training."""

from __future__ import annotations

import math

import numpy as np

import jrnn
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


def plot_propagation(init_results: dict, out: str, T: int) -> str:
    """Small multiples: one panel per family; solid standard, dashed critical; IQR shaded."""
    plt = common.pyplot()
    present = [p for p in PANELS if any(_panel_of(r) == p for r in init_results.values())]
    fig, axes = plt.subplots(1, len(present), figsize=(4.6 * len(present), 4.4), sharey=True,
                             constrained_layout=True, squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax, panel in zip(axes[0], present):
        labels = []
        for r in init_results.values():
            if _panel_of(r) != panel:
                continue
            label = r["activation"] if r["family"] == "elman" else r["family"]
            if label not in labels:
                labels.append(label)
            c = cmap(labels.index(label) % 20)
            lag = np.asarray(r["lag"])
            ls = "--" if r["init"] == "critical" else "-"
            ax.plot(lag, np.asarray(r["log_norm_median"]) / math.log(10), ls=ls, color=c,
                    lw=1.4, label=label if r["init"] != "critical" else None)
            ax.fill_between(lag, np.asarray(r["log_norm_q25"]) / math.log(10),
                            np.asarray(r["log_norm_q75"]) / math.log(10), color=c, alpha=0.12)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(panel + (" (dashed: critical g*)" if panel != "remedy cells" else ""),
                     fontsize=10)
        ax.set_xlabel("lag T - t")
        ax.set_ylim(max(ax.get_ylim()[0], -40), min(ax.get_ylim()[1], 20))
        ax.legend(fontsize=7, ncol=2, loc="lower left")
    axes[0][0].set_ylabel("log10 ||d h_T / d h_t||  (median, IQR shaded)")
    return common.save_figure(fig, out, "propagation")


def plot_singular_values(samples: dict, out: str) -> str:
    plt = common.pyplot()
    names = list(samples)
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(names)), 4.5), constrained_layout=True)
    data = [np.log10(np.maximum(samples[n], 1e-30)) for n in names]
    ax.boxplot(data, whis=(5, 95), showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right", fontsize=8)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("log10 singular value of J_t (5-95% whiskers)")
    ax.set_title("Per-step Jacobian singular values at initialisation")
    return common.save_figure(fig, out, "singular_values")


def plot_lyapunov(rows: list[dict], out: str) -> str:
    """Measured vs predicted lambda_max on a diagonal, with standard errors."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 5.6), constrained_layout=True)
    pts = [r for r in rows if r.get("theory_lambda_max") is not None
           and math.isfinite(r["theory_lambda_max"]) and math.isfinite(r["lyapunov_max"])]
    for init, marker in (("standard", "o"), ("critical", "s")):
        sel = [r for r in pts if r.get("init") == init]
        if sel:
            ax.errorbar([r["theory_lambda_max"] for r in sel], [r["lyapunov_max"] for r in sel],
                        yerr=[r["lyapunov_max_stderr"] or 0.0 for r in sel], fmt=marker,
                        ms=4, capsize=2, label=f"Elman, {init}")
            for r in sel:
                ax.annotate(r["activation"], (r["theory_lambda_max"], r["lyapunov_max"]),
                            fontsize=6, xytext=(2, 2), textcoords="offset points")
    if pts:
        lo = min(min(r["theory_lambda_max"] for r in pts), min(r["lyapunov_max"] for r in pts))
        hi = max(max(r["theory_lambda_max"] for r in pts), max(r["lyapunov_max"] for r in pts))
        lo, hi = max(lo, -3.0), min(hi, 2.0)
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.7, label="measured = predicted")
    ax.axhline(0, color="grey", lw=0.5, ls=":")
    ax.axvline(0, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("mean-field prediction 0.5 ln chi (per step)")
    ax.set_ylabel("measured lambda_max (per step, +- stderr)")
    ax.set_title("Largest Lyapunov exponent: theory vs measurement")
    ax.legend(fontsize=8)
    return common.save_figure(fig, out, "lyapunov")


def plot_training(train_results: dict, out: str) -> str:
    """Held-out loss curves with min-max bands over seeds; ||dL/dh_t|| before/after."""
    plt = common.pyplot()
    groups = {"Elman activations": [n for n in train_results if n.startswith("elman")],
              "remedy cells": [n for n in train_results if not n.startswith("elman")]}
    groups = {k: v for k, v in groups.items() if v}
    fig, axes = plt.subplots(1, len(groups) + 1, figsize=(5.2 * (len(groups) + 1), 4.5),
                             constrained_layout=True, squeeze=False)
    axes = axes[0]
    cmap = plt.get_cmap("tab20")
    base = jrnn.tasks.ADDING_BASELINE
    for ax, (title, names) in zip(axes, groups.items()):
        for i, name in enumerate(names):
            r = train_results[name]
            ev = np.asarray(r["eval_loss_per_seed"], np.float64)  # (S, E)
            step = np.asarray(r["eval_step"])
            label = name.removeprefix("elman-").removesuffix("-standard")
            ax.plot(step, np.median(ev, axis=0), color=cmap(i % 20), lw=1.3, label=label)
            ax.fill_between(step, ev.min(axis=0), ev.max(axis=0), color=cmap(i % 20), alpha=0.12)
        ax.axhline(base, color="k", ls="--", lw=1, label="baseline 1/6")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"Adding problem: {title}", fontsize=10)
        ax.legend(fontsize=6, ncol=2)
    axes[0].set_ylabel("held-out MSE (median; band: min-max over seeds)")
    ax = axes[-1]
    for i, (name, r) in enumerate(train_results.items()):
        g1 = np.asarray(r["grad_hidden_after"])
        ax.plot(np.arange(1, g1.size + 1), g1, color=cmap(i % 20), lw=1,
                label=name.removeprefix("elman-").removesuffix("-standard"))
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t|| after training (median)")
    ax.set_title("Gradient reaching each step", fontsize=10)
    return common.save_figure(fig, out, "training")
