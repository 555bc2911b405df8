"""Figures of Lyapunov exponents: spectra, finite-time spreads, angles between CLVs.

Every function returns the matplotlib ``Axes`` it drew on and accepts one
(``ax=``); exponents are in nats per step. Non-finite values are marked on the
edge of the axes with a count (:func:`jrnn.plot.style.mark_nonfinite`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jrnn.diagnostics.clv import CovariantVectors
from jrnn.diagnostics.ftle import FiniteTimeExponents
from jrnn.diagnostics.lyapunov import LyapunovSpectrum
from jrnn.plot import style as _style
from jrnn.plot.inputs import collect, legend_names, numbers

__all__ = ["clv_angles", "ftle", "spectrum"]

_KY_GID = "jrnn-kaplan-yorke"
_UNRESOLVED = "unresolved (below the round-off floor)"


def _spectrum_arrays(rec: LyapunovSpectrum):
    """Exponents, error bars, unresolved mask, state size and D_KY of a (batched) record."""
    e = np.asarray(rec.exponents, np.float64)
    unres = None if rec.unresolved is None else np.asarray(rec.unresolved, bool)
    ky = np.asarray(rec.kaplan_yorke_dimension, np.float64)
    if e.ndim == 2:  # a batch: mean over sequences, standard error across them
        B = e.shape[0]
        err = (np.std(e, axis=0, ddof=1) / math.sqrt(B) if B > 1
               else (None if rec.stderr is None else np.asarray(rec.stderr, np.float64)[0]))
        e = np.mean(e, axis=0)
        unres = None if unres is None else unres.any(axis=0)
        ky = float(np.mean(ky))
    else:
        err = None if rec.stderr is None else np.asarray(rec.stderr, np.float64)
        ky = float(ky)
    frame = rec.final_frame
    S = int(np.shape(frame)[-2]) if frame is not None else e.shape[-1]
    return e, err, unres, S, ky


def _theory_exponents(theory) -> np.ndarray:
    values = getattr(theory, "exponents", theory)
    out = numbers(values, "theory")
    if out.ndim != 1:
        raise ValueError(f"theory must hold one exponent per index, shape (n,), got shape "
                         f"{out.shape}.")
    return out


def spectrum(spectra, *, labels: Sequence[str] | None = None, normalize_index: bool = False,
             theory: Any = None, theory_label: str = "annealed theory", ax=None):
    """Lyapunov exponents against their index, with error bars and the Kaplan-Yorke dimension.

    Draws, per record, ``lambda_i`` (nats per step) against ``i = 1..k`` (or
    ``i / N`` with ``normalize_index``, ``N`` the state size read from
    ``final_frame``, so networks of different sizes share an axis), with error
    bars from ``stderr``; exponents flagged ``unresolved`` (below the round-off
    floor) as hollow grey markers; a dotted vertical line at the Kaplan-Yorke
    dimension ``D_KY`` (in the record's colour, value in the legend; "undetermined"
    when NaN); ``-inf`` / NaN exponents on the lower edge with their count; a
    zero line. A batched record (``exponents`` ``(B, k)``) is drawn as the mean
    over sequences with the standard error across them. ``theory`` (e.g.
    :func:`jrnn.theory.spectra.annealed_spectrum`) is drawn as a black line.

    Args:
      spectra: a :class:`~jrnn.diagnostics.LyapunovSpectrum`, a sequence of
        them, or a mapping ``label -> spectrum``.
      labels: one legend label per spectrum (overrides mapping keys).
      normalize_index: x is ``i / N`` instead of ``i``.
      theory: an :class:`~jrnn.theory.spectra.AnnealedSpectrum` or an array
        ``(n,)`` of predicted exponents (``-inf`` allowed), or None.
      theory_label: legend label of the theory curve.
      ax: matplotlib Axes to draw on (default: a new figure).

    Returns:
      The matplotlib ``Axes``.

    Raises:
      TypeError: ``spectra`` is not a LyapunovSpectrum (or sequence / mapping of
        them), ``theory`` is not numeric, or ``ax`` is not an Axes.
      ValueError: ``labels`` of the wrong length.
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import jax, jrnn, jrnn.plot
        >>> cell = jrnn.cells.elman(6, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (80, 1))
        >>> spec = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, transient=20)
        >>> theory = jrnn.theory.spectra.annealed_spectrum("tanh", 1.0, 6)
        >>> ax = jrnn.plot.spectrum(spec, labels=["tanh"], theory=theory)
        >>> sorted(t.get_text() for t in ax.get_legend().get_texts())[0]
        'annealed theory'
        >>> ax.get_ylabel()
        'Lyapunov exponent $\\\\lambda_i$ (nats / step)'
    """
    items = collect(spectra, LyapunovSpectrum, "spectra", labels)
    ax = _style.new_axes(ax)
    names = legend_names(items, "measured", "spectrum")
    greyed = False
    for name, sty, (_, rec) in zip(names, _style.styles(names), items):
        e, err, unres, S, ky = _spectrum_arrays(rec)
        k = e.shape[-1]
        x = np.arange(1, k + 1) / (S if normalize_index else 1)
        finite = np.isfinite(e)
        resolved = finite & (~unres if unres is not None else True)
        ky_text = f"$D_{{KY}}$ = {ky:.3g}" if math.isfinite(ky) else "$D_{KY}$ undetermined"
        yerr = None
        if err is not None and np.isfinite(err[resolved]).any():
            yerr = np.where(np.isfinite(err), err, 0.0)[resolved]
        ax.errorbar(x[resolved], e[resolved], yerr=yerr, color=sty["color"],
                    linestyle=sty["linestyle"], marker=sty["marker"], markersize=3.5,
                    capsize=2, linewidth=1.3, label=f"{name} ({ky_text})")
        if unres is not None and (unres & finite).any():
            sel = unres & finite
            ax.plot(x[sel], e[sel], linestyle="none", marker=sty["marker"], markersize=4,
                    markerfacecolor="none", color=_style.UNRESOLVED_COLOR,
                    label=None if greyed else _UNRESOLVED)
            greyed = True
        _style.mark_nonfinite(ax, x, e, color=sty["color"], label=name)
        if math.isfinite(ky):
            line = ax.axvline(ky / (S if normalize_index else 1), color=sty["color"],
                              linestyle=":", linewidth=1.2)
            line.set_gid(_KY_GID)
    if theory is not None:
        t = _theory_exponents(theory)
        n = t.shape[0]
        xt = np.arange(1, n + 1) / (n if normalize_index else 1)
        ok = np.isfinite(t)
        ax.plot(xt[ok], t[ok], color=_style.THEORY_COLOR, linewidth=1.4, label=theory_label)
        _style.mark_nonfinite(ax, xt, t, color=_style.THEORY_COLOR, label=theory_label,
                              zero_means="annihilated")
    _style.finish(ax, xlabel="index $i / N$" if normalize_index else "index $i$",
                  ylabel=f"Lyapunov exponent $\\lambda_i$ ({_style.NATS})", zero=0.0)
    return ax


def _pooled(a) -> np.ndarray:
    """``(..., W, c)`` -> ``(W', c)``: windows of every sequence of a batch pooled."""
    a = np.asarray(a, np.float64)
    return a.reshape(-1, a.shape[-1])


def _histogram(ax, values, *, bins, range_, sty, label):
    finite = values[np.isfinite(values)]
    if finite.size:
        ax.hist(finite, bins=bins, range=range_, density=True, histtype="step",
                color=sty["color"], linestyle=sty["linestyle"], linewidth=1.5, label=label)
    else:  # nothing finite to bin: keep the legend entry so the record is not lost
        ax.plot([], [], color=sty["color"], linestyle=sty["linestyle"], label=label)
    bottom = np.zeros_like(values)
    _style.mark_nonfinite(ax, values, bottom, color=sty["color"], label=label.split(":")[0],
                          axis="x")
    return finite


def ftle(records, *, columns: Sequence[int] = (0,), bins: int = 40,
         labels: Sequence[str] | None = None, ax=None):
    """Histograms of finite-time Lyapunov exponents (one per record and column).

    Draws the density of ``exponents[:, c]`` over windows (nats per step; a
    batch pools the windows of every sequence) as a step histogram per record
    and column ``c`` (0-based Benettin column, ``c = 0`` follows ``lambda_1``)
    on bins shared by all histograms, a dashed vertical line at the column's
    mean, and the mean +- standard error and spread in the legend. Non-finite
    windows sit on the left (``-inf``, NaN) or right (``+inf``) edge with their count.

    Args:
      records: a :class:`~jrnn.diagnostics.FiniteTimeExponents`, a sequence
        of them, or a mapping ``label -> record``.
      columns: Benettin columns to draw.
      bins: histogram bins.
      labels: one legend label per record.
      ax: matplotlib Axes to draw on (default: a new figure).

    Returns:
      The matplotlib ``Axes``.

    Raises:
      TypeError: ``records`` is not a FiniteTimeExponents (or sequence / mapping).
      ValueError: a column out of range, or ``labels`` of the wrong length.
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import jax, jrnn, jrnn.plot
        >>> cell = jrnn.cells.elman(4, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (200, 1))
        >>> fte = jrnn.diagnostics.finite_time_exponents(cell, params, xs, window=10)
        >>> ax = jrnn.plot.ftle(fte, columns=(0, 1))
        >>> len(ax.patches), ax.get_xlabel()
        (2, 'finite-time exponent (nats / step)')
    """
    items = collect(records, FiniteTimeExponents, "records", labels)
    ax = _style.new_axes(ax)
    rows = []
    for name, (_, rec) in zip(legend_names(items, "", "record"), items):
        e = _pooled(rec.exponents)
        for c in columns:
            if not -e.shape[-1] <= int(c) < e.shape[-1]:
                raise ValueError(f"columns entries must be in [0, {e.shape[-1] - 1}], got {c!r}.")
            rows.append((f"{name} $\\lambda_{{{int(c) + 1}}}$".strip(), e[:, int(c)]))
    pooled = np.concatenate([v[np.isfinite(v)] for _, v in rows])
    span = (float(pooled.min()), float(pooled.max())) if pooled.size else None
    if span is not None and span[0] == span[1]:
        span = (span[0] - 0.5, span[1] + 0.5)
    for (name, v), sty in zip(rows, _style.styles([r[0] for r in rows])):
        finite = v[np.isfinite(v)]
        mean = float(np.mean(finite)) if finite.size else math.nan
        sd = float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan
        se = sd / math.sqrt(finite.size) if finite.size > 1 else math.nan
        label = f"{name}: {_style.fmt(mean)} +- {_style.fmt(se, 2)} (sd {_style.fmt(sd, 2)})"
        _histogram(ax, v, bins=bins, range_=span, sty=sty, label=label)
        if math.isfinite(mean):
            ax.axvline(mean, color=sty["color"], linestyle="--", linewidth=1.0)
    _style.finish(ax, xlabel=f"finite-time exponent ({_style.NATS})", ylabel="density")
    ax.axvline(0.0, color="black", linewidth=0.7, zorder=1)
    return ax


def clv_angles(records, *, pairs: Sequence[int] | None = None, bins: int = 30,
               labels: Sequence[str] | None = None, log: bool = False, ax=None):
    """Histograms of the angles between consecutive covariant Lyapunov vectors, in degrees.

    Draws the density of the principal angle between CLVs ``i`` and ``i + 1``
    (``angles[:, i]``, 0 to 90 degrees) over the window: all pairs pooled
    (``pairs=None``) or one histogram per listed pair. Angles near 0 are
    near-tangencies (a non-hyperbolic attractor). The legend gives the median
    and the smallest angle; non-finite angles sit on the left edge with their count.

    Args:
      records: a :class:`~jrnn.diagnostics.CovariantVectors`, a sequence of
        them, or a mapping ``label -> record``.
      pairs: 0-based pair indices ``i`` (CLVs ``i``, ``i + 1``) or None (pooled).
      bins: bins over ``[0, 90]`` degrees.
      labels: one legend label per record.
      log: logarithmic density axis (shows rare tangencies).
      ax: matplotlib Axes to draw on (default: a new figure).

    Returns:
      The matplotlib ``Axes``.

    Raises:
      TypeError: ``records`` is not a CovariantVectors (or sequence / mapping).
      ValueError: a pair out of range, or ``labels`` of the wrong length.
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import jax, jrnn, jrnn.plot
        >>> cell = jrnn.cells.elman(4, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (80, 1))
        >>> clv = jrnn.diagnostics.covariant_lyapunov_vectors(
        ...     cell, params, xs, warmup=20, backward=20)
        >>> ax = jrnn.plot.clv_angles(clv)
        >>> ax.get_xlabel()
        'angle between CLVs $i$ and $i+1$ (degrees)'
    """
    items = collect(records, CovariantVectors, "records", labels)
    ax = _style.new_axes(ax)
    rows = []
    for name, (_, rec) in zip(legend_names(items, "", "record"), items):
        a = np.degrees(_pooled(rec.angles))
        if pairs is None:
            rows.append((name or "all pairs", a.ravel()))
            continue
        for p in pairs:
            if not 0 <= int(p) < a.shape[-1]:
                raise ValueError(f"pairs entries must be in [0, {a.shape[-1] - 1}], got {p!r}.")
            rows.append((f"{name} CLV {int(p) + 1}-{int(p) + 2}".strip(), a[:, int(p)]))
    for (name, v), sty in zip(rows, _style.styles([r[0] for r in rows])):
        finite = v[np.isfinite(v)]
        stats = (f"median {np.median(finite):.3g}, min {np.min(finite):.2g} deg"
                 if finite.size else "no finite angle")
        _histogram(ax, v, bins=bins, range_=(0.0, 90.0), sty=sty, label=f"{name}: {stats}")
    if log:
        ax.set_yscale("log")
    ax.set_xlim(0.0, 90.0)
    _style.finish(ax, xlabel="angle between CLVs $i$ and $i+1$ (degrees)",
                  ylabel="density (1 / degree)")
    return ax
