"""Theory to set against measurements: mean field, gated cells, random-matrix spectra.

- :mod:`jrnn.theory.mean_field`: ``q*``, ``chi``, ``c*``, depth scales, driven
  networks, the order-to-chaos line (Poole et al. 2016; Schoenholz et al. 2017).
- :mod:`jrnn.theory.gated`: GRU / LSTM: the tied-weight edge of chaos (quiescent state's
  spectral radius) and the annealed mean field (weights redrawn every step).
- :mod:`jrnn.theory.spectra`: annealed Lyapunov spectrum, singular values of products.
- :mod:`jrnn.theory.memory`: the curse of memory of a linear recurrence in closed form.

What applies to a given cell, in one call, is :func:`jrnn.predict`
(:mod:`jrnn.prediction`): it sits above the cells it inspects, while this
package stays below them (the initialisers import it).
"""

# ruff: noqa: F401  (every import here is a re-export; __all__ is built from the modules')

from jrnn.theory import gated, spectra
from jrnn.theory import mean_field as _mean_field_module
from jrnn.theory.mean_field import (
    MeanField,
    correlation_map,
    critical_gain,
    critical_line,
    drive_scale,
    gaussian_expectation,
    mean_field,
)
from jrnn.theory.memory import LinearMemory, linear_memory

# mean_field's names except its quadrature_nodes (the nodes live in theory._quadrature).
__all__ = sorted(
    [
        *(name for name in _mean_field_module.__all__ if name != "quadrature_nodes"),
        "LinearMemory",
        "gated",
        "linear_memory",
        "spectra",
    ]
)

del _mean_field_module
