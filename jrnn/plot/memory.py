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
      ValueError: a set whose length is not ``G``, moduli outside ``(0, 1)``.
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
    ax = _style.new_axes(ax)
    names = list(measured)
    for name, sty in zip(names, _style.styles(names), strict=True):
        y = numbers(measured[name], f"measured[{name!r}]").ravel()
        if y.size != x.size:
            raise ValueError(f"measured[{name!r}] must have {x.size} values (one per modulus), "
                             f"got {y.size}.")
        ok = np.isfinite(y) & (y > 0)
        err = None
        if stderr is not None and name in stderr:
            e = numbers(stderr[name], f"stderr[{name!r}]").ravel()
            err = np.where(np.isfinite(e), e, 0.0)[ok]
        ax.errorbar(x[ok], y[ok], yerr=err, color=sty["color"], marker=sty["marker"],
                    linestyle="none", markersize=4, capsize=2, label=name)
        if theory is not None and name in theory:
            t = numbers(theory[name], f"theory[{name!r}]").ravel()
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
