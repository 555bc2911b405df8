"""The activation study's measurements: networks at initialisation and after training.

Every function takes a :class:`~experiments.activation_study.config.Config` (``cfg``) and
returns plain dicts of numbers (means with their standard errors), which
:mod:`.verdicts` judges and :mod:`.report` writes.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jrnn
from experiments import common
from experiments.activation_study.config import DIVERGED_FACTOR, FLOSSED, INPUT_SIZE, Config


def floss(cell: jrnn.Cell, params, key: jax.Array, cfg: Config, input_size: int = INPUT_SIZE):
    """Gradient flossing (Engelken 2023) of ``params``: ``cfg.floss_steps`` Adam steps on
    ``mean_{b, i <= k} lambda_i^2`` (:func:`jrnn.penalties.lyapunov_penalty`, target 0) over
    fresh ``N(0, 1)`` input sequences of ``floss_warmup + floss_T`` steps each; traced (one
    ``lax.scan``), so it runs inside ``jrnn.parallel.sweep`` and ``vmap``.
    """
    k = min(cfg.floss_k, cell.state_size)
    pen = jrnn.penalties.lyapunov_penalty(cell, k, 0.0, warmup=cfg.floss_warmup)
    opt = optax.adam(cfg.floss_lr)
    clip = optax.clip_by_global_norm(cfg.clip)
    shape = (cfg.floss_batch, cfg.floss_warmup + cfg.floss_T, input_size)

    def step(carry, k_t):
        p, s = carry
        g = jax.grad(pen.fn)(p, jax.random.normal(k_t, shape))
        ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves(g)]))
        g, _ = clip.update(g, clip.init(p))
        u, s_new = opt.update(g, s, p)
        p_new = optax.apply_updates(p, u)
        keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731 (skip non-finite steps)
        return (jax.tree_util.tree_map(keep, p_new, p),
                jax.tree_util.tree_map(keep, s_new, s)), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)),
                                  jax.random.split(key, cfg.floss_steps))
    return params


def init_params(family: str, cell: jrnn.Cell, key: jax.Array, gain, cfg: Config | None = None):
    """``cell.init`` with ``W_hh`` scaled by ``gain`` (traced: one program for all gains).

    For the Elman cells, ``W_hh ~ N(0, 1/n)`` times ``gain`` is ``N(0, gain^2/n)``: gain 1 is
    the standard initialisation, ``g*`` the critical one. The flossed row is flossed
    (:func:`floss`, needs ``cfg``) from its standard initialisation.
    """
    k_init, k_floss = jax.random.split(key)
    params = cell.init(k_init, INPUT_SIZE)
    if family == "elman":
        W = params["W_hh"]
        params = dict(params, W_hh=jnp.asarray(gain, W.dtype) * W)
    if family in FLOSSED:
        if cfg is None:
            raise ValueError(f"cfg must be given for the {family!r} row, got None.")
        params = floss(cell, params, k_floss, cfg)
    return params


def input_drive_variance(cell: jrnn.Cell, hidden: int, samples: int = 16) -> float:
    """``sigma_u^2 = E[(W_xh x)_i^2]`` for ``x ~ N(0, I_d)``: the mean row norm^2 of ``W_xh``.

    Averaged over ``samples`` draws of the cell's own initialiser, so it holds for any
    ``input_init``.
    """
    keys = jax.random.split(jax.random.key(12345), samples)
    W = np.asarray(jax.vmap(lambda k: cell.init(k, INPUT_SIZE)["W_xh"])(keys), np.float64)
    return float(np.mean(np.sum(W**2, axis=-1)))


@functools.cache
def critical_gain(activation: str, sigma_u2: float = 0.0) -> float:
    """Input-aware ``g*``: ``chi(g*) = 1`` with the drive variance in ``q``; NaN if none."""
    g = float(_theory_critical_gain(activation, sigma_u2))
    return g if math.isfinite(g) and g > 0 else float("nan")


def _theory_critical_gain(activation: str, sigma_u2: float):
    return jrnn.theory.critical_gain(activation, sigma_u=math.sqrt(sigma_u2))


def theory_for(activation: str, gain: float, sigma_u2: float) -> dict:
    """Driven mean field: ``q*``, ``chi``, ``lambda_max = 0.5 ln chi`` and the depth scale."""
    mf = jrnn.theory.mean_field(activation, gain, sigma_u=math.sqrt(sigma_u2))
    return {"q_star": float(mf.q_star), "chi": float(mf.chi),
            "lambda_max": float(mf.lambda_max), "log_growth": float(0.5 * math.log(mf.chi)),
            "xi_c": float(mf.xi_c)}


def gated_theory(family: str, cell: jrnn.Cell, cfg: Config, seed: int) -> dict | None:
    """Gated mean field (Gilboa et al. 2019) for GRU / LSTM rows: ``0.5 ln chi`` per step."""
    if cell.name not in ("gru", "lstm"):
        return None
    params = init_params(family, cell, jax.random.key(seed), 1.0)
    xs = jax.random.normal(jax.random.key(seed + 1), (cfg.T, INPUT_SIZE))
    p = jrnn.predict(cell, params, xs)
    return {"chi": p["chi"], "log_growth": p["log_growth"]}


# ------------------------------------------------------------------ at initialisation
def measure_at_init(family: str, cell: jrnn.Cell, cfg: Config, gain: jax.Array,
                    seed: jax.Array) -> dict:
    """Diagnostics of one freshly initialised network; vmapped over (gain, seed) by ``sweep``."""
    key = jax.random.key(seed)
    k_p, k_x, k_l, k_c = jax.random.split(key, 4)
    params = init_params(family, cell, k_p, gain, cfg)
    xs = jax.random.normal(k_x, (cfg.sequences, cfg.T, INPUT_SIZE))
    # Largest Lyapunov exponent of the driven network: one trajectory per sequence, each from
    # a random initial state (a zero start can sit on a fixed point), after a warm-up.
    xl = jax.random.normal(k_l, (cfg.sequences, cfg.lyap_T, INPUT_SIZE))
    carry0 = jax.tree_util.tree_map(
        lambda a: jax.random.normal(k_c, (cfg.sequences,) + a.shape, a.dtype),
        cell.initial_carry(params),
    )
    D = jrnn.diagnostics
    measurements = [
        lambda p: D.propagation(cell, p, xs),
        lambda p: D.singular_values(D.step_jacobians(cell, p, xs[0])),
        lambda p: jrnn.unroll(cell, p, xl, carry=carry0)[0],
        lambda p: D.lyapunov_spectrum(cell, p, xl, carry=carry0, k=1, warmup=cfg.lyap_warmup),
    ]
    pw = cell.pointwise
    bounded = pw is not None and pw.recurrent_matrix is not None and pw.step_bound is not None
    if bounded:
        measurements.append(lambda p: D.pascanu_bound(cell, p).bound)
    # LAPACK-based diagnostics, ordered one after another (jrnn.host: jaxlib 0.10's CPU pool).
    prop, sv, final, lyap, *bound = common.one_after_another(params, *measurements)
    state_finite = jnp.all(jnp.stack([
        jnp.all(jnp.isfinite(leaf).reshape(cfg.sequences, -1), axis=-1)
        for leaf in jax.tree_util.tree_leaves(final)
    ]), axis=0)
    out = {
        "log_spectral": prop.log_spectral_norm,  # (sequences, T+1)
        "log_frobenius": prop.log_frobenius_norm,
        "rate": prop.rate,  # (sequences,): for the figure's legend, not in metrics.json
        "rate_stderr": prop.rate_stderr,
        "singular_values": sv,  # (T, S)
        "lyapunov_max": lyap.exponents[:, 0],  # (sequences,)
        "state_finite": state_finite,  # (sequences,)
    }
    if bounded:
        out["pascanu_bound"] = bound[0]
    return out


def lyapunov_at_width(family: str, cell: jrnn.Cell, cfg: Config, input_scale: float,
                      gain: jax.Array, seed: jax.Array) -> dict:
    """``lambda_max`` of one network of width ``cfg.lyap_hidden`` (``cell`` built at that
    width): ``k = 1`` (the streamed tangent map, ``O(N^2)`` per step), one trajectory per
    sequence from a random state, after ``cfg.lyap_warmup`` steps; vmapped by ``sweep``.

    The mean field is exact as ``N -> inf``; at the study's ``N = 64`` its finite-size error
    is several standard errors, so the exponents set against it come from here. An Elman
    cell's ``W_xh`` is multiplied by ``input_scale`` so that the drive variance ``sigma_u^2``
    (and with it ``g*`` and the prediction) is the one of the study's width.
    """
    k_p, k_l, k_c = jax.random.split(jax.random.key(seed + 7919), 3)
    params = init_params(family, cell, k_p, gain, None)
    if family == "elman":
        params = dict(params, W_xh=params["W_xh"] * input_scale)
    xl = jax.random.normal(k_l, (cfg.sequences, cfg.lyap_T, INPUT_SIZE))
    carry0 = jax.tree_util.tree_map(
        lambda a: jax.random.normal(k_c, (cfg.sequences,) + a.shape, a.dtype),
        cell.initial_carry(params),
    )
    lyap = jrnn.diagnostics.lyapunov_spectrum(cell, params, xl, carry=carry0, k=1,
                                              warmup=cfg.lyap_warmup)
    lam = lyap.exponents[:, 0]
    return {"lyapunov_max": lam, "finite": jnp.isfinite(lam)}


def mean_stderr(values) -> dict:
    """``{"value": mean, "stderr": std / sqrt(n), "n": n}`` over the finite values (NaN if none)."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"value": float("nan"), "stderr": float("nan"), "n": 0}
    se = float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return {"value": float(np.mean(v)), "stderr": se, "n": int(v.size)}


