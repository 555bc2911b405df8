"""Edge of chaos: the measured largest Lyapunov exponent of random RNNs against mean-field theory.

For every activation ``phi`` and gain ``sigma_w``, random autonomous networks

.. math::

   h_{t+1} = \\phi(W h_t + b), \\qquad W_{ij} \\sim N(0, \\sigma_w^2 / N),
   \\quad b_i \\sim N(0, \\sigma_b^2)

(the Elman cell of ``jrnn.cells.elman`` driven by zero input, from a random
``h_0 ~ N(0, I)``) are run for ``T`` steps and their largest Lyapunov exponent
is measured by the Benettin method with one tangent vector:
``v_t = J_t v_{t-1} / ||J_t v_{t-1}||``, ``lambda_max = mean_{t > warmup}
ln ||J_t v_{t-1}||``, with ``J_t v`` a Jacobian-vector product of the cell's
step (matrix-free, so memory does not grow with ``T N^2``; it agrees with
:func:`jrnn.diagnostics.lyapunov_spectrum` with ``k = 1`` to rounding, which
the tests check). Several sizes ``N`` and seeds per gain; one sharded, vmapped
program per (activation, N) through :func:`jrnn.parallel.sweep`.

The prediction is mean-field theory (Poole et al. 2016; Molgedey, Schuchhardt
& Schuster 1992): ``lambda_max = 0.5 ln chi`` with
``chi = sigma_w^2 E[phi'(sqrt(q*) z)^2]`` (:func:`jrnn.theory.mean_field`), and
the critical gain ``g*`` where ``chi = 1`` (:func:`jrnn.theory.critical_gain`).
Gains are sampled on ``g* x 2^[-span, span]`` for each activation, so every
panel is centred on its own transition.

The bias: with ``sigma_b = 0`` and an odd ``phi`` the ordered phase has the
trivial fixed point ``q* = 0`` and both theory and simulation give
``lambda_max = ln(sigma_w phi'(0))``; ReLU-like activations then decay to an
exactly zero state (where ``relu'(0) = 0``). The default ``--sigma-b 0.05``
keeps a non-trivial fixed point for every activation. Where the variance
``q_t`` grows without bound (unbounded activations above the transition,
``q* = inf``), theory gives no finite fixed point and is not drawn; the
simulated state then overflows, and exponents that come out non-finite are
counted and reported, never silently dropped.

Run ``python -m experiments.edge_of_chaos`` (about 3 minutes on 2 CPU cores),
``--preset quick`` (fewer gains, one size), ``--preset full`` (N up to 1024, longer runs),
``--activations relu tanh`` (any registered names, ``all`` for every one); ``--help`` lists
every field.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import jrnn
from experiments import common

NAME = "edge_of_chaos"
ACTIVATIONS = ("tanh", "hard_tanh", "sigmoid", "relu", "elu", "selu", "gelu", "silu",
               "softplus", "identity")
SIGMA_B = 0.05
AWAY_OCTAVES = 0.5  # "away from the transition": |log2(sigma_w / g*)| >= this
NEAR_FRACTION = 0.1  # a measured crossing "agrees" when within 10% of g*
BISECTIONS = 40  # of the log bracket [1e-2, 1e2]: 9.2 / 2^40 ~ 1e-11 relative
FALLBACK_CENTRE = 1.0  # grid centre where g* is not finite (no transition in the bracket)



@dataclasses.dataclass(frozen=True)
class Config:
    """Networks, gains and activations of the edge-of-chaos study."""

    sizes: tuple[int, ...] = (64, 256)
    """network sizes N"""
    seeds: int = 4
    """networks per (gain, N)"""
    gains: int = 13
    """measured gains g* 2^linspace(-span, span, gains)"""
    span: float = 2.0
    """octaves either side of g*"""
    T: int = 400
    """steps per network"""
    warmup: int = 200
    """steps before the Lyapunov average"""
    theory_points: int = 49
    """points of the mean-field line"""
    activations: tuple[str, ...] = ACTIVATIONS
    """registered activation names, or 'all' for every registered one"""
    sigma_b: float = SIGMA_B
    """bias standard deviation"""
    x64: bool = False
    """simulate in float64: an unbounded state overflows at e^709 instead of e^88 (slower)"""
    driven_sigma_u: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    """input drives sigma_u of the driven nets measured at the input-aware g*(sigma_u)"""
    driven_line_points: int = 21
    """points of the critical line g*(sigma_u)"""
    driven_inputs: int = 4
    """input features of the driven nets"""
    gated_size: int = 256
    """GRU / LSTM width for the gated gain per step"""
    gated_T: int = 160
    """GRU / LSTM steps"""
    gate_biases: tuple[float, ...] = (-1.0, 0.0, 1.0, 2.0, 3.0)
    """update (GRU) / forget (LSTM) gate biases measured"""

    def __post_init__(self):
        if not (math.isfinite(self.sigma_b) and self.sigma_b >= 0):
            raise ValueError(f"sigma_b must be a finite number >= 0, got {self.sigma_b!r}.")
        if not self.activations:
            raise ValueError("activations must name at least one activation, got ().")
        if self.activations != ("all",):
            for name in self.activations:
                jrnn.activations.get(name)  # raises with the nearest names

    def selected_activations(self) -> tuple[str, ...]:
        """The activations to measure (``all``: every registered one, now)."""
        if self.activations == ("all",):
            return tuple(jrnn.activations.names())
        return self.activations

    def measured(self) -> dict:
        """``metrics.json``'s ``config``: the sizes, seeds, gains and lengths."""
        keep = ("sizes", "seeds", "gains", "span", "T", "warmup", "theory_points")
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items() if k in keep}


