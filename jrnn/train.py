"""Training with optax: one jitted pure step, and a fit loop that survives a kill.

.. math::

   g_t = \\nabla_\\theta L(f_\\theta(x_t), y_t), \\qquad
   \\tilde g_t = g_t \\min\\left(1, \\frac{c}{\\lVert g_t \\rVert_2}\\right), \\qquad
   (\\theta_{t+1}, s_{t+1}) = \\mathrm{optimizer}(\\tilde g_t, s_t, \\theta_t)

with the optional global-norm clipping ``c`` of Pascanu, Mikolov & Bengio 2013
(``optax.clip_by_global_norm``). The recorded ``grad_norm`` is
``||g_t||`` *before* clipping — the quantity that vanishes or explodes.

* :class:`TrainState` — ``(params, opt_state, step, rng)``, all pytrees, so a
  state can be vmapped over seeds, sharded, and checkpointed bit-exactly.
* :func:`make_train_step` — ``(state, batch) -> (state, metrics)``, jitted.
* :func:`fit` — steps or epochs, evaluation every N steps, metrics history,
  per-step time, a progress callback, a NaN/Inf guard that stops and keeps the
  last good state, checkpoints every N steps with automatic, exact resume.

Determinism: batch ``t`` (0-based) is drawn from ``fold_in(state.rng, t)``, a
function of the checkpointed state only; so a run killed at any point and
started again with the same arguments ends with exactly the same parameters
and loss history as an uninterrupted one (on the same machine). Per-step wall
times are kept apart from the history (:attr:`FitResult.step_times`).

Example::

    >>> import jax, optax, jrnn
    >>> model = jrnn.models.rnn(jrnn.cells.lstm(8), 1)
    >>> opt = optax.adam(1e-3)
    >>> step = jrnn.train.make_train_step(model.apply, jrnn.tasks.mse, opt, clip_norm=1.0)
    >>> state = jrnn.train.init_state(model.init(jax.random.key(0), 2), opt, jax.random.key(1))
    >>> batch_fn = lambda key, t: jrnn.tasks.adding(key, 4, 10)
    >>> result = jrnn.train.fit(step, state, batch_fn, steps=3)
    >>> result.history["step"], int(result.state.step), result.diverged
    ([1, 2, 3], 3, False)

    With ``checkpoint_dir="ckpt", checkpoint_every=100`` the same call saves
    every 100 steps and, run again after a crash, resumes where it stopped.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jrnn import checkpoint as _ckpt
from jrnn import monitor as _monitor
from jrnn import validation
from jrnn.monitor import Monitor

__all__ = [
    "FitResult",
    "Monitor",
    "TrainState",
    "fit",
    "init_state",
    "make_train_step",
]


class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next.

    Fields:
      params: model parameters (any pytree).
      opt_state: the optimizer's state, ``optimizer.init(params)``.
      step: ``()`` int32, number of updates applied so far.
      rng: ``()`` PRNG key of the run; batch ``t`` uses ``fold_in(rng, t)``.

    A leading axis on every leaf (``jax.vmap(init_state)``) gives one state per
    seed; :func:`fit` handles such batched states too.
    """

    params: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array


def _check_optimizer(optimizer) -> None:
    if not hasattr(optimizer, "update") or not hasattr(optimizer, "init"):
        raise TypeError(
            f"optimizer must be an optax GradientTransformation (e.g. optax.adam(1e-3)), got "
            f"{optimizer!r} ({type(optimizer).__name__})."
        )


def init_state(params: Any, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """``TrainState(params, optimizer.init(params), 0, key)``.

    Raises:
      TypeError: ``optimizer`` is not an optax transformation, ``key`` is not a
        PRNG key (one key, or a batch ``(K,)`` for vmapped seeds).
    """
    _check_optimizer(optimizer)
    validation.check_key(key, "key", batched=None)
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), key)


