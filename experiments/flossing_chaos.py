"""Gradient flossing from a chaotic start: which gradient carries signal, and the goal.

Tanh Elman nets ``h_t = tanh(W h_{t-1} + U x_t + b)``, ``W ~ N(0, g^2 / N)``,
driven by +-1 bits, float32. Two parts:

1. **Which gradient** (at the initialisation of gain ``snr_gain``, seed ``--seed``): for
   each estimator of the gradient of the flossing penalty
   :func:`jrnn.penalties.lyapunov_penalty` (``gradient`` full / frozen,
   ``clip`` none / median), on ``snr_batch`` windows of ``snr_warmup +
   snr_steps`` steps: how many sequences' gradients are finite, the spread of
   their norms (largest / median), the cosine between the estimates from the
   two halves of the batch (near 1: signal; near 0: noise), and the
   first-order change of the *long-run* penalty ``mean_i (lambda_i)^2``
   (``eval_streams`` fresh streams of ``eval_len`` steps) along a step of
   ``snr_eta`` against the estimate, ``(P(theta - eta d) - P(theta + eta d)) / 2``
   with ``d`` the unit estimate, beside the largest such change along
   random unit directions (what noise gives).
2. **The goal** (issue 28.3): :func:`jrnn.flossing.floss_windows` with its
   defaults (or the config's stage) from ``seeds`` initialisations at each
   gain; the leading ``k + 1`` exponents on fresh streams before and after,
   with their stderr, and how many runs end with ``|lambda_1..k| < tol``.

Every seed's result is written to ``OUT/seeds/`` as it finishes: a killed run
started again with the same ``--out`` and config resumes after the last
finished seed (another config there is refused). ``--preset quick`` takes a few
minutes on a CPU, the default ``full`` about 40 minutes (30 runs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

import jrnn
from experiments import common

NAME = "flossing_chaos"
ESTIMATORS = (("full", None), ("full", "median"), ("frozen", None), ("frozen", "median"))


@dataclasses.dataclass(frozen=True)
class Config:
    """Nets, the flossing stage and the measurements of the flossing-from-chaos study."""

    hidden: int = 32
    """hidden units N"""
    gains: tuple[float, ...] = (2.0, 3.0, 5.0)
    """recurrent gains g (W ~ N(0, g^2/N))"""
    seeds: int = 10
    """initialisations per gain"""
    k: int = 4
    """exponents flossed"""
    updates: int = jrnn.flossing.WINDOWS[0][0]
    """flossing updates (floss_windows' default stage)"""
    steps: int = jrnn.flossing.WINDOWS[0][1]
    """averaged steps of each flossing window"""
    warmup: int = jrnn.flossing.WINDOWS[0][2]
    """frame-alignment steps of each flossing window"""
    lr: float = jrnn.flossing.WINDOWS[0][3]
    """peak Adam learning rate"""
    batch: int = 16
    """sequences per flossing update"""
    gradient: str = "frozen"
    """floss_windows' gradient (full | frozen)"""
    clip: str | None = "median"
    """floss_windows' clip (None | median)"""
    tol: float = 0.05
    """goal: |lambda_1..k| < tol, nats per step"""
    eval_len: int = 3000
    """steps of each fresh stream the exponents are measured on"""
    eval_streams: int = 4
    """fresh streams"""
    eval_warmup: int = 300
    """warm-up steps of the measured exponents"""
    snr_gain: float = 3.0
    """gain of the net the gradients are compared on (at initialisation, seed --seed)"""
    snr_batch: int = 128
    """windows of the gradient comparison (two halves)"""
    snr_warmup: int = 50
    """frame-alignment steps of its windows"""
    snr_steps: int = 150
    """averaged steps of its windows"""
    snr_eta: float = 0.5
    """step along each direction (Frobenius norm over all parameters)"""
    snr_streams: int = 16
    """fresh streams (of eval_len steps) of the long-run penalty along each direction"""
    snr_random: int = 3
    """random directions compared"""

    def __post_init__(self):
        if not self.gains:
            raise ValueError("gains must name at least one gain, got ().")
        for name in ("hidden", "seeds", "k", "updates", "steps", "batch", "eval_len",
                     "eval_streams", "snr_steps", "snr_random", "snr_streams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}.")
        if self.snr_batch < 2 or self.snr_batch % 2:
            raise ValueError(f"snr_batch must be an even number >= 2, got {self.snr_batch!r}.")
        if self.k >= self.hidden:
            raise ValueError(f"k must be below hidden ({self.hidden}), got {self.k!r}.")
        if self.eval_warmup >= self.eval_len:
            raise ValueError(f"eval_warmup must be below eval_len ({self.eval_len}), got "
                             f"{self.eval_warmup!r}.")


PRESETS = {
    "smoke": Config(hidden=6, gains=(3.0,), seeds=2, k=2, updates=3, steps=10, warmup=5,
                    batch=2, eval_len=120, eval_streams=2, eval_warmup=20, snr_batch=8,
                    snr_warmup=5, snr_steps=10, snr_random=2),
    "quick": Config(gains=(3.0,), seeds=3),
    "full": Config(),
}
DEFAULT_PRESET = "full"


def bits(key, batch: int, T: int):
    """``(batch, T, 1)`` random +-1 inputs, float32."""
    import jax
    import jax.numpy as jnp

    return jnp.sign(jax.random.normal(key, (batch, T, 1), jnp.float32))


def make_cell(cfg: Config, gain: float) -> jrnn.Cell:
    return jrnn.cells.elman(cfg.hidden, "tanh",
                            recurrent_init=jrnn.initializers.scaled_normal(gain))


def _measure(cell, cfg: Config, key):
    """``params -> (exponents (k+1,), stderr (k+1,))`` on fresh streams, jitted."""
    import jax

    fresh = bits(key, cfg.eval_streams, cfg.eval_len)
    fn = jax.jit(lambda p: jrnn.diagnostics.lyapunov_spectrum(
        cell, p, fresh, k=cfg.k + 1, warmup=cfg.eval_warmup))

    def measure(params):  # independent streams: the mean's stderr is sqrt(sum se_b^2) / B
        spec = fn(params)
        lam, se = (np.asarray(a, np.float64) for a in (spec.exponents, spec.stderr))
        return lam.mean(0), np.sqrt(np.sum(se**2, axis=0)) / se.shape[0]

    return measure


def gradient_quality(cfg: Config, seed: int) -> list[dict]:
    """Part 1: every estimator's signal at the initialisation of gain ``snr_gain``."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    cell = make_cell(cfg, cfg.snr_gain)
    params = cell.init(jax.random.key(seed), 1)
    flat, unravel = ravel_pytree(params)
    measure = _measure(cell, dataclasses.replace(cfg, eval_streams=cfg.snr_streams),
                       jax.random.key(seed + 99))
    long_run = lambda p: float(np.mean(measure(p)[0][:cfg.k] ** 2))
    xs = bits(jax.random.key(seed + 7), cfg.snr_batch, cfg.snr_warmup + cfg.snr_steps)
    half = cfg.snr_batch // 2

    def first_order(d):
        d = _unit(d)
        if d is None:
            return float("nan")
        d = jnp.asarray(d, flat.dtype)
        e = cfg.snr_eta
        return 0.5 * (long_run(unravel(flat - e * d)) - long_run(unravel(flat + e * d)))

    rand = [first_order(jax.random.normal(jax.random.key(seed + 1000 + i), flat.shape,
                                          flat.dtype)) for i in range(cfg.snr_random)]
    noise = float(np.max(np.abs(rand)))
    rows, per_sequence = [], {}
    for gradient in ("full", "frozen"):  # one compiled per-sequence gradient for each
        pen = jrnn.penalties.lyapunov_penalty(cell, cfg.k, gradient=gradient,
                                              warmup=cfg.snr_warmup, steps=cfg.snr_steps)
        one = jax.jit(jax.vmap(lambda x, pen=pen: ravel_pytree(jax.grad(pen.fn)(params, x))[0]))
        per_sequence[gradient] = np.asarray(one(xs), np.float64)
    for gradient, clip in ESTIMATORS:
        G = per_sequence[gradient]
        norms = np.linalg.norm(G, axis=1)
        finite = np.isfinite(norms)
        # each half's estimate as lyapunov_penalty(clip=...) forms it from its sequences
        halves = [_estimate(G[:half], clip), _estimate(G[half:], clip)]
        ok = all(np.all(np.isfinite(h)) for h in halves)
        a, b = halves
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) if ok else float("nan")
        change = first_order(a + b) if ok else float("nan")
        med = float(np.median(norms[finite])) if finite.any() else float("nan")
        rows.append({
            "gradient": gradient, "clip": clip or "none",
            "finite_sequences": int(finite.sum()), "sequences": int(norms.size),
            "norm_median": med,
            "norm_max_over_median": float(np.max(norms[finite]) / med) if finite.any()
            else float("nan"),
            "cosine_halves": cos, "first_order_change": change,
            "random_direction_change_max": noise,
        })
    return rows


def _unit(d) -> np.ndarray | None:
    """``d / |d|`` in float64, the norm taken of ``d / max|d_i|`` (a float32 norm of a full
    gradient of ~1e21 overflows: the direction became 0 and its change 0); None when ``d`` is
    0 or not finite."""
    d = np.asarray(d, np.float64)
    a = np.max(np.abs(d)) if d.size else 0.0
    if not (np.isfinite(a) and a > 0):
        return None
    return d / a / np.linalg.norm(d / a)


def _estimate(G: np.ndarray, clip: str | None) -> np.ndarray:
    """The batch gradient from per-sequence gradients ``G (B, P)``: their mean, or with
    ``clip="median"`` each clipped to the median norm first (lyapunov_penalty's formula);
    NaN where any is not finite (never dropped)."""
    if not np.all(np.isfinite(G)):
        return np.full(G.shape[1], np.nan)
    if clip == "median":
        n = np.linalg.norm(G, axis=1)
        G = G * np.minimum(1.0, np.median(n) / np.where(n > 0, n, 1.0))[:, None]
    return G.mean(0)


def _seed_file(out: str, gain: float, i: int) -> str:
    return os.path.join(out, "seeds", f"g{gain:g}_s{i}.json")


#: The config fields a flossing run depends on (a stored run is reused only if they match;
#: the gradient comparison's ``snr_*`` fields and ``seeds`` do not change a run).
RUN_FIELDS = ("hidden", "k", "updates", "steps", "warmup", "lr", "batch", "gradient", "clip",
              "tol", "eval_len", "eval_streams", "eval_warmup")


def _run_config(cfg: Config) -> dict:
    return common._clean({f: getattr(cfg, f) for f in RUN_FIELDS})


def check_out(cfg: Config, seed: int, out: str) -> None:
    """Refuses an ``--out`` whose ``seeds/`` holds runs of another config or seed (any gain or
    index), before any work is done."""
    folder = os.path.join(out, "seeds")
    want = {"config": _run_config(cfg), "seed": seed}
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else ()
    for name in (n for n in names if n.endswith(".json")):  # not a killed write's .tmp
        path = os.path.join(folder, name)
        with open(path) as fh:
            done = json.load(fh)
        if {k: done.get(k) for k in want} != want or done.get("gain") not in cfg.gains:
            raise ValueError(
                f"--out {out!r} holds a run of another config or seed ({path}); start this one "
                f"in another --out."
            )


def flossing_run(cfg: Config, gain: float, i: int, seed: int, out: str,
                 measure=None) -> dict:
    """Part 2, one run: floss_windows from initialisation ``seed + i`` at ``gain``; resumable
    (a finished run is read back; one written under another config is refused)."""
    import jax

    path = _seed_file(out, gain, i)
    record = {"config": _run_config(cfg), "gain": gain, "index": i,
              "seed": seed}
    if os.path.exists(path):
        with open(path) as fh:
            done = json.load(fh)
        if {k: done.get(k) for k in record} != record:
            raise ValueError(
                f"--out {out!r} holds a run of another config or seed ({path}); start this one "
                f"in another --out."
            )
        return done
    cell = make_cell(cfg, gain)
    params = cell.init(jax.random.key(seed + i), 1)
    measure = measure or _measure(cell, cfg, jax.random.key(seed + 99))
    lam0, se0 = measure(params)
    t0 = time.perf_counter()
    res = jrnn.flossing.floss_windows(
        cell, params, bits, jax.random.key(seed + 100 + i), k=cfg.k,
        windows=((cfg.updates, cfg.steps, cfg.warmup, cfg.lr),), batch=cfg.batch,
        gradient=cfg.gradient, clip=cfg.clip)
    wall = time.perf_counter() - t0
    lam1, se1 = measure(res.params)
    top = np.abs(lam1[:cfg.k])
    result = dict(record, **{
        "exponents_before": lam0, "stderr_before": se0,
        "exponents_after": lam1, "stderr_after": se1,
        "max_abs_after": float(np.max(top)) if np.all(np.isfinite(top)) else float("nan"),
        "reached": bool(np.all(top < cfg.tol)),
        "skipped_updates": int(res.skipped), "seconds": wall,
        "penalty": res.loss[:: max(1, len(res.loss) // 200)],
    })
    os.makedirs(os.path.dirname(path), exist_ok=True)
    common._write_json(path, common._clean(result))
    with open(path) as fh:
        return json.load(fh)


QUALITY_HEADERS = ["gradient", "clip", "finite", "norm median", "max / median",
                   "cosine (halves)", "first-order dP", "random: largest abs dP"]
GOAL_HEADERS = ["g", "runs with abs(lambda_1..k) < tol",
                "largest abs(lambda_i) (median [min, max])", "lambda_1 before (median)",
                "lambda_1 after (median)", "skipped updates", "s per run (median)"]


def quality_rows(rows: list[dict]) -> list[list]:
    return [[r["gradient"], r["clip"], f"{r['finite_sequences']}/{r['sequences']}",
             r["norm_median"], r["norm_max_over_median"], r["cosine_halves"],
             r["first_order_change"], r["random_direction_change_max"]] for r in rows]


def goal_rows(runs: dict) -> list[list]:
    rows = []
    for g, rs in runs.items():
        top = np.array([r["max_abs_after"] if r["max_abs_after"] is not None else np.nan
                        for r in rs])
        rows.append([
            f"{g:g}", f"{sum(r['reached'] for r in rs)}/{len(rs)}",
            f"{np.median(top):.3f} [{np.min(top):.3f}, {np.max(top):.3f}]",
            float(np.median([r["exponents_before"][0] for r in rs])),
            float(np.median([r["exponents_after"][0] for r in rs])),
            sum(r["skipped_updates"] for r in rs),
            float(np.median([r["seconds"] for r in rs])),
        ])
    return rows


def plot(runs: dict, cfg: Config, out: str) -> list[str]:
    """Per gain: the leading exponents before and after (median, range over runs) against the
    goal band; last panel: the penalty on the training windows (``jrnn.plot.training``)."""
    import jrnn.plot

    gains = list(runs)
    fig, axes = jrnn.plot.subplots(1, len(gains) + 1, width=4.0, height=3.5)
    axes = np.ravel(axes)
    i = np.arange(1, cfg.k + 2)
    for ax, g in zip(axes, gains):
        for key, label in (("exponents_before", "before"), ("exponents_after", "after")):
            lam = np.array([r[key] for r in runs[g]], np.float64)
            med = np.median(lam, 0)
            ax.errorbar(i, med, yerr=[med - lam.min(0), lam.max(0) - med], marker="o",
                        capsize=2, label=f"{label} (median, range)")
        ax.axhspan(-cfg.tol, cfg.tol, color="0.85", label=f"abs(lambda) < {cfg.tol}")
        ax.axvline(cfg.k + 0.5, color="k", lw=0.6, ls=":")
        ax.set_xticks(i)
        ax.set_title(f"g = {g:g}: {sum(r['reached'] for r in runs[g])}/{len(runs[g])} reached")
        ax.set_xlabel("i (right of the dotted line: not flossed)")
        ax.set_ylabel("lambda_i (nats / step)")
        ax.legend(fontsize=7)
    histories = {}
    for g in gains:
        n = len(runs[g][0]["penalty"])
        steps = np.linspace(0, cfg.updates, n, endpoint=False).round().astype(int).tolist()
        histories[f"g = {g:g}"] = [{"step": steps, "penalty": r["penalty"]} for r in runs[g]]
    jrnn.plot.training(histories, "penalty", ax=axes[-1], log=True)
    axes[-1].set_xlabel("flossing update")
    return [common.save_figure(fig, out, "flossing_from_chaos")]


def report(cfg: Config, mode: str, quality: list[dict], runs: dict, figures: list[str]) -> str:
    lines = [
        "# Gradient flossing from a chaotic start",
        "",
        f"Mode: {mode}. Tanh Elman, N = {cfg.hidden}, W ~ N(0, g^2/N), +-1 bit inputs, "
        f"float32; k = {cfg.k} exponents flossed. Exponents measured on {cfg.eval_streams} "
        f"fresh streams of {cfg.eval_len} steps (warm-up {cfg.eval_warmup}), nats per step.",
        "",
        f"## Which gradient (g = {cfg.snr_gain:g}, at initialisation)",
        "",
        f"{cfg.snr_batch} windows of {cfg.snr_warmup} + {cfg.snr_steps} steps. Cosine: between "
        f"the estimates of the two halves of the batch (NaN: non-finite). First-order dP: the "
        f"change of the long-run penalty mean_i lambda_i^2 along a step of {cfg.snr_eta} "
        f"against the estimate (negative: downhill), beside the largest along "
        f"{cfg.snr_random} random directions.",
        "",
        common.table(QUALITY_HEADERS, quality_rows(quality)),
        "",
        f"## The goal: floss_windows (gradient={cfg.gradient!r}, clip={cfg.clip!r}; "
        f"{cfg.updates} updates on {cfg.warmup} + {cfg.steps}-step windows, batch {cfg.batch}, "
        f"lr {cfg.lr})",
        "",
        common.table(GOAL_HEADERS, goal_rows(runs)),
        "",
    ]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Runs the study and writes metrics.json, report.md, a PNG and per-run JSON under ``--out``."""
    args = common.parse(NAME, __doc__, PRESETS, DEFAULT_PRESET, argv)
    import jax

    cfg, mode = args.config, args.preset
    check_out(cfg, args.seed, args.out)  # before any work
    t0 = time.perf_counter()
    quality = gradient_quality(cfg, args.seed)
    bar = common.progress(len(cfg.gains) * cfg.seeds, NAME)
    runs: dict = {}
    for g in cfg.gains:
        measure = _measure(make_cell(cfg, g), cfg, jax.random.key(args.seed + 99))
        for i in range(cfg.seeds):
            bar.set_postfix_str(f"g={g} run {i}")
            runs.setdefault(g, []).append(flossing_run(cfg, g, i, args.seed, args.out,
                                                       measure))
            bar.update()
    bar.close()
    figures = plot(runs, cfg, args.out)
    reached = {str(g): sum(r["reached"] for r in rs) for g, rs in runs.items()}
    metrics = {"mode": mode, "seed": args.seed, "config": dataclasses.asdict(cfg),
               "gradient_quality": quality, "reached": reached,
               "runs": {str(g): rs for g, rs in runs.items()}}
    common.write_metrics(args.out, metrics)
    common.write_report(args.out, report(cfg, mode, quality, runs, figures))
    wall = time.perf_counter() - t0
    common.write_run_info(args, wall_time_s=wall, mode=mode)
    common.print_table(QUALITY_HEADERS, quality_rows(quality), title="which gradient")
    common.print_table(GOAL_HEADERS, goal_rows(runs), title=f"{NAME} ({mode}), {wall:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
