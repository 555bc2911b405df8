"""The seed article's claims, each judged by one small function from the measurements.

Every claim function takes the :class:`Evidence` (the measured rows, by configuration)
and returns a :class:`Verdict` (claim, verdict, evidence), or None where the claim was
not measured (its configurations were not run). Verdicts are "confirmed", "not
confirmed", "depends on ..." or "not resolved (within error)"; a difference counts only
beyond ``SIGNIFICANCE`` standard errors. :func:`findings` adds the sentences of the
report's findings, computed from the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

import jrnn
from experiments.activation_study.config import (
    GRU_GATE_BIAS,
    RESIDUAL_ALPHA,
    SIGNIFICANCE,
    VANISHED,
    config_name,
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One claim of the seed article, the verdict on it and the numbers behind it."""

    claim: str
    verdict: str
    evidence: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Evidence(NamedTuple):
    """The measured rows a verdict reads (``summarise_init`` / ``measure_training`` dicts)."""

    standard: dict  # Elman rows at W ~ N(0, 1/n), by activation
    critical: dict  # Elman rows at the critical gain, by activation
    remedies: dict  # remedy-cell rows, by family
    training: dict  # training results, by configuration name
    gates: dict  # gate values at initialisation, by family (gru / lstm)
    T: int  # the lag of the log-norms

    @classmethod
    def of(cls, init_results: dict, train_results: dict, gates: dict, T: int) -> Evidence:
        elman = [r for r in init_results.values() if r["family"] == "elman"]
        return cls(
            standard={r["activation"]: r for r in elman if r["init"] == "standard"},
            critical={r["activation"]: r for r in elman if r["init"] == "critical"},
            remedies={r["family"]: r for r in init_results.values() if r["family"] != "elman"},
            training=train_results, gates=gates, T=T)


# ------------------------------------------------------------------ helpers
def fmt_pm(ms: dict, digits: int = 2) -> str:
    """``"value +- stderr"`` of a ``mean_stderr`` record (``-inf``: an exactly zero norm)."""
    if ms["value"] == -math.inf:
        return "-inf (exactly 0)"
    if not math.isfinite(ms["value"]):
        return "n/a"
    if not math.isfinite(ms["stderr"]):
        return f"{ms['value']:.{digits}f}"
    return f"{ms['value']:.{digits}f} +- {ms['stderr']:.{digits}f}"


def _se(ms: dict) -> float:
    return ms["stderr"] if math.isfinite(ms["stderr"]) else 0.0


def _diff(a: dict, b: dict) -> tuple[float, float]:
    """``a - b`` and its standard error (independent samples)."""
    return a["value"] - b["value"], math.hypot(_se(a), _se(b))


def _significant(d: float, se: float) -> bool:
    # An infinite difference (one side exactly zero, -inf, the other finite) is significant.
    return not math.isnan(d) and abs(d) > SIGNIFICANCE * se


def _compare(d: float, se: float) -> str:
    """The verdict on "``d > 0``" (a difference and its standard error)."""
    if _significant(d, se):
        return "confirmed" if d > 0 else "not confirmed"
    return "not resolved (within error)"


def _vanished(r: dict) -> bool:
    """Mean + 2 se below the threshold; -inf: an exactly zero gradient."""
    m = r["log10_norm_at_T"]
    if m["value"] == -math.inf:
        return True
    return math.isfinite(m["value"]) and m["value"] + SIGNIFICANCE * _se(m) < (
        VANISHED / math.log(10.0))


def _decaying(r: dict) -> bool:
    """lambda_max below 0 beyond its error."""
    lam = r["lyapunov_max"]
    return _significant(lam["value"], lam["stderr"]) and lam["value"] < 0


def _kept(r: dict, decades: float = 3.0) -> bool:
    m = r["log10_norm_at_T"]
    return math.isfinite(m["value"]) and abs(m["value"]) < decades


def _better(a: dict, b: dict) -> bool:
    """``a``'s log-norm at T is above ``b``'s beyond error."""
    return (_significant(*_diff(a["log10_norm_at_T"], b["log10_norm_at_T"]))
            and a["log10_norm_at_T"]["value"] > b["log10_norm_at_T"]["value"])


def _short(name: str) -> str:
    return name.removeprefix("elman-").removesuffix("-standard")


