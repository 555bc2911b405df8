"""Figures of Lyapunov exponents: spectra, finite-time spreads, CLV angles, the edge of chaos.

Every function returns the matplotlib ``Axes`` it drew on and accepts one
(``ax=``); exponents are in nats per step. Non-finite values are marked on the
edge of the axes with a count (:func:`jrnn.plot.style.mark_nonfinite`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jrnn.diagnostics.clv import CovariantVectors
from jrnn.diagnostics.lyapunov import FiniteTimeExponents, LyapunovSpectrum
from jrnn.plot import style as _style
from jrnn.plot.inputs import collect, numbers

__all__ = ["clv_angles", "ftle", "gain_sweep", "phase_diagram", "spectrum", "theory_vs_measured"]

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
        >>> ax = jrnn.plot.spectrum(spec, labels=["tanh"])
        >>> ax.get_ylabel()
        'Lyapunov exponent $\\\\lambda_i$ (nats / step)'
    """
    items = collect(spectra, LyapunovSpectrum, "spectra", labels)
    ax = _style.new_axes(ax)
    names = [lab if lab is not None else ("measured" if len(items) == 1 else f"spectrum {i + 1}")
             for i, (lab, _) in enumerate(items)]
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
    for i, (lab, rec) in enumerate(items):
        e = _pooled(rec.exponents)
        for c in columns:
            if not -e.shape[-1] <= int(c) < e.shape[-1]:
                raise ValueError(f"columns entries must be in [0, {e.shape[-1] - 1}], got {c!r}.")
            name = lab if lab is not None else ("" if len(items) == 1 else f"record {i + 1}")
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
    for i, (lab, rec) in enumerate(items):
        a = np.degrees(_pooled(rec.angles))
        name = lab if lab is not None else ("" if len(items) == 1 else f"record {i + 1}")
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


def _critical(activation, vary: str, grid: np.ndarray) -> np.ndarray:
    from jrnn import theory

    if vary == "sigma_b":
        return np.asarray(theory.critical_line(activation, grid), np.float64)
    return np.asarray(theory.critical_line(activation, np.zeros_like(grid), sigma_u=grid),
                      np.float64)


_AXIS_NAME = {"sigma_b": "bias scale $\\sigma_b$", "sigma_u": "input drive $\\sigma_u$"}


def phase_diagram(activations: str | Sequence[str] = "tanh", *, vary: str = "sigma_b",
                  values=None, measured: Mapping[str, Any] | None = None,
                  cmap: str = "coolwarm", ax=None):
    """The mean-field order-to-chaos line over ``(sigma_w, sigma_b)`` or ``(sigma_w, sigma_u)``.

    Draws, per activation, the critical weight scale ``sigma_w*`` (``chi = 1``,
    :func:`jrnn.theory.critical_line`) against the bias scale ``sigma_b`` or the
    input drive ``sigma_u`` (the other held at 0); left of a line is the ordered
    phase (``chi < 1``, gradients vanish), right of it the chaotic one. Values
    with no critical gain (NaN) are marked on the left edge with their count.
    ``measured`` overlays exponents as a scatter coloured on a diverging scale
    centred at 0 (nats per step, colour bar); non-finite exponents are black
    crosses at their ``(sigma_w, sigma)`` with their count in the legend.

    Args:
      activations: a registered activation name or several.
      vary: ``"sigma_b"`` or ``"sigma_u"``: the scale on the vertical axis.
      values: the grid of that scale (default ``linspace(0, 1, 41)``).
      measured: ``{"sigma_w": (P,), vary: (P,), "lambda_max": (P,)}``, e.g.
        the top exponent of :func:`~jrnn.diagnostics.lyapunov_spectrum` of a
        network at each point, or None.
      cmap: diverging colormap of the scatter.
      ax: matplotlib Axes to draw on (default: a new figure).

    Returns:
      The matplotlib ``Axes``.

    Raises:
      TypeError: ``measured`` is not a mapping, or its entries are not numeric.
      ValueError: unknown ``vary``, missing keys in ``measured``, or entries of
        different lengths; unknown activation (from :mod:`jrnn.activations`).
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import numpy as np, jrnn, jrnn.plot
        >>> ax = jrnn.plot.phase_diagram("tanh", values=np.linspace(0, 0.5, 6),
        ...     measured={"sigma_w": [0.8, 1.6], "sigma_b": [0.1, 0.1],
        ...               "lambda_max": [-0.2, 0.1]})
        >>> ax.get_xlabel(), len(ax.collections)
        ('weight scale $\\\\sigma_w$', 1)
    """
    if vary not in _AXIS_NAME:
        raise ValueError(f"vary must be 'sigma_b' or 'sigma_u', got {vary!r}.")
    acts = [activations] if isinstance(activations, str) else list(activations)
    grid = (np.linspace(0.0, 1.0, 41) if values is None
            else numbers(values, "values").ravel())
    ax = _style.new_axes(ax)
    for act, sty in zip(acts, _style.styles(acts)):
        line = _critical(act, vary, grid)
        ok = np.isfinite(line)
        ax.plot(line[ok], grid[ok], color=sty["color"], linestyle=sty["linestyle"],
                linewidth=1.6, label=f"{act}: critical line $\\chi = 1$")
        _style.mark_nonfinite(ax, line, grid, color=sty["color"], axis="x",
                              label=f"{act}: no critical gain", zero_means="none")
        if act == acts[0] and ok.any():  # name the two phases on either side of the line
            mid = np.flatnonzero(ok)[int(ok.sum()) // 2]
            for text, dx, ha in (("ordered\n($\\chi < 1$)", -12, "right"),
                                 ("chaotic\n($\\chi > 1$)", 12, "left")):
                t = ax.annotate(text, (line[mid], grid[mid]), xytext=(dx, 0),
                                textcoords="offset points", ha=ha, va="center", fontsize=8,
                                color="0.25", style="italic", zorder=6,
                                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.7,
                                      "edgecolor": "none"})
                t.set_gid("jrnn-phase")
    if measured is not None:
        _scatter(ax, measured, vary, cmap)
    _style.finish(ax, xlabel="weight scale $\\sigma_w$", ylabel=_AXIS_NAME[vary])
    return ax


