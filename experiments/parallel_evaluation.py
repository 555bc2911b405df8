"""Parallel-in-time evaluation: Newton iterations and wall time against T and lambda_max.

DEER (Lim et al., ICLR 2024), quasi-DEER and ELK (Gonzalez et al., NeurIPS 2024) evaluate
a recurrent network over a whole sequence by Newton's method on the stacked residual
``s_t - F(s_{t-1}, u_t) = 0`` (:func:`jrnn.newton.unroll`). Gonzalez et al. 2025
("Predictability enables parallelization of nonlinear state space models") show that the
number of iterations is governed by the largest Lyapunov exponent. This study measures it
with jrnn's own exponents:

* **gain sweep**: tanh Elman nets ``W_hh = g W_0``, ``W_0 ~ N(0, 1/N)``, driven by
  ``0.5 N(0, 1)`` inputs, across the edge of chaos; per gain ``lambda_max``
  (:func:`jrnn.diagnostics.lyapunov_spectrum`, ``k = 1``), the iterations of DEER,
  quasi-DEER and ELK to converge (or not) and the rule of
  :func:`jrnn.newton.iteration_rule`, ``K = min(T, K_0 + A(lambda, T) / 2)`` with
  ``A = sum_{tau < T} e^{lambda tau}``; plus a GRU (at init and with its recurrent weights
  scaled up), an LRU and a minGRU (linear recurrences: one iteration);
* **length sweep**: iterations and wall time against ``T`` for a contracting Elman net
  (``g = 0.8``) and a GRU, beside the sequential ``jax.lax.scan`` (``jrnn.Scan``).

On a CPU the parallel depth buys nothing (the work is ``O(T S^3)`` per iteration against
``O(T S^2)`` for the scan), so Newton is slower there; the timings say so. The GPU suite of
``experiments/benchmarks/newton.py`` measures where it pays.

Run ``python -m experiments.parallel_evaluation`` (``--preset quick`` for a short run,
``--preset full`` for ``T`` up to ``1e5``); ``--help`` lists every field.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import jrnn
from experiments import common

NAME = "parallel_evaluation"
METHODS = ("deer", "quasi", "elk")


@dataclasses.dataclass(frozen=True)
class Config:
    """Nets, gains and lengths of the parallel-evaluation study."""

    size: int = 32
    """hidden size N of every net"""
    gains: tuple[float, ...] = (0.3, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 3.0)
    """gains g of the tanh Elman sweep (W_hh = g W_0)"""
    T: int = 1000
    """steps of the gain sweep"""
    lengths: tuple[int, ...] = (100, 1000, 10000)
    """sequence lengths of the length sweep"""
    max_iter: int = 200
    """Newton iterations allowed"""
    damping: float = 1e-3
    """ELK's Levenberg-Marquardt damping lambda (0.1 took 37 iterations where 1e-3 took 4:
    tanh N = 16, g = 0.8, T = 300, float32)"""
    warmup: int = 100
    """steps before the Lyapunov average"""
    repeats: int = 3
    """timed calls per (method, T); the median is reported"""
    x64: bool = True
    """float64 (the tolerance is eps^0.75 of the dtype)"""
    methods: tuple[str, ...] = METHODS
    """Newton variants measured (deer first; quasi, elk)"""


PRESETS = {
    # max_iter < T: T iterations always converge (exactly, in float64), chaos or not.
    "smoke": Config(size=8, gains=(0.5, 1.0, 3.0), T=60, lengths=(30, 60), max_iter=20,
                    warmup=10, repeats=1),
    # About 10 minutes on 2 busy cores: N = 16, T = 300 (the length sweep's T = 300 reuses
    # the gain sweep's compilations), 100 iterations at most.
    "quick": Config(size=16, gains=(0.3, 0.8, 1.0, 1.2, 1.4, 2.0, 3.0), T=300,
                    lengths=(100, 300), max_iter=100, warmup=50, repeats=2),
    "default": Config(),
    "full": Config(size=64, T=2000, lengths=(100, 1000, 10000, 100000), max_iter=400),
}
DEFAULT_PRESET = "default"


def method_record(name: str, cfg: Config) -> jrnn.Newton:
    """The :class:`jrnn.Newton` record of ``name`` (deer, quasi, elk)."""
    return {"deer": jrnn.Newton("full", None, cfg.max_iter),
            "quasi": jrnn.Newton("diagonal", None, cfg.max_iter),
            "elk": jrnn.Newton("full", cfg.damping, cfg.max_iter)}[name]


def _float(tree):
    """Floating leaves in the default float dtype (float64 under ``x64``: ``cell.init``
    returns float32, and the tolerance follows the state's dtype)."""
    dtype = jnp.zeros(()).dtype
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def elman_net(cfg: Config, gain: float, T: int, seed: int):
    """``(cell, params, xs)``: tanh Elman, ``W_hh = gain N(0, 1/N)``, inputs ``0.5 N(0, 1)``."""
    N = cfg.size
    cell = jrnn.cells.elman(N, "tanh")
    k_p, k_w, k_x = jax.random.split(jax.random.key(seed), 3)
    params = _float(cell.init(k_p, 1))
    # Drawn in float32 and cast: the same nets under x64 or not.
    W0 = _float(jax.random.normal(k_w, (N, N), jnp.float32)) / math.sqrt(N)
    xs = 0.5 * _float(jax.random.normal(k_x, (T, 1), jnp.float32))
    return cell, dict(params, W_hh=gain * W0), xs


def other_nets(cfg: Config, T: int, seed: int):
    """``{label: (cell, params, xs)}``: GRU at init and scaled, LRU, minGRU."""
    N, d = cfg.size, 2
    xs = _float(jax.random.normal(jax.random.key(seed + 7), (T, d), jnp.float32))
    out = {}
    gru = jrnn.cells.gru(N)
    p = _float(gru.init(jax.random.key(seed), d))
    out["gru (init)"] = (gru, p, xs)
    out["gru (W_hh x 4)"] = (gru, dict(p, W_hh=4.0 * p["W_hh"]), xs)
    for label, cell in (("lru", jrnn.cells.lru(N)), ("min_gru", jrnn.cells.min_gru(N))):
        out[label] = (cell, _float(cell.init(jax.random.key(seed + 1), d)), xs)
    return out


def compiled(cache: dict, key: str, cell, cfg: Config) -> dict:
    """``{"scan" | method: jitted f(params, xs)}`` for the nets labelled ``key`` (one cell
    configuration): nets of one configuration and one length share one compilation."""
    if key not in cache:
        fns = {"scan": jax.jit(lambda p, x: jrnn.unroll(cell, p, x, method=jrnn.Scan())[1])}
        for name in cfg.methods:
            m = method_record(name, cfg)
            fns[name] = jax.jit(lambda p, x, m=m: jrnn.newton.unroll(
                cell, p, x, jacobian=m.jacobian, damping=m.damping, max_iter=m.max_iter))
        cache[key] = fns
    return cache[key]


def measure_net(cell, params, xs, cfg: Config, fns: dict | None = None) -> dict:
    """lambda_max, the rule's forecast and every method's iterations / convergence;
    ``fns`` from :func:`compiled` (None: compiled for this call)."""
    fns = compiled({}, "", cell, cfg) if fns is None else fns
    spec = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, k=1, warmup=cfg.warmup)
    lam = float(spec.exponents[0])
    tol = jrnn.unrolling.newton.default_tol(xs.dtype)
    row = {"lambda_max": lam, "lambda_stderr": float(spec.stderr[0])}
    if math.isfinite(lam):
        f = jrnn.newton.iteration_rule(lam, xs.shape[0], tol)
        row["predicted"] = f.iterations
    else:
        row["predicted"] = None
    ref = fns["scan"](params, xs)
    for name in cfg.methods:
        res = fns[name](params, xs)
        err = float(jnp.max(jnp.abs(res.hs - ref)))
        row[name] = {"iterations": int(res.iterations), "converged": bool(res.converged),
                     "residual": float(res.residual), "max_abs_error": err}
    return row