def make_train_step(
    apply_fn: Callable[[Any, Any], Any],
    loss: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    clip_norm: float | None = None,
    skip_nonfinite: bool = False,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds the jitted, pure training step ``(state, (x, y)) -> (state, metrics)``.

    The loss is ``loss(apply_fn(params, x), y)`` and must be a scalar.

    Args:
      apply_fn: ``(params, x) -> predictions``, e.g. ``model.apply``.
      loss: ``(predictions, targets) -> ()``, e.g. :func:`jrnn.tasks.mse`.
      optimizer: any optax transformation (learning-rate schedules included);
        ``state.opt_state`` must come from ``optimizer.init``.
      clip_norm: if set, gradients are rescaled to global norm ``<= clip_norm``
        with ``optax.clip_by_global_norm`` before the optimizer (its state is
        empty, so ``opt_state`` does not depend on clipping).
      skip_nonfinite: if True, an update whose loss, gradient or new parameters
        are not finite is not applied (params and opt_state stay; step still
        advances), like ``optax.apply_if_finite``. Under ``jax.vmap`` over seeds
        this freezes only the seeds that diverged. :func:`fit` then does not stop
        on such a step (it was not applied); it warns once per seed and counts
        the skips in ``history["skipped"]``.

    Returns:
      ``step(state, batch)``; ``metrics`` has ``loss``, ``grad_norm`` (global
      norm before clipping) and ``finite`` (bool: the update was finite), and
      with ``skip_nonfinite`` also ``skipped`` (bool: the update was dropped).

    The returned function carries ``jrnn_model``: a description of the model
    (cell family and static config, readout) when ``apply_fn`` is a
    :class:`jrnn.models.Model`'s ``apply``, else None. :func:`fit` puts it in
    the checkpoint fingerprint, so a checkpoint of a tanh Elman model is never
    resumed by a relu one of the same shapes.

    Raises:
      ValueError: (when first traced) if the loss is not a scalar; a
        non-positive or non-finite ``clip_norm``.
      TypeError: ``clip_norm`` not a number, ``skip_nonfinite`` not a bool,
        ``apply_fn`` / ``loss`` not callable; (when first called) a batch that
        is not a pair ``(x, y)``.
    """
    for name, fn in (("apply_fn", apply_fn), ("loss", loss)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {fn!r} ({type(fn).__name__}).")
    _check_optimizer(optimizer)
    if clip_norm is not None:
        clip_norm = validation.check_number(clip_norm, "clip_norm", low=0.0, low_open=True)
    skip_nonfinite = validation.check_bool(skip_nonfinite, "skip_nonfinite")
    clip = optax.clip_by_global_norm(clip_norm) if clip_norm is not None else None

    def loss_of_params(params, x, y):
        value = loss(apply_fn(params, x), y)
        if jnp.shape(value) != ():
            raise ValueError(
                f"loss must return a scalar, got shape {jnp.shape(value)}; reduce it "
                "(e.g. jnp.mean) inside the loss function."
            )
        return value

    def step(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            if isinstance(batch, tuple | list):
                got = f"a {type(batch).__name__} of {len(batch)} entries"
            elif hasattr(batch, "shape"):
                got = f"one array of shape {tuple(jnp.shape(batch))}"
            else:
                got = f"a {type(batch).__name__}"
            raise TypeError(f"batch must be a pair (x, y) of inputs and targets, got {got}.")
        x, y = batch
        value, grads = jax.value_and_grad(loss_of_params)(state.params, x, y)
        grad_norm = optax.tree.norm(grads)
        if clip is not None:
            grads, _ = clip.update(grads, clip.init(state.params))
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
        for leaf in jax.tree_util.tree_leaves(params):
            finite = finite & jnp.all(jnp.isfinite(leaf))
        if skip_nonfinite:
            keep = lambda new, old: jnp.where(finite, new, old)
            params = jax.tree_util.tree_map(keep, params, state.params)
            opt_state = jax.tree_util.tree_map(keep, opt_state, state.opt_state)
        new_state = TrainState(params, opt_state, state.step + 1, state.rng)
        metrics = {"loss": value, "grad_norm": grad_norm, "finite": finite}
        if skip_nonfinite:
            metrics["skipped"] = ~finite
        return new_state, metrics

    jitted = jax.jit(step)
    jitted.jrnn_model = model_description(apply_fn)
    jitted.jrnn_cell = getattr(getattr(apply_fn, "__self__", None), "cell", None)
    return jitted


def model_description(apply_fn) -> str | None:
    """``"Model(cell=elman(hidden_size=8, activation=tanh), output_size=1, ...)"`` for a
    bound :meth:`jrnn.models.Model.apply` (any object with a ``cell``), else None."""
    model = getattr(apply_fn, "__self__", None)
    cell = getattr(model, "cell", None)
    if cell is None or not hasattr(cell, "describe"):
        return None
    parts = [f"cell={cell.describe()}"]
    for field in getattr(model, "_fields", ()):
        if field == "cell":
            continue
        value = getattr(model, field)
        parts.append(f"{field}={getattr(value, 'name', value)}")
    return f"{type(model).__name__}({', '.join(parts)})"


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Fields:
      state: the final state — the last good one if training diverged.
      history: ``{"step": [1, 2, ...], "loss": [...], "grad_norm": [...], ...}``,
        one entry per step (lists per seed for batched states). Reproducible:
        an interrupted and resumed run has exactly the same history.
      eval_history: ``{"step": [...], <eval metric>: [...]}``.
      step_times: wall seconds per step (not reproducible; kept apart).
      diverged: True if the NaN/Inf guard stopped training.
      reason: the guard's message (naming the step), or None.
      resumed_from: the checkpoint step training resumed from, or None.
      monitor_history: ``{"step": [0, N, 2N, ...], <snapshot name>: [...]}`` with
        ``monitor=`` (lists per seed for batched states), else ``{}``.
    """

    state: TrainState
    history: dict[str, list]
    eval_history: dict[str, list]
    step_times: list[float]
    diverged: bool
    reason: str | None
    resumed_from: int | None
    monitor_history: dict[str, list] | None = None


def _first(x) -> int:
    return int(np.asarray(x).reshape(-1)[0])


# fit's batch keys: fold_in(rng, t) for one key or a batch of keys (one per seed).
_fold_in = jax.jit(jax.random.fold_in)
_fold_in_batch = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))


