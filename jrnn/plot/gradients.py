"""Figures of gradient flow: propagation against lag, step singular values, training curves.

Every function returns the matplotlib ``Axes`` it drew on and accepts one
(``ax=``). Norms and gains are shown in decades (``log10``), rates in nats per
step; exact zeros (``log = -inf``) and NaN are marked with their count
(:func:`jrnn.plot.style.mark_nonfinite`), never dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from jrnn.diagnostics.propagation import Propagation
from jrnn.diagnostics.spectra import SingularValueStats
from jrnn.plot import style as _style
from jrnn.plot.inputs import collect, legend_names, numbers

__all__ = ["propagation", "singular_values", "training"]

_LN10 = math.log(10.0)


def _quantiles(values: np.ndarray, levels) -> np.ndarray:
    """Quantiles over axis 0 without interpolation (``-inf`` stays a valid sample), NaN ignored
    (an all-NaN column gives NaN, which the caller marks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(values, levels, axis=0, method="inverted_cdf")


def _rate_text(rec: Propagation) -> str:
    if rec.rate is None:
        return ""
    r = np.asarray(rec.rate, np.float64).ravel()
    if r.size > 1:  # a batch: mean and standard error across sequences
        mean = float(np.mean(r))
        se = float(np.std(r, ddof=1) / math.sqrt(r.size)) if np.isfinite(r).all() else math.nan
    else:
        mean = float(r[0])
        se = math.nan if rec.rate_stderr is None else float(np.ravel(rec.rate_stderr)[0])
    err = f" +- {_style.fmt(se, 2)}" if math.isfinite(se) else ""
    return f", rate {_style.fmt(mean)}{err} nats/step"


def propagation(records, *, labels: Sequence[str] | None = None, norm: str = "spectral",
                band: tuple[float, float] = (0.25, 0.75), ax=None):
    """``log10 ||d s_T / d s_t||`` against the lag ``T - t``, in decades, with bands.

    Draws, per record, the log norm of the propagated Jacobian converted from
    nats to decades (divided by ``ln 10``) against the lag ``T - t`` (steps);
    a batched record draws the median over sequences and shades the ``band``
    quantiles (the interquartile range by default). Quantiles are order
    statistics (no interpolation), so an exact zero (``-inf``) counts as the
    smallest value instead of poisoning the band. The legend gives the fitted
    growth rate of the record (``rate`` +- ``rate_stderr``; across a batch the
    mean and its standard error over sequences), in nats per step. Every
    ``-inf`` (exact zero) or NaN entry is marked on the lower edge at its lag
    with the count in the legend; a zero line marks norm 1.

    Args:
      records: a :class:`~jrnn.diagnostics.Propagation`, a sequence of them,
        or a mapping ``label -> record``.
      labels: one legend label per record (overrides mapping keys).
      norm: ``"spectral"`` (``log_spectral_norm``) or ``"frobenius"``.
      band: the lower and upper quantile levels of the shaded band.
      ax: matplotlib Axes to draw on (default: a new figure).

    Returns:
      The matplotlib ``Axes``.

    Raises:
      TypeError: ``records`` is not a Propagation (or sequence / mapping).
      ValueError: unknown ``norm``, ``band`` levels outside ``[0, 1]``, or
        ``labels`` of the wrong length.
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import jax, jrnn, jrnn.plot
        >>> cell = jrnn.cells.elman(6, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (4, 30, 1))
        >>> p = jrnn.diagnostics.propagation(cell, params, xs)
        >>> ax = jrnn.plot.propagation({"tanh": p})
        >>> ax.get_xlabel(), len(ax.collections)
        ('lag $T - t$ (steps)', 1)
    """
    if norm not in ("spectral", "frobenius"):
        raise ValueError(f"norm must be 'spectral' or 'frobenius', got {norm!r}.")
    lo_q, hi_q = (float(b) for b in band)
    if not 0.0 <= lo_q <= hi_q <= 1.0:
        raise ValueError(f"band must be two quantile levels 0 <= lo <= hi <= 1, got {band!r}.")
    items = collect(records, Propagation, "records", labels)
    ax = _style.new_axes(ax)
    names = legend_names(items, "measured", "record")
    for name, sty, (_, rec) in zip(names, _style.styles(names), items):
        logs = np.asarray(rec.log_spectral_norm if norm == "spectral" else rec.log_frobenius_norm,
                          np.float64)
        logs = logs[None] if logs.ndim == 1 else logs
        decades = logs[:, ::-1] / _LN10  # column j = lag j
        lag = np.arange(decades.shape[1])
        med, lo, hi = _quantiles(decades, [0.5, lo_q, hi_q])
        ok = np.isfinite(med)
        batch = decades.shape[0]
        what = f" (median of {batch})" if batch > 1 else ""
        ax.plot(lag[ok], med[ok], color=sty["color"], linestyle=sty["linestyle"], linewidth=1.4,
                label=f"{name}{what}{_rate_text(rec)}")
        if batch > 1:
            # a band edge at -inf runs to the lower edge of the axes: clip it there for the
            # fill only; the -inf samples themselves are marked below.
            finite = decades[np.isfinite(decades)]
            floor = finite.min() if finite.size else np.nan
            fill_lo = np.where(lo == -np.inf, floor, lo)
            fill_hi = np.where(hi == -np.inf, floor, hi)
            ax.fill_between(lag, fill_lo, fill_hi, color=sty["color"], alpha=0.15, linewidth=0)
        _style.mark_nonfinite(ax, np.broadcast_to(lag, decades.shape), decades,
                              color=sty["color"], label=name)
    which = "_2" if norm == "spectral" else "_F"
    _style.finish(ax, xlabel="lag $T - t$ (steps)",
                  ylabel=f"$\\log_{{10}} \\|\\partial s_T / \\partial s_t\\|{which}$ (decades)",
                  zero=0.0)
    return ax


_DEFAULT_LEVELS = (0.1, 0.5, 0.9)


def _stats_levels(rec: SingularValueStats, levels) -> tuple[float, ...]:
    q = np.shape(rec.quantiles)[-1]
    lv = _DEFAULT_LEVELS if levels is None else tuple(float(x) for x in levels)
    if len(lv) != q:
        raise ValueError(
            f"levels must list the {q} quantile levels the stats were computed with "
            f"(singular_value_stats(..., quantiles=...)), got {len(lv)}: {lv!r}."
        )
    return lv


def _log10(a) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.asarray(a, np.float64))


