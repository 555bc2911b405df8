"""The figures researchers draw from jrnn's diagnostics, one call each.

Every function takes jrnn's result records directly, draws on a matplotlib
``Axes`` (a new figure, or the one passed as ``ax=``) and returns it, with
labelled axes and units (nats per step, decades, steps), error bars or bands
from the records' standard errors, and honest marks for exact zeros and
non-finite values (on the edge of the axes, with a count in the legend; never
dropped or clipped). Colours follow the family of the cell or activation named
in a label (:mod:`jrnn.plot.style`).

- :func:`spectrum`: Lyapunov spectra against index, Kaplan-Yorke dimension, theory.
- :func:`propagation`: ``log10 ||d s_T / d s_t||`` against lag, fitted rate.
- :func:`singular_values`: step-Jacobian singular values over time or per configuration.
- :func:`training`: loss and monitored quantities against step, across seeds.
- :func:`phase_diagram`: the mean-field order-to-chaos line with measured exponents.
- :func:`gain_sweep`: ``lambda_1`` against ``sigma_w`` with the mean-field curve.
- :func:`theory_vs_measured`: measured against predicted exponents on a diagonal.
- :func:`ftle`, :func:`clv_angles`: histograms of finite-time exponents and CLV angles.
- :func:`sensitivity_vs_memory`: the curse of memory, measured beside its closed form.

matplotlib is an optional dependency (``pip install "jrnn[plot]"``): importing
this module never imports it; a function raises :class:`ImportError` with that
hint when it is missing. Nothing here picks a backend: for files only, call
``matplotlib.use("Agg")`` first.

Each function's docstring ends with a runnable example (:func:`spectrum`'s draws a measured
spectrum against the annealed theory).
"""

from jrnn.plot import style
from jrnn.plot.criticality import gain_sweep, phase_diagram, theory_vs_measured
from jrnn.plot.exponents import clv_angles, ftle, spectrum
from jrnn.plot.gradients import propagation, singular_values, training
from jrnn.plot.memory import sensitivity_vs_memory
from jrnn.plot.style import subplots

__all__ = [
    "clv_angles",
    "ftle",
    "gain_sweep",
    "phase_diagram",
    "propagation",
    "sensitivity_vs_memory",
    "singular_values",
    "spectrum",
    "style",
    "subplots",
    "theory_vs_measured",
    "training",
]
