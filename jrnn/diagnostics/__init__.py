"""Exact gradient diagnostics: per-step Jacobians, spectra, propagation, Lyapunov, health.

Every function takes a cell, its params and inputs ``(T, d)`` or ``(B, T, d)``
(``carry=None``: the cell's zeros), works for every Cell (the LSTM's state is
``[h; c]``, a stack's is all layers), and is pure and jit-able.
"""

from jrnn.diagnostics._trajectory import DEFAULT_MEMORY_BUDGET, STREAM_MODES, tangent_map
from jrnn.diagnostics.clv import CovariantVectors, covariant_lyapunov_vectors
from jrnn.diagnostics.ftle import FiniteTimeExponents, finite_time_exponents
from jrnn.diagnostics.health import PascanuBound, UnitHealth, pascanu_bound, unit_health
from jrnn.diagnostics.hessian import HessianSpectrum, hessian_spectrum
from jrnn.diagnostics.jacobians import JACOBIAN_METHODS, step_jacobians
from jrnn.diagnostics.lyapunov import (
    QR_METHODS,
    LyapunovSpectrum,
    kaplan_yorke_dimension,
    lyapunov_spectrum,
)
from jrnn.diagnostics.memory_capacity import (
    MEMORY_CAPACITY_METHODS,
    MemoryCapacity,
    memory_capacity,
)
from jrnn.diagnostics.propagation import (
    PROPAGATION_MODES,
    GradientNorms,
    Propagation,
    gradient_norms,
    propagation,
)
from jrnn.diagnostics.sensitivity import PROBE_DISTRIBUTIONS, Sensitivity, parameter_sensitivity
from jrnn.diagnostics.snapshot import SNAPSHOT_NAMES, snapshot, snapshot_names
from jrnn.diagnostics.spectra import (
    SINGULAR_VALUE_METHODS,
    SV_STATS_MODES,
    SingularValueStats,
    eigenvalues,
    singular_value_stats,
    singular_values,
)

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "STREAM_MODES",
    "CovariantVectors",
    "FiniteTimeExponents",
    "GradientNorms",
    "JACOBIAN_METHODS",
    "LyapunovSpectrum",
    "PROPAGATION_MODES",
    "PascanuBound",
    "Propagation",
    "QR_METHODS",
    "SINGULAR_VALUE_METHODS",
    "SNAPSHOT_NAMES",
    "SV_STATS_MODES",
    "SingularValueStats",
    "UnitHealth",
    "covariant_lyapunov_vectors",
    "finite_time_exponents",
    "eigenvalues",
    "gradient_norms",
    "kaplan_yorke_dimension",
    "lyapunov_spectrum",
    "pascanu_bound",
    "propagation",
    "singular_value_stats",
    "snapshot",
    "snapshot_names",
    "singular_values",
    "step_jacobians",
    "tangent_map",
    "unit_health",
    "PROBE_DISTRIBUTIONS",
    "Sensitivity",
    "parameter_sensitivity",
    "HessianSpectrum",
    "hessian_spectrum",
    "MEMORY_CAPACITY_METHODS",
    "MemoryCapacity",
    "memory_capacity",
]