_SMALL = dict(driven_sigma_u=(0.0, 1.0), driven_line_points=5, gated_size=32, gated_T=40,
              gate_biases=(0.0, 2.0))
PRESETS = {
    "smoke": Config(sizes=(64,), seeds=4, gains=5, span=2.0, T=80, warmup=30, theory_points=9,
                    activations=("tanh",), **_SMALL),
    "quick": Config(sizes=(64,), seeds=4, gains=9, span=2.0, T=300, warmup=100,
                    theory_points=33),
    "default": Config(),
    "full": Config(sizes=(64, 256, 1024), seeds=8, gains=25, span=2.0, T=2000, warmup=500,
                   theory_points=97),
}
DEFAULT_PRESET = "default"


# ------------------------------------------------------------------ networks
def network(activation: str, size: int, sigma_b, gain, seed):
    """One random autonomous network: ``(cell, params, h0, tangent_key)``.

    ``W_hh = gain * N(0, 1/N)`` (traced ``gain``: one program for every gain),
    ``b_h ~ N(0, sigma_b^2)``, ``h0 ~ N(0, I)``; the input weights are unused
    (zero input).
    """
    cell = jrnn.cells.elman(size, activation,
                            recurrent_init=jrnn.initializers.scaled_normal(1.0))
    k_p, k_b, k_h, k_v = jax.random.split(jax.random.key(seed), 4)
    params = cell.init(k_p, 1)
    W = gain * params["W_hh"]
    params = dict(params, W_hh=W, b_h=sigma_b * jax.random.normal(k_b, (size,), W.dtype))
    h0 = jax.random.normal(k_h, (size,), W.dtype)
    return cell, params, h0, k_v


def lyapunov_max(activation: str, size: int, T: int, warmup: int, sigma_b: float, gain, seed):
    """Largest Lyapunov exponent of one network (Benettin, one tangent vector, JVPs).

    ``v_0`` is ``normal(tangent_key, (N, 1))`` normalised, the start vector of
    :func:`jrnn.diagnostics.lyapunov_spectrum` with ``k = 1`` and the same key,
    so the two agree to rounding.

    Returns:
      ``{"lambda_max": (), "state_finite": () bool, "log_state_rms": ()}``;
      ``log_state_rms`` is ``ln sqrt(mean h_T^2)`` (collapse or overflow shows there).
    """
    cell, params, h0, k_v = network(activation, size, sigma_b, gain, seed)
    v0 = jax.random.normal(k_v, (size, 1), h0.dtype)[:, 0]
    v0 = v0 / jnp.linalg.norm(v0)
    u = cell.input_map(params, jnp.zeros((1,), h0.dtype))  # zero input: u = b_h

    def step(carry, _):
        h, v = carry
        h_new, jv = jax.jvp(lambda s: cell.recur(params, s, u)[0], (h,), (v,))
        norm = jnp.linalg.norm(jv)
        return (h_new, jv / norm), jnp.log(norm)

    (hT, _), logs = jax.lax.scan(step, (h0, v0), None, length=T)
    return {
        "lambda_max": jnp.mean(logs[warmup:]),
        "state_finite": jnp.all(jnp.isfinite(hT)),
        "log_state_rms": 0.5 * jnp.log(jnp.mean(hT * hT)),
    }


