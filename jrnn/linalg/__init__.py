"""Linear-algebra kernels of the diagnostics: QR chains and Gram/Sturm singular values.

* :mod:`jrnn.linalg.qr` -- Householder, CholeskyQR2 and compact (``ormqr``) QR
  chains ``J_t Q_{t-1} = Q_t R_t`` with checked blocks of steps and the
  controller of the adaptive re-orthonormalisation interval;
* :mod:`jrnn.linalg.svd` -- singular values from a float64 Gram matrix, by
  Householder tridiagonalisation and Sturm-count bisection in log space.

These know nothing about cells; :mod:`jrnn.diagnostics` builds on them.
"""

# ruff: noqa: F401  (every import here is a re-export; __all__ is built from the modules')

from jrnn.linalg import qr, svd
from jrnn.linalg.qr import (
    BLOCK_TOLERANCE,
    CompactQR,
    ExplicitQR,
    adaptive_intervals,
    block_error,
    block_tolerance,
    checked_block,
    cholesky_qr2,
    householder,
    next_interval,
    qr_chain,
)
from jrnn.linalg.svd import (
    gram,
    gram_singular_values,
    psd_eigenvalues,
    sturm_count,
)

# Every name of the two modules except qr.HAS_ORMQR, svd.EIG_KERNELS and svd.sturm_digits,
# which stay in their modules.
__all__ = sorted(
    [
        *(name for name in qr.__all__ if name != "HAS_ORMQR"),
        *(name for name in svd.__all__ if name not in ("EIG_KERNELS", "sturm_digits")),
        "qr",
        "svd",
    ]
)
