"""The claims the study tests, each judged by one small function from the measurements.

Every claim function takes the :class:`Evidence` (the measured rows, by configuration)
and returns a :class:`Verdict` (claim, verdict, evidence), or None where the claim was
not measured (its configurations were not run). A verdict starts with "confirmed",
"not confirmed", "depends on ...", "not tested at this length" or "not resolved (within
error)"; a difference counts only beyond ``SIGNIFICANCE`` standard errors.

Rules the verdicts share:

* **Propagation** is judged by the distance of ``log10 ||d s_T / d s_0||`` from 0 decades at
  lag ``T``: a remedy helps when its gradient stays *closer to 0 decades* than elman-tanh's
  (beyond error). Growth is not help: a gradient that grows ``10^4`` is as far from 0 as one
  that shrinks ``10^-4``.
* **Training** on the adding problem of length ``train_T`` can only separate the cells when
  it tests memory over that length: when the vanishing reference (elman-tanh at
  ``W ~ N(0, 1/n)``) fails it and some configuration solves it (on most seeds). Otherwise the
  training half of a verdict is "not tested at this length". A run whose loss ends above
  ``DIVERGED_FACTOR`` times the baseline (or non-finite) is said to have diverged.

:func:`findings` adds the report's other sentences (theory against measurement, the adding
problem, exact zeros), computed from the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

import jrnn
from experiments.activation_study.config import (
    DIVERGED_FACTOR,
    EDGE_TOLERANCE,
    GRU_GATE_BIAS,
    KEPT_DECADES,
    RESIDUAL_ALPHA,
    SIGNIFICANCE,
    VANISHED,
    config_name,
)

REFERENCE = config_name("elman", "tanh", "standard")  # the vanishing reference of training


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One claim, the verdict on it and the numbers behind it."""

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
    train_T: int = 0  # the adding problem's length

    @classmethod
    def of(cls, init_results: dict, train_results: dict, gates: dict, T: int,
           train_T: int = 0) -> Evidence:
        elman = [r for r in init_results.values() if r["family"] == "elman"]
        return cls(
            standard={r["activation"]: r for r in elman if r["init"] == "standard"},
            critical={r["activation"]: r for r in elman if r["init"] == "critical"},
            remedies={r["family"]: r for r in init_results.values() if r["family"] != "elman"},
            training=train_results, gates=gates, T=T, train_T=train_T)

    def row(self, name: str) -> dict | None:
        """The at-initialisation row of a configuration name (``elman-tanh-standard``, ``lstm``)."""
        if name.startswith("elman-"):
            act, init = name.removeprefix("elman-").rsplit("-", 1)
            return (self.standard if init == "standard" else self.critical).get(act)
        return self.remedies.get(name)


# ------------------------------------------------------------------ helpers
def fmt_pm(ms: dict, digits: int = 2) -> str:
    """``"value +- stderr"`` of a ``mean_stderr`` record (``-inf``: an exactly zero norm)."""
    if ms["value"] == -math.inf:
        return "-inf (exactly 0)"
    if ms["value"] is None or not math.isfinite(ms["value"]):
        return "n/a"
    if ms["stderr"] is None or not math.isfinite(ms["stderr"]):
        return f"{ms['value']:.{digits}f}"
    return f"{ms['value']:.{digits}f} +- {ms['stderr']:.{digits}f}"


def _se(ms: dict) -> float:
    s = ms.get("stderr")
    return s if s is not None and math.isfinite(s) else 0.0


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


def _kept(r: dict, decades: float = KEPT_DECADES) -> bool:
    m = r["log10_norm_at_T"]
    return math.isfinite(m["value"]) and abs(m["value"]) < decades


def _better(a: dict, b: dict) -> bool:
    """``a``'s log-norm at T is above ``b``'s beyond error."""
    return (_significant(*_diff(a["log10_norm_at_T"], b["log10_norm_at_T"]))
            and a["log10_norm_at_T"]["value"] > b["log10_norm_at_T"]["value"])


