"""The activation study's figures: propagation, singular values, Lyapunov exponents, training.

Drawn with :mod:`jrnn.plot` and its style module (:mod:`jrnn.plot.style`): a colour per family
of activation or cell (blues saturating, reds the ReLU family, greens other activations, purples
gated cells, browns the other remedies), line styles cycling within a panel so neighbouring
shades differ, units in the labels (decades, nats per step, steps), and non-finite values
(exact zeros, overflow) marked with their count instead of being dropped. Nothing is clipped
silently: a panel with a floor says so and writes the cut curves' values at the cut.
"""

from __future__ import annotations

import math

import numpy as np

import jrnn
import jrnn.plot
from experiments import common

style = jrnn.plot.style
LN10 = math.log(10.0)
FLOOR = -30.0  # decades: propagation panels stop here and say which curves go below
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)),
              (0, (3, 1, 1, 1, 1, 1)), (0, (4, 2, 1, 2)))


def _label(r: dict) -> str:
    return r["family"] if r["family"] != "elman" else r["activation"]


def _panel_of(r: dict) -> str:
    if r["family"] == "elman":
        if r["init"] == "critical":
            return "Elman, critical gain g*"
        act = jrnn.activations.get(r["activation"])
        return ("Elman, saturating activations" if act.saturating
                else "Elman, non-saturating activations")
    return ("gated cells" if style.family_of(r["family"]) == "gated"
            else "other remedy cells")


PANELS = ("Elman, saturating activations", "Elman, non-saturating activations",
          "Elman, critical gain g*", "gated cells", "other remedy cells")


def _styles(labels) -> list[dict]:
    """Family colour (:func:`jrnn.plot.style.styles`) and a line style per position in the
    panel, so two members of a family differ in shade *and* dash pattern."""
    out = style.styles(labels)
    for i, s in enumerate(out):
        s["linestyle"] = LINESTYLES[i % len(LINESTYLES)]
    return out


def _legend(ax, ncol: int = 1) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, ncol=ncol, loc="upper center",
                  bbox_to_anchor=(0.5, -0.2), framealpha=0.9)  # below the x label


def plot_propagation(init_results: dict, props: dict, out: str, T: int) -> str:
    """One panel per family: median log10 ||d h_T/d h_t|| over seeds x sequences against the
    lag, the interquartile range as a bar at lag T, exact zeros and the floor annotated."""
    present = [p for p in PANELS if any(_panel_of(r) == p for r in init_results.values())]
    ncol = min(len(present), 3)
    nrow = math.ceil(len(present) / ncol)
    fig, axes = style.subplots(nrow, ncol, width=5.0, height=5.2)
    axes = axes.ravel()
    for ax in axes[len(present):]:
        ax.set_visible(False)
    for ax, panel in zip(axes, present):
        names = [n for n, r in init_results.items() if _panel_of(r) == panel]
        labels = [_label(init_results[n]) for n in names]
        lows = []
        for i, (name, label, sty) in enumerate(zip(names, labels, _styles(labels))):
            dec = np.asarray(props[name].log_spectral_norm, np.float64)[:, ::-1] / LN10
            lag = np.arange(dec.shape[1])
            with np.errstate(invalid="ignore"):
                med = np.array([np.quantile(c, 0.5, method="lower") for c in dec.T])
                q25, q75 = (np.array([np.quantile(c, q, method="lower") for c in dec.T])
                            for q in (0.25, 0.75))
            ok = np.isfinite(med)
            rate = init_results[name]["rate_per_step"]
            rate = (f"{rate:.3f} nats/step" if math.isfinite(rate) else "exactly 0 at T")
            shown = ok & (med >= FLOOR)  # below the floor: not drawn, the cut is marked
            ax.plot(lag[shown], med[shown], color=sty["color"],
                    linestyle=sty["linestyle"], linewidth=1.5, label=f"{label} ({rate})")
            if (ok & (med < FLOOR)).any():
                cut = int(np.argmax(ok & (med < FLOOR)))
                # An arrow where the curve leaves the axis; its value at lag T is in the
                # panel's note (texts here collided when two curves left at nearby lags).
                ax.annotate("", (cut, FLOOR), xytext=(cut, FLOOR + 3),
                            arrowprops={"arrowstyle": "->", "color": sty["color"]})
            if np.isfinite(q25[-1]) and np.isfinite(q75[-1]) and med[-1] >= FLOOR:
                ax.errorbar([lag[-1] * (1.02 + 0.012 * i)], [med[-1]],
                            yerr=[[med[-1] - q25[-1]], [q75[-1] - med[-1]]],
                            color=sty["color"], capsize=2, linewidth=1, fmt="none")
            if ok.any() and not ok.all():  # the median reaches an exact zero (-inf)
                first = int(np.argmax(~ok))
                ax.plot([first], [0.0], marker="v", markersize=8, color=sty["color"],
                        transform=ax.get_xaxis_transform(), clip_on=False, linestyle="none",
                        label=f"{label}: exactly 0 (-inf) from lag {first} "
                              f"({int(np.sum(dec[:, -1] == -np.inf))}/{dec.shape[0]} at T)",
                        gid=style.NONFINITE_GID)
            if np.isfinite(med[-1]) and med[-1] < FLOOR:
                lows.append(f"{label} {med[-1]:.0f}")
        if lows:
            ax.set_ylim(FLOOR - 1.0, None)
            style.note(ax, f"axis cut at {FLOOR:g} decades; at lag {T}: " + ", ".join(lows),
                       where="lower left")
        ax.axhline(0.0, color="black", linewidth=0.7, zorder=1)
        ax.set_xlabel("lag T - t (steps)")
        ax.set_ylabel("log10 ||d h_T / d h_t||_2 (decades)")
        ax.set_title(f"{panel}, T = {T}", fontsize=10)
        ax.grid(True, alpha=0.25, linewidth=0.6)
        _legend(ax)
    fig.suptitle("Gradient propagation at initialisation: median over seeds x sequences; bars "
                 f"right of lag {T}: interquartile range at lag {T}", fontsize=10)
    return common.save_figure(fig, out, "propagation")