def _timed(fn, args, repeats: int) -> float:
    """Median seconds of ``fn(*args)`` after one compiling call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def length_sweep(cfg: Config, seed: int, cache: dict | None = None) -> dict:
    """Iterations and wall time vs T for an Elman net (g = 0.8) and a GRU."""
    cache = {} if cache is None else cache
    out = {}
    for label in ("elman g=0.8", "gru"):
        rows = []
        for T in cfg.lengths:
            if label == "gru":
                cell, params, _ = other_nets(cfg, T, seed)["gru (init)"]
                xs = _float(jax.random.normal(jax.random.key(seed + 7), (T, 2), jnp.float32))
            else:
                cell, params, xs = elman_net(cfg, 0.8, T, seed)
            row = {"T": T}
            fns = compiled(cache, "elman" if label.startswith("elman") else "gru (init)",
                           cell, cfg)
            row["scan_s"] = _timed(fns["scan"], (params, xs), cfg.repeats)
            for name in cfg.methods:
                fn = fns[name]
                res = fn(params, xs)
                row[name] = {"iterations": int(res.iterations),
                             "converged": bool(res.converged),
                             "seconds": _timed(fn, (params, xs), cfg.repeats)}
            rows.append(row)
        out[label] = rows
    return out


def plot(sweep: dict, others: dict, cfg: Config, out_dir: str) -> str:
    """Iterations against lambda_max with the rule's line (``jrnn.plot.subplots``)."""
    import jrnn.plot
    from jrnn.plot import style

    fig, axes = jrnn.plot.subplots(1, 1, width=6.0, height=4.4)
    ax = axes[0, 0]
    lam = np.array([r["lambda_max"] for r in sweep["rows"]])
    markers = {"deer": "o", "quasi": "s", "elk": "^"}
    for sty, name in zip(style.styles(list(cfg.methods)), cfg.methods):
        it = np.array([r[name]["iterations"] for r in sweep["rows"]], float)
        ok = np.array([r[name]["converged"] for r in sweep["rows"]])
        ax.plot(lam[ok], it[ok], markers[name], color=sty["color"], label=f"{name} converged")
        if (~ok).any():
            ax.plot(lam[~ok], np.full((~ok).sum(), cfg.max_iter), markers[name],
                    mfc="none", color=sty["color"], label=f"{name} not converged (at max_iter)")
    grid = np.linspace(min(lam.min(), -1.2), max(lam.max(), 0.3), 200)
    tol = jrnn.unrolling.newton.default_tol(jnp.zeros(()).dtype)
    theory = [jrnn.newton.iteration_rule(g, cfg.T, tol).iterations for g in grid]
    ax.plot(grid, theory, "k-", lw=1.2, label="rule min(T, K0 + A(lambda, T) / 2)")
    for label, r in others.items():
        ax.plot([r["lambda_max"]], [r["deer"]["iterations"]], "*", ms=10,
                label=f"{label} (DEER)")
    ax.set_yscale("log")
    ax.axvline(0.0, color="grey", lw=0.7)
    style.finish(ax, xlabel=f"largest Lyapunov exponent ({style.NATS})",
                 ylabel="Newton iterations to converge",
                 title=f"tanh Elman N={cfg.size}, T={cfg.T}: iterations vs lambda_max")
    return common.save_figure(fig, out_dir, "iterations_vs_lambda")


