"""Batched spectra of Jacobian stacks: singular values and eigenvalues, descending.

XLA's batched SVD is slow (LAPACK ``gesdd`` one matrix at a time on CPU, worse on
GPU), and the quick fix ``sqrt(eigvalsh(J^T J))`` squares the condition number:
in float32 it leaves an absolute error of ``eps_32 * sigma_max^2`` on
``sigma^2``, so a singular value ``10^-3 sigma_max`` is off by about 5%. Even a
float32 SVD has an absolute error near ``eps_32 * sigma_max`` (relative
``~5e-5`` at ``10^-3 sigma_max``). :func:`singular_values` therefore forms the
Gram matrix in float64 from the (exact) float32 entries, where squaring costs
only ``eps_64 (sigma_max / sigma)^2 ~ 1e-10`` at ``10^-3 sigma_max``, and then
avoids a full eigendecomposition:

1. ``G = J^T J`` in float64, lower triangle only (``syrk``,
   ``lax.linalg.symmetric_product``; products of float32 numbers are exact in
   float64);
2. Householder tridiagonalisation ``G = Q T Q^T`` (``lax.linalg.tridiagonal``,
   no eigenvectors);
3. all eigenvalues of ``T`` at once from Sturm counts (LDL^T pivots) in log
   space, so small eigenvalues get the same *relative* resolution as large
   ones (Kahan 1966; Demmel 1997, sec. 5.3.4): one multisection pass at ``m``
   log-spaced shifts places every eigenvalue in a cell of width
   ``ln(2^64) / (m + 1)``, then bisection halves each cell until
   ``sigma`` is resolved to ``2.5e-8`` relative (21 count passes for
   ``m = 128``, float32 output);
4. ``sigma = sqrt(lambda)`` cast back to the input dtype.

On a 2-core CPU this is 1.1-1.55x faster than ``jnp.linalg.svd(compute_uv=False)``
(run-to-run spread on a shared machine) while 300x more accurate (see
``experiments/benchmarks/spectra.py`` and ``BENCHMARKS.md``).

**When that holds.** The float64 Gram needs ``jax_enable_x64``; JAX disables
it by default. With x64 enabled, float32 input: ``method="auto"`` is this path
(relative error ``~5e-8`` on every ``sigma >= 1e-3 sigma_max``, against
``~1e-5`` for the float32 SVD). With x64 disabled, ``"auto"`` is the float32
SVD (absolute error ``~eps_32 sigma_max``, so relative ``~1e-5`` at
``1e-3 sigma_max``), and ``"sturm"`` / ``"gram"`` on float32 input raise
``ValueError``: their Gram would be float32, ``~100-1000x`` *less* accurate
than the SVD. Enable x64 (``jax.config.update("jax_enable_x64", True)``) for
the accurate path.

Non-finite input: a matrix with any NaN or inf entry has all-NaN singular
values and eigenvalues, whatever the method (a Sturm count would otherwise
return plausible numbers); see :mod:`jrnn.diagnostics.finite`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from jrnn.diagnostics.finite import finite, nan_unless

__all__ = ["SINGULAR_VALUE_METHODS", "eigenvalues", "singular_values"]

#: Accepted values of ``method`` in :func:`singular_values`.
SINGULAR_VALUE_METHODS = ("auto", "svd", "gram", "sturm", "augmented")

# Eigenvalues of the Gram matrix are searched on [2^-64, 1] * Gershgorin bound, in log space;
# the bisection stops at a relative error 10^-digits on sigma: 7.6 (2.5e-8, below half a
# float32 ulp) for float32 output, 15.7 for float64.
_LOG2_RANGE = 64
_DIGITS = {4: 7.6, 8: 15.7}


def _check_matrices(J, argument: str = "J", square: bool = False) -> jax.Array:
    J = jnp.asarray(J)
    if J.ndim < 2:
        raise ValueError(
            f"{argument} must be a matrix or a stack of matrices (..., m, k), got shape "
            f"{J.shape} (rank {J.ndim})."
        )
    if square and J.shape[-1] != J.shape[-2]:
        raise ValueError(f"{argument} must hold square matrices (..., n, n), got shape {J.shape}.")
    if not jnp.issubdtype(J.dtype, jnp.inexact):
        J = J.astype(jnp.result_type(float))
    return J


def _wide_dtype(dtype):
    """float64 when x64 is enabled (else the input dtype)."""
    return jnp.float64 if jax.config.read("jax_enable_x64") else dtype


def _gram(J: jax.Array, dtype, lower_only: bool = False) -> jax.Array:
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


def _sturm_count(d, e2, x, pivmin):
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


def _psd_tridiagonal_eigvalsh(G: jax.Array, digits: float) -> jax.Array:
    """Eigenvalues (descending) of symmetric positive semi-definite ``G`` (lower triangle).

    Multisection then bisection on ``log lambda``: one Sturm pass at ``m``
    log-spaced shifts brackets every eigenvalue in one grid cell (the counts of
    all shifts serve all eigenvalues), then each bracket is halved until its
    width leaves a relative error below ``10^-digits`` on ``sqrt(lambda)``.
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
    counts = _sturm_count(d, e2, jnp.broadcast_to(jnp.exp(grid), d.shape), pivmin)
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
        below = _sturm_count(d, e2, jnp.exp(mid), pivmin) > k  # lambda_k < exp(mid)
        return jnp.where(below, lo, mid), jnp.where(below, mid, hi)

    lo, hi = lax.fori_loop(0, bisections, bisect, (lo, hi))
    lam = jnp.where(lo > lo0, jnp.exp(0.5 * (lo + hi)), 0.0)  # below 2^-64: zero
    return (lam * scale)[..., ::-1]