def _fold(rng, t: int):
    single = np.ndim(rng) == (0 if _is_typed_key(rng) else 1)
    return (_fold_in if single else _fold_in_batch)(rng, np.uint32(t))


def _is_typed_key(x) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _to_py(x):
    a = np.asarray(x)
    if a.dtype == bool:
        return a.tolist()
    return a.astype(np.float64).tolist() if a.dtype.kind == "f" else a.tolist()


def _all_finite(x) -> bool:
    a = np.asarray(x)
    return bool(np.all(a)) if a.dtype == bool else bool(np.all(np.isfinite(a)))


def _step_ok(metrics: dict, s: int, warned: set[int]) -> bool:
    """Whether step ``s`` may be kept: every seed finite, or its update skipped.

    A step built with ``skip_nonfinite`` reports ``skipped`` per seed: those seeds
    kept their parameters, so the step is safe; each seed's first skip is warned
    about once (``warned`` holds the seeds already named)."""
    ok = np.ones(np.shape(metrics.get("loss", 0.0)), bool)
    for k in ("loss", "grad_norm", "finite"):
        if k in metrics:
            a = np.asarray(metrics[k])
            ok = ok & (a if a.dtype == bool else np.isfinite(a))
    if "skipped" in metrics:
        skipped = np.asarray(metrics["skipped"], bool)
        new = [int(i) for i in np.flatnonzero(skipped.reshape(-1)) if int(i) not in warned]
        if new:
            warned.update(new)
            who = "the run" if skipped.ndim == 0 else f"seed(s) {new}"
            warnings.warn(
                f"step {s}: {who} hit a non-finite update, which was skipped "
                "(skip_nonfinite=True): those parameters stay as they were; "
                'history["skipped"] counts every skip.',
                RuntimeWarning,
                stacklevel=3,
            )
        ok = ok | skipped
    return bool(np.all(ok))


