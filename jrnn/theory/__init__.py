"""Theory to set against measurements: mean field, gated cells, random-matrix spectra.

- :mod:`jrnn.theory.mean_field`: ``q*``, ``chi``, ``c*``, depth scales, driven
  networks, the order-to-chaos line (Poole et al. 2016; Schoenholz et al. 2017).
- :mod:`jrnn.theory.gated`: GRU / LSTM mean field at initialisation.
- :mod:`jrnn.theory.spectra`: annealed Lyapunov spectrum, singular values of products.
- :mod:`jrnn.theory.predict`: what applies to a given cell, in one call. It sits
  above the cells it inspects, so it is imported lazily (``jrnn.theory.predict``
  on first access): the initialisers import this package.
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
    "predict",
    "spectra",
]

del _mean_field_module


def __getattr__(name):
    if name == "predict":
        import importlib

        return importlib.import_module("jrnn.theory.predict")  # a callable module
    raise AttributeError(f"module 'jrnn.theory' has no attribute {name!r}")
