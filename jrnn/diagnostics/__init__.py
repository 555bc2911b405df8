"""Exact gradient diagnostics: per-step Jacobians, spectra, propagation, Lyapunov, health.

Every function takes a cell, its params and inputs ``(T, d)`` or ``(B, T, d)``
(``carry=None``: the cell's zeros), works for every Cell (the LSTM's state is
``[h; c]``, a stack's is all layers), and is pure and jit-able.
"""

from jrnn.diagnostics.health import PascanuBound, UnitHealth, pascanu_bound, unit_health
from jrnn.diagnostics.jacobians import JACOBIAN_METHODS, step_jacobians
from jrnn.diagnostics.lyapunov import (
    QR_METHODS,
    LyapunovSpectrum,
    kaplan_yorke_dimension,
    lyapunov_spectrum,
)
from jrnn.diagnostics.ordering import after
from jrnn.diagnostics.propagation import (
    GradientNorms,
    Propagation,
    gradient_norms,
    propagation,
)
from jrnn.diagnostics.spectra import SINGULAR_VALUE_METHODS, eigenvalues, singular_values

__all__ = [
    "GradientNorms",
    "JACOBIAN_METHODS",
    "LyapunovSpectrum",
    "PascanuBound",
    "Propagation",
    "QR_METHODS",
    "SINGULAR_VALUE_METHODS",
    "UnitHealth",
    "after",
    "eigenvalues",
    "gradient_norms",
    "kaplan_yorke_dimension",
    "lyapunov_spectrum",
    "pascanu_bound",
    "propagation",
    "singular_values",
    "step_jacobians",
    "unit_health",
]