def _sv_from_gram(J: jax.Array, how: str) -> jax.Array:
    wide = _wide_dtype(J.dtype)
    G = _gram(J, wide, lower_only=how == "sturm")
    if how == "sturm":
        digits = _DIGITS[8 if jnp.dtype(J.dtype).itemsize >= 8 else 4]
        lam = _psd_tridiagonal_eigvalsh(G, digits)
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
def _sv_eig(J: jax.Array, how: str) -> jax.Array:
    return _sv_augmented(J) if how == "augmented" else _sv_from_gram(J, how)


@_sv_eig.defjvp
def _sv_eig_jvp(how, primals, tangents):
    # d sigma_i = u_i^T dJ v_i (the SVD's own derivative; needs the vectors).
    (J,), (dJ,) = primals, tangents
    U, s, Vt = jnp.linalg.svd(J, full_matrices=False)
    ds = jnp.einsum("...ki,...kl,...il->...i", U, dJ, Vt)
    return _sv_eig(J, how), ds.astype(s.dtype)


def singular_values(J: jax.Array, *, method: str = "auto") -> jax.Array:
    """Singular values of a batch of matrices, descending.

    .. math::

       \\sigma_i(J) = \\sqrt{\\lambda_i(J^\\top J)}, \\qquad
       \\sigma_1 \\ge \\sigma_2 \\ge \\dots \\ge \\sigma_{\\min(m,k)} \\ge 0.

    Accuracy (needs x64): float32 input, ``method="sturm"`` or ``"gram"``
    (x64 enabled, so also ``"auto"``), gives a relative error ``<= 1e-5`` on
    every ``sigma >= 1e-3 sigma_max``
    (measured ``< 1e-7``: the float32 output rounding), because the Gram
    matrix and its eigenvalues are computed in float64 from the exact float32
    entries, and the Sturm bisection works on ``log lambda``. The error of a
    Gram-based method is ``~ n eps_wide (sigma_max / sigma)^2`` relative, so in
    float64 it is ``1e-10`` at ``10^-3 sigma_max`` and only values below
    ``~1e-6 sigma_max`` lose digits (those have absolute error
    ``~1e-8 sigma_max``, like any backward-stable method). Singular values
    below ``2^-32 sigma_max``-ish are returned as zero. With x64 disabled
    (JAX's default) there is no wider type: ``"auto"`` is the float32 SVD
    (relative error ``~eps_32 sigma_max / sigma``, measured ``~1e-5`` at
    ``10^-3 sigma_max``) and ``"sturm"`` / ``"gram"`` raise for float32 input.
    Non-finite input: every singular value of a matrix holding a NaN or inf
    is NaN (all methods).

    Args:
      J: ``(..., m, k)`` real matrices (e.g. from :func:`step_jacobians`).
      method:
        ``"auto"``: for float32 (or narrower) real input with x64 enabled,
        ``"sturm"`` on CPU and ``"gram"`` on accelerators (batched
        ``eigvalsh`` is fast there); otherwise ``"svd"`` (float64 input,
        where squaring into a wider type is impossible; x64 disabled;
        complex input).
        ``"svd"``: ``jnp.linalg.svd(compute_uv=False)`` in the input dtype.
        ``"gram"``: ``eigvalsh`` of the float64 Gram matrix.
        ``"sturm"``: float64 Gram, Householder tridiagonalisation, Sturm
        bisection of all eigenvalues in log space (no eigenvectors).
        ``"augmented"``: ``eigvalsh([[0, J], [J^T, 0]])`` (eigenvalues
        ``+-sigma``) in the input dtype: no squaring, SVD-like accuracy.

    Raises:
      ValueError: unknown ``method``; ``J`` not a (stack of) matrices;
        ``"sturm"`` / ``"gram"`` / ``"augmented"`` on complex input;
        ``"sturm"`` / ``"gram"`` on float32 (or narrower) input with x64
        disabled.

    Returns:
      ``(..., min(m, k))`` in ``J``'s dtype. Differentiable (``d sigma_i =
      u_i^T dJ v_i``; the derivative uses a full SVD).

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> jrnn.diagnostics.singular_values(jnp.diag(jnp.array([1.0, 3.0, 2.0])))
        Array([3., 2., 1.], dtype=float32)
    """
    if method not in SINGULAR_VALUE_METHODS:
        raise ValueError(f"method must be one of {SINGULAR_VALUE_METHODS}, got {method!r}.")
    J = _check_matrices(J)
    complex_input = jnp.issubdtype(J.dtype, jnp.complexfloating)
    if method == "auto":
        narrow = jnp.dtype(J.dtype).itemsize < 8
        if complex_input or not narrow or not jax.config.read("jax_enable_x64"):
            method = "svd"
        else:
            method = "sturm" if jax.default_backend() == "cpu" else "gram"
    if method != "svd" and complex_input:
        raise ValueError(f"method={method!r} needs real J, got dtype {J.dtype}; use 'svd'.")
    narrow = jnp.dtype(J.dtype).itemsize < 8
    if method in ("sturm", "gram") and narrow and not jax.config.read("jax_enable_x64"):
        raise ValueError(
            f"method={method!r} needs a float64 Gram matrix for {J.dtype} J, but "
            "jax_enable_x64 is disabled (a float32 Gram squares the condition number: "
            "~1e-3 relative error at 1e-3 sigma_max). Enable it with "
            "jax.config.update('jax_enable_x64', True), or use method='svd' or 'auto'."
        )
    if method == "svd":
        sv = jnp.linalg.svd(J, compute_uv=False)
    elif min(J.shape[-2:]) == 0:
        return jnp.zeros(J.shape[:-2] + (0,), J.dtype)
    else:
        sv = _sv_eig(J, method)
    return nan_unless(finite(J, batch_dims=J.ndim - 2), sv)


def eigenvalues(J: jax.Array) -> jax.Array:
    """Eigenvalues of a batch of square matrices, sorted by descending modulus.

    .. math::

       J v_i = \\mu_i v_i, \\qquad |\\mu_1| \\ge |\\mu_2| \\ge \\dots

    For a linear recurrence ``h_t = W h_{t-1}`` the ``log |mu_i(W)|`` are the
    Lyapunov exponents; a Jacobian's spectral radius ``|mu_1|`` bounds how fast
    a perturbation can grow asymptotically.

    Args:
      J: ``(..., n, n)`` real or complex.

    Returns:
      ``(..., n)`` complex; all NaN for a matrix with a NaN or inf entry.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> jrnn.diagnostics.eigenvalues(jnp.diag(jnp.array([0.5, -2.0, 1.0])))
        Array([-2. +0.j,  1. +0.j,  0.5+0.j], dtype=complex64)
    """
    J = _check_matrices(J, square=True)
    mu = jnp.linalg.eigvals(J)
    order = jnp.argsort(-jnp.abs(mu), axis=-1, stable=True)
    mu = jnp.take_along_axis(mu, order, axis=-1)
    return nan_unless(finite(J, batch_dims=J.ndim - 2), mu)