def fit(
    step_fn: Callable,
    state: TrainState,
    data: Callable[[jax.Array, int], Any] | tuple,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    eval_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    eval_every: int = 0,
    callback: Callable[[int, dict], Any] | None = None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    config: dict | None = None,
    max_to_keep: int | None = 2,
    nan_guard: bool = True,
    monitor: Monitor | Callable[[Any], Mapping[str, Any]] | None = None,
    monitor_every: int = 100,
) -> FitResult:
    """Runs ``step_fn`` for ``steps`` updates (or ``epochs`` passes over a dataset).

    Data:
      * a function ``batch_fn(key, t) -> (x, y)`` called with
        ``key = fold_in(state.rng, t)`` for the 0-based step ``t`` (a batch of
        keys for a batched state), e.g.
        ``lambda key, t: jrnn.tasks.adding(key, 32, 100)``; needs ``steps``.
      * or a dataset ``(x, y)`` of arrays with a common leading size ``N``:
        each epoch ``e`` visits it in the order ``permutation(fold_in(rng, e))``
        in batches of ``batch_size`` (the last partial batch is dropped); give
        ``epochs`` or ``steps``.

    After each step ``s = t + 1`` (1-based): the metrics are recorded; if
    ``eval_every`` divides ``s`` (or ``s`` is the last step), ``eval_fn(params)``
    is recorded; ``callback(s, metrics)`` is called with plain floats (plus
    ``time`` and ``eval_*`` entries); if ``checkpoint_every`` divides ``s`` or
    ``s`` is the last step, a checkpoint is written atomically.

    With ``checkpoint_dir``, ``fit`` first checks the directory can be written
    (a read-only one fails here, before any training), then resumes from the
    newest intact checkpoint there (params, optimizer state, step, rng and the
    histories), so rerunning the same call after a crash continues where it
    stopped and ends exactly as an uninterrupted run; a crash loses at most
    ``checkpoint_every`` steps. A directory holding a different model
    (fingerprint: state structure, shapes, dtypes, the model description of
    ``step_fn.jrnn_model`` — cell family, activation and other static config —
    and ``config``) raises ``ValueError`` and is left untouched. A damaged
    newest checkpoint is skipped with a ``RuntimeWarning`` naming it and set
    aside as ``<step>.corrupt`` (see :mod:`jrnn.checkpoint`). A directory
    already past ``steps`` (newest step 6, ``steps=4``) raises ``ValueError``
    rather than returning a state trained longer than asked.

    Monitoring (``monitor=``, :mod:`jrnn.monitor`): a :class:`Monitor` (a snapshot
    of the model's cell on a fixed held-out batch,
    :func:`jrnn.diagnostics.snapshot`) or any ``params -> {name: scalar}`` is
    evaluated at step 0, before the first update, and after every
    ``monitor_every``-th update, compiled once (vmapped over seeds for a batched
    state), recorded in ``monitor_history``, appended to
    ``<checkpoint_dir>/monitor.jsonl`` (one JSON object per row, ``{"step": s,
    name: value}``) and written to TensorBoard when ``Monitor.tensorboard`` is a
    directory. The rows travel in the checkpoints: a resumed run rewrites the
    file from its checkpoint and continues it, so no row is lost or repeated.

    NaN/Inf guard (``nan_guard=True``): if a step's loss, gradient norm or new
    parameters are not finite, training stops, a ``RuntimeWarning`` names the
    step, and the state *before* that step is returned with ``diverged=True``.
    A step from ``make_train_step(..., skip_nonfinite=True)`` that dropped the
    non-finite update (per seed, for vmapped seeds) is not a divergence: the
    other seeds train on, a ``RuntimeWarning`` names each seed the first time it
    skips, and ``history["skipped"]`` records every skip.

    Args:
      step_fn: from :func:`make_train_step` (or ``jax.jit(jax.vmap(step))``).
      state: the initial :class:`TrainState` (also the template for resuming).
      data: ``batch_fn`` or ``(x, y)``.
      steps: total number of updates (including those done before a resume).
      epochs: passes over a dataset (``steps = epochs * (N // batch_size)``).
      batch_size: examples per step for a dataset.
      eval_fn: ``params -> {name: value}``.
      eval_every: evaluate every this many steps (0: only at the end).
      callback: ``(step, metrics) -> None``, e.g. to drive a progress bar.
      checkpoint_dir: where checkpoints live; None disables them.
      checkpoint_every: save every this many steps (0: only at the end).
      config: JSON dict included in the checkpoint fingerprint.
      max_to_keep: checkpoints kept on disk, an int >= 1 (None keeps all).
      nan_guard: stop on a non-finite step (see above).
      monitor: what to monitor (see above), or None.
      monitor_every: steps between monitor rows, an integer >= 1.

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError / TypeError: a bad argument (naming it), checked before the
        first step: ``state.rng`` not a PRNG key, ``steps`` not an integer,
        ``nan_guard='no'``, ``max_to_keep=0``, ``monitor_every=0``, a
        ``monitor`` that is not a Monitor or callable (or whose snapshot
        arguments are bad, e.g. ``k`` above the state size), an unwritable
        ``checkpoint_dir``, a checkpoint of another model or past ``steps``.
    """
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be a jrnn.train.TrainState, got {type(state).__name__}.")
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable, got {type(step_fn).__name__}.")
    validation.check_key(state.rng, "state.rng", batched=None)
    eval_every = validation.check_int(eval_every, "eval_every", low=0)
    checkpoint_every = validation.check_int(checkpoint_every, "checkpoint_every", low=0)
    nan_guard = validation.check_bool(nan_guard, "nan_guard")
    monitor_every = validation.check_int(monitor_every, "monitor_every", low=1)
    for name, fn in (("eval_fn", eval_fn), ("callback", callback)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}.")
    if max_to_keep is not None:
        max_to_keep = validation.check_int(max_to_keep, "max_to_keep", low=1)
    batch_fn, total = _data_source(data, state, steps, epochs, batch_size)
    model = getattr(step_fn, "jrnn_model", None)
    batched = np.ndim(state.rng) != (0 if _is_typed_key(state.rng) else 1)
    snap, tensorboard = (None, None) if monitor is None else _monitor.compile_monitor(
        monitor, step_fn, state.params, batched)

    history: dict[str, list] = {"step": []}
    eval_history: dict[str, list] = {"step": []}
    monitor_history: dict[str, list] = {"step": []}
    step_times: list[float] = []
    resumed_from = None
    if checkpoint_dir is not None:
        _ckpt.check_writable(checkpoint_dir, "checkpoint_dir")
        restored = _ckpt.resume(
            checkpoint_dir, state, config=config, model=model, set_aside_corrupt=True
        )
        if restored is not None:
            state, extra = restored
            history = extra.get("history", history)
            eval_history = extra.get("eval_history", eval_history)
            monitor_history = extra.get("monitor_history", monitor_history)
            step_times = extra.get("step_times", step_times)
            resumed_from = _first(state.step)
            if resumed_from > total:
                raise ValueError(
                    f"checkpoint_dir {checkpoint_dir!r} holds a run already at step "
                    f"{resumed_from}, past steps={total}: resuming cannot give a {total}-step "
                    f"state. Ask for steps >= {resumed_from}, or use another directory."
                )

    def save():
        _ckpt.save(
            checkpoint_dir,
            state,
            extra={"history": history, "eval_history": eval_history, "step_times": step_times,
                   "monitor_history": monitor_history},
            config=config,
            model=model,
            max_to_keep=max_to_keep,
        )

    log = None if snap is None else _monitor.MonitorLog(
        checkpoint_dir, tensorboard, monitor_history, resumed_from)

    def observe(s: int) -> dict:
        row = {"step": s, **{k: _monitor.to_json(v) for k, v in snap(state.params).items()}}
        for k, v in row.items():
            monitor_history.setdefault(k, []).append(v)
        log.write(row)
        return {f"monitor_{k}": v for k, v in row.items() if k != "step"}

    diverged, reason = False, None
    warned_skips: set[int] = set()
    t = _first(state.step)
    if snap is not None and t == 0 and 0 not in monitor_history["step"]:
        observe(0)
    while t < total:
        start = time.perf_counter()
        batch = batch_fn(state.rng, t)
        new_state, metrics = step_fn(state, batch)
        metrics = jax.device_get(metrics)
        elapsed = time.perf_counter() - start
        s = t + 1
        if nan_guard and not _step_ok(metrics, s, warned_skips):
            diverged = True
            reason = (
                f"non-finite training step {s}: loss={metrics.get('loss')}, "
                f"grad_norm={metrics.get('grad_norm')}; stopped and kept the state after "
                f"step {t}."
            )
            warnings.warn(reason, RuntimeWarning, stacklevel=2)
            break
        state = new_state
        history["step"].append(s)
        for k, v in metrics.items():
            history.setdefault(k, []).append(_to_py(v))
        step_times.append(elapsed)
        info = {k: _to_py(v) for k, v in metrics.items()}
        info["time"] = elapsed
        last = s == total
        if eval_fn is not None and ((eval_every and s % eval_every == 0) or last):
            ev = eval_fn(state.params)
            if not isinstance(ev, Mapping):
                raise TypeError(
                    f"eval_fn must return a mapping {{name: value}}, got {type(ev).__name__} "
                    f"{str(ev)[:60]}; return e.g. {{'accuracy': acc}}."
                )
            ev = jax.device_get(dict(ev))
            eval_history["step"].append(s)
            for k, v in ev.items():
                eval_history.setdefault(k, []).append(_to_py(v))
                info[f"eval_{k}"] = _to_py(v)
        if snap is not None and s % monitor_every == 0:
            info.update(observe(s))
        if callback is not None:
            callback(s, info)
        if checkpoint_dir is not None and ((checkpoint_every and s % checkpoint_every == 0)
                                           or last):
            save()
        t = s
    if log is not None:
        log.close()
    return FitResult(state, history, eval_history, step_times, diverged, reason, resumed_from,
                     monitor_history if snap is not None else {})


