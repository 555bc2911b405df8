"""Diagnostics during training: what :func:`jrnn.train.fit` computes every N steps.

.. math::

   m_s = \\mathrm{snapshot}(\\mathrm{cell}, \\theta_s^{\\mathrm{cell}}, x_{\\mathrm{held\\,out}}),
   \\qquad s = 0, N, 2N, \\dots

A :class:`Monitor` names a fixed held-out batch and what to summarise;
``jrnn.train.fit(..., monitor=Monitor(xs), monitor_every=N)`` evaluates
:func:`jrnn.diagnostics.snapshot` on the model's cell at step 0 (before the first
update) and after every ``N``-th update, with one compiled program (vmapped over
seeds for a batched state), records the rows in ``FitResult.monitor_history``,
appends them as JSON lines to ``<checkpoint_dir>/monitor.jsonl`` (kept in step with
the checkpoints: a resumed run rewrites the file from the checkpoint, so no row is
lost or repeated) and, when ``tensorboard`` names a directory, writes TensorBoard
event files with ``tensorboardX`` (the optional extra ``jrnn[tensorboard]``; no
TensorFlow). Any callable ``params -> {name: scalar}`` works as a monitor too.

Example::

    >>> model = jrnn.models.rnn(jrnn.cells.elman(8), 1)
    >>> opt = optax.adam(1e-2)
    >>> step = jrnn.train.make_train_step(model.apply, jrnn.tasks.mse, opt)
    >>> state = jrnn.train.init_state(model.init(jax.random.key(0), 2), opt, jax.random.key(1))
    >>> held_out = jrnn.tasks.adding(jax.random.key(2), 4, 20)[0]
    >>> res = jrnn.train.fit(step, state, lambda key, t: jrnn.tasks.adding(key, 8, 20),
    ...                      steps=4, monitor=jrnn.train.Monitor(held_out, k=2), monitor_every=2)
    >>> res.monitor_history["step"], len(res.monitor_history["lyap_1"])
    ([0, 2, 4], 3)
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jrnn import validation
from jrnn.cells.base import Cell
from jrnn.diagnostics.snapshot import snapshot

__all__ = ["JSONL_NAME", "Monitor"]

#: File name of the monitor rows inside ``checkpoint_dir``.
JSONL_NAME = "monitor.jsonl"


class Monitor(NamedTuple):
    """A snapshot of the model's cell on a fixed held-out batch (see the module).

    Fields:
      xs: ``(T, d)`` or ``(B, T, d)`` held-out inputs (the same at every evaluation).
      k: number of Lyapunov exponents (:func:`jrnn.diagnostics.snapshot`).
      loss_fn: ``hs -> scalar`` on the cell's outputs, for ``grad_norm_lag{l}``
        (None: no gradient norms).
      lags: steps back from the end for the gradient norms (snapshot's default).
      warmup: steps aligning the Lyapunov frame before averaging.
      sv_steps: steps per sequence for ``sv_mean`` / ``sv_max`` (None: all).
      cell: the cell to analyse; None takes the model's (``step_fn.jrnn_cell``, set
        by :func:`jrnn.train.make_train_step` for a :class:`jrnn.models.Model`).
        ``jax.jit(jax.vmap(step))`` keeps it; a step that lost it (a ``lambda``
        around ``step``) needs ``cell=``.
      select: ``params -> cell params``; None takes ``params["cell"]`` (the model's
        layout) when ``params`` has one, else ``params`` itself.
      tensorboard: a directory for TensorBoard event files, or None.
      probes: columns of the random frame for ``propagation_rate`` and
        ``log_jacobian_norm`` (:func:`jrnn.diagnostics.snapshot`; None: the exact
        ``O(S^3)``-a-step full frame). The default 8 keeps a snapshot of a tanh Elman
        ``n = 128`` on 16 held-out sequences of ``T = 256`` at about 3% of training time
        at one snapshot per 100 steps (``experiments.benchmarks.monitor``).
    """

    xs: Any
    k: int = 4
    loss_fn: Callable | None = None
    lags: Sequence[int] | None = None
    warmup: int = 0
    sv_steps: int | None = 4
    cell: Cell | None = None
    select: Callable | None = None
    tensorboard: str | os.PathLike | None = None
    probes: int | None = 8

    def build(self, step_fn=None) -> Callable[[Any], dict]:
        """``params -> {name: ()}`` for one seed, validated eagerly (not jitted).

        Raises:
          ValueError: no cell given and ``step_fn`` does not carry one; everything
            :func:`jrnn.diagnostics.snapshot` rejects (checked on the cell's params by
            :func:`jrnn.train.fit` before the first step).
        """
        cell = self.cell if self.cell is not None else getattr(step_fn, "jrnn_cell", None)
        if not isinstance(cell, Cell):
            raise ValueError(
                "monitor needs a cell: step_fn does not carry one (it is not a "
                "jrnn.train.make_train_step of a jrnn.models.Model, e.g. a jax.vmap of "
                f"one), so pass Monitor(xs, cell=model.cell); got cell={self.cell!r}."
            )
        select = self.select or _cell_params
        kw = dict(k=self.k, loss_fn=self.loss_fn, lags=self.lags, warmup=self.warmup,
                  sv_steps=self.sv_steps, probes=self.probes)
        return lambda params: snapshot(cell, select(params), self.xs, **kw)


def _cell_params(params):
    if isinstance(params, Mapping) and "cell" in params:
        return params["cell"]
    return params


@functools.partial(jax.jit, static_argnames=("cell", "k", "loss_fn", "lags", "warmup",
                                             "sv_steps", "probes", "select", "batched"))
def _compiled_snapshot(params, xs, *, cell, k, loss_fn, lags, warmup, sv_steps, probes, select,
                       batched):
    """The compiled entry point of a :class:`Monitor`: one compilation per cell and
    settings, shared by every :func:`jrnn.train.fit` call (vmapped over seeds if batched)."""

    def one(p):
        return snapshot(cell, (select or _cell_params)(p), xs, k=k, loss_fn=loss_fn, lags=lags,
                        warmup=warmup, sv_steps=sv_steps, probes=probes)

    return jax.vmap(one)(params) if batched else one(params)


def _static(monitor: Monitor, step_fn) -> dict | None:
    """The hashable settings of ``monitor`` for :func:`_compiled_snapshot`, or None where one
    is not hashable (then the monitor is compiled per fit call)."""
    cell = monitor.cell if monitor.cell is not None else getattr(step_fn, "jrnn_cell", None)
    lags = None if monitor.lags is None else tuple(monitor.lags)
    kw = dict(cell=cell, k=monitor.k, loss_fn=monitor.loss_fn, lags=lags, warmup=monitor.warmup,
              sv_steps=monitor.sv_steps, probes=monitor.probes, select=monitor.select)
    try:
        hash(tuple(kw.values()))
    except TypeError:
        return None
    return kw


def compile_monitor(monitor, step_fn, params, batched: bool) -> tuple[Callable, Any]:
    """``(jitted params -> dict of host values, tensorboard dir or None)``; validates.

    The snapshot's eager checks run here on the params' shapes (``eval_shape``), so a
    bad ``k`` or held-out batch fails before the first training step.
    """
    if isinstance(monitor, Monitor):
        fn, tb = monitor.build(step_fn), monitor.tensorboard  # build checks the cell
        validation.check_xs_dtype(monitor.xs, "Monitor xs")  # a str failed inside jax.jit
        kw = _static(monitor, step_fn)
        if kw is not None:
            xs = jax.numpy.asarray(monitor.xs)
            compiled = functools.partial(_compiled_snapshot, xs=xs, batched=batched,
                                         **kw)
            out = compiled.func.eval_shape(params, **compiled.keywords)
            if not isinstance(out, Mapping):  # pragma: no cover - snapshot returns a dict
                raise TypeError(f"monitor must return a mapping, got {type(out).__name__}.")
            return (lambda p: jax.device_get(dict(compiled(p)))), tb
    elif callable(monitor):
        fn, tb = monitor, None
    else:
        raise TypeError(
            f"monitor must be a jrnn.train.Monitor or a callable params -> {{name: scalar}}, "
            f"got {type(monitor).__name__}."
        )
    one = jax.tree_util.tree_map(lambda a: a[0], params) if batched else params
    out = jax.eval_shape(fn, one)
    if not isinstance(out, Mapping):
        raise TypeError(f"monitor must return a mapping {{name: scalar}}, got "
                        f"{type(out).__name__}.")
    for name, value in out.items():  # a vector went into the history as a list per row
        if tuple(getattr(value, "shape", ())) != ():
            raise TypeError(f"monitor must return scalars {{name: scalar}}, got {name!r} of "
                            f"shape {tuple(value.shape)}.")
    jitted = jax.jit(jax.vmap(fn) if batched else fn)
    return (lambda p: jax.device_get(dict(jitted(p)))), tb


class MonitorLog:
    """The JSON-lines file and the TensorBoard writer of one :func:`jrnn.train.fit` call."""

    def __init__(self, directory, tensorboard, history: dict[str, list], resumed_from):
        self.path = None if directory is None else os.path.join(os.fspath(directory), JSONL_NAME)
        self.writer = None
        if self.path is not None:  # the file is the history of the checkpoint, exactly
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                for row in rows(history):
                    f.write(json.dumps(row) + "\n")
            os.replace(tmp, self.path)
        if tensorboard is not None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as e:
                raise ImportError(
                    "Monitor(tensorboard=...) needs tensorboardX: pip install 'jrnn[tensorboard]' "
                    "(or pip install tensorboardX)."
                ) from e
            # purge_step: TensorBoard drops the events a killed run wrote past the checkpoint.
            purge = None if resumed_from is None else resumed_from + 1
            self.writer = SummaryWriter(os.fspath(tensorboard), purge_step=purge)

    def write(self, row: dict) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            s = row["step"]
            for name, v in row.items():
                if name == "step":
                    continue
                if isinstance(v, list):
                    for i, vi in enumerate(v):
                        self.writer.add_scalar(f"monitor/{name}/seed_{i}", _num(vi), s)
                else:
                    self.writer.add_scalar(f"monitor/{name}", _num(v), s)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def rows(history: dict[str, list]) -> list[dict]:
    """The per-step rows ``[{"step": s, name: value, ...}, ...]`` of a monitor history."""
    names = [n for n in history if n != "step"]
    return [{"step": s, **{n: history[n][i] for n in names}}
            for i, s in enumerate(history.get("step", []))]


def to_json(v):
    """A snapshot value as JSON: float (or a list per seed); NaN / inf as None-free floats."""
    a = np.asarray(v, dtype=np.float64)
    return a.tolist()
