"""Gradient-flossing schedules: train steps that floss before, periodically or always.

The loss terms live in :mod:`jrnn.penalties` (below :mod:`jrnn.train`); this
module builds :func:`jrnn.train.make_train_step` steps from them, so it sits
above ``train``:

* :func:`make_penalty_step` — a train step that minimises a penalty alone
  (the flossing update of Engelken 2023);
* :func:`flossing_schedule` and :func:`make_flossing_step` — "none", "before",
  "periodic", "always" schedules as one step function for :func:`jrnn.train.fit`.

Schedules and the paper's recommendations (as we read Engelken 2023): flossing
*before* training (a few hundred pure-flossing updates from the initialisation)
already makes long delays trainable and is cheap, since the spectrum is
computed only in that phase; flossing *periodically during* training as well
helps most on the hardest (longest-delay) tasks, because training drifts the
exponents away from 0 again; flossing *always* (adding the penalty to every
step) also works but costs a spectrum per step and can fight the task, whose
solution may need some contracting directions, so the paper floss only the
leading ``k`` exponents with ``k`` of the order of the number of things to
remember, and stops flossing late in training.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jrnn.penalties import Penalty, penalty_loss, regularize
from jrnn.train import make_train_step
from jrnn.validation import check_int, check_number

__all__ = [
    "FLOSSING_MODES",
    "PHASES",
    "FlossingSchedule",
    "flossing_schedule",
    "make_flossing_step",
    "make_penalty_step",
]

#: Accepted ``mode`` of :func:`flossing_schedule`.
FLOSSING_MODES = ("none", "before", "periodic", "always")

#: Phase codes in a :func:`make_flossing_step` step's ``metrics["phase"]``.
PHASES = {"task": 0, "floss": 1, "both": 2}


def _check_optimizer(optimizer, name: str):
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            f"{name} must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), got "
            f"{type(optimizer).__name__}."
        )
    return optimizer


def make_penalty_step(
    penalty: Penalty,
    optimizer: optax.GradientTransformation,
    *,
    weight: float = 1.0,
    params_of: Callable[[Any], Any] | None = None,
    clip_norm: float | None = None,
    skip_nonfinite: bool = True,
):
    """A step ``(state, (x, y)) -> (state, metrics)`` minimising ``weight * penalty`` only.

    The flossing update of Engelken 2023: ``y`` is ignored, ``x`` is the batch
    of training inputs; parameters the penalty does not touch (a readout) get
    zero gradient. ``metrics["loss"]`` is the weighted penalty. It is
    :func:`jrnn.train.make_train_step` on :func:`jrnn.penalties.penalty_loss`,
    so clipping behaves the same. A non-finite penalty gradient is never applied
    silently: by default (``skip_nonfinite=True``) the update is skipped, a
    ``RuntimeWarning`` is issued and ``metrics["skipped"]`` counts the skipped
    updates so far; ``skip_nonfinite=False`` applies it and still warns.
    (:func:`make_flossing_step` is the scheduler that alternates such updates
    with task updates.)
    """
    apply_fn, loss = penalty_loss(penalty, weight, params_of=params_of)
    _check_optimizer(optimizer, "optimizer")
    inner = make_train_step(apply_fn, loss, optimizer, clip_norm=clip_norm,
                            skip_nonfinite=skip_nonfinite)
    counter = _NonFinite(skip_nonfinite)

    def step(state, batch):
        new_state, metrics = inner(state, batch)
        return new_state, counter(metrics)

    return step


class _NonFinite:
    """Counts and warns about non-finite flossing updates (concrete metrics only)."""

    def __init__(self, skipped: bool):
        self.skipped, self.count = skipped, 0

    def __call__(self, metrics):
        metrics = dict(metrics)
        finite = metrics.get("finite")
        if finite is None or isinstance(finite, jax.core.Tracer):
            return metrics
        bad = int(np.sum(~np.asarray(finite, bool)))
        if bad:
            self.count += bad
            what = "skipped" if self.skipped else "APPLIED (skip_nonfinite=False)"
            warnings.warn(
                f"non-finite flossing gradient: update {what} ({self.count} so far). On a "
                f"chaotic orbit the gradient through the trajectory grows like "
                f"exp(lambda_1 T): use lyapunov_penalty(..., gradient='frozen') (through the "
                f"Jacobians at the visited states only) or short windows after a transient "
                f"(transient=, steps=).",
                RuntimeWarning,
                stacklevel=3,
            )
        metrics["skipped"] = np.full(np.shape(finite), self.count if self.skipped else 0)
        return metrics


class FlossingSchedule(NamedTuple):
    """When to floss (see :func:`flossing_schedule`).

    Fields:
      mode: one of :data:`FLOSSING_MODES`.
      pre_steps: pure flossing updates before any task update.
      period: task updates between flossing episodes (``"periodic"``).
      duration: flossing updates per episode (``"periodic"``).
    """

    mode: str
    pre_steps: int
    period: int
    duration: int

    def phase(self, t: int) -> str:
        """``"floss"``, ``"task"`` or ``"both"`` for the 0-based update ``t``."""
        t = check_int(t, "t", low=0)  # the 0-based update index
        if self.mode == "none":
            return "task"
        if t < self.pre_steps:
            return "floss"
        if self.mode == "always":
            return "both"
        if self.mode == "periodic":
            u = (t - self.pre_steps) % (self.period + self.duration)
            return "floss" if u >= self.period else "task"
        return "task"


def flossing_schedule(
    mode: str = "before", *, pre_steps: int = 0, period: int = 0, duration: int = 0
) -> FlossingSchedule:
    """Validates and builds a :class:`FlossingSchedule`.

    Modes (update ``t`` counted from 0):

    * ``"none"``: task updates only.
    * ``"before"``: ``pre_steps`` flossing updates, then task updates (the
      paper's cheapest variant: the spectrum is computed only before training).
    * ``"periodic"``: as ``"before"``, then ``duration`` flossing updates after
      every ``period`` task updates (keeps the exponents near the target while
      training moves them; the paper's choice for the longest delays).
    * ``"always"``: as ``"before"``, then every update minimises
      ``task + weight * penalty`` (a spectrum per step: the costliest).

    Raises:
      TypeError: a count that is not an integer.
      ValueError: unknown mode; negative counts; ``"periodic"`` without a
        positive ``period`` and ``duration``; ``"before"`` without ``pre_steps``.
    """
    if mode not in FLOSSING_MODES:
        raise ValueError(f"mode must be one of {FLOSSING_MODES}, got {mode!r}.")
    vals = {name: check_int(v, name, low=0)
            for name, v in (("pre_steps", pre_steps), ("period", period), ("duration", duration))}
    if mode == "periodic" and (vals["period"] < 1 or vals["duration"] < 1):
        raise ValueError(
            f"mode='periodic' needs period >= 1 and duration >= 1, got period={period!r}, "
            f"duration={duration!r}."
        )
    if mode == "before" and vals["pre_steps"] < 1:
        raise ValueError(f"mode='before' needs pre_steps >= 1, got {pre_steps!r}.")
    return FlossingSchedule(mode, vals["pre_steps"], vals["period"], vals["duration"])


def make_flossing_step(
    apply_fn: Callable[[Any, Any], Any],
    loss: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation,
    penalty: Penalty | None,
    schedule: FlossingSchedule,
    *,
    weight: float = 1.0,
    params_of: Callable[[Any], Any] | None = None,
    clip_norm: float | None = None,
    skip_nonfinite: bool = False,
    transform: Callable[[Callable], Callable] | None = None,
    floss_optimizer: optax.GradientTransformation | None = None,
):
    """One step function for :func:`jrnn.train.fit` that follows ``schedule``.

    Update ``t = state.step`` is a task update (``make_train_step(apply_fn,
    loss, ...)``), a flossing update (:func:`make_penalty_step`, ``weight *
    penalty`` only) or both (:func:`jrnn.penalties.regularize`), as ``schedule.phase(t)``
    says. Each phase is compiled once, on first use; the phase is chosen in
    Python from the step counter (``fit`` already syncs every step), so a task
    update never pays for the spectrum. All updates share ``optimizer`` and its
    state. ``metrics`` has ``loss`` (the minimised objective), ``grad_norm``,
    ``finite``, ``phase`` (:data:`PHASES` code) and ``skipped``: flossing and
    "both" updates whose gradient is not finite are always skipped (never
    applied silently), counted in ``skipped`` and warned about.

    Args:
      apply_fn, loss, optimizer, clip_norm, skip_nonfinite: as ``make_train_step``.
      penalty, weight, params_of: as :func:`jrnn.penalties.regularize`; ``penalty`` may be
        None for ``mode="none"`` (plain training through the same interface).
      schedule: from :func:`flossing_schedule`.
      transform: applied to each phase's step before use, e.g.
        ``lambda f: jax.jit(jax.vmap(f))`` for a state batched over seeds.
      floss_optimizer: optimizer of the pure flossing updates (default
        ``optimizer``); its state must have the same structure (e.g. Adam with
        another learning rate), since the updates share ``state.opt_state``.

    Example::

        >>> import jax, optax, jrnn
        >>> model = jrnn.models.rnn(jrnn.cells.elman(8), 1)
        >>> opt = optax.adam(1e-3)
        >>> pen = jrnn.penalties.lyapunov_penalty(model.cell, k=2)
        >>> sched = jrnn.flossing.flossing_schedule("periodic", pre_steps=2, period=3, duration=1)
        >>> [sched.phase(t) for t in range(7)]
        ['floss', 'floss', 'task', 'task', 'task', 'floss', 'task']
        >>> step = jrnn.flossing.make_flossing_step(model.apply, jrnn.tasks.mse, opt, pen, sched)
        >>> state = jrnn.train.init_state(model.init(jax.random.key(0), 2), opt, jax.random.key(1))
        >>> data = lambda key, t: jrnn.tasks.adding(key, 4, 20)
        >>> res = jrnn.train.fit(step, state, data, steps=3)
        >>> res.history["phase"]
        [1, 1, 0]
    """
    if not isinstance(schedule, FlossingSchedule):
        raise TypeError(
            f"schedule must come from flossing_schedule, got {type(schedule).__name__}."
        )
    w = check_number(weight, "weight", low=0.0)
    if penalty is not None or schedule.mode != "none":
        floss = penalty_loss(penalty, w, params_of=params_of)  # checks penalty
        both = regularize(apply_fn, loss, penalty, w, params_of=params_of)
    _check_optimizer(optimizer, "optimizer")
    if floss_optimizer is not None:
        _check_optimizer(floss_optimizer, "floss_optimizer")
    opts = dict(clip_norm=clip_norm, skip_nonfinite=skip_nonfinite)
    tf = transform or (lambda f: f)
    builders = {
        "task": lambda: make_train_step(apply_fn, loss, optimizer, **opts),
        "floss": lambda: make_train_step(*floss, floss_optimizer or optimizer,
                                         clip_norm=clip_norm, skip_nonfinite=True),
        "both": lambda: make_train_step(*both, optimizer, clip_norm=clip_norm,
                                        skip_nonfinite=True),
    }
    counter = _NonFinite(True)
    compiled: dict[str, Callable] = {}

    def step(state, batch):
        t = int(np.asarray(state.step).reshape(-1)[0])
        phase = schedule.phase(t)
        if phase not in compiled:
            compiled[phase] = tf(builders[phase]())
        new_state, metrics = compiled[phase](state, batch)
        metrics = counter(metrics) if phase != "task" else dict(metrics)
        metrics.setdefault("skipped", np.full(np.shape(metrics["loss"]), counter.count))
        metrics["phase"] = np.full(np.shape(metrics["loss"]), PHASES[phase], np.int32)
        return new_state, metrics

    return step