def _over_time(ax, rec: SingularValueStats, levels, name: str, sty) -> None:
    lv = _stats_levels(rec, levels)
    q = _log10(rec.quantiles)
    smax, smin = _log10(rec.sigma_max), _log10(rec.sigma_min)
    if q.ndim == 3:  # a batch: median over sequences of each per-step statistic
        q, smax, smin = (np.median(a, axis=0) for a in (q, smax, smin))
    t = np.arange(1, q.shape[0] + 1)
    color = sty["color"]
    order = np.argsort(lv)
    for a, b, alpha in ((order[0], order[-1], 0.15), (order[1], order[-2], 0.22))[
            : max(1, len(lv) // 2)]:
        lo, hi = q[:, a], q[:, b]
        ok = np.isfinite(lo) & np.isfinite(hi)
        if a != b and ok.any():
            ax.fill_between(t, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), color=color,
                            alpha=alpha, linewidth=0,
                            label=f"{name}: quantiles {lv[a]:g}-{lv[b]:g}")
    mid = int(np.argmin(np.abs(np.asarray(lv) - 0.5)))
    ok = np.isfinite(q[:, mid])
    ax.plot(t[ok], q[ok, mid], color=color, linewidth=1.4, label=f"{name}: quantile {lv[mid]:g}")
    for arr, what, ls in ((smax, "$\\sigma_{max}$", "--"), (smin, "$\\sigma_{min}$", ":")):
        ok = np.isfinite(arr)
        ax.plot(t[ok], arr[ok], color=color, linewidth=0.9, linestyle=ls, label=f"{name}: {what}")
    for arr, what in ((q, "quantiles"), (smax, "sigma_max"), (smin, "sigma_min")):
        _style.mark_nonfinite(ax, np.broadcast_to(t[:, None] if arr.ndim == 2 else t, arr.shape),
                              arr, color=color, label=f"{name} {what}")


def _boxes(ax, items, names) -> None:
    data, counts = [], []
    for _, rec in items:
        v = np.asarray(rec.mean_log, np.float64).ravel() / _LN10
        counts.append(_style.nonfinite_counts(v))
        data.append(v)
    pos = np.arange(1, len(items) + 1)
    sty = _style.styles(names)
    finite = [v[np.isfinite(v)] for v in data]
    keep = [i for i, v in enumerate(finite) if v.size]
    if keep:
        parts = ax.boxplot([finite[i] for i in keep], positions=pos[keep], whis=(0, 100),
                           widths=0.6, patch_artist=True,
                           medianprops={"color": "black", "linewidth": 1.4})
        for i, box in zip(keep, parts["boxes"]):
            box.set_facecolor(sty[i]["color"])
            box.set_alpha(0.55)
    for i, (v, s) in enumerate(zip(data, sty)):
        top = v[0] if v.size else math.nan  # index 1 of each (first) sequence's spectrum
        if math.isfinite(top):
            ax.plot([pos[i]], [top], marker="D", color=s["color"], markeredgecolor="black",
                    linestyle="none", label="$\\sigma_1$ (top index)" if i == 0 else None)
        _style.mark_nonfinite(ax, np.full(v.shape, pos[i]), v, color=s["color"], label=names[i])
    ax.set_xticks(pos, names, rotation=45 if len(names) > 4 else 0,
                  ha="right" if len(names) > 4 else "center", fontsize=8)


def singular_values(stats, *, labels: Sequence[str] | None = None, levels=None,
                    mode: str = "auto", ax=None):
    """Singular values of the step Jacobians ``J_t``: quantile bands over time, or boxes.

    ``mode="time"`` (one record with per-step fields): the per-step quantiles
    of ``{sigma_i(J_t)}_i`` in decades (``log10``) against the step ``t``: the
    outer levels shaded, the inner ones shaded darker, the level nearest 0.5 as
    a line, ``sigma_max`` dashed and ``sigma_min`` dotted; a batch shows the
    median over sequences of each statistic. ``mode="boxes"`` (one or several
    records): per configuration a box (whiskers at min and max) of the
    time-averaged ``log10 sigma_i`` over the indices ``i`` (``mean_log / ln 10``,
    a batch pools its sequences), with ``sigma_1`` as a diamond; the box covers
    the finite values, and the indices whose mean is ``-inf`` are counted below it. ``"auto"``: time
    for one record with per-step fields, else boxes. A zero line marks gain 1.
    Exact zeros (``sigma = 0``, ``log = -inf``) and NaN are counted and marked on
    the lower edge (legend), never dropped.

    Args:
      stats: a :class:`~jrnn.diagnostics.SingularValueStats`, a sequence of
        them, or a mapping ``label -> stats``.
      labels: one label per record (overrides mapping keys).
      levels: the quantile levels the stats were computed with (default
        ``(0.1, 0.5, 0.9)``, the default of ``singular_value_stats``).
      mode: ``"auto"``, ``"time"`` or ``"boxes"``.
      ax: matplotlib Axes to draw on (default: a new figure).

    Returns:
      The matplotlib ``Axes``.

    Raises:
      TypeError: ``stats`` is not a SingularValueStats (or sequence / mapping).
      ValueError: unknown ``mode``; ``"time"`` with several records or without
        per-step fields; ``levels`` not matching the stats; ``labels`` of the
        wrong length.
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import jax, jrnn, jrnn.plot
        >>> cell = jrnn.cells.elman(6, "relu")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (40, 1))
        >>> st = jrnn.diagnostics.singular_value_stats(cell, params, xs)
        >>> ax = jrnn.plot.singular_values(st, labels=["relu"])
        >>> ax.get_ylabel()
        '$\\\\log_{10} \\\\sigma_i(J_t)$ (decades)'
    """
    if mode not in ("auto", "time", "boxes"):
        raise ValueError(f"mode must be 'auto', 'time' or 'boxes', got {mode!r}.")
    items = collect(stats, SingularValueStats, "stats", labels)
    per_step = all(r.quantiles is not None and r.sigma_max is not None for _, r in items)
    if mode == "auto":
        mode = "time" if len(items) == 1 and per_step else "boxes"
    if mode == "time" and (len(items) != 1 or not per_step):
        raise ValueError(
            "mode='time' draws one record with per-step fields (singular_value_stats(..., "
            f"per_step=True)); got {len(items)} record(s)"
            + ("" if per_step else " without per-step fields") + ". Use mode='boxes'."
        )
    ax = _style.new_axes(ax)
    names = legend_names(items, "measured", "config")
    if mode == "time":
        _over_time(ax, items[0][1], levels, names[0], _style.styles(names)[0])
        xlabel = "step $t$"
    else:
        _boxes(ax, items, names)
        xlabel = "configuration (box: time-averaged $\\log_{10} \\sigma_i$ over indices $i$)"
    _style.finish(ax, xlabel=xlabel, ylabel="$\\log_{10} \\sigma_i(J_t)$ (decades)", zero=0.0)
    return ax


# ------------------------------------------------------------------ training curves

#: Units of the usual history keys, for axis labels.
UNITS = {
    "loss": "", "eval_loss": "", "grad_norm": "", "lyapunov": _style.NATS,
    "lambda_1": _style.NATS, "lyap_1": _style.NATS, "lambda_max": _style.NATS, "rate": _style.NATS,
    "propagation_rate": _style.NATS, "dead_fraction": "fraction of units",
    "saturated_fraction": "fraction of units", "accuracy": "fraction correct",
}


def _is_history(h) -> bool:
    return isinstance(h, Mapping) and "step" in h


def _runs(history) -> list[tuple[str | None, list[Mapping]]]:
    """``[(group label, [history, ...]), ...]`` from the accepted forms of ``history``."""
    from jrnn.train import FitResult

    def one(h, where):
        if isinstance(h, FitResult):
            return h.history
        if _is_history(h):
            return h
        raise TypeError(
            f"{where} must be a FitResult, a history dict with a 'step' key (FitResult.history "
            f"or .eval_history), a sequence of them (seeds) or a mapping label -> those, got "
            f"{type(h).__name__}."
        )

    def seeds(v, where):
        if isinstance(v, FitResult) or _is_history(v):
            return [one(v, where)]
        if isinstance(v, Sequence) and not isinstance(v, str | bytes) and len(v):
            return [one(h, f"{where}[{i}]") for i, h in enumerate(v)]
        return [one(v, where)]

    if isinstance(history, FitResult) or _is_history(history):
        return [(None, seeds(history, "history"))]
    if isinstance(history, Mapping):
        return [(str(k), seeds(v, f"history[{k!r}]")) for k, v in history.items()]
    return [(None, seeds(history, "history"))]


def _series(runs: list[Mapping], key: str):
    """Union of steps and an ``(R, steps)`` array (NaN where a run has no entry)."""
    cols = []
    for h in runs:
        if key not in h:
            raise ValueError(f"history has no {key!r}: its keys are {sorted(h)}.")
        step = numbers(h["step"], "history['step']").ravel()
        val = numbers(h[key], f"history[{key!r}]")
        val = val.reshape(len(step), -1)  # batched states record one value per seed
        cols.extend((step, val[:, j]) for j in range(val.shape[1]))
    steps = np.unique(np.concatenate([s for s, _ in cols]))
    out = np.full((len(cols), steps.size), np.nan)
    present = np.zeros_like(out, bool)
    for r, (s, v) in enumerate(cols):
        idx = np.searchsorted(steps, s)
        out[r, idx] = v
        present[r, idx] = True
    return steps, out, present


def training(history, keys: str | Sequence[str] = "loss", *, labels: Sequence[str] | None = None,
             log: bool | None = None, ax=None):
    """Loss and monitored quantities against the training step, across seeds with bands.

    Draws, per group of runs and per key, the median over seeds against the
    step with the min-max band across seeds shaded (a single run: its line).
    Runs that stop early (a diverged run) simply end; a NaN or inf value that
    a run recorded is marked at its step on the edge of the axes with the count
    in the legend. Y labels carry the unit of known keys (``lambda_1``: nats
    per step; ``dead_fraction``: fraction of units).

    Args:
      history: a :class:`~jrnn.train.FitResult` (its ``history``), a history
        dict ``{"step": [...], key: [...]}`` (``FitResult.history`` or
        ``.eval_history``; a batched state's per-seed lists count as seeds), a
        sequence of them (seeds), or a mapping ``label -> any of those`` (groups).
      keys: one key or several; several draw one panel each.
      labels: group labels (overrides mapping keys).
      log: logarithmic y axis; None: for keys with ``loss`` or ``norm`` in the
        name whose finite values are all positive.
      ax: an Axes (one key) or a sequence of Axes (one per key), or None.

    Returns:
      The ``Axes`` (one key) or a list of ``Axes`` (one per key).

    Raises:
      TypeError: ``history`` of another type, or ``ax`` not Axes.
      ValueError: a key missing from a history, or ``labels`` / ``ax`` of the
        wrong length.
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import jrnn, jrnn.plot
        >>> runs = [{"step": [1, 2, 3], "loss": [1.0, 0.5, 0.3]},
        ...         {"step": [1, 2, 3], "loss": [1.2, 0.6, float("nan")]}]
        >>> ax = jrnn.plot.training({"tanh": runs})
        >>> ax.get_xlabel(), ax.get_yscale()
        ('training step', 'log')
    """
    single = isinstance(keys, str)
    keys = [keys] if single else list(keys)
    groups = _runs(history)
    if labels is not None:
        if len(labels) != len(groups):
            raise ValueError(f"labels must give one label per group: {len(groups)} groups, got "
                             f"{len(labels)} labels.")
        groups = [(str(lab), runs) for lab, (_, runs) in zip(labels, groups)]
    if ax is None:
        axes = [_style.new_axes(None) for _ in keys] if len(keys) == 1 else list(
            _style.subplots(1, len(keys))[1][0])
    else:
        axes = [ax] if single or not isinstance(ax, Sequence | np.ndarray) else list(
            np.ravel(ax))
        if len(axes) != len(keys):
            raise ValueError(f"ax must give one Axes per key: {len(keys)} keys, got "
                             f"{len(axes)} Axes.")
        axes = [_style.new_axes(a) for a in axes]
    names = legend_names(groups, "run", "group")
    stys = _style.styles(names)
    for key, a in zip(keys, axes):
        positive = True
        for name, sty, (_, runs) in zip(names, stys, groups):
            steps, vals, present = _series(runs, key)
            finite = np.where(np.isfinite(vals), vals, np.nan)
            positive &= bool(np.all(finite[np.isfinite(finite)] > 0))
            R = vals.shape[0]
            with warnings.catch_warnings():  # a step no run reached is all-NaN by design
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(finite, axis=0)
                lo, hi = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
            ok = np.isfinite(med)
            a.plot(steps[ok], med[ok], color=sty["color"], linestyle=sty["linestyle"],
                   linewidth=1.3, label=f"{name} (median of {R}, band: min-max)" if R > 1 else name)
            if R > 1:
                a.fill_between(steps, lo, hi, color=sty["color"], alpha=0.15, linewidth=0)
            bad = present & ~np.isfinite(vals)
            _style.mark_nonfinite(a, np.broadcast_to(steps, vals.shape)[bad], vals[bad],
                                  color=sty["color"], label=name, zero_means="zero")
        use_log = log if log is not None else (
            positive and ("loss" in key or "norm" in key))
        if use_log:
            a.set_yscale("log")
        unit = UNITS.get(key, "")
        _style.finish(a, xlabel="training step", ylabel=key + (f" ({unit})" if unit else ""))
    return axes[0] if single else axes
