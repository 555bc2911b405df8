"""Lyapunov-guided training: gradient flossing and Jacobian / spectral-norm penalties.

Gradient flossing (Engelken, "Gradient flossing: improving gradient descent
through dynamic control of Jacobians", NeurIPS 2023) trains the leading ``k``
Lyapunov exponents of the network driven by the training inputs towards 0:

.. math::

   P_{\\mathrm{floss}}(\\theta) = \\frac{1}{B k} \\sum_{b=1}^{B} \\sum_{i=1}^{k}
   \\left(\\lambda_i^{(b)}(\\theta) - \\lambda^\\ast\\right)^2, \\qquad
   \\lambda_i = \\frac{1}{T} \\sum_t \\log |(R_t)_{ii}|, \\quad J_t Q_{t-1} = Q_t R_t,

differentiated through the QR chain of :func:`jrnn.diagnostics.lyapunov_spectrum`
(so any faster path that function gains, e.g. streaming, is used here too).
``lambda_i`` is in nats per step; ``||d s_T / d s_t||`` grows or decays like
``exp((T - t) lambda_1)``, so ``lambda_1 ~ 0`` keeps the error signal of a
``T - t``-step-old input neither vanishing nor exploding, and ``k`` exponents
near 0 keep a ``k``-dimensional subspace of such signals alive.

Pieces (all pure, composable with :func:`jrnn.train.make_train_step` / :func:`jrnn.train.fit`):

* :func:`lyapunov_penalty` — the flossing loss term; :func:`jacobian_norm_penalty`
  and :func:`spectral_norm_penalty` — the classic baselines (keep
  ``||J_t||`` or ``||W_hh||_2`` near a target). Each is a :class:`Penalty`.
* :func:`regularize` — ``(apply_fn, loss)`` with ``loss + weight * penalty``
  for ``make_train_step`` ("always" flossing).
* :func:`make_floss_step` — a train step that minimises the penalty alone
  (flossing episodes).
* :func:`flossing_schedule` and :func:`make_flossing_step` — "before",
  "periodic", "always" schedules as one step function for ``fit``.

Schedules and the paper's recommendations (as we read Engelken 2023): flossing
*before* training (a few hundred pure-flossing updates from the initialisation)
already makes long delays trainable and is cheap, since the spectrum is
computed only in that phase; flossing *periodically during* training as well
helps most on the hardest (longest-delay) tasks, because training drifts the
exponents away from 0 again; flossing *always* (adding the penalty to every
step) also works but costs a spectrum per step and can fight the task, whose
solution may need some contracting directions, so the paper floss only the
leading ``k`` exponents with ``k`` of the order of the number of things to
remember, and stops flossing late in training. The QR re-orthonormalisation
need not run every step ("QR every ``r`` steps", ``every``), which cuts the
cost of each penalty evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jrnn.cells.base import Cell, check_positive_int
from jrnn.diagnostics import jacobians as _jac
from jrnn.diagnostics.lyapunov import QR_METHODS, lyapunov_spectrum
from jrnn.validation import check_number

__all__ = [
    "FLOSSING_MODES",
    "FlossingSchedule",
    "Penalty",
    "flossing_schedule",
    "jacobian_norm_penalty",
    "lyapunov_penalty",
    "make_floss_step",
    "make_flossing_step",
    "regularize",
    "spectral_norm_penalty",
]

#: Accepted ``mode`` of :func:`flossing_schedule`.
FLOSSING_MODES = ("none", "before", "periodic", "always")

#: Sane range of a flossing target, nats per step: beyond +-1 a gradient is
#: multiplied by e every step, which no training target can want.
TARGET_RANGE = (-1.0, 1.0)

#: Phase codes in a :func:`make_flossing_step` step's ``metrics["phase"]``.
PHASES = {"task": 0, "floss": 1, "both": 2}


class Penalty(NamedTuple):
    """A loss term on the recurrent cell's parameters and a batch of inputs.

    Fields:
      name: ``"lyapunov"``, ``"jacobian_norm"`` or ``"spectral_norm"``.
      fn: ``(cell_params, xs (B, T, d) or (T, d)) -> ()`` the penalty value.
      exponents: for ``"lyapunov"``, ``(cell_params, xs) -> (B, k)`` (or
        ``(k,)``) the exponents the penalty sees; None otherwise.
      config: the static settings, for reports.
    """

    name: str
    fn: Callable[[Any, jax.Array], jax.Array]
    exponents: Callable[[Any, jax.Array], jax.Array] | None = None
    config: tuple[tuple[str, Any], ...] = ()


def _check_cell(cell, method: str = "auto") -> Cell:
    if not isinstance(cell, Cell):
        hint = " (for a jrnn.models.Model pass model.cell)" if hasattr(cell, "cell") else ""
        raise TypeError(f"cell must be a jrnn.Cell{hint}, got {type(cell).__name__}.")
    if method not in _jac.JACOBIAN_METHODS:
        raise ValueError(f"method must be one of {_jac.JACOBIAN_METHODS}, got {method!r}.")
    if method == "analytic" and cell.jacobian is None:
        raise ValueError(
            f"method='analytic' needs a cell with an analytic jacobian, but cell "
            f"{cell.describe()} has none; use method='auto' (jax.jacfwd of the step)."
        )
    return cell


def _optional_int(value, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be None or an integer >= {minimum}, got {value!r}.")
    return int(value)


def _window(xs, warmup: int, steps: int | None, batch: int | None, name: str):
    """``xs[:batch, :warmup + steps]`` with the lengths checked (shapes are static)."""
    if xs is None or isinstance(xs, str):
        raise TypeError(f"{name}: xs must be a (T, d) or (B, T, d) array, got {xs!r}.")
    xs = jnp.asarray(xs)
    if xs.ndim not in (2, 3):
        raise ValueError(f"xs must be (T, d) or (B, T, d), got shape {xs.shape}.")
    if 0 in xs.shape:
        raise ValueError(f"{name}: xs must not be empty, got shape {xs.shape}.")
    T = xs.shape[-2]
    need = warmup + (steps if steps is not None else 1)
    if T < need:
        raise ValueError(
            f"{name}: xs has T={T} steps, but warmup={warmup} + steps="
            f"{steps if steps is not None else 1} = {need} are needed."
        )
    if steps is not None:
        xs = xs[..., : warmup + steps, :]
    if batch is not None and xs.ndim == 3:
        xs = xs[:batch]
    return xs


def lyapunov_penalty(
    cell: Cell,
    k: int,
    target=0.0,
    *,
    every: int = 1,
    warmup: int = 0,
    steps: int | None = None,
    batch: int | None = None,
    qr: str = "auto",
    method: str = "auto",
    key: jax.Array | None = None,
) -> Penalty:
    """The gradient-flossing loss ``mean_{b,i} (lambda_i^(b) - target_i)^2`` (Engelken 2023).

    .. math::

       P(\\theta) = \\frac{1}{B k} \\sum_{b, i \\le k}
       \\left(\\lambda_i^{(b)} - \\lambda^\\ast_i\\right)^2

    with ``lambda_i^(b)`` the ``i``-th exponent (descending, nats per step) of
    trajectory ``b`` of the batch, from :func:`jrnn.diagnostics.lyapunov_spectrum`
    with ``reorth_every=every`` after ``warmup`` alignment steps. Differentiable
    with respect to the cell parameters, through the trajectory and the QR chain.

    Args:
      cell: the recurrent :class:`~jrnn.cells.base.Cell` (``model.cell`` for a model).
      k: number of leading exponents flossed, ``1 <= k <= cell.state_size``.
      target: ``lambda*``, a number or ``(k,)`` values in ``[-1, 1]`` nats per
        step (0: neither vanishing nor exploding).
      every: QR re-orthonormalisation every ``every`` steps (the paper's
        speed-up; each block is checked and redone stepwise if inaccurate).
      warmup: leading steps that only align the frame (not averaged).
      steps: time steps averaged after the warmup (default: the rest of ``xs``);
        ``xs`` is cut to ``warmup + steps`` steps.
      batch: use only the first ``batch`` sequences of ``xs`` (cost).
      qr, method: passed to ``lyapunov_spectrum``.
      key: PRNG key of the initial frame when ``k < S`` (default ``key(0)``).

    Returns:
      A :class:`Penalty` whose ``fn(cell_params, xs)`` is the scalar above and
      ``exponents(cell_params, xs)`` the ``(B, k)`` exponents it penalises.

    Raises:
      TypeError: ``cell`` is not a Cell (e.g. a Model).
      ValueError: ``k`` not in ``[1, S]``; ``target`` not finite, outside
        ``[-1, 1]`` or of the wrong length; ``every``, ``warmup``, ``steps``,
        ``batch`` not integers in range; ``qr`` / ``method`` unknown;
        ``method="analytic"`` for a cell without an analytic Jacobian; (when
        called) ``xs`` shorter than ``warmup + steps``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> pen = jrnn.train.lyapunov_penalty(cell, k=2, warmup=10)
        >>> xs = jax.random.normal(jax.random.key(1), (4, 50, 1))
        >>> float(pen.fn(params, xs)) > 0, pen.exponents(params, xs).shape
        (True, (4, 2))
    """
    _check_cell(cell, method)
    S = cell.state_size
    k = check_positive_int(k, "k")
    if k > S:
        raise ValueError(f"k must be at most the cell's state size {S}, got {k}.")
    try:
        if isinstance(target, bool | np.bool_) or np.asarray(target).dtype.kind not in "iuf":
            raise TypeError
        tgt = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"target must be a real number or ({k},) real numbers in {list(TARGET_RANGE)} nats "
            f"per step, got {target!r}."
        ) from None
    if tgt.ndim > 1 or (tgt.ndim == 1 and tgt.shape[0] != k):
        raise ValueError(f"target must be a number or have shape ({k},), got shape {tgt.shape}.")
    lo, hi = TARGET_RANGE
    if not np.all(np.isfinite(tgt)) or np.any(tgt < lo) or np.any(tgt > hi):
        raise ValueError(
            f"target must be finite and in [{lo}, {hi}] nats per step, got {target!r}."
        )
    every = check_positive_int(every, "every")
    warmup = _optional_int(warmup, "warmup", 0)
    if warmup is None:
        raise ValueError("warmup must be an integer >= 0, got None.")
    steps = _optional_int(steps, "steps", 1)
    batch = _optional_int(batch, "batch", 1)
    if qr not in QR_METHODS:
        raise ValueError(f"qr must be one of {QR_METHODS}, got {qr!r}.")
    tgt_list = tgt.tolist()

    def exponents(params, xs):
        xs = _window(xs, warmup, steps, batch, "lyapunov_penalty")
        spec = lyapunov_spectrum(cell, params, xs, k=k, reorth_every=every, warmup=warmup,
                                 method=method, qr=qr, key=key)
        return spec.exponents

    def fn(params, xs):
        lam = exponents(params, xs)
        tgt_arr = jnp.broadcast_to(jnp.asarray(tgt_list, lam.dtype), lam.shape)
        return jnp.mean(jnp.square(lam - tgt_arr))

    config = (("k", k), ("target", tgt_list), ("every", every), ("warmup", warmup),
              ("steps", steps), ("batch", batch), ("qr", qr), ("method", method))
    return Penalty("lyapunov", fn, exponents, config)


def _check_norm_target(target) -> float:
    return check_number(target, "target", low=0.0, high=10.0, low_open=True)


def jacobian_norm_penalty(
    cell: Cell,
    target: float = 1.0,
    *,
    norm: str = "spectral",
    steps: int | None = None,
    batch: int | None = None,
    method: str = "auto",
) -> Penalty:
    """Baseline: keep every step Jacobian's norm near ``target``.

    .. math::

       P(\\theta) = \\frac{1}{B T} \\sum_{b, t} \\left(\\lVert J_t^{(b)} \\rVert - c\\right)^2,
       \\qquad J_t = \\partial s_t / \\partial s_{t-1},

    with ``||.||`` the spectral norm (``norm="spectral"``) or the RMS singular
    value ``||J||_F / sqrt(S)`` (``norm="rms"``, smooth everywhere). A local,
    one-step control of the factors of ``d s_T / d s_t``, cheaper than the
    spectrum but blind to how the factors align (Pascanu, Mikolov & Bengio
    2013 regularise a related norm ratio).

    Args:
      cell: the recurrent Cell.
      target: ``c`` in ``(0, 10]``.
      norm: ``"spectral"`` or ``"rms"``.
      steps, batch: use the first ``steps`` steps and ``batch`` sequences.
      method: Jacobian method (:func:`jrnn.diagnostics.step_jacobians`).

    Raises:
      TypeError / ValueError: as :func:`lyapunov_penalty`, for a bad cell,
      target, norm, steps or batch.
    """
    _check_cell(cell, method)
    c = _check_norm_target(target)
    if norm not in ("spectral", "rms"):
        raise ValueError(f"norm must be 'spectral' or 'rms', got {norm!r}.")
    steps = _optional_int(steps, "steps", 1)
    batch = _optional_int(batch, "batch", 1)
    S = cell.state_size

    def fn(params, xs):
        xs = _window(xs, 0, steps, batch, "jacobian_norm_penalty")
        batched = _jac.prepare(cell, params, xs, None)
        seq = lambda x, cr: _jac.sequence_jacobians(cell, params, x, cr, method)[0]
        Js = _jac.map_sequences(seq, batched, xs, None)
        if norm == "spectral":
            nrm = jnp.linalg.svd(Js, compute_uv=False)[..., 0]
        else:
            nrm = jnp.sqrt(jnp.sum(jnp.square(Js), axis=(-2, -1)) / S)
        return jnp.mean(jnp.square(nrm - c))

    return Penalty("jacobian_norm", fn, None, (("target", c), ("norm", norm), ("steps", steps),
                                               ("batch", batch), ("method", method)))


def spectral_norm_penalty(cell: Cell, target: float = 1.0) -> Penalty:
    """Baseline: ``(sigma_max(W_hh) - c)^2`` on the cell's effective recurrent matrix.

    Input-independent (``xs`` is ignored); ``sigma_max(W_hh) <= 1`` with
    ``|f'| <= 1`` bounds every ``||J_t||`` by 1 (Pascanu et al. 2013).

    Raises:
      TypeError: ``cell`` is not a Cell.
      ValueError: the cell exposes no ``recurrent_matrix`` (e.g. an LSTM:
        use :func:`jacobian_norm_penalty` or :func:`lyapunov_penalty`), or a
        target outside ``(0, 10]``.
    """
    _check_cell(cell)
    c = _check_norm_target(target)
    if cell.recurrent_matrix is None:
        raise ValueError(
            f"spectral_norm_penalty needs a cell with a recurrent_matrix, but "
            f"{cell.describe()} has none; use jacobian_norm_penalty or lyapunov_penalty."
        )

    def fn(params, xs):
        del xs
        W = cell.recurrent_matrix(params)
        return jnp.square(jnp.linalg.svd(W, compute_uv=False)[0] - c)

    return Penalty("spectral_norm", fn, None, (("target", c),))


def _check_weight(weight) -> float:
    return check_number(weight, "weight", low=0.0)


def _default_params_of(params):
    """Model params ``{"cell": ..., "readout": ...}`` -> the cell's; anything else as is."""
    if isinstance(params, dict) and "cell" in params:
        return params["cell"]
    return params