def plot_singular_values(init_results: dict, svs: dict, out: str, T: int, seeds: int) -> str:
    """Per configuration (standard init), the time-averaged log10 sigma_i(J_t) of every index,
    pooled over seeds: a box of the finite values, the count of exact zeros below it."""
    from matplotlib.patches import Rectangle

    names = [n for n in svs if init_results[n]["init"] == "standard"]
    left = [n for n in svs if n not in names]
    fig, axes = style.subplots(1, 1, width=max(8.0, 0.5 * len(names) + 3.0), height=5.4)
    ax = axes[0, 0]
    labels = [n.removeprefix("elman-").removesuffix("-standard") for n in names]
    for i, (name, sty) in enumerate(zip(names, style.styles(labels))):
        st = svs[name]
        vals = np.asarray(st.mean_log, np.float64).ravel() / LN10
        top = np.asarray(st.mean_log, np.float64)[:, 0] / LN10
        fin = vals[np.isfinite(vals)]
        if fin.size:
            p5, p25, p50, p75, p95 = np.percentile(fin, [5, 25, 50, 75, 95])
            ax.add_patch(Rectangle(
                (i - 0.3, p25), 0.6, p75 - p25, facecolor=sty["color"], alpha=0.35,
                edgecolor=sty["color"]))
            ax.plot([i - 0.3, i + 0.3], [p50, p50], color=sty["color"], linewidth=2)
            ax.plot([i, i], [p5, p25], color=sty["color"], linewidth=1)
            ax.plot([i, i], [p75, p95], color=sty["color"], linewidth=1)
            ax.plot([i] * top.size, top, marker="D", linestyle="none", color=sty["color"],
                    markersize=4)
        zeros = int(np.sum(vals == -np.inf))
        if zeros:
            ax.plot([i], [0.0], marker="v", markersize=8, color=sty["color"],
                    transform=ax.get_xaxis_transform(), clip_on=False, linestyle="none",
                    gid=style.NONFINITE_GID)
            ax.annotate(f"{zeros}/{vals.size}\nexactly 0", (i, 0.0),
                        xycoords=ax.get_xaxis_transform(), xytext=(0, 10),
                        textcoords="offset points", ha="center", fontsize=7,
                        color=sty["color"])
    ax.axhline(0.0, color="black", linewidth=0.7)
    ax.set_xticks(range(len(names)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.7, len(names) - 0.3)
    ax.set_ylabel("time average of log10 sigma_i(J_t) (decades per step)")
    ax.grid(True, axis="y", alpha=0.25, linewidth=0.6)
    ax.set_title(
        "Step-Jacobian singular values at initialisation (standard init): for each index i, "
        f"the average of log10 sigma_i(J_t) over T = {T} steps;\nbox: quartiles, whiskers 5-95%, "
        f"over all indices of {seeds} seeds pooled (one sequence each); diamonds: sigma_1 per "
        "seed;\n'exactly 0': indices whose sigma_i(J_t) is exactly 0 at some step (rank lost "
        "to units that are off, e.g. ReLU)"
        + (f";\nnot shown: the {len(left)} critical-gain rows (their exponents are in "
           "lyapunov.png)" if left else ""), fontsize=9)
    return common.save_figure(fig, out, "singular_values")


def plot_lyapunov(rows: list[dict], out: str, cfg) -> str:
    """Measured lambda_max at ``cfg.lyap_hidden`` against the mean field (left; every row with
    a prediction: Elman and gated) and a zoom on the critical rows with the tolerance (right)."""
    from matplotlib.patches import Rectangle

    from experiments.activation_study.config import EDGE_TOLERANCE, SIGNIFICANCE

    pts = [r for r in rows if r.get("theory_lambda_max") is not None]
    fig, axes = style.subplots(1, 2, width=6.4, height=6.0)
    ax, zoom = axes[0]
    kind = {"standard": ("o", "Elman, W ~ N(0, 1/n)"), "critical": ("s", "Elman, critical g*")}
    shown_kinds = set()
    labels = [_label(r) for r in pts]
    bad = []
    for r, label, sty in zip(pts, labels, style.styles(labels)):
        x, y = r["theory_lambda_max"], r["lyapunov_max_wide"]
        se = r["lyapunov_max_wide_stderr"] or 0.0
        marker, what = kind.get(r["init"], ("^", "gated cells (Gilboa et al. 2019)"))
        if r["family"] != "elman":
            marker, what = "^", "gated cells (Gilboa et al. 2019)"
        if y is None or not math.isfinite(y):
            bad.append(r["config"])
            continue
        lab = what if what not in shown_kinds else None
        shown_kinds.add(what)
        ax.errorbar([x], [y], yerr=[SIGNIFICANCE * se], marker=marker, color=sty["color"],
                    markersize=6, linestyle="none", capsize=2)
        ax.plot([], [], marker=marker, color="0.4", linestyle="none", label=lab)
        if abs(x) > 0.15 or abs(y) > 0.15:
            ax.annotate(label, (x, y), xytext=(4, 2), textcoords="offset points", fontsize=7,
                        color=sty["color"])
    lim = [min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])]
    ax.plot(lim, lim, color="black", linewidth=0.8, label="measured = predicted")
    ax.add_patch(Rectangle(
        (-0.15, -0.15), 0.3, 0.3, fill=False, edgecolor="0.3", linestyle=":"))
    ax.annotate("labels inside the dotted box:\nsee the zoom (right)", (0.15, -0.15),
                xytext=(6, -14), textcoords="offset points", fontsize=7, color="0.3")
    ax.set_xlabel("mean-field prediction 0.5 ln chi (nats per step)")
    ax.set_ylabel(f"measured lambda_max at N = {cfg.lyap_hidden} (nats per step), +- 2 se")
    ax.set_title(f"Largest Lyapunov exponent, N = {cfg.lyap_hidden}"
                 + (f"\nnot finite (overflow, or -inf: exactly 0), not drawn: {', '.join(bad)}"
                    if bad else ""),
                 fontsize=10)
    ax.grid(True, alpha=0.25, linewidth=0.6)
    ax.legend(fontsize=7, loc="upper left")
    # Zoom: the critical rows one per line, with the tolerance band.
    crit = [r for r in pts if r["init"] == "critical"]
    clabels = [_label(r) for r in crit]
    for i, (r, sty) in enumerate(zip(crit, style.styles(clabels))):
        y, se = r["lyapunov_max_wide"], r["lyapunov_max_wide_stderr"] or 0.0
        if y is None or not math.isfinite(y):
            zoom.plot([0.0], [i], marker="x", color=sty["color"],
                      transform=zoom.get_yaxis_transform(), clip_on=False)
            continue
        zoom.errorbar([y], [i], xerr=[SIGNIFICANCE * se], marker="s", color=sty["color"],
                      capsize=2, linestyle="none")
        th = r["theory_lambda_max"]
        zoom.plot([th], [i], marker="|", color="black", markersize=10)
    zoom.axvspan(-EDGE_TOLERANCE, EDGE_TOLERANCE, color="0.85", zorder=0,
                 label=f"tolerance +-{EDGE_TOLERANCE} nats/step")
    zoom.axvline(0.0, color="black", linewidth=0.7)
    zoom.plot([], [], marker="|", color="black", linestyle="none", markersize=10,
              label="mean-field prediction")
    zoom.set_yticks(range(len(crit)), clabels, fontsize=8)
    zoom.invert_yaxis()
    zoom.set_xlabel(f"measured lambda_max at N = {cfg.lyap_hidden} (nats per step), +- 2 se")
    zoom.set_title("Zoom on (0, 0): the critical-gain rows", fontsize=10)
    zoom.grid(True, axis="x", alpha=0.25, linewidth=0.6)
    if crit:
        zoom.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    return common.save_figure(fig, out, "lyapunov")