# ------------------------------------------------------------------ the claims
def saturating_vanish(e: Evidence) -> Verdict | None:
    """Sigmoid and tanh gradients vanish (at the standard init, not at the critical gain)."""
    std, crit, T = e.standard, e.critical, e.T
    sat = [a for a in ("sigmoid", "tanh") if a in std]
    if not sat:
        return None
    ev = "; ".join(f"{a}: log10 ||d h_T/d h_0|| = {fmt_pm(std[a]['log10_norm_at_T'])} at "
                   f"lag {T} (standard init)" for a in sat)
    crit_kept = [a for a in sat if a in crit and _kept(crit[a])]
    gone = [a for a in sat if _vanished(std[a])]
    decays = [a for a in sat if a not in gone and _decaying(std[a])]
    if len(gone) == len(sat):
        verdict = ("confirmed at the standard initialisation" if not crit_kept else
                   "depends on the initialisation: they vanish at W ~ N(0, 1/n) but not at "
                   f"the critical gain ({', '.join(crit_kept)} stay within 10^3)")
    elif gone and len(gone) + len(decays) == len(sat):
        verdict = (f"confirmed for {', '.join(gone)}; {', '.join(decays)} decays "
                   "exponentially (lambda_max < 0 beyond error) but has not vanished at this "
                   "lag"
                   + (", and stays within 10^3 at the critical gain" if crit_kept else ""))
    else:
        verdict = "not confirmed at this lag"
    if crit_kept:
        ev += "; critical: " + "; ".join(
            f"{a} {fmt_pm(crit[a]['log10_norm_at_T'])} (g* = {crit[a]['gain']:.3f})"
            for a in crit_kept)
    return Verdict("Sigmoid and tanh gradients vanish over long sequences.", verdict, ev + ".")


def sigmoid_faster_than_tanh(e: Evidence) -> Verdict | None:
    """Sigmoid (sup f' = 1/4) loses more decades than tanh (sup f' = 1)."""
    std = e.standard
    if "sigmoid" not in std or "tanh" not in std:
        return None
    d, se = _diff(std["tanh"]["log10_norm_at_T"], std["sigmoid"]["log10_norm_at_T"])
    return Verdict(
        "Sigmoid (sup|f'| = 1/4) vanishes faster than tanh (sup|f'| = 1).", _compare(d, se),
        f"sigmoid loses {d:.1f} +- {se:.1f} more decades than tanh over {e.T} "
        "steps at the standard initialisation.")


def relu_does_not_vanish(e: Evidence) -> Verdict | None:
    """ReLU keeps its gradient (within 10^3 at lag T, not vanished)."""
    if "relu" not in e.standard:
        return None
    r, c = e.standard["relu"], e.critical.get("relu")
    ev = f"relu at W ~ N(0, 1/n): {fmt_pm(r['log10_norm_at_T'])} decades at lag {e.T}"
    if c is not None:
        ev += (f"; at the critical gain g* = {c['gain']:.3f}: "
               f"{fmt_pm(c['log10_norm_at_T'])} (lambda_max {fmt_pm(c['lyapunov_max'], 3)})")
    if not _vanished(r) and _kept(r):
        verdict = "confirmed"
    elif c is not None and _better(c, r):
        verdict = ("depends on the initialisation: relu's f' = 1 on the active half only, so "
                   "chi = g^2 / 2 and gradients decay for g < sqrt(2) (here g = 1); at He's "
                   "g = sqrt(2) they no longer vanish (a finite net is then slightly chaotic)")
    else:
        verdict = "not confirmed"
    return Verdict("ReLU does not suffer vanishing gradients (f' = 1 for x > 0).", verdict,
                   ev + ".")


def relu_units_die(e: Evidence) -> Verdict | None:
    """Units of an activation with a dead region are silent after training."""
    dead = [(n, r) for n, r in e.training.items() if "dead_fraction_after" in r
            and r.get("activation")
            and jrnn.activations.get(r["activation"]).dead_below is not None]
    if not dead:
        return None
    parts = [f"{_short(n)}: "
             f"{100 * r['dead_fraction_before']['value']:.1f}% -> "
             f"{100 * r['dead_fraction_after']['value']:.1f}% "
             f"(+- {100 * (r['dead_fraction_after']['stderr'] or 0):.1f})" for n, r in dead]
    any_dead = any(r["dead_fraction_after"]["value"] > 0 for _, r in dead)
    return Verdict(
        "ReLU units can die (zero output and zero gradient on every input).",
        "confirmed" if any_dead else "not observed at this training budget",
        "dead units before -> after training (seed mean +- stderr): " + "; ".join(parts) + ".")