def _check_optimizer(optimizer, name: str):
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            f"{name} must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), got "
            f"{type(optimizer).__name__}."
        )
    return optimizer


def _check_penalty(penalty) -> Penalty:
    if not isinstance(penalty, Penalty):
        raise TypeError(
            f"penalty must be a jrnn.train.Penalty (from lyapunov_penalty, jacobian_norm_penalty "
            f"or spectral_norm_penalty), got {type(penalty).__name__}."
        )
    return penalty


def regularize(
    apply_fn: Callable[[Any, Any], Any],
    loss: Callable[[Any, Any], jax.Array],
    penalty: Penalty,
    weight: float,
    *,
    params_of: Callable[[Any], Any] | None = None,
) -> tuple[Callable, Callable]:
    """``(apply_fn', loss')`` for :func:`jrnn.train.make_train_step` minimising
    ``loss(apply_fn(params, x), y) + weight * penalty.fn(params_of(params), x)``.

    ``apply_fn'`` returns ``(predictions, penalty value)``; the step's recorded
    ``loss`` is the total. The penalty sees the same training inputs ``x``.

    Args:
      apply_fn, loss: as for ``make_train_step``.
      penalty: a :class:`Penalty`.
      weight: ``>= 0``.
      params_of: model params -> cell params (default: ``params["cell"]`` when
        ``params`` is a model's dict, else ``params``).

    Example::

        >>> import jax, optax, jrnn
        >>> model = jrnn.models.rnn(jrnn.cells.elman(8), 1)
        >>> pen = jrnn.train.lyapunov_penalty(model.cell, k=2)
        >>> apply, loss = jrnn.train.regularize(model.apply, jrnn.tasks.mse, pen, 0.1)
        >>> step = jrnn.train.make_train_step(apply, loss, optax.adam(1e-3))
    """
    _check_penalty(penalty)
    w = _check_weight(weight)
    get = params_of or _default_params_of

    def apply(params, x):
        return apply_fn(params, x), penalty.fn(get(params), x)

    def total(out, y):
        pred, pen = out
        return loss(pred, y) + w * pen

    return apply, total