@functools.partial(jax.jit, static_argnums=0)
def theory(activation: str, sigma_b, measured_multipliers, line_multipliers):
    """``g*``, the gains to measure and the mean-field records, in one compiled program.

    Gains are ``g* x multipliers`` (``FALLBACK_CENTRE x multipliers`` where ``g*``
    is not finite). ``lambda_max`` is NaN where ``q*`` is infinite.
    """
    g_star = jrnn.theory.critical_gain(activation, sigma_b, bisections=BISECTIONS)
    centre = jnp.where(jnp.isfinite(g_star), g_star, FALLBACK_CENTRE)
    gains = centre * jnp.concatenate([measured_multipliers, line_multipliers])
    mf = jax.vmap(lambda g: jrnn.theory.mean_field(activation, g, sigma_b))(gains)
    lam = jnp.where(jnp.isfinite(mf.q_star), mf.lambda_max, jnp.nan)
    return g_star, gains, lam, mf.q_star


# ------------------------------------------------------------------ driven and gated
def driven_lambda(activation: str, size: int, T: int, warmup: int, d: int, gain, sigma_u, seed):
    """lambda_max of ``h = phi(W h + W_xh x_t)``, ``W_xh x_t`` of rms ``sigma_u`` (Benettin)."""
    act = jrnn.activations.get(activation)
    k1, k2, k3, k4, k5 = jax.random.split(jax.random.key(seed), 5)
    W = gain * jax.random.normal(k1, (size, size)) / math.sqrt(size)
    Wx = sigma_u * jax.random.normal(k2, (size, d)) / math.sqrt(d)
    xs = jax.random.normal(k3, (T, d))
    h = jax.random.normal(k4, (size,))
    v = jax.random.normal(k5, (size,))

    def step(c, x):
        h, v = c
        a = W @ h + Wx @ x
        v = act.derivative(a) * (W @ v)
        n = jnp.linalg.norm(v)
        return (act.fn(a), v / n), jnp.log(n)

    _, logs = jax.lax.scan(step, (h, v / jnp.linalg.norm(v)), xs)
    return jnp.mean(logs[warmup:])