def _scatter(ax, measured, vary: str, cmap: str) -> None:
    if not isinstance(measured, Mapping):
        raise TypeError(f"measured must be a mapping {{'sigma_w', {vary!r}, 'lambda_max'}} "
                        f"of arrays, got {type(measured).__name__}.")
    missing = [k for k in ("sigma_w", vary, "lambda_max") if k not in measured]
    if missing:
        raise ValueError(f"measured is missing {missing}; it needs 'sigma_w', {vary!r} and "
                         f"'lambda_max', got keys {sorted(measured)}.")
    sw = numbers(measured["sigma_w"], "measured['sigma_w']").ravel()
    sv = numbers(measured[vary], f"measured[{vary!r}]").ravel()
    lam = numbers(measured["lambda_max"], "measured['lambda_max']").ravel()
    if not sw.size == sv.size == lam.size:
        raise ValueError(f"measured entries must have one value per point, got sizes "
                         f"{sw.size}, {sv.size}, {lam.size}.")
    from matplotlib.colors import TwoSlopeNorm

    ok = np.isfinite(lam)
    span = float(np.max(np.abs(lam[ok]))) if ok.any() else 1.0
    span = span if span > 0 else 1.0
    sc = ax.scatter(sw[ok], sv[ok], c=lam[ok], cmap=cmap, s=36, edgecolors="0.2",
                    linewidths=0.5, norm=TwoSlopeNorm(0.0, -span, span), zorder=4)
    ax.figure.colorbar(sc, ax=ax, label=f"measured $\\lambda_1$ ({_style.NATS})")
    if (~ok).any():
        text = _style.describe_nonfinite(_style.nonfinite_counts(lam))
        (m,) = ax.plot(sw[~ok], sv[~ok], linestyle="none", marker="x", color="black",
                       markersize=7, label=f"measured $\\lambda_1$: {text}", zorder=5)
        m.set_gid(_style.NONFINITE_GID)


def _band(values: np.ndarray):
    """Median and min / max over axis 0, NaN ignored, ``-inf`` kept (no interpolation)."""
    with warnings.catch_warnings():  # an all-NaN column gives NaN, marked by the caller
        warnings.simplefilter("ignore", RuntimeWarning)
        v = values
        med = np.nanquantile(v, 0.5, axis=0, method="inverted_cdf")
        lo = np.nanmin(v, axis=0)
        hi = np.nanmax(v, axis=0)
    return med, lo, hi