def make_floss_step(
    penalty: Penalty,
    optimizer: optax.GradientTransformation,
    *,
    weight: float = 1.0,
    params_of: Callable[[Any], Any] | None = None,
    clip_norm: float | None = None,
    skip_nonfinite: bool = False,
):
    """A jitted step ``(state, (x, y)) -> (state, metrics)`` minimising ``weight * penalty`` only.

    The flossing update of Engelken 2023: ``y`` is ignored, ``x`` is the batch
    of training inputs; parameters the penalty does not touch (a readout) get
    zero gradient. ``metrics["loss"]`` is the weighted penalty. It is
    :func:`jrnn.train.make_train_step` with the penalty as the loss, so
    clipping and ``skip_nonfinite`` behave the same.
    """
    from jrnn.train import make_train_step  # train re-exports this module

    _check_penalty(penalty)
    _check_optimizer(optimizer, "optimizer")
    w = _check_weight(weight)
    get = params_of or _default_params_of
    return make_train_step(lambda p, x: w * penalty.fn(get(p), x), lambda value, y: value,
                           optimizer, clip_norm=clip_norm, skip_nonfinite=skip_nonfinite)


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
        if isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 0:
            raise ValueError(f"t must be an update index, an integer >= 0, got {t!r}.")
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
      ValueError: unknown mode; negative counts; ``"periodic"`` without a
        positive ``period`` and ``duration``; ``"before"`` without ``pre_steps``.
    """
    if mode not in FLOSSING_MODES:
        raise ValueError(f"mode must be one of {FLOSSING_MODES}, got {mode!r}.")
    vals = {}
    for name, v in (("pre_steps", pre_steps), ("period", period), ("duration", duration)):
        vals[name] = _optional_int(v, name, 0)
        if vals[name] is None:
            raise ValueError(f"{name} must be an integer >= 0, got None.")
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
    loss, ...)``), a flossing update (:func:`make_floss_step`, ``weight *
    penalty`` only) or both (:func:`regularize`), as ``schedule.phase(t)``
    says. Each phase is compiled once, on first use; the phase is chosen in
    Python from the step counter (``fit`` already syncs every step), so a task
    update never pays for the spectrum. All updates share ``optimizer`` and its
    state. ``metrics`` has ``loss`` (the minimised objective), ``grad_norm``,
    ``finite`` and ``phase`` (:data:`PHASES` code).

    Args:
      apply_fn, loss, optimizer, clip_norm, skip_nonfinite: as ``make_train_step``.
      penalty, weight, params_of: as :func:`regularize`; ``penalty`` may be
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
        >>> pen = jrnn.train.lyapunov_penalty(model.cell, k=2)
        >>> sched = jrnn.train.flossing_schedule("periodic", pre_steps=2, period=3, duration=1)
        >>> [sched.phase(t) for t in range(7)]
        ['floss', 'floss', 'task', 'task', 'task', 'floss', 'task']
        >>> step = jrnn.train.make_flossing_step(model.apply, jrnn.tasks.mse, opt, pen, sched)
        >>> state = jrnn.train.init_state(model.init(jax.random.key(0), 2), opt, jax.random.key(1))
        >>> data = lambda key, t: jrnn.tasks.adding(key, 4, 20)
        >>> res = jrnn.train.fit(step, state, data, steps=3)
        >>> res.history["phase"]
        [1, 1, 0]
    """
    from jrnn.train import make_train_step

    if not isinstance(schedule, FlossingSchedule):
        raise TypeError(
            f"schedule must come from flossing_schedule, got {type(schedule).__name__}."
        )
    if penalty is not None or schedule.mode != "none":
        _check_penalty(penalty)
    _check_optimizer(optimizer, "optimizer")
    if floss_optimizer is not None:
        _check_optimizer(floss_optimizer, "floss_optimizer")
    w = _check_weight(weight)
    opts = dict(clip_norm=clip_norm, skip_nonfinite=skip_nonfinite)
    tf = transform or (lambda f: f)
    builders = {
        "task": lambda: make_train_step(apply_fn, loss, optimizer, **opts),
        "floss": lambda: make_floss_step(penalty, floss_optimizer or optimizer, weight=w,
                                         params_of=params_of, **opts),
        "both": lambda: make_train_step(
            *regularize(apply_fn, loss, penalty, w, params_of=params_of), optimizer, **opts),
    }
    compiled: dict[str, Callable] = {}

    def step(state, batch):
        t = int(np.asarray(state.step).reshape(-1)[0])
        phase = schedule.phase(t)
        if phase not in compiled:
            compiled[phase] = tf(builders[phase]())
        new_state, metrics = compiled[phase](state, batch)
        metrics = dict(metrics)
        metrics["phase"] = np.full(np.shape(metrics["loss"]), PHASES[phase], np.int32)
        return new_state, metrics

    return step