def gated_gain(kind: str, size: int, T: int, bias, seed, sigma_w=1.0, sigma_u=0.5, d=4):
    """Measured mean squared gain per step ``||J_t||_F^2 / S`` of a GRU (update-gate bias
    ``bias``) or LSTM (forget-gate bias ``bias``) at init."""
    G = 3 if kind == "gru" else 4
    cell = jrnn.cells.gru(size) if kind == "gru" else jrnn.cells.lstm(size)
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    W = sigma_w * jax.random.normal(k1, (G * size, size)) / math.sqrt(size)
    Wx = sigma_u * jax.random.normal(k2, (G * size, d)) / math.sqrt(d)
    b = jnp.zeros(G * size).at[size:2 * size].set(bias)  # z (GRU) / f (LSTM) slice
    params = ({"W_xh": Wx, "W_hh": W, "b_xh": b, "b_hh": jnp.zeros(G * size)} if kind == "gru"
              else {"W_xh": Wx, "W_hh": W, "b_h": b})
    xs = jax.random.normal(k3, (T, d))
    carry = jax.tree_util.tree_map(lambda a: 0.5 * jax.random.normal(k4, a.shape),
                                   cell.initial_carry(params))
    J = jrnn.diagnostics.step_jacobians(cell, params, xs, carry=carry)[T // 3:]
    return float(jnp.mean(jnp.sum(J**2, axis=(1, 2)) / J.shape[-1]))


def driven_and_gated(acts, cfg: Config, sigma_b: float, seed: int) -> dict:
    """Input-aware critical lines g*(sigma_u) with lambda_max measured on them, and the gated
    mean field's gain per step against GRU / LSTM measurements."""
    size = cfg.sizes[-1]
    line_u = np.linspace(0.0, max(cfg.driven_sigma_u), cfg.driven_line_points)
    out = {"driven": {}, "gated": {}}
    for act in acts:
        line = np.asarray(jrnn.theory.critical_line(act, sigma_b * np.ones_like(line_u),
                                                    sigma_u=line_u), np.float64)
        pts = []
        for i, su in enumerate(cfg.driven_sigma_u):
            g = float(jrnn.theory.critical_gain(act, sigma_b, sigma_u=su))
            lam = (float(driven_lambda(act, size, cfg.T, cfg.warmup, cfg.driven_inputs, g, su,
                                       seed + i)) if math.isfinite(g) else None)
            blind = float(jrnn.theory.critical_gain(act, sigma_b))
            pts.append({"sigma_u": su, "critical_gain": g if math.isfinite(g) else None,
                        "lambda_max": lam if lam is not None and math.isfinite(lam) else None,
                        "input_blind_gain": blind if math.isfinite(blind) else None})
        out["driven"][act] = {"line_sigma_u": line_u.tolist(),
                              "line_gain": [x if math.isfinite(x) else None for x in line],
                              "points": pts}
    biases = np.asarray(cfg.gate_biases, np.float64)
    fine = np.linspace(biases.min(), biases.max(), 4 * len(biases))
    for kind, key in (("gru", "bias_z"), ("lstm", "bias_f")):
        fn = (jrnn.theory.gated.annealed_gru_mean_field if kind == "gru"
              else jrnn.theory.gated.annealed_lstm_mean_field)
        pred = [float(fn(1.0, sigma_u=0.5, **{key: float(b)}).chi) for b in fine]
        meas = [gated_gain(kind, cfg.gated_size, cfg.gated_T, float(b), seed)
                for b in biases]
        out["gated"][kind] = {"bias": key, "theory_bias": fine.tolist(), "theory_chi": pred,
                              "measured_bias": biases.tolist(), "measured_chi": meas,
                              "sigma_w": 1.0, "sigma_u": 0.5, "N": cfg.gated_size}
    return out


def plot_driven(extra: dict, out_dir: str, sigma_b: float) -> str:
    """Critical lines g*(sigma_u) with lambda_max measured on them (``jrnn.plot.phase_diagram``),
    lambda_max against sigma_u, and the gated gain per step."""
    import jrnn.plot
    from jrnn.plot import style

    fig, axes = jrnn.plot.subplots(1, 3, width=5.2, height=4.4)
    ax = axes[0]
    acts = list(extra["driven"])
    pts = [(p["critical_gain"], p["sigma_u"], p["lambda_max"])
           for r in extra["driven"].values() for p in r["points"]
           if p["critical_gain"] is not None]  # no g*: nothing measured (marked by the line)
    nan = float("nan")
    measured = {"sigma_w": [p[0] for p in pts], "sigma_u": [p[1] for p in pts],
                "lambda_max": [nan if p[2] is None else p[2] for p in pts]}
    line_u = next(iter(extra["driven"].values()))["line_sigma_u"] if acts else [0.0]
    jrnn.plot.phase_diagram(acts, vary="sigma_u", values=line_u, sigma_b=sigma_b,
                            measured=measured if pts else None, ax=ax[0])
    ax[0].set_title(f"order-to-chaos line of driven nets (sigma_b = {sigma_b:g});\n"
                    "points: lambda_1 measured at g*(sigma_u)", fontsize=10)
    for sty, (act, r) in zip(style.styles(acts), extra["driven"].items()):
        su = np.asarray([p["sigma_u"] for p in r["points"]], float)
        lam = np.asarray([nan if p["lambda_max"] is None else p["lambda_max"]
                          for p in r["points"]], float)
        ok = np.isfinite(lam)
        ax[1].plot(su[ok], lam[ok], marker="o", color=sty["color"],
                   linestyle=sty["linestyle"], label=act)
        style.mark_nonfinite(ax[1], su, lam, color=sty["color"], label=act,
                             zero_means="none")
    style.finish(ax[1], xlabel="input drive $\\sigma_u$",
                 ylabel=f"measured $\\lambda_1$ at $g^*(\\sigma_u)$ ({style.NATS})",
                 title="measured at the input-aware g* (theory: 0)", zero=0.0)
    kinds = list(extra["gated"])
    # two shades of the gated family's purple: told apart by line style and marker too
    for i, (sty, (kind, r)) in enumerate(zip(style.styles(kinds), extra["gated"].items())):
        ls, mk = ("-", "o") if i % 2 == 0 else ("--", "s")
        ax[2].plot(r["theory_bias"], r["theory_chi"], color=sty["color"], linestyle=ls,
                   label=f"{kind} theory")
        ax[2].plot(r["measured_bias"], r["measured_chi"], mk, color=sty["color"],
                   markeredgecolor="black", label=f"{kind} measured (N={r['N']})")
    ax[2].axhline(1.0, color="k", lw=0.8)
    style.finish(ax[2], xlabel="update (GRU) / forget (LSTM) gate bias",
                 ylabel="gain per step $\\|J_t\\|_F^2 / S$",
                 title="gated cells at init (sigma_w = 1, sigma_u = 0.5)")
    return common.save_figure(fig, out_dir, "driven_and_gated")


# ------------------------------------------------------------------ analysis
def zero_crossing(gains: np.ndarray, values: np.ndarray) -> float | None:
    """First upward zero crossing of ``values`` (interpolated linearly in ``ln gain``)."""
    for i in range(len(gains) - 1):
        a, b = values[i], values[i + 1]
        if np.isfinite(a) and np.isfinite(b) and a < 0 <= b:
            la, lb = math.log(gains[i]), math.log(gains[i + 1])
            return float(math.exp(la + (lb - la) * (-a) / (b - a)))
    return None


def _row_stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, min and max of the finite entries of each row of ``a (G, S)`` (NaN if none)."""
    med, lo, hi = (np.full(a.shape[0], np.nan) for _ in range(3))
    for i, row in enumerate(a):
        f = row[np.isfinite(row)]
        if f.size:
            med[i], lo[i], hi[i] = np.median(f), f.min(), f.max()
    return med, lo, hi


def summarise(gains: np.ndarray, theory_lam: np.ndarray, g_star: float, raw: dict) -> dict:
    """Per-gain median / min / max over seeds, non-finite counts, crossing and errors."""
    lam = np.asarray(raw["lambda_max"], np.float64)  # (G, S)
    finite = np.isfinite(lam)
    median, lo, hi = _row_stats(lam)
    # A gain's median counts only when every seed there is finite (no silent selection).
    all_finite = finite.all(1)
    med_strict = np.where(all_finite, median, np.nan)
    err = np.abs(med_strict - theory_lam)
    both = np.isfinite(err)
    centre = g_star if math.isfinite(g_star) else FALLBACK_CENTRE
    away = np.abs(np.log2(gains / centre)) >= AWAY_OCTAVES - 1e-9
    sel = both & away
    nonfinite = ~finite
    state_bad = ~np.asarray(raw["state_finite"], bool)
    return {
        "median": med_strict.tolist(),
        "min": lo.tolist(),
        "max": hi.tolist(),
        "nonfinite_runs": int(nonfinite.sum()),
        "runs": int(lam.size),
        "nonfinite_per_gain": nonfinite.sum(1).tolist(),
        "state_overflow_runs": int(state_bad.sum()),
        "nonfinite_with_overflow": int((nonfinite & state_bad).sum()),
        "first_nonfinite_gain": float(gains[nonfinite.any(1)].min()) if nonfinite.any() else None,
        "log_state_rms_median": _row_stats(np.asarray(raw["log_state_rms"], np.float64))[0]
        .tolist(),
        "crossing": zero_crossing(gains, med_strict),
        "max_abs_error_away": float(err[sel].max()) if sel.any() else None,
        "mean_abs_error_away": float(err[sel].mean()) if sel.any() else None,
        "mean_abs_error_all": float(err[both].mean()) if both.any() else None,
        "compared_gains_away": int(sel.sum()),
        "lambda_per_seed": lam.tolist(),
    }


def measure(activation: str, cfg: Config, sigma_b: float, seed: int, on_program=None) -> dict:
    """Theory and simulation for one activation, every size in ``cfg.sizes``."""
    G, P, span = cfg.gains, cfg.theory_points, cfg.span
    mult = 2.0 ** np.linspace(-span, span, G)
    line = 2.0 ** np.linspace(-span, span, P)
    g_star, gains_all, lam_all, q_all = jax.device_get(
        theory(activation, sigma_b, jnp.asarray(mult), jnp.asarray(line)))
    g_star = float(g_star)
    gains_all = np.asarray(gains_all, np.float64)
    gains, line_gains = gains_all[:G], gains_all[G:]
    theory_lam = np.asarray(lam_all[:G], np.float64)
    if on_program:
        on_program()
    seeds = jnp.arange(seed, seed + cfg.seeds)
    by_size = {}
    for N in cfg.sizes:
        fn = functools.partial(lyapunov_max, activation, N, cfg.T, cfg.warmup, sigma_b)
        raw = jax.device_get(jrnn.parallel.sweep(fn, gain=jnp.asarray(gains), seed=seeds))
        by_size[f"N{N}"] = summarise(gains, theory_lam, g_star, raw)
        if on_program:
            on_program()
    q_meas = np.asarray(q_all[:G], np.float64)
    return {
        "critical_gain": g_star if math.isfinite(g_star) else None,
        "gains": gains.tolist(),
        "theory_lambda_max": theory_lam.tolist(),
        "theory_q_star": q_meas.tolist(),
        "theory_no_fixed_point_from": (float(gains[~np.isfinite(q_meas)].min())
                                       if (~np.isfinite(q_meas)).any() else None),
        "theory_line_gains": line_gains.tolist(),
        "theory_line_lambda_max": np.asarray(lam_all[G:], np.float64).tolist(),
        "sizes": by_size,
    }


# ------------------------------------------------------------------ output
def headers(sizes) -> list[str]:
    return (["activation", "g* (theory)"] + [f"crossing N={N}" for N in sizes]
            + [f"max abs err away N={N}" for N in sizes] + ["non-finite runs"])


def table_rows(results: dict, sizes) -> list[list]:
    rows = []
    for act, r in results.items():
        dash = lambda v: "-" if v is None else v
        by = r["sizes"]
        nf = sum(by[f"N{N}"]["nonfinite_runs"] for N in sizes)
        total = sum(by[f"N{N}"]["runs"] for N in sizes)
        rows.append([act, dash(r["critical_gain"])]
                    + [dash(by[f"N{N}"]["crossing"]) for N in sizes]
                    + [dash(by[f"N{N}"]["max_abs_error_away"]) for N in sizes]
                    + [f"{nf}/{total}"])
    return rows


def plot(results: dict, sizes, out: str, sigma_b: float) -> str:
    """One ``jrnn.plot.gain_sweep`` panel per activation: per N the median over seeds with a
    min-max band, every non-finite seed marked; the mean-field 0.5 ln chi and g*."""
    import jrnn.plot

    n = len(results)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = jrnn.plot.subplots(rows, cols, width=4.4, height=3.8)
    for ax, (act, r) in zip(axes.ravel(), results.items()):
        per_seed = {f"N={N}": np.asarray(r["sizes"][f"N{N}"]["lambda_per_seed"], float).T
                    for N in sizes}  # (seeds, gains)
        jrnn.plot.gain_sweep(np.asarray(r["gains"]), per_seed, activation=act,
                             sigma_b=sigma_b, ax=ax)
        ax.set_title(f"{act} (sigma_b = {sigma_b:g})", fontsize=10)
        if ax.get_legend() is not None:
            for t in ax.get_legend().get_texts():
                t.set_fontsize(6.5)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return common.save_figure(fig, out, "lyapunov_vs_gain")


def conclusions(results: dict, sizes) -> list[str]:
    """Sentences computed from the measurements (nothing else)."""
    big = f"N{sizes[-1]}"
    out = []
    agree, off, none = [], [], []
    for act, r in results.items():
        g, c = r["critical_gain"], r["sizes"][big]["crossing"]
        if g is None or c is None:
            none.append(act)
        elif abs(c - g) <= NEAR_FRACTION * g:
            agree.append(f"{act} ({c:.3g} vs {g:.3g})")
        else:
            off.append(f"{act} ({c:.3g} vs {g:.3g})")
    out.append(
        f"Measured transition (N = {sizes[-1]}, median over seeds, first upward zero crossing) "
        f"within {NEAR_FRACTION:.0%} of the mean-field g* for {len(agree)} of "
        f"{len(results)} activations" + (f": {', '.join(agree)}." if agree else ".")
    )
    if off:
        out.append(f"Further than {NEAR_FRACTION:.0%} from g*: {', '.join(off)}.")
    if none:
        out.append("No measured crossing (or no finite g*) to compare for: "
                   f"{', '.join(none)}.")
    errs = {a: r["sizes"][big]["max_abs_error_away"] for a, r in results.items()
            if r["sizes"][big]["max_abs_error_away"] is not None}
    if errs:
        worst = max(errs, key=errs.get)
        typical = float(np.median(list(errs.values())))
        out.append(
            f"Away from the transition (|log2(sigma_w/g*)| >= {AWAY_OCTAVES}), the largest "
            f"|measured - theory| at N = {sizes[-1]} has median {typical:.3g} "
            f"over activations; worst {worst} ({errs[worst]:.3g})."
        )
    if len(sizes) > 1:
        small = f"N{sizes[0]}"
        dec, inc = [], []
        for act, r in results.items():
            a, b = r["sizes"][small]["mean_abs_error_all"], r["sizes"][big]["mean_abs_error_all"]
            if a is not None and b is not None:
                (dec if b < a else inc).append(f"{act} ({a:.3g} -> {b:.3g})")
        out.append(
            f"Mean |measured - theory| over all compared gains went down from N = {sizes[0]} "
            f"to N = {sizes[-1]} for {len(dec)} of {len(dec) + len(inc)} activations"
            + (f"; up for {', '.join(inc)}." if inc else ".")
        )
    for act, r in results.items():
        nf = sum(r["sizes"][f"N{N}"]["nonfinite_runs"] for N in sizes)
        if nf:
            tot = sum(r["sizes"][f"N{N}"]["runs"] for N in sizes)
            ov = sum(r["sizes"][f"N{N}"]["nonfinite_with_overflow"] for N in sizes)
            first = min(r["sizes"][f"N{N}"]["first_nonfinite_gain"] for N in sizes
                        if r["sizes"][f"N{N}"]["first_nonfinite_gain"] is not None)
            out.append(
                f"{act}: {nf} of {tot} runs gave a non-finite exponent (from sigma_w = "
                f"{first:.3g}); the state itself had overflowed in {ov} of them. These are "
                "excluded from the medians (a gain with any such run has no median)."
            )
    for act, r in results.items():
        g, q_inf = r["critical_gain"], r["theory_no_fixed_point_from"]
        if g is not None and q_inf is not None and q_inf < g:
            out.append(
                f"{act}: q* has no finite fixed point from sigma_w = {q_inf:.3g}, below g* = "
                f"{g:.3g}, so chi = 1 is not reached on the fixed-point branch; the measured "
                f"exponents (N = {sizes[-1]}) cross zero at "
                + ("no gain" if r["sizes"][big]["crossing"] is None
                   else f"{r['sizes'][big]['crossing']:.3g}") + "."
            )
    for act, r in results.items():
        if r["theory_no_fixed_point_from"] is not None:
            out.append(
                f"{act}: mean-field q* has no finite fixed point from sigma_w = "
                f"{r['theory_no_fixed_point_from']:.3g} (the variance grows without bound); "
                "no theory value there."
            )
    return out


def report(results, cfg, mode, sigma_b, figure, activations) -> str:
    sizes = cfg.sizes
    lines = [
        "# Edge of chaos: largest Lyapunov exponent vs gain",
        "",
        f"Mode: {mode}. Random autonomous networks h_(t+1) = phi(W h_t + b), "
        f"W ~ N(0, sigma_w^2/N), b ~ N(0, {sigma_b}^2), h_0 ~ N(0, I), zero input; "
        f"N in {list(sizes)}, {cfg.seeds} seeds per gain, T = {cfg.T} steps of which the "
        f"first {cfg.warmup} are warmup, in {jnp.zeros(()).dtype}. "
        f"Gains g* x 2^[-{cfg.span}, {cfg.span}] "
        f"({cfg.gains} points) around each activation's mean-field critical gain g*. "
        "lambda_max by the Benettin method (one tangent vector, Jacobian-vector products of the "
        "Elman cell's step); theory 0.5 ln chi from `jrnn.theory.mean_field`.",
        "",
        "*crossing*: first upward zero crossing of the median exponent, interpolated in "
        "ln sigma_w. *max abs err away*: largest |median measured - theory| over gains at least "
        f"a factor 2^{AWAY_OCTAVES} from g* where both are finite. A gain where any seed's "
        "exponent is not finite has no median in the table; in the figure every non-finite "
        "seed is marked on the edge of its panel (-inf and NaN below, +inf above) with its "
        "count in the legend, and the line is the median over the seeds (NaN left out).",
        "",
        common.table(headers(sizes), table_rows(results, sizes)),
        "",
        "## Conclusions (computed from the numbers above)",
        "",
    ]
    lines += [f"- {s}" for s in conclusions(results, sizes)]
    lines += ["", f"![{figure}]({figure})", "",
              "Lines: median over seeds; bands: min-max over seeds; black: mean-field "
              "0.5 ln chi (not drawn where q* is infinite); dashed: g* (`jrnn.plot.gain_sweep`).",
              "",
              "![driven_and_gated.png](driven_and_gated.png)", "",
              "Left: the input-aware critical line g*(sigma_u) (`jrnn.theory.critical_line`, "
              "drawn by `jrnn.plot.phase_diagram`) with lambda_max measured on it as coloured "
              "points; middle: the same lambda_max against sigma_u (theory: 0); "
              "right: gated mean-field gain per step vs measured ||J_t||_F^2 / S at init "
              "(`jrnn.theory.gated`)."]
    return "\n".join(lines)


# ------------------------------------------------------------------ main
def main(argv=None) -> dict:
    """Runs the study; writes metrics.json, report.md and lyapunov_vs_gain.png under ``--out``."""
    args = common.parse(NAME, __doc__, PRESETS, DEFAULT_PRESET, argv)
    cfg, mode = args.config, args.preset
    sigma_b = float(cfg.sigma_b)
    acts = cfg.selected_activations()
    if cfg.x64:
        jax.config.update("jax_enable_x64", True)
    t0 = time.perf_counter()
    bar = common.progress(len(acts) * (1 + len(cfg.sizes)), NAME)
    results = {}
    for act in acts:
        bar.set_postfix_str(act)
        results[act] = measure(act, cfg, sigma_b, args.seed, on_program=bar.update)
    bar.close()
    figure = plot(results, cfg.sizes, args.out, sigma_b)
    extra = driven_and_gated(acts, cfg, sigma_b, args.seed)
    plot_driven(extra, args.out, sigma_b)
    metrics = {
        "mode": mode, "seed": args.seed, "sigma_b": sigma_b, "activations": list(acts),
        "dtype": str(jnp.zeros(()).dtype),
        "away_octaves": AWAY_OCTAVES,
        "config": cfg.measured(),
        "results": results,
        "driven_and_gated": extra,
        "conclusions": conclusions(results, cfg.sizes),
    }
    common.write_metrics(args.out, metrics)
    common.write_report(args.out, report(results, cfg, mode, sigma_b, figure, acts))
    wall = time.perf_counter() - t0
    common.write_run_info(args, wall_time_s=wall, mode=mode)
    common.print_table(headers(cfg.sizes), table_rows(results, cfg.sizes),
                       title=f"{NAME} ({mode}, sigma_b = {sigma_b}), {wall:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