def closer_to_zero(a: dict, b: dict) -> str:
    """``"closer"``, ``"farther"`` or ``"unresolved"``: is ``|log10 norm at T|`` of row ``a``
    smaller than ``b``'s beyond error? (An exactly zero gradient, ``-inf``, is infinitely far.)
    """
    ma, mb = a["log10_norm_at_T"], b["log10_norm_at_T"]
    da, db = abs(ma["value"]), abs(mb["value"])
    if math.isnan(da) or math.isnan(db) or (math.isinf(da) and math.isinf(db)):
        return "unresolved"
    d, se = db - da, math.hypot(_se(ma), _se(mb))
    if not _significant(d, se):
        return "unresolved"
    return "closer" if d > 0 else "farther"


def _direction(r: dict) -> str:
    """``"grows"``, ``"shrinks"`` or ``"stays"`` (within error of 0 decades) at lag T."""
    m = r["log10_norm_at_T"]
    if not _significant(m["value"], _se(m)):
        return "stays"
    return "grows" if m["value"] > 0 else "shrinks"


def _decades(r: dict) -> str:
    m = r["log10_norm_at_T"]
    return f"{fmt_pm(m, 1)} decades"


def solves(tr: dict) -> bool:
    """Held-out MSE below a tenth of the baseline on most seeds."""
    return tr["solved_seeds"] * 2 > len(tr["final_loss_per_seed"])


def diverged(tr: dict) -> bool:
    """Some seed's held-out loss ended non-finite or above DIVERGED_FACTOR x the baseline."""
    return tr.get("diverged_seeds", 0) > 0


def _loss(tr: dict) -> str:
    n = len(tr["final_loss_per_seed"])
    if diverged(tr):
        return f"diverged on {tr['diverged_seeds']}/{n} seeds"
    return f"{fmt_pm(tr['final_over_baseline'], 3)} x baseline, solved {tr['solved_seeds']}/{n}"


def task_separates(e: Evidence) -> tuple[bool, str]:
    """Whether the adding problem at ``train_T`` tests memory, and why (or why not)."""
    tr, T = e.training, e.train_T
    if not tr:
        return False, "no training run"
    ref = tr.get(REFERENCE)
    if ref is None:
        return False, f"the vanishing reference {REFERENCE} was not trained"
    if solves(ref):
        return False, (f"at T = {T} the vanishing reference elman-tanh solves the adding "
                       f"problem too ({_loss(ref)}), so the task does not need long memory")
    won = [n for n, r in tr.items() if solves(r)]
    if not won:
        return False, f"no configuration solved the adding problem at T = {T} within the budget"
    return True, (f"at T = {T} elman-tanh fails ({_loss(ref)}) while "
                  f"{', '.join(_short(n) for n in won)} solve it")


def _do(names: list[str], verb: str = "do") -> str:
    """``"lstm does not"`` / ``"lstm, gru do not"``-style agreement: ``names`` and the verb."""
    third = {"do": "does", "stay": "stays", "end": "ends", "grow": "grows",
             "solve": "solves", "propagate": "propagates"}[verb]
    return f"{', '.join(names)} {third if len(names) == 1 else verb}"


def _short(name: str) -> str:
    return name.removeprefix("elman-").removesuffix("-standard")


_RELATION = {"closer": "closer to 0 decades than", "farther": "farther from 0 decades than",
             "unresolved": "within error as far from 0 decades as"}


