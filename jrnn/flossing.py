"""Gradient-flossing schedules: train steps that floss before, periodically or always.

The loss terms live in :mod:`jrnn.penalties` (below :mod:`jrnn.train`); this
module builds :func:`jrnn.train.make_train_step` steps from them, so it sits
above ``train``:

* :func:`make_penalty_step` — a train step that minimises a penalty alone
  (the flossing update of Engelken 2023);
* :func:`flossing_schedule` and :func:`make_flossing_step` — "none", "before",
  "periodic", "always" schedules as one step function for :func:`jrnn.train.fit`;
* :func:`floss_windows` — flossing from a chaotic start: the exact gradient,
  clipped per sequence, on short windows that grow (:data:`WINDOWS`).

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

from jrnn.penalties import Penalty, lyapunov_penalty, penalty_loss, regularize
from jrnn.train import init_state, make_train_step
from jrnn.validation import check_int, check_key, check_number

__all__ = [
    "FLOSSING_MODES",
    "LR_WARMUP",
    "PHASES",
    "WINDOWS",
    "FlossingSchedule",
    "WindowFloss",
    "floss_windows",
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


#: Default window curriculum of :func:`floss_windows`: ``(updates, steps, warmup, lr)``
#: per stage (from tanh N = 32, g = 3 it reached ``|lambda_1..4| < 0.05`` in 1 of 5 measured
#: runs; :func:`floss_windows` gives the numbers).
WINDOWS = ((400, 20, 20, 1e-2), (1000, 40, 40, 1e-2), (1000, 80, 40, 3e-3))

#: Fraction of each :func:`floss_windows` stage's updates over which the learning rate
#: rises linearly from 0 (Adam restarts every stage; its first updates are ``lr * sign(g)``).
LR_WARMUP = 0.1


class WindowFloss(NamedTuple):
    """Result of :func:`floss_windows`.

    Fields:
      params: the flossed cell parameters.
      loss: ``(U,)`` the penalty at every update (``U`` = all stages' updates).
      stage: ``(U,)`` the 0-based stage of every update.
      skipped: non-finite updates skipped (0 when the curriculum works).
    """

    params: Any
    loss: np.ndarray
    stage: np.ndarray
    skipped: int


def _check_windows(windows) -> tuple[tuple[int, int, int, float], ...]:
    try:
        stages = tuple(tuple(w) for w in windows)
    except TypeError:
        raise TypeError(
            f"windows must be a sequence of (updates, steps, warmup, lr) stages, got {windows!r}."
        ) from None
    if not stages or any(len(w) != 4 for w in stages):
        raise ValueError(
            f"windows must be a non-empty sequence of (updates, steps, warmup, lr) stages, "
            f"got {windows!r}."
        )
    return tuple((check_int(u, "windows updates", low=1), check_int(t, "windows steps", low=1),
                  check_int(w, "windows warmup", low=0),
                  check_number(lr, "windows lr", low=0.0, low_open=True))
                 for u, t, w, lr in stages)


def floss_windows(
    cell,
    params: Any,
    inputs: Callable[[jax.Array, int, int], Any],
    key: jax.Array,
    *,
    k: int,
    windows=WINDOWS,
    batch: int = 32,
    target=0.0,
    gradient: str = "clipped",
) -> WindowFloss:
    """Flossing from a chaotic start: the exact gradient on short windows that grow.

    Stage ``s = (updates, steps, warmup, lr)`` of ``windows`` runs ``updates``
    flossing updates (:func:`make_penalty_step`; Adam, its learning rate rising
    linearly from 0 over the first :data:`LR_WARMUP` of the stage, then a cosine
    decay to ``lr / 10``) of the penalty :func:`jrnn.penalties.lyapunov_penalty`
    ``(cell, k, target, gradient=gradient, warmup=warmup, steps=steps)`` on
    ``batch`` fresh sequences ``inputs(key_u, batch, warmup + steps)`` from the
    cell's initial carry.

    Why: on a chaotic orbit the exact gradient of the finite-``T`` exponents
    grows like ``exp(lambda_1 T)`` (Mikhaeil et al. 2022), so on long windows it
    overflows, while the frozen gradient (``gradient="frozen"``, no derivative
    through the states) is biased towards chaos (below). On windows of
    ``T = warmup + steps ~ 40`` steps the first stage lowers ``lambda_1``
    (0.21-0.26 -> 0.08-0.18; a start at 0.14 stays at 0.15). The default ``gradient="clipped"``
    clips every sequence's exact gradient to the batch median norm: on the
    longer windows the per-sequence norms still span decades (batch medians
    10 to ``5 x 10^4``; batch-mean gradients up to ``10^7``), and with the
    plain full gradient one sequence steers an update while Adam's second
    moment then stalls the rest; and Adam restarts every stage, whose first updates
    are ``lr * sign(g)`` for every weight (hence the warm-up). The finite-window
    exponents themselves are fine: against the long-run ones their bias is
    <= 0.01 nats per step on 40-80-step windows (<= 0.03 on 20-step ones), their
    batch variance <= 0.003 (the penalty is 0.02-0.05), and a 300-step lead-in
    to the attractor changes them by < 0.01.

    Measured (tanh N = 32, ``W ~ N(0, 9/N)``, float32, inputs +-1 bits,
    ``k = 4``; exponents on fresh inputs, T = 3000, 4 streams, warm-up 300;
    5 runs: init seeds 0-4, input keys 7-11; this shared 2-core CPU, one core)
    from ``lambda_1 = 0.14``-``0.26``: the plain full gradient without warm-up
    (the previous default) ends over-contracted in 5 of 5 runs (mean of
    ``lambda_1..4`` -0.15 to -0.31, e.g. ``(-0.07, -0.18, -0.31, -0.46)``; the
    penalty jumps from 0.02 to 0.4 within 30 updates of stage 2); the default
    here reaches ``|lambda_1..4| < 0.05`` in 1 of 5 runs (``(-0.000, -0.002,
    -0.006, -0.008)``), the other four end with ``lambda_1`` in -0.01..0.07
    and the spread not collapsed (e.g. ``(0.058, -0.048, -0.166, -0.290)``;
    RMS of ``lambda_1..4`` 0.15-0.26, was 0.17-0.37), 2400 updates, none
    skipped. Not yet reliable. Tried, no better: batch 64 in stages 2-3 (1 of
    5 again); the frozen gradient in stages 2-3 (``lambda_1`` back up to
    0.09-0.21 after stage 2); stages 2-3 at ``lr = 3e-3`` (0 of 5, ``lambda_1``
    up to 0.18); a target of -0.1 in stages 1-2 (``lambda_1`` from -0.20 to
    +0.17 after stage 2); a target of -0.03 in stages 2-3 (0 of 5). Engelken
    2023 flosses on short sequences as well.

    Args:
      cell: the recurrent :class:`~jrnn.cells.base.Cell`.
      params: its parameters (the start, e.g. chaotic).
      inputs: ``(key, batch, T) -> xs (batch, T, d)``, the input distribution.
      key: PRNG key of the input streams (one per update, ``fold_in``).
      k: exponents flossed (as ``lyapunov_penalty``).
      windows: the stages ``(updates, steps, warmup, lr)``, default :data:`WINDOWS`.
      batch: sequences per update.
      target: as ``lyapunov_penalty``.
      gradient: as ``lyapunov_penalty`` (default ``"clipped"``, see above).

    Returns:
      :class:`WindowFloss`. A non-finite update is skipped, counted and warned
      about (:func:`make_penalty_step`).

    Raises:
      TypeError / ValueError: a bad ``windows`` stage (not 4 entries, counts not
      positive integers, ``lr`` not positive), ``batch``, ``key``, ``inputs`` not
      callable, or what
      ``lyapunov_penalty`` raises for ``cell``, ``k``, ``target``, ``gradient``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(4, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> bits = lambda key, b, t: jnp.sign(jax.random.normal(key, (b, t, 1)))
        >>> res = jrnn.flossing.floss_windows(cell, params, bits, jax.random.key(1), k=1,
        ...                                   windows=((2, 5, 5, 1e-2), (1, 10, 5, 1e-3)), batch=2)
        >>> res.stage.tolist(), res.skipped
        ([0, 0, 1], 0)
    """
    stages = _check_windows(windows)
    batch = check_int(batch, "batch", low=1)
    check_key(key, "key")
    if not callable(inputs):
        raise TypeError(
            f"inputs must be a callable (key, batch, T) -> xs (batch, T, d), got "
            f"{type(inputs).__name__}."
        )
    key_in, key_state = jax.random.split(key)
    losses, stage_of, skipped, n = [], [], 0, 0
    for s, (updates, steps, warmup, lr) in enumerate(stages):
        pen = lyapunov_penalty(cell, k, target, gradient=gradient, warmup=warmup, steps=steps)
        ramp = int(LR_WARMUP * updates)
        opt = optax.adam(optax.warmup_cosine_decay_schedule(0.0, lr, ramp, updates, lr / 10)
                         if ramp else optax.cosine_decay_schedule(lr, updates, alpha=0.1))
        step = make_penalty_step(pen, opt)
        state = init_state(params, opt, key_state)
        for _ in range(updates):
            xs = inputs(jax.random.fold_in(key_in, n), batch, warmup + steps)
            n += 1
            state, metrics = step(state, (xs, None))  # skips and warns if non-finite
            skipped += not bool(np.asarray(metrics["finite"]))
            losses.append(float(metrics["loss"]))
            stage_of.append(s)
        params = state.params
    return WindowFloss(params, np.asarray(losses), np.asarray(stage_of, np.int32), skipped)
