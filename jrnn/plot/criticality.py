"""Figures that set measured exponents against mean-field theory: the edge of chaos.

:func:`phase_diagram` (the order-to-chaos line with measured exponents),
:func:`gain_sweep` (``lambda_1`` against ``sigma_w`` with ``0.5 ln chi``) and
:func:`theory_vs_measured` (a diagonal). Every function returns the matplotlib
``Axes`` it drew on and accepts one (``ax=``); exponents are in nats per step;
non-finite values are marked with their count, never dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jrnn.plot import style as _style
from jrnn.plot.inputs import numbers

__all__ = ["gain_sweep", "phase_diagram", "theory_vs_measured"]


def _critical(activation, vary: str, grid: np.ndarray, held: float) -> np.ndarray:
    from jrnn import theory

    if vary == "sigma_b":
        return np.asarray(theory.critical_line(activation, grid, sigma_u=held), np.float64)
    return np.asarray(theory.critical_line(activation, np.full_like(grid, held), sigma_u=grid),
                      np.float64)


_AXIS_NAME = {"sigma_b": "bias scale $\\sigma_b$", "sigma_u": "input drive $\\sigma_u$"}


def phase_diagram(activations: str | Sequence[str] = "tanh", *, vary: str = "sigma_b",
                  values=None, measured: Mapping[str, Any] | None = None,
                  sigma_b: float = 0.0, sigma_u: float = 0.0, cmap: str = "coolwarm", ax=None):
    """The mean-field order-to-chaos line over ``(sigma_w, sigma_b)`` or ``(sigma_w, sigma_u)``.

    Draws, per activation, the critical weight scale ``sigma_w*`` (``chi = 1``,
    :func:`jrnn.theory.critical_line`) against the bias scale ``sigma_b`` or the
    input drive ``sigma_u`` (the other held at ``sigma_b`` / ``sigma_u``, default 0);
    left of a line is the ordered phase (``chi < 1``, gradients vanish), right of it the
    chaotic one. Values
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
      sigma_b: the bias scale held fixed when ``vary="sigma_u"``.
      sigma_u: the input drive held fixed when ``vary="sigma_b"``.
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
        line = _critical(act, vary, grid, sigma_u if vary == "sigma_b" else sigma_b)
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
    (not drawn where ``q*`` is infinite: no fixed point) and the critical gain
    ``g*`` (:func:`jrnn.theory.critical_gain`) as a grey dashed line; a zero line.

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
      ValueError: shapes that do not match ``(G,)``; with ``activation``, a
        ``sigma_w`` not finite and positive.
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
    if activation is not None and not np.all(np.isfinite(g) & (g > 0)):
        raise ValueError(f"sigma_w must be finite and > 0 for the theory line (log axis), got "
                         f"{sigma_w!r}.")
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

        def line(s):  # only q* and chi: compiled, XLA drops the correlation map (17 s -> 2 s)
            mf = theory.mean_field(activation, s, sigma_b, sigma_u=sigma_u)
            return mf.q_star, mf.lambda_max

        q_star, lam = jax.jit(jax.vmap(line))(fine)
        # no finite fixed point q* (the variance grows without bound): no theory value there
        lam = np.where(np.isfinite(np.asarray(q_star)), np.asarray(lam, np.float64), np.nan)
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