def remedy_verdict(e: Evidence, names: list[str]) -> tuple[str, str]:
    """The shared verdict of a remedy claim: ``(verdict, evidence)``.

    With a task that separates the cells (:func:`task_separates`), training decides: the remedy
    helps where it solves the adding problem that elman-tanh fails (a diverged run is named).
    Otherwise the training half is "not tested at this length" and propagation at
    initialisation decides: closer to 0 decades than elman-tanh (growth is not help).
    """
    tanh = e.standard.get("tanh")
    rows = {n: e.row(n) for n in names}
    prop = {n: closer_to_zero(r, tanh) for n, r in rows.items() if r is not None}
    ev = [f"log10 ||d s_T/d s_0|| at lag {e.T}: elman-tanh {_decades(tanh)}"] + [
        f"{n} {_decades(rows[n])} ({_direction(rows[n])}; {_RELATION[p]} elman-tanh)"
        for n, p in prop.items()]
    closer = [n for n, p in prop.items() if p == "closer"]
    farther = [n for n, p in prop.items() if p == "farther"]
    grows = [n for n in farther if _direction(rows[n]) == "grows"]
    sep, why = task_separates(e)
    trained = [n for n in names if n in e.training]
    if trained:
        ev.append(f"adding problem at T = {e.train_T}: " + "; ".join(
            f"{n} {_loss(e.training[n])}" for n in trained + [REFERENCE] if n in e.training))
    ev = "; ".join(ev) + "."
    div = [n for n in trained if diverged(e.training[n])]
    div_txt = f"; {', '.join(div)} diverged in training" if div else ""
    if sep and trained:
        won = [n for n in trained if solves(e.training[n])]
        lost = [n for n in trained if n not in won]
        if won:
            return (f"confirmed at T = {e.train_T}: {_do(won, 'solve')} the adding problem "
                    "where elman-tanh does not"
                    + (f"; {_do(lost)} not" if lost else "") + div_txt
                    + (f" (at initialisation {_do(farther, 'propagate')} farther from 0 "
                       "decades than elman-tanh)" if farther else ""), ev)
        others = [_short(n) for n, r in e.training.items() if solves(r)]
        return (f"not confirmed at T = {e.train_T}: {_do(trained)} not solve the "
                f"adding problem (solved by {', '.join(others)})" + div_txt, ev)
    untested = f"training not tested at this length ({why})" + div_txt
    if closer and not farther:
        return (f"confirmed for propagation at initialisation only ({_do(closer, 'stay')} "
                f"closer to 0 decades than elman-tanh); {untested}", ev)
    if closer:
        return (f"depends on the cell: {_do(closer, 'stay')} closer to 0 decades than "
                f"elman-tanh, {_do(farther)} not; {untested}", ev)
    if farther:
        growth = (f" ({_do(grows, 'grow')}: growth is not help)" if grows else "")
        return (f"not confirmed at initialisation: {_do(farther, 'end')} farther from 0 "
                f"decades than elman-tanh{growth}; {untested}", ev)
    return f"not tested at this length ({why}); propagation not resolved within error", ev


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
    """Gated cells keep gradients alive: they solve what elman-tanh cannot, or (untested)
    propagate closer to 0 decades than elman-tanh at initialisation."""
    gated = [f for f in ("lstm", "gru", "gru-gate-bias") if f in e.remedies]
    if not gated or "tanh" not in e.standard:
        return None
    verdict, ev = remedy_verdict(e, gated)
    g = e.gates.get("gru")
    if g is not None and "gru" in gated and closer_to_zero(
            e.remedies["gru"], e.standard["tanh"]) != "closer":
        ev += (f" Why the default GRU lags: its update gate is z = {g['update_z']:.2f} "
               f"(reset r = {g['reset_r']:.2f}), so h_t = (1 - z) n_t + z h_(t-1) keeps only "
               f"~z of the gradient per step on the identity path ({g['update_z']:.2f}^{e.T} ~ "
               f"1e{e.T * math.log10(max(g['update_z'], 1e-300)):.0f}); an update-gate bias of "
               f"+{GRU_GATE_BIAS:g} (z ~ 0.95, row gru-gate-bias) is the remedy.")
    return Verdict("Gating (LSTM, GRU) keeps gradients alive.", verdict, ev)


def residual_helps(e: Evidence) -> Verdict | None:
    """The residual cell keeps its gradient closer to 0 decades than elman-tanh, or solves what
    elman-tanh cannot; a growing gradient does not count as help."""
    if "residual" not in e.remedies or "tanh" not in e.standard:
        return None
    verdict, ev = remedy_verdict(e, ["residual"])
    return Verdict(f"Residual connections (h + {RESIDUAL_ALPHA} f(...)) help gradients flow.",
                   verdict, ev)


def flossing_helps(e: Evidence) -> Verdict | None:
    """Gradient flossing (lambda_1..k pushed to 0) keeps the tanh network's gradient alive."""
    if "flossed" not in e.remedies or "tanh" not in e.standard:
        return None
    verdict, ev = remedy_verdict(e, ["flossed"])
    lam_f, lam_t = e.remedies["flossed"]["lyapunov_max"], e.standard["tanh"]["lyapunov_max"]
    ev += (f" lambda_max: flossed {fmt_pm(lam_f, 3)}, elman-tanh {fmt_pm(lam_t, 3)} "
           "nats per step.")
    return Verdict("Gradient flossing (Engelken 2023) keeps the gradient of a tanh network "
                   "alive.", verdict, ev)


