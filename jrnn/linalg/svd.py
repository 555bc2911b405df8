"""Singular values from a float64 Gram matrix: tridiagonalisation and Sturm-count bisection.

.. math::

   \\sigma_i(J) = \\sqrt{\\lambda_i(J^\\top J)}

The quick ``sqrt(eigvalsh(J^T J))`` squares the condition number: in float32 it
leaves an absolute error of ``eps_32 * sigma_max^2`` on ``sigma^2``, so a
singular value ``10^-3 sigma_max`` is off by about 5%. Formed in float64 from
the (exact) float32 entries, squaring costs only ``eps_64 (sigma_max / sigma)^2
~ 1e-10`` at ``10^-3 sigma_max``. The ``"sturm"`` kernel then avoids a full
eigendecomposition:

1. ``G = J^T J`` in float64, lower triangle only (``syrk``,
   ``lax.linalg.symmetric_product``; products of float32 numbers are exact in
   float64), :func:`gram`;
2. Householder tridiagonalisation ``G = Q T Q^T`` (``lax.linalg.tridiagonal``,
   no eigenvectors);
3. all eigenvalues of ``T`` at once from Sturm counts (LDL^T pivots,
   :func:`sturm_count`) in log space, so small eigenvalues get the same
   *relative* resolution as large ones (Kahan 1966; Demmel 1997, sec. 5.3.4):
   one multisection pass at ``m`` log-spaced shifts places every eigenvalue in
   a cell of width ``ln(2^64) / (m + 1)``, then bisection halves each cell
   until ``sigma`` is resolved to ``2.5e-8`` relative (21 count passes for
   ``m = 128``, float32 output), :func:`psd_eigenvalues`;
4. ``sigma = sqrt(lambda)`` cast back to the input dtype.

:func:`gram_singular_values` is the differentiable entry point (``"gram"``,
``"sturm"`` or ``"augmented"``); the user-facing choice of method, the x64 and
non-finite rules live in :func:`jrnn.diagnostics.singular_values`. Timings:
``experiments/benchmarks/spectra.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "EIG_KERNELS",
    "gram",
    "gram_singular_values",
    "psd_eigenvalues",
    "sturm_count",
    "sturm_digits",
]

#: Kernels of :func:`gram_singular_values`.
EIG_KERNELS = ("gram", "sturm", "augmented")

# Eigenvalues of the Gram matrix are searched on [2^-64, 1] * Gershgorin bound, in log space;
# the bisection stops at a relative error 10^-digits on sigma: 7.6 (2.5e-8, below half a
# float32 ulp) for float32 output, 15.7 for float64.
_LOG2_RANGE = 64
_DIGITS = {4: 7.6, 8: 15.7}


def sturm_digits(dtype) -> float:
    """Decimal digits of ``sigma`` the bisection resolves for output in ``dtype``."""
    return _DIGITS[8 if jnp.dtype(dtype).itemsize >= 8 else 4]


def _wide_dtype(dtype):
    """float64 when x64 is enabled (else the input dtype)."""
    return jnp.float64 if jax.config.read("jax_enable_x64") else dtype


def gram(J: jax.Array, dtype, lower_only: bool = False) -> jax.Array:
    """``J^T J`` (or ``J J^T`` when wide) of the smaller side, in ``dtype``.

    ``lower_only``: only the lower triangle is needed (a symmetric rank-k update,
    ``syrk``, half the flops of a matrix product, where jax has it).
    """
    A = J.astype(dtype)
    tall = J.shape[-2] >= J.shape[-1]
    if lower_only and hasattr(lax.linalg, "symmetric_product"):
        B = jnp.swapaxes(A, -1, -2) if tall else A
        C = jnp.zeros(B.shape[:-1] + B.shape[-2:-1], dtype)
        return lax.linalg.symmetric_product(B, C)
    if tall:
        return jnp.einsum("...ki,...kj->...ij", A, A, precision=lax.Precision.HIGHEST)
    return jnp.einsum("...ik,...jk->...ij", A, A, precision=lax.Precision.HIGHEST)


def sturm_count(d: jax.Array, e2: jax.Array, x: jax.Array, pivmin) -> jax.Array:
    """Number of eigenvalues of the tridiagonal (d, e) below each shift ``x``.

    ``d (..., m)``, ``e2 = e^2 (..., m-1)``, ``x (..., p)`` -> ``(..., p)`` int32.
    LDL^T pivots ``q_i = d_i - x - e_{i-1}^2 / q_{i-1}``; by Sylvester's law of
    inertia the number of negative pivots counts the eigenvalues below ``x``.
    """

    def guard(q):
        return jnp.where(jnp.abs(q) < pivmin, -pivmin, q)

    q0 = guard(d[..., :1] - x)
    count0 = (q0 < 0).astype(jnp.int32)

    def body(carry, inp):
        q, count = carry
        d_i, e2_i = inp
        q = guard((d_i[..., None] - x) - e2_i[..., None] / q)
        return (q, count + (q < 0).astype(jnp.int32)), None

    rest = (jnp.moveaxis(d[..., 1:], -1, 0), jnp.moveaxis(e2, -1, 0))
    (_, count), _ = lax.scan(body, (q0, count0), rest, unroll=8)
    return count


def psd_eigenvalues(G: jax.Array, digits: float) -> jax.Array:
    """Eigenvalues (descending) of symmetric positive semi-definite ``G`` (lower triangle).

    Multisection then bisection on ``log lambda``: one Sturm pass at ``m``
    log-spaced shifts brackets every eigenvalue in one grid cell (the counts of
    all shifts serve all eigenvalues), then each bracket is halved until its
    width leaves a relative error below ``10^-digits`` on ``sqrt(lambda)``.
    Eigenvalues below ``2^-64`` times the Gershgorin bound are returned as 0.
    """
    m = G.shape[-1]
    if m == 1:
        return jnp.maximum(G[..., 0], 0)
    _, d, e, _ = lax.linalg.tridiagonal(G, lower=True)
    ae = jnp.abs(e)
    zero = jnp.zeros_like(ae[..., :1])
    gersh = jnp.max(d + jnp.concatenate([ae, zero], -1) + jnp.concatenate([zero, ae], -1), axis=-1)
    scale = jnp.where(gersh > 0, gersh, 1.0)[..., None]
    d = d / scale
    e2 = (e / scale) ** 2
    tiny = jnp.finfo(G.dtype).tiny
    pivmin = (tiny * jnp.maximum(1.0, jnp.max(e2, axis=-1, initial=0.0)))[..., None]
    # Eigenvalues lie in [0, 1]; log(lambda) in [lo0, hi0] = [-64 ln 2, ln(1 + 2^-20)].
    lo0 = -_LOG2_RANGE * math.log(2.0)
    hi0 = math.log1p(2.0**-20)
    h = (hi0 - lo0) / (m + 1)
    grid = lo0 + h * jnp.arange(1, m + 1, dtype=d.dtype)  # m interior shifts
    counts = sturm_count(d, e2, jnp.broadcast_to(jnp.exp(grid), d.shape), pivmin)
    k = jnp.broadcast_to(jnp.arange(m), d.shape)
    # n_k = number of shifts with count <= k: lambda_k lies in [lo0 + n_k h, lo0 + (n_k+1) h].
    n_k = jnp.sum(counts[..., None, :] <= k[..., :, None], axis=-1).astype(d.dtype)
    lo = lo0 + n_k * h
    hi = lo + h
    # Midpoint of a final log-width w has error <= w / 4 on log sigma = log(lambda) / 2.
    bisections = max(1, math.ceil(math.log2(h / (4 * 10.0**-digits))))

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = sturm_count(d, e2, jnp.exp(mid), pivmin) > k  # lambda_k < exp(mid)
        return jnp.where(below, lo, mid), jnp.where(below, mid, hi)

    lo, hi = lax.fori_loop(0, bisections, bisect, (lo, hi))
    lam = jnp.where(lo > lo0, jnp.exp(0.5 * (lo + hi)), 0.0)  # below 2^-64: zero
    return (lam * scale)[..., ::-1]


def _sv_from_gram(J: jax.Array, how: str) -> jax.Array:
    wide = _wide_dtype(J.dtype)
    G = gram(J, wide, lower_only=how == "sturm")
    if how == "sturm":
        lam = psd_eigenvalues(G, sturm_digits(J.dtype))
    else:
        lam = jnp.linalg.eigvalsh(G)[..., ::-1]
    return jnp.sqrt(jnp.maximum(lam, 0)).astype(J.dtype)


def _sv_augmented(J: jax.Array) -> jax.Array:
    m, k = J.shape[-2:]
    zm = jnp.zeros(J.shape[:-2] + (m, m), J.dtype)
    zk = jnp.zeros(J.shape[:-2] + (k, k), J.dtype)
    Jt = jnp.swapaxes(J, -1, -2)
    A = jnp.concatenate(
        [jnp.concatenate([zm, J], axis=-1), jnp.concatenate([Jt, zk], axis=-1)], axis=-2
    )
    lam = jnp.linalg.eigvalsh(A)[..., ::-1]
    return jnp.maximum(lam[..., : min(m, k)], 0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def gram_singular_values(J: jax.Array, how: str) -> jax.Array:
    """Singular values ``(..., min(m, k))`` of real ``J (..., m, k)``, descending, by ``how``.

    ``"gram"``: ``eigvalsh`` of the Gram matrix in float64 (x64 enabled);
    ``"sturm"``: the same Gram, tridiagonalised, eigenvalues by Sturm bisection
    (:func:`psd_eigenvalues`); ``"augmented"``: ``eigvalsh([[0, J], [J^T, 0]])``
    in ``J``'s dtype (no squaring). Differentiable: ``d sigma_i = u_i^T dJ v_i``
    from a full SVD. No input checks (see :func:`jrnn.diagnostics.singular_values`).

    Example::

        >>> import jax.numpy as jnp
        >>> from jrnn.linalg import svd
        >>> svd.gram_singular_values(jnp.diag(jnp.array([1.0, 3.0, 2.0])), "augmented")
        Array([3., 2., 1.], dtype=float32)
    """
    return _sv_augmented(J) if how == "augmented" else _sv_from_gram(J, how)


@gram_singular_values.defjvp
def _gram_singular_values_jvp(how, primals, tangents):
    # d sigma_i = u_i^T dJ v_i (the SVD's own derivative; needs the vectors).
    (J,), (dJ,) = primals, tangents
    U, s, Vt = jnp.linalg.svd(J, full_matrices=False)
    ds = jnp.einsum("...ki,...kl,...il->...i", U, dJ, Vt)
    return gram_singular_values(J, how), ds.astype(s.dtype)