def _data_source(data, state, steps, epochs, batch_size):
    """Returns ``(batch_fn(rng, t), total_steps)``."""
    if steps is not None:
        steps = validation.check_int(steps, "steps", low=0)
    if epochs is not None:
        epochs = validation.check_int(epochs, "epochs", low=0)
    if callable(data):
        if steps is None:
            raise ValueError("steps must be given when data is a batch function.")
        if epochs is not None:
            raise ValueError("epochs needs a dataset (x, y); with a batch function give steps.")
        fn = data
        return (lambda rng, t: fn(_fold(rng, t), t)), int(steps)
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise ValueError(
            f"data must be a function batch_fn(key, step) or a dataset (x, y), got "
            f"{type(data).__name__}."
        )
    leaves = jax.tree_util.tree_leaves(data)
    sizes = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"data (x, y) must share a leading dataset axis, got shapes "
            f"{[tuple(np.shape(a)) for a in leaves]}."
        )
    N = sizes.pop()
    if batch_size is None:
        raise ValueError("batch_size must be an integer >= 1 for a dataset, got None.")
    batch_size = validation.check_int(batch_size, "batch_size", low=1)
    if batch_size > N:
        raise ValueError(f"batch_size must be <= the dataset size {N}, got {batch_size}.")
    if np.ndim(state.rng) != (0 if _is_typed_key(state.rng) else 1):
        raise ValueError("a dataset (x, y) needs an unbatched state; use a batch function.")
    per_epoch = N // int(batch_size)
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps or epochs for a dataset.")
    total = int(steps) if steps is not None else int(epochs) * per_epoch
    data = jax.tree_util.tree_map(jnp.asarray, tuple(data))
    cache: dict[int, jax.Array] = {}

    def batch_fn(rng, t):
        e, i = divmod(t, per_epoch)
        if e not in cache:
            cache.clear()
            cache[e] = jax.random.permutation(jax.random.fold_in(rng, e), N)
        idx = cache[e][i * batch_size : (i + 1) * batch_size]
        return jax.tree_util.tree_map(lambda a: a[idx], data)

    return batch_fn, total