def plot_training(train_results: dict, out: str, T: int) -> str:
    """Held-out loss (``jrnn.plot.training``: median and min-max band over seeds) and
    ``||dL/dh_t||`` after training, one line per trained configuration."""
    fig, axes = style.subplots(1, 2, width=6.0, height=5.0)
    ax, ag = axes[0]
    short = lambda name: name.removeprefix("elman-").removesuffix("-standard")  # noqa: E731
    labels = [short(n) for n in train_results]
    base = jrnn.tasks.ADDING_BASELINE
    runs = {short(n): [{"step": list(r["eval_step"]), "loss": list(seed_loss)}
                       for seed_loss in r["eval_loss_per_seed"]]
            for n, r in train_results.items()}
    jrnn.plot.training(runs, "loss", ax=ax, log=True)
    for line, sty in zip([ln for ln in ax.get_lines() if ln.get_label() in runs
                          or ln.get_label().split(" ")[0] in runs], _styles(labels)):
        line.set_linestyle(sty["linestyle"])
    ax.axhline(base, color="black", linestyle="--", linewidth=1.0,
               label=f"baseline {base:.3g} (always predict 1)")
    ax.axhline(0.1 * base, color="0.5", linestyle=":", linewidth=1.0,
               label="solved (baseline / 10)")
    ax.set_ylabel("held-out MSE (median over seeds; band: min-max)")
    ax.set_title(f"Adding problem, T = {T}: held-out loss", fontsize=10)
    _legend(ax, ncol=2)
    for sty, label, r in zip(_styles(labels), labels, train_results.values()):
        g1 = np.asarray(r["grad_hidden_after"], np.float64)
        t = np.arange(1, g1.size + 1)
        ok = np.isfinite(g1) & (g1 > 0)
        ag.plot(t[ok], g1[ok], color=sty["color"], linestyle=sty["linestyle"], linewidth=1.3,
                label=label + (" (diverged)" if r.get("diverged_seeds") else ""))
        style.mark_nonfinite(ag, t, np.where(g1 == 0, -np.inf, g1), color=sty["color"],
                             label=label)
    ag.set_yscale("log")
    ag.set_xlabel("time step t (steps)")
    ag.set_ylabel("||dL/dh_t|| after training (median over batch and seeds)")
    ag.set_title(f"Gradient reaching each step after training, T = {T}", fontsize=10)
    ag.grid(True, alpha=0.25, linewidth=0.6)
    _legend(ag, ncol=2)
    return common.save_figure(fig, out, "training")