def exponent_stats(values) -> dict:
    """:func:`mean_stderr` of Lyapunov exponents, where ``-inf`` is a measurement: the tangent
    vector became exactly 0 (every unit on its path off at one step, e.g. a small ReLU net), so
    the mean is ``-inf`` over all such samples rather than the mean of the others; NaN and
    ``+inf`` (overflow) are dropped."""
    v = np.asarray(values, np.float64).ravel()
    if np.any(v == -np.inf):
        keep = v[~np.isnan(v) & (v != np.inf)]
        return {"value": -math.inf, "stderr": float("nan"), "n": int(keep.size)}
    return mean_stderr(v)


def summarise_init(raw: dict, cfg: Config) -> dict:
    """Per lag: median and quartiles over seeds x sequences; at lag T: mean and standard error."""
    T = cfg.T
    spec = np.asarray(raw["log_spectral"], np.float64).reshape(-1, T + 1)[:, ::-1]  # by lag
    frob = np.asarray(raw["log_frobenius"], np.float64).reshape(-1, T + 1)[:, ::-1]
    spec = np.where(np.isnan(spec) | (spec == np.inf), np.nan, spec)
    with np.errstate(invalid="ignore"):  # -inf (an exactly zero gradient) is a valid sample
        q25, med, q75 = np.nanpercentile(spec, [25, 50, 75], axis=0)
    sv = np.asarray(raw["singular_values"], np.float64)
    sv_q = np.percentile(sv, [5, 25, 50, 75, 95])
    at_T = mean_stderr(spec[:, T] / math.log(10.0))
    # Measured per-step gain 0.5 ln (||J_t||_F^2 / S), the quantity mean-field chi predicts.
    chi_hat = np.mean(np.sum(sv**2, axis=-1) / sv.shape[-1], axis=-1)  # per seed
    log_growth = mean_stderr(0.5 * np.log(chi_hat))
    # ln 0 = -inf is a measurement (an exactly zero gradient, e.g. every unit of a ReLU net
    # dead on the path), not a failure: it makes the mean -inf rather than dropping out.
    zero = int(np.sum(spec[:, T] == -np.inf))
    if zero:
        at_T = {"value": -math.inf, "stderr": float("nan"), "n": int(spec.shape[0])}
    lyap = np.asarray(raw["lyapunov_max"], np.float64).ravel()
    finite_state = np.asarray(raw["state_finite"], bool).ravel()
    lam = exponent_stats(np.where(finite_state, lyap, np.nan))
    out = {
        "lag": list(range(T + 1)),
        "log_norm_median": med.tolist(),
        "log_norm_q25": q25.tolist(),
        "log_norm_q75": q75.tolist(),
        "log_frobenius_median": np.nanmedian(frob, axis=0).tolist(),
        "log_norm_at_T": float(med[T]),
        "log10_norm_at_T": at_T,  # mean and standard error over seeds x sequences
        "exactly_zero_gradients": zero,
        "log10_norm_at_T_median": float(med[T] / math.log(10.0)),
        "rate_per_step": float(med[T] / T),
        "sv_percentiles_5_25_50_75_95": sv_q.tolist(),
        "sv_max_median": float(np.median(sv[..., 0])),
        "log_growth": log_growth,  # measured 0.5 ln chi per step, mean +- stderr over seeds
        "lyapunov_max": lam,  # mean and standard error over seeds x trajectories
        "lyapunov_max_per_trajectory": lyap.tolist(),
        "diverged_trajectories": int(np.sum(~finite_state)),
        "trajectories": int(finite_state.size),
    }
    if "pascanu_bound" in raw:
        b = np.asarray(raw["pascanu_bound"], np.float64)
        out["pascanu_bound_median"] = float(np.median(b))
        out["pascanu_must_vanish_seeds"] = int(np.sum(b < 1.0))
    return out


