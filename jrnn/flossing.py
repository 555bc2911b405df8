"""Gradient-flossing schedules: train steps that floss before, periodically or always.

The loss terms live in :mod:`jrnn.penalties` (below :mod:`jrnn.train`); this
module builds :func:`jrnn.train.make_train_step` steps from them, so it sits
above ``train``:

* :func:`make_penalty_step` — a train step that minimises a penalty alone
  (the flossing update of Engelken 2023);
* :func:`flossing_schedule` and :func:`make_flossing_step` — "none", "before",
  "periodic", "always" schedules as one step function for :func:`jrnn.train.fit`;
* :func:`floss_windows` — flossing from a chaotic start: the frozen gradient,
  clipped per sequence, on long windows (:data:`WINDOWS`).

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
                f"exp(lambda_1 T): use lyapunov_penalty(..., gradient='frozen', "
                f"clip='median') (through the Jacobians at the visited states only, each "
                f"sequence clipped to the batch median), as jrnn.flossing.floss_windows does.",
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


#: Default curriculum of :func:`floss_windows`: one stage ``(updates, steps, warmup, lr)``
#: (from tanh N = 32, g = 3 it reached ``|lambda_1..4| < 0.05`` in 10 of 10 measured runs,
#: the largest 0.026; :func:`floss_windows` gives the numbers).
WINDOWS = ((2400, 250, 50, 1e-2),)

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


def _check_inputs(xs, batch: int, T: int):
    """``xs`` if it is a ``(batch, T, d)`` array (a NumPy or JAX array, or nested lists)."""
    try:
        shape = tuple(np.shape(xs)) if xs is not None else None
    except (TypeError, ValueError):
        shape = None
    if shape is None or len(shape) != 3 or shape[:2] != (batch, T):
        got = f"shape {shape}" if shape is not None else type(xs).__name__
        raise ValueError(
            f"inputs(key, batch, T) must return a (batch, T, d) = ({batch}, {T}, d) array "
            f"(T = warmup + steps of the stage), got {got}."
        )
    return xs


def floss_windows(
    cell,
    params: Any,
    inputs: Callable[[jax.Array, int, int], Any],
    key: jax.Array,
    *,
    k: int,
    windows=WINDOWS,
    batch: int = 16,
    target=0.0,
    gradient: str = "frozen",
    clip: str | None = "median",
) -> WindowFloss:
    """Flossing from a chaotic start: the frozen gradient, clipped per sequence, on long windows.

    Stage ``s = (updates, steps, warmup, lr)`` of ``windows`` runs ``updates``
    flossing updates (:func:`make_penalty_step`; Adam, its learning rate rising
    linearly from 0 over the first :data:`LR_WARMUP` of the stage, then a cosine
    decay to ``lr / 10``) of the penalty :func:`jrnn.penalties.lyapunov_penalty`
    ``(cell, k, target, gradient=gradient, clip=clip, warmup=warmup, steps=steps)``
    on ``batch`` fresh sequences ``inputs(key_u, batch, warmup + steps)`` from
    the cell's initial carry. The default is one stage: 2400 updates on windows
    of 50 + 250 steps, ``lr = 1e-2``, 16 sequences.

    Why this gradient (Mikhaeil et al. 2022; :func:`jrnn.penalties.lyapunov_penalty`
    has the measurements): on a chaotic orbit the exact gradient of the
    finite-``T`` exponents grows like ``exp(lambda_1 T)`` (non-finite on 200-step
    windows from g = 3), and on windows short enough to stay finite its
    per-sequence variance swamps the mean: near the edge two halves of a batch
    of 256 windows give estimates at cosine 0.04, and a step along it does not
    lower the long-run penalty. The frozen gradient (``gradient="frozen"``:
    through the Jacobians at the visited states only) is finite on any window
    and, averaged over long windows with every sequence clipped to the batch
    median norm (``clip="median"``: its per-sequence norms are heavy-tailed
    too), points downhill on the long-run penalty (cosine 0.62 between halves;
    a step of 0.1 along it lowers the penalty 0.029 by 0.016, a random one by
    at most 0.001). Unclipped it gets lost in its tail. It is biased (it
    ignores how the attractor moves), yet the flossed exponents keep closing in
    on the target with more updates (largest ``|lambda_1..4|`` 0.033-0.046
    after 1400 updates, 0.015-0.026 after 2400). The learning-rate warm-up keeps Adam's
    first updates (``lr * sign(g)`` on every weight) from throwing the net far
    off; every stage starts a fresh Adam.

    Measured (tanh N = 32, ``W ~ N(0, 9/N)``, float32, inputs +-1 bits,
    ``k = 4``; exponents on fresh inputs, T = 3000, 4 streams, warm-up 300;
    10 runs: init seeds 0-9 with input keys 7-16; this 2-core CPU, one core
    per run, 76-80 s per run) from ``lambda_1 = 0.14``-``0.26``: the default
    reaches ``|lambda_1..4| < 0.05`` in 10 of 10 runs, largest ``|lambda_i|``
    0.015-0.026, e.g. ``(0.263, 0.208, 0.142, 0.076) -> (0.020, 0.004,
    -0.009, -0.025)``, no update skipped; 1400 updates: 10 of 10, largest
    0.033-0.046; 1000 updates: 4 of 5 (one ends at ``lambda_4 = -0.055``).
    The previous default, the median-clipped *full* gradient on windows
    growing from 20 + 20 to 40 + 80 steps (2400 updates), reached it in 1 of 5
    (the others stuck at ``lambda_1..4 ~ (0.06, -0.04, -0.16, -0.29)``; the
    plain full gradient: 0 of 5, over-contracted). Engelken 2023 flosses on
    55-step windows, one sequence per update, from ``g = 1``; from chaos that
    is the full gradient on short windows, measured above.

    How far it holds (``python -m experiments.flossing_chaos``: 10 inits per
    gain, other input streams; same measurement): g = 2: 10 of 10 (largest
    ``|lambda_i|`` 0.006-0.028); g = 3: 10 of 10 (0.015-0.029); g = 5
    (``lambda_1 ~ 0.38``): 0 of 10 after the default 2400 updates (0.075-0.27),
    and 4800 updates come to 0.050-0.064 (three inits): further from the edge
    takes more updates (give ``windows`` more). Larger nets need larger batches (the
    per-sequence noise grows with the number of weights): N = 64, g = 3 with
    batch 16 ended at 0.049 and 0.058 (two inits), with batch 32 at 0.037 and
    with batch 48 at 0.028; not measured beyond N = 64.

    Args:
      cell: the recurrent :class:`~jrnn.cells.base.Cell`.
      params: its parameters (the start, e.g. chaotic).
      inputs: ``(key, batch, T) -> xs (batch, T, d)``, the input distribution.
      key: PRNG key of the input streams (one per update, ``fold_in``).
      k: exponents flossed (as ``lyapunov_penalty``).
      windows: the stages ``(updates, steps, warmup, lr)``, default :data:`WINDOWS`.
      batch: sequences per update.
      target: as ``lyapunov_penalty``.
      gradient, clip: as ``lyapunov_penalty`` (default ``"frozen"``, ``"median"``:
        see above).

    Returns:
      :class:`WindowFloss`. A non-finite update is skipped, counted and warned
      about (:func:`make_penalty_step`).

    Raises:
      TypeError / ValueError: a bad ``windows`` stage (not 4 entries, counts not
      positive integers, ``lr`` not positive), ``batch``, ``key``, ``inputs`` not
      callable or (at each update) not returning a ``(batch, warmup + steps, d)``
      array, or what
      ``lyapunov_penalty`` raises for ``cell``, ``k``, ``target``, ``gradient``,
      ``clip``.

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
        pen = lyapunov_penalty(cell, k, target, gradient=gradient, clip=clip, warmup=warmup,
                               steps=steps)
        ramp = int(LR_WARMUP * updates)
        opt = optax.adam(optax.warmup_cosine_decay_schedule(0.0, lr, ramp, updates, lr / 10)
                         if ramp else optax.cosine_decay_schedule(lr, updates, alpha=0.1))
        step = make_penalty_step(pen, opt)
        state = init_state(params, opt, key_state)
        for _ in range(updates):
            xs = _check_inputs(inputs(jax.random.fold_in(key_in, n), batch, warmup + steps),
                               batch, warmup + steps)
            n += 1
            state, metrics = step(state, (xs, None))  # skips and warns if non-finite
            skipped += not bool(np.asarray(metrics["finite"]))
            losses.append(float(metrics["loss"]))
            stage_of.append(s)
        params = state.params
    return WindowFloss(params, np.asarray(losses), np.asarray(stage_of, np.int32), skipped)