def gating_helps(e: Evidence) -> Verdict | None:
    """Gated cells propagate further than elman-tanh and / or solve the adding problem."""
    rem, std, tr, T = e.remedies, e.standard, e.training, e.T
    gated = [f for f in ("lstm", "gru", "gru-gate-bias") if f in rem]
    if not gated or "tanh" not in std:
        return None
    ev = [f"{f}: {fmt_pm(rem[f]['log10_norm_at_T'])}" for f in gated]
    ev.append(f"elman-tanh: {fmt_pm(std['tanh']['log10_norm_at_T'])}")
    better_prop = [f for f in gated if _better(rem[f], std["tanh"])]
    tanh_tr = tr.get(config_name("elman", "tanh", "standard"))
    solved = [f for f in gated if f in tr and tr[f]["solved_seeds"] > 0]
    train_ev = ""
    if tanh_tr is not None:
        train_ev = "; adding problem MSE / baseline: " + ", ".join(
            f"{f} {fmt_pm(tr[f]['final_over_baseline'], 3)}" for f in gated if f in tr
        ) + f", elman-tanh {fmt_pm(tanh_tr['final_over_baseline'], 3)}"
    g = e.gates.get("gru")
    why = ""
    if g is not None and "gru" in rem and "gru" not in better_prop:
        why = (f" At its default initialisation the GRU's update gate is z = "
               f"{g['update_z']:.2f} and reset r = {g['reset_r']:.2f}, so "
               "h_t = (1 - z) n_t + z h_{t-1} keeps only ~z of the gradient per step "
               f"through the identity path ({g['update_z']:.2f}^{T} ~ "
               f"1e{T * math.log10(max(g['update_z'], 1e-300)):.0f}); an update-gate "
               f"bias of +{GRU_GATE_BIAS:g} (z ~ 0.95) is the remedy (row gru-gate-bias).")
    tanh_solved = tanh_tr is not None and tanh_tr["solved_seeds"] > 0
    if solved and not tanh_solved:
        lagging = [f for f in gated if f not in better_prop]
        verdict = ("confirmed: gated cells solve the adding problem where elman-tanh does not"
                   + (" and propagate gradients further" if not lagging else
                      f"; {', '.join(better_prop)} also propagate gradients further at "
                      f"initialisation, {', '.join(lagging)} not (see why)" if better_prop
                      else ", although at initialisation they do not propagate gradients "
                      "further than elman-tanh (see why)"))
    elif better_prop:
        verdict = "confirmed for propagation at initialisation"
    else:
        verdict = "not confirmed at this budget"
    return Verdict("Gating (LSTM, GRU) keeps gradients alive.", verdict,
                   "log10 ||d s_T/d s_0|| at lag " + str(T) + ": "
                   + "; ".join(ev) + train_ev + "." + why)


def residual_helps(e: Evidence) -> Verdict | None:
    """The residual cell keeps more decades than elman-tanh (and trains no worse)."""
    rem, std, tr = e.remedies, e.standard, e.training
    if "residual" not in rem or "tanh" not in std:
        return None
    d, se = _diff(rem["residual"]["log10_norm_at_T"], std["tanh"]["log10_norm_at_T"])
    res_tr, tanh_tr = tr.get("residual"), tr.get(config_name("elman", "tanh", "standard"))
    ev = (f"residual (alpha = {RESIDUAL_ALPHA}) keeps {d:+.1f} +- {se:.1f} more decades than "
          f"elman-tanh at lag {e.T}")
    if res_tr and tanh_tr:
        ev += (f"; adding MSE / baseline {fmt_pm(res_tr['final_over_baseline'], 3)} vs "
               f"{fmt_pm(tanh_tr['final_over_baseline'], 3)}")
    verdict = _compare(d, se)
    if verdict == "confirmed" and res_tr and tanh_tr:
        dt, set_ = _diff(res_tr["final_over_baseline"], tanh_tr["final_over_baseline"])
        if _significant(dt, set_) and dt > 0:
            verdict = ("confirmed for propagation at initialisation; not for training at this "
                       "budget (the residual net's loss is higher than elman-tanh's)")
    return Verdict("Residual connections help gradients flow.", verdict, ev + ".")


CLAIMS = (saturating_vanish, sigmoid_faster_than_tanh, relu_does_not_vanish, relu_units_die,
          gating_helps, residual_helps)


def claims(init_results: dict, train_results: dict, gates: dict, T: int) -> list[Verdict]:
    """The verdict on each claim of the seed article that was measured, in order."""
    e = Evidence.of(init_results, train_results, gates, T)
    return [v for v in (claim(e) for claim in CLAIMS) if v is not None]


# ------------------------------------------------------------------ findings
def _edge_of_chaos(crit: dict) -> str | None:
    if not crit:
        return None
    edge = [a for a, r in crit.items() if math.isfinite(r["lyapunov_max"]["value"])
            and abs(r["lyapunov_max"]["value"]) <= 0.05 + SIGNIFICANCE * _se(r["lyapunov_max"])]
    off = [f"{a} ({fmt_pm(r['lyapunov_max'], 3)})" for a, r in crit.items() if a not in edge
           and math.isfinite(r["lyapunov_max"]["value"])]
    diverged = [a for a, r in crit.items() if r["diverged_trajectories"] > 0]
    return (
        "Input-aware critical initialisation (chi = 1 with the input drive in q): "
        f"{len(edge)} of {len(crit)} activations have a measured lambda_max within 0.05 "
        "(plus 2 stderr) of 0, i.e. at the edge of chaos"
        + (f"; off the edge: {', '.join(off)}" if off else "") + "."
        + (f" The state diverged (overflow) on some trajectories for {', '.join(diverged)}:"
           " these activations grow without bound on the positive side, and at their "
           "critical gain the finite network's mean drive runs away, so no finite "
           "exponent exists; they are reported as n/a rather than a number."
           if diverged else ""))


