"""Theory to set against measurements: mean field, gated cells, random-matrix spectra.

- :mod:`jrnn.theory.mean_field`: ``q*``, ``chi``, ``c*``, depth scales, driven
  networks, the order-to-chaos line (Poole et al. 2016; Schoenholz et al. 2017).
- :mod:`jrnn.theory.gated`: GRU / LSTM mean field at initialisation.
- :mod:`jrnn.theory.spectra`: annealed Lyapunov spectrum, singular values of products.

What applies to a given cell, in one call, is :func:`jrnn.predict`
(:mod:`jrnn.prediction`): it sits above the cells it inspects, while this
package stays below them (the initialisers import it).
"""

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

__all__ = [
    "MeanField",
    "correlation_map",
    "critical_gain",
    "critical_line",
    "drive_scale",
    "gated",
    "gaussian_expectation",
    "mean_field",
    "spectra",
]

del _mean_field_module