def gain_sweep(sigma_w, exponents, *, activation: str | None = None, sigma_b: float = 0.0,
               sigma_u: float = 0.0, labels: Sequence[str] | None = None, ax=None):
    """The largest Lyapunov exponent against the weight scale, with the mean-field curve.

    Draws, per set, the median over repeats (seeds) of ``lambda_1`` (nats per
    step) against ``sigma_w`` on a log2 axis with a min-max band, each
    non-finite repeat on the edge of the axes (``-inf`` below, NaN below,
    ``+inf`` above) with its count; with ``activation``, the mean-field
    prediction ``0.5 ln chi`` (:func:`jrnn.theory.mean_field`) as a black line
    and the critical gain ``g*`` (:func:`jrnn.theory.critical_gain`) as a grey
    dashed line; a zero line.

    Args:
      sigma_w: ``(G,)`` weight scales.
      exponents: ``(G,)`` or ``(R, G)`` measured ``lambda_1`` (repeats by
        row), or a mapping ``label -> (R, G)`` (e.g. one per network size).
      activation: registered name for the theory curve, or None.
      sigma_b, sigma_u: bias and input-drive scales of the theory.
      labels: legend labels of the sets (overrides mapping keys).
      ax: matplotlib Axes to draw on (default: a new figure).

    Returns:
      The matplotlib ``Axes``.

    Raises:
      TypeError: non-numeric ``sigma_w`` or ``exponents``.
      ValueError: shapes that do not match ``(G,)``.
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import numpy as np, jrnn, jrnn.plot
        >>> g = np.array([0.5, 1.0, 2.0])
        >>> ax = jrnn.plot.gain_sweep(g, {"N=8": [[-0.7, -0.1, 0.3], [-0.6, -np.inf, 0.2]]},
        ...                           activation="tanh")
        >>> ax.get_ylabel()
        'largest Lyapunov exponent $\\\\lambda_1$ (nats / step)'
    """
    g = numbers(sigma_w, "sigma_w").ravel()
    if isinstance(exponents, Mapping):
        sets = [(str(k), v) for k, v in exponents.items()]
    else:
        sets = [(None, exponents)]
    if labels is not None:
        if len(labels) != len(sets):
            raise ValueError(f"labels must give one label per set: {len(sets)} sets, got "
                             f"{len(labels)} labels.")
        sets = [(str(lab), v) for lab, (_, v) in zip(labels, sets)]
    ax = _style.new_axes(ax)
    names = [lab if lab is not None else "measured" for lab, _ in sets]
    for name, sty, (_, v) in zip(names, _style.styles(names), sets):
        v = numbers(v, "exponents")
        v = v[None] if v.ndim == 1 else v
        if v.ndim != 2 or v.shape[1] != g.size:
            raise ValueError(f"exponents must be (G,) or (R, G) with G = len(sigma_w) = {g.size}, "
                             f"got shape {v.shape}.")
        med, lo, hi = _band(v)
        ok = np.isfinite(med)
        ax.plot(g[ok], med[ok], color=sty["color"], linestyle=sty["linestyle"],
                marker=sty["marker"], markersize=3.5, linewidth=1.3,
                label=f"{name} (median of {v.shape[0]})" if v.shape[0] > 1 else name)
        if v.shape[0] > 1:
            band = np.isfinite(lo) & np.isfinite(hi)
            ax.fill_between(g, np.where(band, lo, np.nan), np.where(band, hi, np.nan),
                            color=sty["color"], alpha=0.18, linewidth=0)
        _style.mark_nonfinite(ax, np.broadcast_to(g, v.shape), v, color=sty["color"],
                              label=name)
    if activation is not None:
        import jax

        from jrnn import theory

        fine = np.geomspace(g.min(), g.max(), 200)
        lam = jax.vmap(lambda s: theory.mean_field(activation, s, sigma_b,
                                                   sigma_u=sigma_u).lambda_max)(fine)
        lam = np.asarray(lam, np.float64)
        ok = np.isfinite(lam)
        ax.plot(fine[ok], lam[ok], color=_style.THEORY_COLOR, linewidth=1.3,
                label="mean field $\\frac{1}{2}\\ln\\chi$")
        gstar = float(theory.critical_gain(activation, sigma_b, sigma_u=sigma_u))
        if math.isfinite(gstar):
            ax.axvline(gstar, color="0.45", linestyle="--", linewidth=1.0,
                       label=f"$g^*$ = {gstar:.3g}")
    ax.set_xscale("log", base=2)
    from matplotlib import ticker

    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    _style.finish(ax, xlabel="weight scale $\\sigma_w$",
                  ylabel=f"largest Lyapunov exponent $\\lambda_1$ ({_style.NATS})", zero=0.0)
    return ax


