"""Linear-algebra kernels of the diagnostics: QR chains and Gram/Sturm singular values.

* :mod:`jrnn.linalg.qr` -- Householder, CholeskyQR2 and compact (``ormqr``) QR
  chains ``J_t Q_{t-1} = Q_t R_t`` with checked blocks of steps;
* :mod:`jrnn.linalg.svd` -- singular values from a float64 Gram matrix, by
  Householder tridiagonalisation and Sturm-count bisection in log space.

These know nothing about cells; :mod:`jrnn.diagnostics` builds on them.
"""

from jrnn.linalg import qr, svd
from jrnn.linalg.qr import (
    BLOCK_TOLERANCE,
    CompactQR,
    ExplicitQR,
    block_error,
    block_tolerance,
    checked_block,
    cholesky_qr2,
    householder,
    qr_chain,
)
from jrnn.linalg.svd import (
    gram,
    gram_singular_values,
    psd_eigenvalues,
    sturm_count,
)

__all__ = [
    "BLOCK_TOLERANCE",
    "CompactQR",
    "ExplicitQR",
    "block_error",
    "block_tolerance",
    "checked_block",
    "cholesky_qr2",
    "gram",
    "gram_singular_values",
    "householder",
    "psd_eigenvalues",
    "qr",
    "qr_chain",
    "sturm_count",
    "svd",
]