def summary(metrics: dict) -> dict:
    """What the gain sweep shows, computed from its rows: how many nets each method
    converged on below and above ``lambda_max = 0``, and measured / predicted DEER
    iterations over the converged contracting nets."""
    rows = [*metrics["gain_sweep"]["rows"], *metrics["others"].values()]
    out = {}
    for name in metrics["methods"]:
        neg = [r for r in rows if r["lambda_max"] < 0]
        pos = [r for r in rows if r["lambda_max"] >= 0]
        out[name] = {"converged_below_0": sum(r[name]["converged"] for r in neg),
                     "nets_below_0": len(neg),
                     "converged_at_or_above_0": sum(r[name]["converged"] for r in pos),
                     "nets_at_or_above_0": len(pos),
                     "max_abs_error_converged": max(
                         [r[name]["max_abs_error"] for r in rows if r[name]["converged"]],
                         default=None)}
    ratios = [r["deer"]["iterations"] / r["predicted"] for r in metrics["gain_sweep"]["rows"]
              if r["lambda_max"] < 0 and r["deer"]["converged"] and r["predicted"]]
    out["rule_ratio_min"] = min(ratios, default=None)
    out["rule_ratio_max"] = max(ratios, default=None)
    # Contracting nets where the rule forecast convergence within max_iter and DEER did not.
    out["rule_misses"] = [r["gain"] for r in metrics["gain_sweep"]["rows"]
                          if r["lambda_max"] < 0 and not r["deer"]["converged"]
                          and r["predicted"] is not None
                          and r["predicted"] < r["deer"]["iterations"]]
    return out


def _findings(metrics: dict) -> list[str]:
    s = summary(metrics)
    lines = ["## Findings (computed from the tables below)", ""]
    for name in metrics["methods"]:
        m = s[name]
        err = m["max_abs_error_converged"]
        lines.append(
            f"- {name}: converged on {m['converged_below_0']} of {m['nets_below_0']} nets with "
            f"lambda_max < 0 and {m['converged_at_or_above_0']} of {m['nets_at_or_above_0']} "
            "with lambda_max >= 0"
            + ("" if err is None else f"; largest |hs - scan| where converged {err:.1e}") + ".")
    if s["rule_ratio_min"] is not None:
        lines.append(
            f"- measured / predicted DEER iterations over the converged contracting Elman nets: "
            f"{s['rule_ratio_min']:.2f} .. {s['rule_ratio_max']:.2f} (the rule's slope "
            f"{metrics['iteration_slope']} was fitted on the default sweep, N = 32, T = 1000).")
    if s["rule_misses"]:
        lines.append(
            f"- the rule failed at gains {', '.join(f'{g:g}' for g in s['rule_misses'])}: "
            "lambda_max < 0, yet DEER did not converge within max_iter (its documented "
            "failure mode: a small, strongly driven net whose finite-time exponents stay "
            "positive for long stretches).")
    timing = metrics.get("timing", {})
    ratios = [r["deer"]["seconds"] / r["scan_s"] for rs in timing.values() for r in rs]
    if ratios:
        lines.append(
            f"- wall time, this machine: DEER took {min(ratios):.1f}x .. {max(ratios):.1f}x the "
            "sequential scan (medians of a few calls, not interleaved: on a shared CPU a ratio "
            "below 1 is load, not speed; experiments/benchmarks/newton.py times them "
            "round-robin).")
    return lines + [""]