def theory_vs_measured(predicted, measured, *, stderr=None, labels: Sequence[str] | None = None,
                       groups: Sequence[str] | None = None, ax=None):
    """Measured against predicted exponents on a diagonal (nats per step), with error bars.

    Draws one point per configuration at ``(predicted, measured)`` with the
    measured standard error as a vertical bar, coloured by ``groups`` (one
    legend entry per group), annotated with ``labels``, and the line
    ``measured = predicted``. A point with a non-finite coordinate is marked on
    the edge of the axes (at its finite coordinate) with its count, never dropped.

    Args:
      predicted: ``(P,)`` predictions, e.g. ``jrnn.theory.mean_field(...).lambda_max``.
      measured: ``(P,)`` measurements, e.g. ``spectrum.exponents[0]``.
      stderr: ``(P,)`` standard errors of ``measured`` or None.
      labels: ``P`` point annotations or None.
      groups: ``P`` group names (colour and legend), or None (one group).
      ax: matplotlib Axes to draw on (default: a new figure).

    Returns:
      The matplotlib ``Axes``.

    Raises:
      TypeError: non-numeric inputs.
      ValueError: inputs of different lengths.
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import jrnn, jrnn.plot
        >>> ax = jrnn.plot.theory_vs_measured([-0.3, 0.1], [-0.28, 0.12], stderr=[0.01, 0.02],
        ...                                   labels=["tanh", "relu"])
        >>> ax.get_xlabel()
        'predicted $\\\\lambda_1$ (nats / step)'
    """
    p = numbers(predicted, "predicted").ravel()
    m = numbers(measured, "measured").ravel()
    s = None if stderr is None else numbers(stderr, "stderr").ravel()
    n = p.size
    for name, arr in (("measured", m), ("stderr", s), ("labels", labels), ("groups", groups)):
        if arr is not None and len(arr) != n:
            raise ValueError(f"{name} must have one entry per point ({n}), got {len(arr)}.")
    grp = list(groups) if groups is not None else ["measured"] * n
    ax = _style.new_axes(ax)
    order = list(dict.fromkeys(grp))
    for name, sty in zip(order, _style.styles(order)):
        sel = np.array([gname == name for gname in grp])
        ok = sel & np.isfinite(p) & np.isfinite(m)
        yerr = None if s is None else np.where(np.isfinite(s), s, 0.0)[ok]
        ax.errorbar(p[ok], m[ok], yerr=yerr, fmt=sty["marker"], color=sty["color"],
                    markersize=4, capsize=2, label=name)
        bad_m = sel & np.isfinite(p) & ~np.isfinite(m)
        _style.mark_nonfinite(ax, p[bad_m], m[bad_m], color=sty["color"],
                              label=f"{name}, measured")
        bad_p = sel & ~np.isfinite(p) & np.isfinite(m)
        _style.mark_nonfinite(ax, p[bad_p], m[bad_p], color=sty["color"], axis="x",
                              label=f"{name}, predicted")
        both = int(np.sum(sel & ~np.isfinite(p) & ~np.isfinite(m)))
        if both:
            _style.note(ax, f"{name}: {both} point(s) with neither coordinate finite",
                        where="lower right")
    if labels is not None:
        for lab, x, y in zip(labels, p, m):
            if math.isfinite(x) and math.isfinite(y):
                ax.annotate(str(lab), (x, y), fontsize=6, xytext=(2, 2),
                            textcoords="offset points")
    ok = np.isfinite(p) & np.isfinite(m)
    if ok.any():
        lo = float(min(p[ok].min(), m[ok].min()))
        hi = float(max(p[ok].max(), m[ok].max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="measured = predicted")
    ax.axvline(0.0, color="0.6", linewidth=0.6, linestyle=":")
    _style.finish(ax, xlabel=f"predicted $\\lambda_1$ ({_style.NATS})",
                  ylabel=f"measured $\\lambda_1$ ({_style.NATS}, +- stderr)", zero=0.0)
    return ax