def critical_at_edge(e: Evidence) -> Verdict | None:
    """The input-aware critical rows have ``|lambda_max| <= EDGE_TOLERANCE`` (+ 2 stderr),
    measured at the width ``lyap_hidden`` where the mean field applies."""
    rows = {a: r["lyapunov_max_wide"] for a, r in e.critical.items() if "lyapunov_max_wide" in r}
    if not rows:
        return None
    N = next(iter(rows.values()))["hidden"]
    finite = {a: w for a, w in rows.items() if w["lyapunov_max"]["value"] is not None
              and math.isfinite(w["lyapunov_max"]["value"]) and not w["diverged_trajectories"]}
    def dist(w):  # |lambda_max| and its 2-stderr margin
        return abs(w["lyapunov_max"]["value"]), SIGNIFICANCE * _se(w["lyapunov_max"])

    edge = [a for a, w in finite.items() if sum(dist(w)) <= EDGE_TOLERANCE]
    unresolved = [a for a, w in finite.items() if a not in edge
                  and dist(w)[0] - dist(w)[1] <= EDGE_TOLERANCE]
    off = [a for a in rows if a not in edge and a not in unresolved]
    ev = (f"lambda_max (nats per step) at N = {N}; at the edge: |lambda_max| + "
          f"{SIGNIFICANCE:g} stderr <= {EDGE_TOLERANCE}, off it: |lambda_max| - "
          f"{SIGNIFICANCE:g} stderr > {EDGE_TOLERANCE}: " + "; ".join(
              f"{a} {fmt_pm(w['lyapunov_max'], 3)}"
              + (f" ({w['diverged_trajectories']}/{w['trajectories']} trajectories diverged)"
                 if w["diverged_trajectories"] else "")
              for a, w in rows.items()) + ".")
    rest = "".join([f"; off the edge: {', '.join(off)}" if off else "",
                    f"; not resolved within error: {', '.join(unresolved)}" if unresolved
                    else ""])
    if len(edge) == len(rows):
        verdict = f"confirmed for all {len(rows)} activations"
    elif not edge:
        verdict = "not confirmed" + (rest or "")
    else:
        verdict = f"confirmed for {len(edge)} of {len(rows)} ({', '.join(edge)})" + rest
    return Verdict("The input-aware critical gain g* (chi = 1 with the input drive) puts the "
                   f"Elman network at the edge of chaos (|lambda_max| <= {EDGE_TOLERANCE} nats "
                   "per step).", verdict, ev)


CLAIMS = (saturating_vanish, sigmoid_faster_than_tanh, relu_does_not_vanish, relu_units_die,
          gating_helps, residual_helps, flossing_helps, critical_at_edge)


def judge(e: Evidence) -> list[Verdict]:
    """The verdict on each claim that was measured, in order."""
    return [v for v in (claim(e) for claim in CLAIMS) if v is not None]


def claims(init_results: dict, train_results: dict, gates: dict, T: int,
           train_T: int = 0) -> list[Verdict]:
    """:func:`judge` on the evidence of these results."""
    return judge(Evidence.of(init_results, train_results, gates, T, train_T))


# ------------------------------------------------------------------ findings
def _lyapunov_vs_theory(lyap_rows: list[dict]) -> str | None:
    pts = [r for r in lyap_rows if r.get("theory_lambda_max") is not None
           and r.get("lyapunov_max_wide") is not None
           and math.isfinite(r["lyapunov_max_wide"]) and math.isfinite(r["theory_lambda_max"])]
    if not pts:
        return None
    errs = np.array([abs(r["lyapunov_max_wide"] - r["theory_lambda_max"]) for r in pts])
    narrow = [abs(r["lyapunov_max"] - r["theory_lambda_max"]) for r in pts
              if math.isfinite(r["lyapunov_max"])]
    return (f"Measured lambda_max against the mean-field 0.5 ln chi at N = "
            f"{pts[0]['wide_hidden']}: median |difference| {np.median(errs):.3f} nats per step "
            f"(max {np.max(errs):.3f}) over {len(errs)} configurations"
            + (f"; at the study's width the median is {np.median(narrow):.3f} (finite-size "
               "error)" if narrow else "") + ".")


