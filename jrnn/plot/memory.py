"""Figures of the curse of memory: parameter sensitivity against memory, with theory.

:func:`sensitivity_vs_memory` draws the normalised sensitivity
``E||d s_t / d theta||^2 / E||s_t||^2`` (:func:`jrnn.diagnostics.parameter_sensitivity`)
against the memory ``1 - |lambda|`` on log-log axes, with error bars and the
closed forms of :func:`jrnn.theory.linear_memory` beside the measurements
(Zucchet & Orvieto, NeurIPS 2024, Fig. 1).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jrnn.plot import style as _style
from jrnn.plot.inputs import numbers

__all__ = ["sensitivity_vs_memory"]


def sensitivity_vs_memory(modulus, measured: Mapping, *, stderr: Mapping | None = None,
                          theory: Mapping | None = None, ax=None):
    """Normalised parameter sensitivity against the memory ``1 - |lambda|``, log-log.

    Each set is drawn as markers with ``+-`` one standard error, its theory (if
    given) as a line of the same colour; the x axis is ``1 - |lambda|``
    (decreasing to the right: more memory), so the curse of memory shows as a
    curve rising to the right with slope ``-2`` (``ratio ~ 1/(1-|lambda|)^2``).
    Non-positive or non-finite values are marked on the edge with their count.

    Args:
      modulus: ``(G,)`` eigenvalue moduli ``|lambda|`` in ``(0, 1)``.
      measured: ``label -> (G,)`` normalised sensitivities.
      stderr: ``label -> (G,)`` their standard errors, or None.
      theory: ``label -> (G,)`` predicted values (e.g. ``linear_memory(...).ratio``), or None.
      ax: matplotlib Axes (default: a new figure).

    Returns:
      The matplotlib ``Axes``.

    Raises:
      ValueError: a set whose length is not ``G``, moduli outside ``(0, 1)``, a
        negative ``stderr`` (all checked before a figure is made).
      TypeError: ``measured`` / ``stderr`` / ``theory`` not a mapping.
      ImportError: matplotlib is not installed (``pip install "jrnn[plot]"``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import numpy as np, jrnn, jrnn.plot
        >>> lam = np.array([0.5, 0.9, 0.99])
        >>> ratio = np.asarray(jrnn.theory.linear_memory(lam).ratio)
        >>> ax = jrnn.plot.sensitivity_vs_memory(lam, {"diagonal": ratio * 1.02},
        ...                                      theory={"diagonal": ratio})
        >>> ax.get_xscale(), ax.get_yscale()
        ('log', 'log')
    """
    lam = numbers(modulus, "modulus").ravel()
    if not np.all((lam > 0) & (lam < 1)):
        raise ValueError(f"modulus must lie in (0, 1), got {lam.tolist()}.")
    x = 1.0 - lam

    def sets(group, argument):  # checked before any figure is made
        if group is None:
            return {}
        if not isinstance(group, Mapping):
            raise TypeError(f"{argument} must be a mapping label -> ({x.size},) values, got "
                            f"{type(group).__name__}.")
        out = {}
        for name in group:
            v = numbers(group[name], f"{argument}[{name!r}]").ravel()
            if v.size != x.size:
                raise ValueError(f"{argument}[{name!r}] must have {x.size} values (one per "
                                 f"modulus), got {v.size}.")
            if argument == "stderr" and np.any(v < 0):
                raise ValueError(f"stderr[{name!r}] must be >= 0, got {v.tolist()}.")
            out[name] = v
        return out

    ys, errs, theo = sets(measured, "measured"), sets(stderr, "stderr"), sets(theory, "theory")
    ax = _style.new_axes(ax)
    names = list(ys)
    for name, sty in zip(names, _style.styles(names), strict=True):
        y = ys[name]
        ok = np.isfinite(y) & (y > 0)
        err = None
        if name in errs:
            err = np.where(np.isfinite(errs[name]), errs[name], 0.0)[ok]
        ax.errorbar(x[ok], y[ok], yerr=err, color=sty["color"], marker=sty["marker"],
                    linestyle="none", markersize=4, capsize=2, label=name)
        if name in theo:
            t = theo[name]
            good = np.isfinite(t) & (t > 0)
            ax.plot(x[good], t[good], color=sty["color"], linestyle="-", linewidth=1.0,
                    alpha=0.8)
        if not np.all(ok):
            _style.mark_nonfinite(ax, x, np.where(ok, y, np.nan), color=sty["color"], label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    _style.finish(ax, xlabel="memory $1 - |\\lambda|$ (more memory to the right)",
                  ylabel="$E\\|\\partial s_t/\\partial\\theta\\|^2 / E\\|s_t\\|^2$",
                  title="curse of memory (markers: measured, lines: theory)")
    return ax