def propagation_record(raw: dict, cfg: Config) -> jrnn.diagnostics.Propagation:
    """Every seed x sequence of one configuration as one batched ``Propagation`` (the figure's
    input: ``jrnn.plot.propagation`` draws its median, IQR band, rate and exact zeros)."""
    flat = lambda k, *tail: np.asarray(raw[k], np.float64).reshape(-1, *tail)  # noqa: E731
    return jrnn.diagnostics.Propagation(
        log_spectral_norm=flat("log_spectral", cfg.T + 1),
        log_frobenius_norm=flat("log_frobenius", cfg.T + 1),
        rate=flat("rate"), rate_stderr=flat("rate_stderr"))


def sv_stats(raw: dict) -> jrnn.diagnostics.SingularValueStats:
    """``SingularValueStats`` of each seed's step Jacobians ``J_t`` (one sequence per seed).

    ``mean_log``: ``(seeds, S)`` time average of ``ln sigma_i(J_t)`` (``-inf`` where some
    ``sigma_i(J_t)`` is exactly zero, e.g. a dead ReLU unit); ``stderr`` from
    ``M = min(20, T)`` batch means as in :func:`jrnn.diagnostics.singular_value_stats`.
    """
    sv = np.asarray(raw["singular_values"], np.float64)  # (seeds, T, S)
    # Exact zeros: below the SVD's rounding, S eps sigma_1 (numpy's matrix_rank rule), a
    # singular value is 0 (a unit that is off), not the ~1e-22 the SVD returns for it.
    eps = np.finfo(np.asarray(raw["singular_values"]).dtype).eps
    sv = np.where(sv <= sv.shape[-1] * eps * sv[..., :1], 0.0, sv)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(sv)
        T = logs.shape[-2]
        M = min(20, T)
        L = T // M
        batches = logs[..., T - M * L:, :].reshape(*logs.shape[:-2], M, L, -1).mean(axis=-2)
        stderr = (np.std(batches, axis=-2, ddof=1) / math.sqrt(M) if M > 1
                  else np.full(logs.shape[:-2] + logs.shape[-1:], np.nan))
        return jrnn.diagnostics.SingularValueStats(mean_log=logs.mean(axis=-2), stderr=stderr)