def _lyapunov_vs_theory(lyap_rows: list[dict]) -> str | None:
    errs = [abs(r["lyapunov_max"] - r["theory_lambda_max"]) for r in lyap_rows
            if r.get("theory_lambda_max") is not None and math.isfinite(r["lyapunov_max"])
            and math.isfinite(r["theory_lambda_max"])]
    if not errs:
        return None
    return (f"Measured largest Lyapunov exponents differ from the mean-field prediction by a "
            f"median of {np.median(errs):.3f} per step (max {np.max(errs):.3f}) over "
            f"{len(errs)} Elman configurations (finite networks, driven by input).")


def _growth_vs_theory(init_results: dict) -> str | None:
    growth = [(n, r["log_growth"], r.get("mean_field", r.get("gated_theory", {}))
               .get("log_growth")) for n, r in init_results.items()]
    growth = [(n, m, t) for n, m, t in growth if t is not None and math.isfinite(t)
              and math.isfinite(m["value"])]
    if not growth:
        return None
    err = [abs(m["value"] - t) for _, m, t in growth]
    gated = [f"{n}: {fmt_pm(m, 3)} measured vs {t:.3f} predicted" for n, m, t in growth
             if n in ("gru", "lstm", "gru-gate-bias")]
    return ("Per-step gain 0.5 ln(||J_t||_F^2 / S) at initialisation against mean-field theory: "
            f"median |measured - predicted| {np.median(err):.3f} over {len(growth)} "
            "configurations" + (f"; gated cells (Gilboa et al. 2019): {'; '.join(gated)}"
                                if gated else "") + ".")


def _pascanu_must_vanish(lyap_rows: list[dict]) -> str | None:
    must = [r["config"] for r in lyap_rows if (r.get("pascanu_bound") or 2.0) < 1.0 - 1e-6]
    if not must:
        return None
    return ("Pascanu bound sup|f'| sigma_max(W_hh) < 1, so gradients must vanish, for: "
            + ", ".join(must) + ".")


def _adding_problem(train_results: dict) -> str | None:
    if not train_results:
        return None
    base = jrnn.tasks.ADDING_BASELINE
    diverged = [n for n, r in train_results.items() if r["diverged_seeds"]]
    ranked = sorted(((n, r) for n, r in train_results.items() if n not in diverged),
                    key=lambda kv: kv[1]["final_loss"]["value"])
    learned = [n for n, r in ranked if r["solved_seeds"] * 2 > len(r["final_loss_per_seed"])]
    return (
        f"Adding problem: {len(learned)} of {len(ranked)} configurations solved it (held-out "
        f"MSE below a tenth of the baseline {base:.4f}) on most seeds"
        + (f": {', '.join(learned)}" if learned else "")
        + (f". Best: {ranked[0][0]} ({fmt_pm(ranked[0][1]['final_loss'], 4)}); "
           f"worst: {ranked[-1][0]} ({fmt_pm(ranked[-1][1]['final_loss'], 4)})" if ranked
           else "")
        + (f". Diverged (loss non-finite or > 100x baseline on some seed): "
           f"{', '.join(diverged)}" if diverged else "") + ".")


def no_critical_gain(activations) -> str | None:
    """The note on activations without a critical row (``critical_gain`` NaN)."""
    if not activations:
        return None
    return (f"No critical row for {', '.join(activations)}: for these, chi(g) of the driven "
            "mean field jumps across 1 instead of crossing it (the variance map has two stable "
            "fixed points, q* = small and q* = inf), so jrnn.theory.critical_gain returns NaN. "
            "A gain picked anyway (the former silu row) sends the finite network to the q* = inf "
            "branch: the state overflows and no finite exponent exists.")


def findings(init_results: dict, train_results: dict, lyap_rows: list[dict], T: int,
             gates: dict | None = None) -> list[str]:
    """Sentences computed from the measurements only (each with its error bar): the claims'
    verdicts, then the edge of chaos, theory against measurement and the adding problem."""
    lines = [f"{v.claim} -- {v.verdict.upper()}. {v.evidence}"
             for v in claims(init_results, train_results, gates or {}, T)]
    crit = Evidence.of(init_results, train_results, gates or {}, T).critical
    found = (_edge_of_chaos(crit), _lyapunov_vs_theory(lyap_rows),
             _growth_vs_theory(init_results), _pascanu_must_vanish(lyap_rows),
             _adding_problem(train_results))
    return lines + [s for s in found if s is not None]