def report(metrics: dict, cfg: Config) -> str:
    rows = []
    for r in metrics["gain_sweep"]["rows"]:
        cells = [r["gain"], f"{r['lambda_max']:+.3f}", r["predicted"]]
        for name in cfg.methods:
            m = r[name]
            cells.append(f"{m['iterations']}" + ("" if m["converged"] else " (no)"))
        rows.append(cells)
    lines = [f"# Parallel-in-time evaluation ({metrics['mode']})", "",
             f"Iterations of {', '.join(cfg.methods)} (ELK damping "
             f"{cfg.damping:g}) to converge, `(no)`: not converged within {cfg.max_iter} or "
             "diverged (reported, never hidden). `predicted`: jrnn.newton.iteration_rule "
             "from the measured lambda_max.", "",
             *_findings(metrics),
             f"## tanh Elman gain sweep (N = {cfg.size}, T = {cfg.T})", "",
             common.table(["gain", "lambda_max", "predicted", *cfg.methods], rows), "",
             "## Other cells", ""]
    orow = [[k, f"{r['lambda_max']:+.3f}", r["predicted"]]
            + [f"{r[n]['iterations']}" + ("" if r[n]["converged"] else " (no)")
               for n in cfg.methods] for k, r in metrics["others"].items()]
    lines += [common.table(["cell", "lambda_max", "predicted", *cfg.methods], orow), "",
              "## Length sweep (wall time, this machine)", ""]
    for label, rs in metrics["timing"].items():
        trow = [[r["T"], f"{r['scan_s'] * 1e3:.2f}"]
                + [f"{r[n]['iterations']} / {r[n]['seconds'] * 1e3:.1f}"
                   + ("" if r[n]["converged"] else " (no)") for n in cfg.methods]
                + [f"{r['deer']['seconds'] / r['scan_s']:.1f}"] for r in rs]
        lines += [f"### {label}", "", common.table(
            ["T", "scan ms", *[f"{n} iters / ms" for n in cfg.methods], "deer / scan"], trow), ""]
    lines += ["![iterations vs lambda](iterations_vs_lambda.png)", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Runs the study; writes metrics.json, report.md and iterations_vs_lambda.png."""
    args = common.parse(NAME, __doc__, PRESETS, DEFAULT_PRESET, argv)
    cfg = args.config
    if cfg.x64:
        jax.config.update("jax_enable_x64", True)
    t0 = time.perf_counter()
    bar = common.progress(len(cfg.gains) + 5, NAME)
    rows, cache = [], {}
    for g in cfg.gains:
        cell, params, xs = elman_net(cfg, g, cfg.T, args.seed)
        fns = compiled(cache, "elman", cell, cfg)  # one compilation for every gain
        rows.append({"gain": g, **measure_net(cell, params, xs, cfg, fns)})
        bar.update()
    others = {}
    for label, (cell, params, xs) in other_nets(cfg, cfg.T, args.seed).items():
        key = "gru (init)" if label.startswith("gru") else label
        others[label] = measure_net(cell, params, xs, cfg, compiled(cache, key, cell, cfg))
        bar.update()
    timing = length_sweep(cfg, args.seed, cache)
    bar.update()
    bar.close()
    timing_clean = {k: [{kk: vv for kk, vv in r.items()} for r in v] for k, v in timing.items()}
    metrics = {"mode": args.preset, "seed": args.seed, "dtype": str(jnp.zeros(()).dtype),
               "gain_sweep": {"N": cfg.size, "T": cfg.T, "rows": rows},
               "others": others,
               "lengths": {k: [{"T": r["T"], **{n: {"iterations": r[n]["iterations"],
                                                     "converged": r[n]["converged"]}
                                                 for n in cfg.methods}} for r in v]
                           for k, v in timing.items()},
               "iteration_slope": jrnn.newton.ITERATION_SLOPE, "methods": list(cfg.methods)}
    metrics["summary"] = summary(metrics)
    plot(metrics["gain_sweep"], others, cfg, args.out)
    common.write_metrics(args.out, metrics)
    common.write_report(args.out, report({**metrics, "timing": timing_clean}, cfg))
    common.write_run_info(args, wall_time_s=time.perf_counter() - t0,
                          timings=timing_clean)
    return metrics


if __name__ == "__main__":
    main()