def gate_values_at_init(family: str, cell: jrnn.Cell, cfg: Config, seed: int) -> dict | None:
    """Mean update/reset (GRU) or forget (LSTM) gate over a driven trajectory at init."""
    if cell.name not in ("gru", "lstm"):
        return None
    params = init_params(family, cell, jax.random.key(seed), 1.0)
    xs = jax.random.normal(jax.random.key(seed + 1), (cfg.T, INPUT_SIZE))
    _, hs = jrnn.unroll(cell, params, xs)
    n = cell.hidden_size
    h_prev = jnp.concatenate([jnp.zeros((1, n), hs.dtype), hs[:-1]])
    if cell.name == "gru":
        a = (xs @ params["W_xh"].T + params["b_xh"][None] + h_prev @ params["W_hh"].T
             + params["b_hh"][None])
        return {"reset_r": float(jnp.mean(jax.nn.sigmoid(a[:, :n]))),
                "update_z": float(jnp.mean(jax.nn.sigmoid(a[:, n:2 * n])))}
    a = xs @ params["W_xh"].T + h_prev @ params["W_hh"].T + params["b_h"][None]
    return {"forget_f": float(jnp.mean(jax.nn.sigmoid(a[:, n:2 * n])))}


# ------------------------------------------------------------------ training
def train_seeds(family: str, cell: jrnn.Cell, cfg: Config, seed: int, ckpt_dir: str,
                on_step=None):
    """Trains ``cfg.seeds`` copies (vmapped) on the adding problem; resumable.

    Returns ``(model, initial params, FitResult, held-out batch)``.
    """
    model = jrnn.models.rnn(cell, 1)
    T = cfg.train_T
    config = {"cell": cell.describe(), "family": family, "seed": seed,
              **{k: v for k, v in cfg.measured().items()
                 if k.startswith(("train_", "floss")) or k in ("lr", "clip")}}
    prepare = None
    if family in FLOSSED:  # flossed on the task's own (2-feature) inputs, as in Engelken 2023
        def prepare(params, key):
            return dict(params, cell=floss(cell, params["cell"], key, cfg, input_size=2))
    params0, result, held_out = common.train_seeds(
        model, 2, lambda key, b: jrnn.tasks.adding(key, b, T), jrnn.tasks.mse, seed=seed,
        seeds=cfg.seeds, lr=cfg.lr, clip=cfg.clip, batch=cfg.train_batch,
        steps=cfg.train_steps, eval_size=cfg.eval_size,
        eval_every=max(cfg.train_steps // 20, 1), checkpoint_dir=ckpt_dir,
        checkpoint_every=cfg.checkpoint_every, config=config, on_step=on_step, prepare=prepare,
    )
    return model, params0, result, held_out


def grad_and_health(model, cell: jrnn.Cell, params, batch) -> dict:
    """``||dL/dh_t||`` over ``t`` (median over the batch) and unit health, for one seed."""
    x, y = batch

    def loss_of_hs(hs):
        return jrnn.tasks.mse(model.readout(params, hs[:, -1]), y)

    g = jrnn.diagnostics.gradient_norms(loss_of_hs, cell, params["cell"], x)
    out = {"grad_hidden": jnp.median(g.hidden, axis=0)}
    if cell.pointwise is not None:
        h = jrnn.diagnostics.unit_health(cell, params["cell"], x)
        out["dead_fraction"] = h.dead_fraction
        out["saturated_fraction"] = h.saturated_fraction
    return out


def measure_training(family: str, cell: jrnn.Cell, cfg: Config, seed: int, out: str, name: str,
                     on_step):
    model, params0, result, held_out = train_seeds(
        family, cell, cfg, seed, common.checkpoint_dir(out, name), on_step
    )
    probe = jax.jit(jax.vmap(lambda p: grad_and_health(model, cell, p, held_out)))
    before = jax.device_get(probe(params0))
    after = jax.device_get(probe(result.state.params))
    ev = np.asarray(result.eval_history["loss"], np.float64)  # (E, S)
    final = ev[-1]
    base = jrnn.tasks.ADDING_BASELINE
    res = {
        "eval_step": list(result.eval_history["step"]),
        "eval_loss_per_seed": ev.T.tolist(),
        "eval_loss_median": np.median(ev, axis=1).tolist(),
        "final_loss_per_seed": final.tolist(),
        "final_loss": mean_stderr(final),
        "final_loss_median": float(np.median(final)),
        "final_over_baseline": mean_stderr(final / base),
        "solved_seeds": int(np.sum(final < 0.1 * base)),
        # A run whose loss ends non-finite or above DIVERGED_FACTOR x the baseline (which a
        # network reaches by predicting the mean) diverged: its number is a symptom, not a
        # result, and is shown as "diverged".
        "diverged_seeds": int(np.sum(~np.isfinite(final) | (final > DIVERGED_FACTOR * base))),
        "diverged_per_seed": (~np.isfinite(final) | (final > DIVERGED_FACTOR * base)).tolist(),
        "nonfinite_updates": int((~np.asarray(result.history["finite"], bool)).sum()),
    }
    for when, m in (("before", before), ("after", after)):
        gh = np.asarray(m["grad_hidden"], np.float64)  # (S, T)
        res[f"grad_hidden_{when}"] = np.median(gh, axis=0).tolist()
        first, last = np.median(gh[:, 0]), np.median(gh[:, -1])
        res[f"grad_ratio_first_last_{when}"] = float(first / last) if last > 0 else None
        if "dead_fraction" in m:
            res[f"dead_fraction_{when}"] = mean_stderr(m["dead_fraction"])
            res[f"saturated_fraction_{when}"] = mean_stderr(m["saturated_fraction"])
    return res