def _growth_vs_theory(init_results: dict) -> str | None:
    growth = [(n, r["log_growth"], r.get("mean_field", r.get("gated_theory", {}))
               .get("log_growth")) for n, r in init_results.items() if "log_growth" in r]
    growth = [(n, m, t) for n, m, t in growth if t is not None and math.isfinite(t)
              and math.isfinite(m["value"])]
    if not growth:
        return None
    err = [abs(m["value"] - t) for _, m, t in growth]
    return ("Per-step gain 0.5 ln(||J_t||_F^2 / S) at initialisation against the mean field "
            f"(driven Elman; gated: Gilboa et al. 2019): median |measured - predicted| "
            f"{np.median(err):.3f} over {len(growth)} configurations.")


def _pascanu_must_vanish(init_results: dict) -> str | None:
    must = [n for n, r in init_results.items()
            if (r.get("pascanu_bound_median") or 2.0) < 1.0 - 1e-6]
    if not must:
        return None
    return ("Pascanu bound sup|f'| sigma_max(W_hh) < 1, so gradients must vanish, for: "
            + ", ".join(must) + ".")


def _adding_problem(e: Evidence) -> str | None:
    tr = e.training
    if not tr:
        return None
    base = jrnn.tasks.ADDING_BASELINE
    div = [n for n, r in tr.items() if diverged(r)]
    ranked = sorted(((n, r) for n, r in tr.items() if n not in div),
                    key=lambda kv: kv[1]["final_loss"]["value"])
    learned = [n for n, r in ranked if solves(r)]
    sep, why = task_separates(e)
    return (
        f"Adding problem at T = {e.train_T}: {len(learned)} of {len(tr)} trained "
        f"configurations solved it (held-out MSE below a tenth of the baseline {base:.4f}) on "
        "most seeds" + (f": {', '.join(learned)}" if learned else "")
        + (f". Best: {ranked[0][0]} ({fmt_pm(ranked[0][1]['final_loss'], 4)})" if ranked
           else "")
        + (f". Diverged (held-out loss non-finite or above {DIVERGED_FACTOR:g}x the baseline on "
           "some seed): " + ", ".join(f"{n} ({tr[n]['diverged_seeds']}/"
                                      f"{len(tr[n]['final_loss_per_seed'])} seeds)" for n in div)
           if div else "")
        + f". The task {'separates' if sep else 'does not separate'} the cells: {why}.")


def _exact_zeros(init_results: dict) -> str | None:
    rows = [(n, r) for n, r in init_results.items() if r.get("exactly_zero_gradients")]
    if not rows:
        return None
    parts = [f"{n} ({r['exactly_zero_gradients']}/{r['log10_norm_at_T']['n']} samples; "
             f"lambda_max {fmt_pm(r['lyapunov_max'], 3)})" for n, r in rows]
    return ("`-inf (exactly 0)`: d s_T/d s_0 is exactly the zero matrix, not small, for "
            + "; ".join(parts) + ". A ReLU Jacobian is diag(1[a_t > 0]) W: once every path "
            "from s_0 passes a step where its unit is off (for the IRNN, W = I, each unit must "
            "stay on for all T steps from s_0 = 0, where its input walk sends it off about half "
            "the time), the product is 0. lambda_max is measured differently, on trajectories "
            "from a random state after a warm-up, where the units that are on stay on: their "
            "factors are exactly 1 and lambda_max is 0 to rounding. Both are right; they "
            "answer different questions (from rest vs. on the attractor).")


def no_critical_gain(activations) -> str | None:
    """The note on activations without a critical row (``critical_gain`` NaN)."""
    if not activations:
        return None
    return (f"No critical row for {', '.join(activations)}: for these, chi(g) of the driven "
            "mean field jumps across 1 instead of crossing it (the variance map has two stable "
            "fixed points, q* = small and q* = inf), so jrnn.theory.critical_gain returns NaN. "
            "A gain picked anyway sends the finite network to the q* = inf branch: the state "
            "overflows and no finite exponent exists.")


def findings(e: Evidence, lyap_rows: list[dict], no_critical=()) -> list[str]:
    """The report's findings beyond the claims, each computed from the measurements."""
    init = {**{config_name("elman", a, "standard"): r for a, r in e.standard.items()},
            **{config_name("elman", a, "critical"): r for a, r in e.critical.items()},
            **e.remedies}
    found = (_lyapunov_vs_theory(lyap_rows), _growth_vs_theory(init),
             _pascanu_must_vanish(init), _adding_problem(e), _exact_zeros(init),
             no_critical_gain(list(no_critical)))
    return [s for s in found if s is not None]
