"""The activation study: how the activation function and the cell decide whether gradients survive.

Every claim of the seed article, measured. For each registered activation in the
Elman cell ``h_t = f(W_hh h_{t-1} + W_xh x_t + b_h)`` and for the remedies
(residual connection, LSTM, GRU, IRNN):

1. gradient propagation at initialisation: ``log ||d h_T / d h_t||`` against the
   lag ``T - t`` (median and quartiles over sequences and seeds), under the
   standard initialisation ``W_hh ~ N(0, 1/n)`` and the mean-field critical one
   ``N(0, g*^2 / n)`` (``g*`` from :func:`jrnn.theory.critical_gain`);
2. the singular values of the per-step Jacobians ``J_t = diag(f'(a_t)) W_hh``;
3. the largest Lyapunov exponent and the Pascanu bound ``sup|f'| * sigma_max(W_hh)``,
   next to the mean-field prediction ``0.5 ln chi``;
4. a short training run on the adding problem (seeds vmapped into one program):
   loss against the 1/6 baseline, and ``||dL/dh_t||`` over ``t`` before and after;
5. dead and saturated unit fractions before and after training;
6. ``report.md`` whose conclusions are computed from these numbers, ``metrics.json``
   with all of them, PNG plots, and a summary table in the terminal.

Run ``python -m experiments.activation_study`` (about 5 minutes on 2 CPU cores);
``--full`` for publication-scale sizes, ``--activations relu,tanh`` and
``--cells lstm,gru`` for subsets. Activations you register with
:func:`jrnn.activations.register` before calling :func:`main` are included.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import jrnn
from experiments import common

NAME = "activation_study"
REMEDIES = ("residual", "lstm", "gru", "irnn")
RESIDUAL_ALPHA = 0.5
INPUT_SIZE = 1  # the propagation / spectra / Lyapunov drive: x_t ~ N(0, 1), one feature
VANISHED = -20.0  # ln-norm below which a gradient is numerically gone (e^-20 ~ 2e-9)

DEFAULT = dict(
    hidden=64, T=100, sequences=4, seeds=3, lyap_T=300, lyap_warmup=100,
    train_hidden=32, train_T=30, train_batch=32, train_steps=400, lr=3e-3, clip=1.0,
    eval_size=256, checkpoint_every=200,
)
FULL = dict(
    hidden=256, T=500, sequences=16, seeds=8, lyap_T=2000, lyap_warmup=500,
    train_hidden=128, train_T=100, train_batch=64, train_steps=5000, lr=1e-3, clip=1.0,
    eval_size=1000, checkpoint_every=500,
)
SMOKE = dict(
    hidden=6, T=12, sequences=2, seeds=2, lyap_T=20, lyap_warmup=5,
    train_hidden=4, train_T=6, train_batch=4, train_steps=4, lr=1e-2, clip=1.0,
    eval_size=8, checkpoint_every=2,
)
SMOKE_ACTIVATIONS = ("sigmoid", "relu")
SMOKE_REMEDIES = ("lstm",)


# ------------------------------------------------------------------ configurations
def config_name(family: str, activation: str | None, init: str) -> str:
    return f"{family}-{activation}-{init}" if activation else family


def make_cell(family: str, activation: str | None, hidden: int) -> jrnn.Cell:
    """Elman cells with ``W_hh ~ N(0, 1/n)`` (rescaled by the gain later); remedies as built."""
    if family == "elman":
        return jrnn.cells.elman(
            hidden, activation, recurrent_init=jrnn.initializers.scaled_normal(1.0)
        )
    if family == "residual":
        return jrnn.cells.residual(
            hidden, "tanh", RESIDUAL_ALPHA, recurrent_init=jrnn.initializers.scaled_normal(1.0)
        )
    if family == "lstm":
        return jrnn.cells.lstm(hidden)
    if family == "gru":
        return jrnn.cells.gru(hidden)
    if family == "irnn":
        return jrnn.cells.irnn(hidden)
    raise ValueError(f"cells must be among {REMEDIES}, got {family!r}.")


def init_params(cell: jrnn.Cell, key: jax.Array, gain):
    """``cell.init`` with ``W_hh`` scaled by ``gain`` (traced: one program for all gains).

    For the Elman cells, ``W_hh ~ N(0, 1/n)`` times ``gain`` is ``N(0, gain^2/n)``:
    gain 1 is the standard initialisation, ``g*`` the critical one.
    """
    params = cell.init(key, INPUT_SIZE)
    if cell.name == "elman":
        W = params["W_hh"]
        params = dict(params, W_hh=jnp.asarray(gain, W.dtype) * W)
    return params


@functools.cache
def critical_gain(activation: str) -> float:
    """``g*`` with ``chi(g*) = 1`` (no bias); inf where no finite gain reaches it."""
    g = float(jrnn.theory.critical_gain(activation))
    return g if math.isfinite(g) and g > 0 else float("nan")


# ------------------------------------------------------------------ at initialisation
def measure_at_init(cell: jrnn.Cell, cfg: dict, gain: jax.Array, seed: jax.Array) -> dict:
    """Diagnostics of one freshly initialised network; vmapped over (gain, seed) by ``sweep``."""
    key = jax.random.key(seed)
    k_p, k_x, k_l, k_c = jax.random.split(key, 4)
    params = init_params(cell, k_p, gain)
    xs = jax.random.normal(k_x, (cfg["sequences"], cfg["T"], INPUT_SIZE))
    # The LAPACK-based diagnostics below are ordered one after another with `after`: run
    # concurrently they can deadlock jaxlib 0.10's CPU thread pool (README, Known issues).
    after = jrnn.diagnostics.after
    prop = jrnn.diagnostics.propagation(cell, params, xs)
    params = after(params, prop)
    J = jrnn.diagnostics.step_jacobians(cell, params, xs[0])
    sv = jrnn.diagnostics.singular_values(J)
    params = after(params, sv)
    # Lyapunov exponent of the driven network from a random initial state.
    xl = jax.random.normal(k_l, (cfg["lyap_T"], INPUT_SIZE))
    carry0 = jax.tree_util.tree_map(
        lambda a: jax.random.normal(k_c, a.shape, a.dtype), cell.initial_carry(params)
    )
    lyap = jrnn.diagnostics.lyapunov_spectrum(
        cell, params, xl, carry=carry0, k=1, warmup=cfg["lyap_warmup"]
    )
    params = after(params, lyap.exponents)
    out = {
        "log_spectral": prop.log_spectral_norm,  # (sequences, T+1)
        "log_frobenius": prop.log_frobenius_norm,
        "singular_values": sv,  # (T, S)
        "lyapunov_max": lyap.exponents[0],
    }
    if cell.recurrent_matrix is not None and cell.activation is not None:
        out["pascanu_bound"] = jrnn.diagnostics.pascanu_bound(cell, params).bound
        out["input_variance"] = jnp.mean(jnp.sum(params["W_xh"] ** 2, axis=1))
    return out


def summarise_init(raw: dict, cfg: dict) -> dict:
    """Medians and quartiles over seeds x sequences, per lag."""
    T = cfg["T"]
    spec = np.asarray(raw["log_spectral"], np.float64).reshape(-1, T + 1)[:, ::-1]  # by lag
    frob = np.asarray(raw["log_frobenius"], np.float64).reshape(-1, T + 1)[:, ::-1]
    spec = np.where(np.isfinite(spec), spec, np.nan)
    q25, med, q75 = np.nanpercentile(spec, [25, 50, 75], axis=0)
    sv = np.asarray(raw["singular_values"], np.float64)
    sv_q = np.percentile(sv, [5, 25, 50, 75, 95])
    final = med[T]
    out = {
        "lag": list(range(T + 1)),
        "log_norm_median": med.tolist(),
        "log_norm_q25": q25.tolist(),
        "log_norm_q75": q75.tolist(),
        "log_frobenius_median": np.nanmedian(frob, axis=0).tolist(),
        "log_norm_at_T": float(final),
        "log10_norm_at_T": float(final / math.log(10.0)),
        "rate_per_step": float(final / T),
        "sv_percentiles_5_25_50_75_95": sv_q.tolist(),
        "sv_max_median": float(np.median(sv[..., 0])),
        "lyapunov_max_median": float(np.median(np.asarray(raw["lyapunov_max"]))),
        "lyapunov_max_per_seed": np.asarray(raw["lyapunov_max"]).tolist(),
    }
    if "pascanu_bound" in raw:
        b = np.asarray(raw["pascanu_bound"], np.float64)
        out["pascanu_bound_median"] = float(np.median(b))
        out["pascanu_must_vanish_seeds"] = int(np.sum(b < 1.0))
        out["input_variance"] = float(np.median(np.asarray(raw["input_variance"])))
    return out


def _sv_sample(raw: dict, limit: int = 4000) -> np.ndarray:
    sv = np.asarray(raw["singular_values"], np.float64).ravel()
    sv = sv[sv > 0]
    if sv.size > limit:
        sv = np.sort(sv)[np.linspace(0, sv.size - 1, limit).astype(int)]
    return sv


def theory_for(activation: str, gain: float, sigma_b2: float) -> dict:
    mf = jrnn.theory.mean_field(activation, gain, math.sqrt(max(sigma_b2, 0.0)))
    return {"q_star": float(mf.q_star), "chi": float(mf.chi), "lambda_max": float(mf.lambda_max)}


# ------------------------------------------------------------------ training
def train_seeds(cell: jrnn.Cell, cfg: dict, seed: int, ckpt_dir: str, on_step=None):
    """Trains ``cfg["seeds"]`` copies (vmapped) on the adding problem; resumable.

    Returns ``(model, initial params, FitResult, held-out batch)``.
    """
    model = jrnn.models.rnn(cell, 1)
    T = cfg["train_T"]
    config = {"cell": cell.describe(), "seed": seed,
              **{k: v for k, v in cfg.items() if k.startswith("train_") or k in ("lr", "clip")}}
    params0, result, held_out = common.train_seeds(
        model, 2, lambda key, b: jrnn.tasks.adding(key, b, T), jrnn.tasks.mse, seed=seed,
        seeds=cfg["seeds"], lr=cfg["lr"], clip=cfg["clip"], batch=cfg["train_batch"],
        steps=cfg["train_steps"], eval_size=cfg["eval_size"],
        eval_every=max(cfg["train_steps"] // 20, 1), checkpoint_dir=ckpt_dir,
        checkpoint_every=cfg["checkpoint_every"], config=config, on_step=on_step,
    )
    return model, params0, result, held_out


def grad_and_health(model, cell: jrnn.Cell, params, batch) -> dict:
    """``||dL/dh_t||`` over ``t`` (median over the batch) and unit health, for one seed."""
    x, y = batch

    def loss_of_hs(hs):
        return jrnn.tasks.mse(model.readout(params, hs[:, -1]), y)

    g = jrnn.diagnostics.gradient_norms(loss_of_hs, cell, params["cell"], x)
    out = {"grad_hidden": jnp.median(g.hidden, axis=0)}
    if cell.preactivation is not None and cell.activation is not None:
        h = jrnn.diagnostics.unit_health(cell, params["cell"], x)
        out["dead_fraction"] = h.dead_fraction
        out["saturated_fraction"] = h.saturated_fraction
    return out


def measure_training(cell: jrnn.Cell, cfg: dict, seed: int, out: str, name: str, on_step):
    model, params0, result, held_out = train_seeds(
        cell, cfg, seed, common.checkpoint_dir(out, name), on_step
    )
    probe = jax.jit(jax.vmap(lambda p: grad_and_health(model, cell, p, held_out)))
    before = jax.device_get(probe(params0))
    after = jax.device_get(probe(result.state.params))
    ev = np.asarray(result.eval_history["loss"], np.float64)  # (E, S)
    final = ev[-1]
    base = jrnn.tasks.ADDING_BASELINE
    res = {
        "eval_step": list(result.eval_history["step"]),
        "eval_loss_median": np.median(ev, axis=1).tolist(),
        "final_loss_per_seed": final.tolist(),
        "final_loss_median": float(np.median(final)),
        "final_over_baseline": float(np.median(final) / base),
        "nonfinite_updates": int((~np.asarray(result.history["finite"], bool)).sum()),
    }
    for when, m in (("before", before), ("after", after)):
        gh = np.asarray(m["grad_hidden"], np.float64)  # (S, T)
        res[f"grad_hidden_{when}"] = np.median(gh, axis=0).tolist()
        first, last = np.median(gh[:, 0]), np.median(gh[:, -1])
        res[f"grad_ratio_first_last_{when}"] = float(first / last) if last > 0 else None
        if "dead_fraction" in m:
            res[f"dead_fraction_{when}"] = float(np.mean(m["dead_fraction"]))
            res[f"saturated_fraction_{when}"] = float(np.mean(m["saturated_fraction"]))
    return res


# ------------------------------------------------------------------ plots
def plot_propagation(init_results: dict, out: str, T: int) -> str:
    plt = common.pyplot()
    inits = ("standard", "critical")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True, constrained_layout=True)
    cmap = plt.get_cmap("tab20")
    for ax, init in zip(axes, inits):
        i = 0
        for r in init_results.values():
            if r["init"] != init and not (init == "standard" and r["family"] != "elman"):
                continue
            lag = np.asarray(r["lag"])
            med = np.asarray(r["log_norm_median"]) / math.log(10)
            ls = "-" if r["family"] == "elman" else "--"
            label = r["activation"] if r["family"] == "elman" else r["family"]
            ax.plot(lag, med, ls=ls, color=cmap(i % 20), label=label, lw=1.4)
            ax.fill_between(lag, np.asarray(r["log_norm_q25"]) / math.log(10),
                            np.asarray(r["log_norm_q75"]) / math.log(10),
                            color=cmap(i % 20), alpha=0.12)
            i += 1
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"{init} initialisation" + (" (+ remedies, dashed)" if init == "standard"
                                                  else ": W ~ N(0, g*^2/n)"))
        ax.set_xlabel("lag T - t")
        ax.set_ylim(max(ax.get_ylim()[0], -40), min(ax.get_ylim()[1], 40))
    axes[0].set_ylabel("log10 ||d h_T / d h_t||  (median, IQR shaded)")
    axes[1].legend(fontsize=7, ncol=2, loc="lower left")
    axes[0].legend(fontsize=7, ncol=2, loc="lower left")
    return common.save_figure(fig, out, "propagation")


def plot_singular_values(samples: dict, out: str) -> str:
    plt = common.pyplot()
    names = list(samples)
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(names)), 4.5), constrained_layout=True)
    data = [np.log10(np.maximum(samples[n], 1e-30)) for n in names]
    ax.boxplot(data, whis=(5, 95), showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right", fontsize=8)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("log10 singular value of J_t (5-95% whiskers)")
    ax.set_title("Per-step Jacobian singular values at initialisation")
    return common.save_figure(fig, out, "singular_values")


def plot_lyapunov(rows: list[dict], out: str) -> str:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(rows)), 4.5), constrained_layout=True)
    x = np.arange(len(rows))
    meas = [r["lyapunov_max"] for r in rows]
    theo = [r["mean_field_lambda_max"] for r in rows]
    ax.bar(x - 0.2, meas, 0.4, label="measured lambda_max")
    ax.bar(x + 0.2, [np.nan if t is None else t for t in theo], 0.4, label="mean-field 0.5 ln chi")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x, [r["config"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("largest Lyapunov exponent (per step)")
    ax.legend()
    return common.save_figure(fig, out, "lyapunov")


def plot_training(train_results: dict, out: str) -> str:
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True)
    cmap = plt.get_cmap("tab20")
    for i, (name, r) in enumerate(train_results.items()):
        c = cmap(i % 20)
        ls = "-" if name.startswith("elman") else "--"
        axes[0].plot(r["eval_step"], r["eval_loss_median"], ls=ls, color=c, label=name)
        g0 = np.asarray(r["grad_hidden_before"])
        g1 = np.asarray(r["grad_hidden_after"])
        t = np.arange(1, g0.size + 1)
        axes[1].plot(t, g0, ls=":", color=c)
        axes[1].plot(t, g1, ls="-", color=c, label=name)
    axes[0].axhline(jrnn.tasks.ADDING_BASELINE, color="k", ls="--", lw=1, label="baseline 1/6")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("held-out MSE (median over seeds)")
    axes[0].set_title("Adding problem")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("time step t")
    axes[1].set_ylabel("||dL/dh_t|| (dotted: before, solid: after training)")
    axes[1].set_title("Gradient reaching each step")
    axes[0].legend(fontsize=6, ncol=2)
    return common.save_figure(fig, out, "training")


# ------------------------------------------------------------------ report
def conclusions(init_results: dict, train_results: dict, lyap_rows: list[dict], T: int) -> list:
    """Sentences computed from the measurements only."""
    lines = []
    std = {r["activation"]: r for r in init_results.values()
           if r["family"] == "elman" and r["init"] == "standard"}
    if std:
        order = sorted(std.items(), key=lambda kv: kv[1]["log_norm_at_T"])
        vanished = [a for a, r in order if r["log_norm_at_T"] < VANISHED]
        exploded = [a for a, r in order if r["log_norm_at_T"] > -VANISHED]
        lines.append(
            f"At the standard initialisation (W_hh ~ N(0, 1/n)), the gradient ||d h_T/d h_0|| "
            f"after {T} steps vanished below e^{VANISHED:.0f} for "
            f"{len(vanished)} of {len(std)} activations"
            + (f" ({', '.join(vanished)})" if vanished else "")
            + (f"; it exploded above e^{-VANISHED:.0f} for {', '.join(exploded)}" if exploded
               else "") + "."
        )
        worst, best = order[0], order[-1]
        lines.append(
            f"Fastest decay: {worst[0]}, log10 norm {worst[1]['log10_norm_at_T']:.1f} at lag {T} "
            f"(x{math.exp(worst[1]['rate_per_step']):.3f} per step); slowest: {best[0]}, "
            f"{best[1]['log10_norm_at_T']:.1f} (x{math.exp(best[1]['rate_per_step']):.3f} "
            "per step)."
        )
        if "sigmoid" in std and "tanh" in std:
            d = std["tanh"]["log10_norm_at_T"] - std["sigmoid"]["log10_norm_at_T"]
            lines.append(
                f"sigmoid (sup|f'| = 1/4) loses {d:.1f} more orders of magnitude than tanh "
                f"(sup|f'| = 1) over {T} steps, as the seed article argues."
            )
    crit = {r["activation"]: r for r in init_results.values()
            if r["family"] == "elman" and r["init"] == "critical"}
    better = [(a, crit[a]["log10_norm_at_T"] - std[a]["log10_norm_at_T"])
              for a in crit if a in std and math.isfinite(crit[a]["log10_norm_at_T"])
              and math.isfinite(std[a]["log10_norm_at_T"])]
    if better:
        kept = [a for a, _ in better if abs(crit[a]["log10_norm_at_T"]) < 3.0]
        lines.append(
            "Critical initialisation (mean-field g*) keeps ||d h_T/d h_0|| within 3 orders of "
            f"magnitude of 1 at lag {T} for {len(kept)} of {len(better)} activations"
            + (f" ({', '.join(kept)})" if kept else "") + "."
        )
    rem = {r["family"]: r for r in init_results.values() if r["family"] != "elman"}
    if rem and "tanh" in std:
        base = std["tanh"]["log10_norm_at_T"]
        parts = [f"{f}: {r['log10_norm_at_T']:+.1f} ({r['log10_norm_at_T'] - base:+.1f} vs "
                 "elman-tanh)" for f, r in rem.items()]
        lines.append(f"Remedies, log10 ||d s_T/d s_0|| at lag {T}: " + "; ".join(parts) + ".")
    errs = [abs(r["lyapunov_max"] - r["mean_field_lambda_max"]) for r in lyap_rows
            if r.get("mean_field_lambda_max") is not None and math.isfinite(r["lyapunov_max"])
            and math.isfinite(r["mean_field_lambda_max"])]
    if errs:
        lines.append(
            f"Measured largest Lyapunov exponents differ from the mean-field prediction by a "
            f"median of {np.median(errs):.3f} per step (max {np.max(errs):.3f}) over "
            f"{len(errs)} Elman configurations (finite networks, driven by input)."
        )
    must = [r["config"] for r in lyap_rows if (r.get("pascanu_bound") or 2.0) < 1.0]
    if must:
        lines.append(
            "Pascanu bound sup|f'| sigma_max(W_hh) < 1, so gradients must vanish, for: "
            + ", ".join(must) + "."
        )
    if train_results:
        base = jrnn.tasks.ADDING_BASELINE
        ranked = sorted(train_results.items(), key=lambda kv: kv[1]["final_loss_median"])
        learned = [n for n, r in ranked if r["final_loss_median"] < 0.5 * base]
        lines.append(
            f"Adding problem: {len(learned)} of {len(ranked)} configurations halved the "
            f"baseline MSE ({base:.4f})" + (f": {', '.join(learned)}" if learned else "")
            + f". Best: {ranked[0][0]} ({ranked[0][1]['final_loss_median']:.4f}); "
            f"worst: {ranked[-1][0]} ({ranked[-1][1]['final_loss_median']:.4f})."
        )
        dead = [(n, r["dead_fraction_before"], r["dead_fraction_after"])
                for n, r in train_results.items() if "dead_fraction_after" in r
                and jrnn.activations.get(r["activation"]).dead_below is not None]
        for n, b, a in dead:
            lines.append(
                f"Dead units ({n}, zero output on every step of every held-out sequence): "
                f"{100 * b:.1f}% before training, {100 * a:.1f}% after."
            )
        sat = [(n, r["saturated_fraction_before"], r["saturated_fraction_after"])
               for n, r in train_results.items() if r.get("saturated_fraction_after")
               is not None and jrnn.activations.get(r["activation"]).saturating]
        for n, b, a in sat:
            lines.append(f"Saturated unit-steps ({n}): {100 * b:.1f}% before, {100 * a:.1f}% "
                         "after training.")
    return lines


# ------------------------------------------------------------------ main
def _extra_flags(parser):
    parser.add_argument("--full", action="store_true",
                        help="publication-scale sizes, lengths and seeds (long)")
    parser.add_argument("--activations", default=None,
                        help="comma-separated activation names (default: all registered)")
    parser.add_argument("--cells", default=None,
                        help=f"comma-separated remedies among {','.join(REMEDIES)} (default: all)")
    parser.add_argument("--no-train", action="store_true", help="skip the training runs")


def _select(arg: str | None, default, allowed, what: str) -> tuple[str, ...]:
    if arg is None:
        return tuple(default)
    chosen = tuple(s.strip() for s in arg.split(",") if s.strip())
    for c in chosen:
        if what == "activations":
            jrnn.activations.get(c)  # raises with suggestions
        elif c not in allowed:
            raise ValueError(f"--cells must be among {','.join(allowed)}, got {c!r}.")
    return chosen


def main(argv=None) -> dict:
    """Runs the study; writes metrics.json, report.md and PNGs under ``--out``."""
    args = common.parse_args(NAME, __doc__, argv, extra=_extra_flags)
    mode = "smoke" if args.smoke else "full" if args.full else "default"
    cfg = dict(SMOKE if args.smoke else FULL if args.full else DEFAULT)
    acts = _select(args.activations, SMOKE_ACTIVATIONS if args.smoke
                   else jrnn.activations.names(), None, "activations")
    remedies = _select(args.cells, SMOKE_REMEDIES if args.smoke else REMEDIES, REMEDIES, "cells")
    t0 = time.perf_counter()

    plan = [("elman", a) for a in acts] + [(f, None) for f in remedies]
    train_plan = [] if args.no_train else plan
    bar = common.progress(len(plan) + len(train_plan) * cfg["train_steps"], NAME)

    seeds = jnp.arange(args.seed, args.seed + cfg["seeds"])
    init_results, sv_samples, lyap_rows = {}, {}, []
    for family, act in plan:
        bar.set_postfix_str(config_name(family, act, "standard"))
        cell = make_cell(family, act, cfg["hidden"])
        inits = {"standard": 1.0}
        if family == "elman" and math.isfinite(critical_gain(act)):
            inits["critical"] = critical_gain(act)
        raw_all = jax.device_get(jrnn.parallel.sweep(
            functools.partial(measure_at_init, cell, cfg),
            gain=jnp.asarray(list(inits.values())), seed=seeds,
        ))
        for i, (init, gain) in enumerate(inits.items()):
            name = config_name(family, act, init)
            raw = jax.tree_util.tree_map(lambda a, i=i: a[i], raw_all)
            r = summarise_init(raw, cfg)
            r.update(family=family, activation=act, init=init, cell=cell.describe())
            if family == "elman":
                r["gain"] = gain
                r["mean_field"] = theory_for(act, gain, r["input_variance"])
            init_results[name] = r
            sv_samples[name] = _sv_sample(raw)
            lyap_rows.append({
                "config": name, "lyapunov_max": r["lyapunov_max_median"],
                "mean_field_lambda_max": r.get("mean_field", {}).get("lambda_max"),
                "pascanu_bound": r.get("pascanu_bound_median"),
            })
        bar.update()

    train_results = {}
    for family, act in train_plan:
        name = config_name(family, act, "standard")
        bar.set_postfix_str(f"train {name}")
        cell = make_cell(family, act, cfg["train_hidden"])
        train_results[name] = measure_training(
            cell, cfg, args.seed, args.out, name, on_step=lambda s, m: bar.update()
        )
        train_results[name]["activation"] = cell.activation.name if cell.activation else None
    bar.close()

    T = cfg["T"]
    figures = [plot_propagation(init_results, args.out, T),
               plot_singular_values({k: v for k, v in sv_samples.items()
                                     if not k.endswith("-critical")}, args.out),
               plot_lyapunov(lyap_rows, args.out)]
    if train_results:
        figures.append(plot_training(train_results, args.out))
    found = conclusions(init_results, train_results, lyap_rows, T)

    rows = summary_rows(init_results, train_results)
    metrics = {
        "mode": mode, "seed": args.seed, "config": cfg, "activations": list(acts),
        "remedies": list(remedies), "vanished_threshold_ln": VANISHED,
        "critical_gains": {a: critical_gain(a) for a in acts},
        "at_init": init_results, "lyapunov": lyap_rows, "training": train_results,
        "conclusions": found,
    }
    common.write_metrics(args.out, metrics)
    common.write_report(args.out, report(cfg, mode, rows, found, lyap_rows, train_results,
                                         figures))
    wall = time.perf_counter() - t0
    common.write_run_info(args.out, wall_time_s=wall, mode=mode)
    common.print_table(SUMMARY_HEADERS, rows, title=f"{NAME} ({mode}), {wall:.0f} s")
    print("\n" + "\n".join(f"- {c}" for c in found))
    print(f"\nReport: {args.out}/report.md")
    return metrics


SUMMARY_HEADERS = ["config", "log10 norm at T", "per step", "lambda_max", "mean-field",
                   "pascanu", "adding MSE", "dead before/after"]


def summary_rows(init_results: dict, train_results: dict) -> list[list]:
    rows = []
    for name, r in init_results.items():
        tr = train_results.get(name, {})
        mf = r.get("mean_field", {}).get("lambda_max")
        dead = ("-" if "dead_fraction_after" not in tr else
                f"{100 * tr['dead_fraction_before']:.0f}%/{100 * tr['dead_fraction_after']:.0f}%")
        rows.append([
            name, r["log10_norm_at_T"], f"x{math.exp(r['rate_per_step']):.3f}",
            r["lyapunov_max_median"], "-" if mf is None else mf,
            r.get("pascanu_bound_median", "-"), tr.get("final_loss_median", "-"), dead,
        ])
    return rows


def report(cfg, mode, rows, found, lyap_rows, train_results, figures) -> str:
    T = cfg["T"]
    lines = [
        "# Activation functions and cells: do gradients survive?",
        "",
        f"Mode: {mode}. Elman cells of width {cfg['hidden']} driven by x_t ~ N(0, 1) for "
        f"T = {T} steps, {cfg['sequences']} sequences x {cfg['seeds']} seeds per configuration "
        "(seeds run as one sharded program through `jrnn.parallel.sweep`). *standard*: "
        "W_hh ~ N(0, 1/n); *critical*: W_hh ~ N(0, g*^2/n) with the mean-field critical gain "
        f"g*. Remedies at their own initialisations (residual alpha = {RESIDUAL_ALPHA}, "
        "tanh, W_hh ~ N(0, 1/n); LSTM/GRU orthogonal; IRNN identity).",
        "",
        "## Findings (computed from the measurements below)",
        "",
    ]
    lines += [f"- {c}" for c in found]
    lines += [
        "",
        "## Summary",
        "",
        f"`log10 norm at T`: median log10 of the spectral norm of d s_T / d s_0 at lag {T}; "
        "`per step`: the geometric-mean factor per step; `lambda_max`: measured largest "
        f"Lyapunov exponent (T = {cfg['lyap_T']}, warm-up {cfg['lyap_warmup']}); "
        "`mean-field`: 0.5 ln chi with sigma_b^2 the input-drive variance; `pascanu`: "
        "sup|f'| sigma_max(W_hh) (< 1: must vanish); `adding MSE`: held-out MSE after "
        f"{cfg['train_steps']} Adam steps on the adding problem with T = {cfg['train_T']} "
        f"(baseline {jrnn.tasks.ADDING_BASELINE:.4f}); `dead`: ReLU-family units silent on "
        "every held-out step, before/after training.",
        "",
        common.markdown_table(SUMMARY_HEADERS, rows),
        "",
        "## How to read the plots",
        "",
        "- `propagation.png`: log10 ||d h_T/d h_t|| against the lag T - t. A straight line "
        "falling with slope s means the gradient shrinks by 10^s per step (vanishing); "
        "a flat line at 0 is perfect propagation; a rising line explodes. Left: standard "
        "initialisation and the remedies (dashed); right: critical initialisation.",
        "- `singular_values.png`: the spread of the singular values of every J_t; values "
        "below 1 shrink a gradient component at that step.",
        "- `lyapunov.png`: measured largest Lyapunov exponent next to mean-field theory; "
        "negative means perturbations (and gradients) decay exponentially.",
        "- `training.png`: held-out loss on the adding problem (left) and ||dL/dh_t|| over "
        "t before (dotted) and after (solid) training (right).",
        "",
    ]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
