"""Batched spectra of Jacobian stacks (singular values, eigenvalues) and their statistics.

XLA's batched SVD is slow (LAPACK ``gesdd`` one matrix at a time on CPU, worse on
GPU), and the quick fix ``sqrt(eigvalsh(J^T J))`` squares the condition number.
:func:`singular_values` therefore forms the Gram matrix in float64 from the
(exact) float32 entries and finds its eigenvalues by Sturm-count bisection in
log space (the kernel :mod:`jrnn.linalg.svd`): faster than
``jnp.linalg.svd(compute_uv=False)`` on CPU and far more accurate on small
singular values (``experiments/benchmarks/spectra.py``, BENCHMARKS.md).

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

**Along a trajectory.** :func:`singular_value_stats` streams the state through
one ``lax.scan``, forms the step Jacobians ``J_t`` a chunk of steps at a time,
applies :func:`singular_values` to each chunk and keeps only reductions
(per-step extremes and quantiles, the time-mean of ``log sigma_i`` with its
standard error), so its working memory does not grow with ``T``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jrnn import validation
from jrnn.cells.base import Cell
from jrnn.diagnostics._trajectory import (
    check_budget,
    choose_mode,
    chunk_length,
    jacobian_fn,
    map_sequences,
    one_carry,
    prepare,
    scan_chunks,
)
from jrnn.diagnostics.finite import finite, nan_unless
from jrnn.linalg.svd import gram_singular_values
from jrnn.unrolling import match_carry_dtype

__all__ = [
    "SINGULAR_VALUE_METHODS",
    "SV_STATS_MODES",
    "SingularValueStats",
    "eigenvalues",
    "singular_value_stats",
    "singular_values",
]

#: Accepted values of ``method`` in :func:`singular_values`.
SINGULAR_VALUE_METHODS = ("auto", "svd", "gram", "sturm", "augmented")

#: Accepted values of ``mode`` in :func:`singular_value_stats`.
SV_STATS_MODES = ("auto", "stacked", "chunked")

# Batch means for the standard error of a time average (as for the Lyapunov exponents).
_GROUPS = 20


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
        sv = gram_singular_values(J, method)
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


class SingularValueStats(NamedTuple):
    """Result of :func:`singular_value_stats` (one sequence; a batch adds a leading ``B``).

    ``T' = T - transient`` steps are summarised; ``S = cell.state_size``;
    ``q = len(quantiles)``. Singular values are gains per step (dimensionless);
    their logs are in nats per step.

    Fields:
      mean_log: ``(S,)`` ``(1/T') sum_t log sigma_i(J_t)`` for each index ``i``
        of the descending spectrum (``-inf`` if some ``sigma_i(J_t) = 0``).
      stderr: ``(S,)`` its standard error from ``M = min(20, T')`` batch means
        of ``L = T' // M`` consecutive steps (the first ``T' - M L`` steps are
        left out of the batches); NaN when ``M < 2``.
      sigma_max: ``(T',)`` ``sigma_1(J_t)``, or None with ``per_step=False``.
      sigma_min: ``(T',)`` ``sigma_S(J_t)``, or None.
      quantiles: ``(T', q)`` quantiles of ``{sigma_i(J_t)}_{i=1..S}`` at the
        requested levels, or None.
    """

    mean_log: jax.Array  # (S,)
    stderr: jax.Array  # (S,)
    sigma_max: jax.Array | None = None  # (T',)
    sigma_min: jax.Array | None = None  # (T',)
    quantiles: jax.Array | None = None  # (T', q)


def _check_quantiles(quantiles) -> tuple[float, ...]:
    """``quantiles`` as a tuple of floats in ``[0, 1]``; ValueError naming the bad entry."""
    if getattr(quantiles, "ndim", None) == 1:  # a numpy or jax vector of levels
        quantiles = list(quantiles)
    elif not isinstance(quantiles, Sequence) or isinstance(quantiles, str | bytes):
        raise ValueError(
            f"quantiles must be a sequence of levels in [0, 1], e.g. (0.1, 0.5, 0.9), got "
            f"{quantiles!r}."
        )
    return tuple(
        validation.check_number(q, f"quantiles[{i}]", low=0.0, high=1.0)
        for i, q in enumerate(quantiles)
    )


def _spectrum_quantiles(sv: jax.Array, levels: tuple[float, ...]) -> jax.Array:
    """``(..., S)`` descending -> ``(..., q)`` quantiles, linear interpolation between
    order statistics (numpy's default): position ``q (S - 1)`` in ascending order."""
    S = sv.shape[-1]
    asc = sv[..., ::-1]
    cols = []
    for q in levels:
        pos = q * (S - 1)
        i = min(int(math.floor(pos)), S - 1)
        j = min(i + 1, S - 1)
        frac = pos - i
        lo, hi = asc[..., i], asc[..., j]
        cols.append(lo if frac == 0 else lo + frac * (hi - lo))
    return jnp.stack(cols, axis=-1) if cols else jnp.zeros(sv.shape[:-1] + (0,), sv.dtype)


def _compensated_add(total, comp, x):
    """Kahan summation ``total + x`` (``comp`` carries the lost low-order part); an
    infinite or NaN total resets the compensation so ``-inf`` stays ``-inf``."""
    y = x - comp
    t = total + y
    comp = jnp.where(jnp.isfinite(t), (t - total) - y, 0)
    return t, comp


def singular_value_stats(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    carry=None,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    transient: int = 0,
    per_step: bool = True,
    method: str = "auto",
    sv_method: str = "auto",
    mode: str = "auto",
    memory_budget: int | None = None,
    chunk: int | None = None,
) -> SingularValueStats:
    """Singular values of every step Jacobian along a trajectory, reduced on the fly.

    .. math::

       J_t = \\frac{\\partial s_t}{\\partial s_{t-1}}, \\qquad
       \\sigma_1(J_t) \\ge \\dots \\ge \\sigma_S(J_t), \\qquad
       \\overline{\\log \\sigma_i} = \\frac{1}{T'} \\sum_{t=T_{tr}+1}^{T} \\log \\sigma_i(J_t)

    ``sigma_1(J_t) < 1`` at every step means every gradient through the
    recurrence vanishes geometrically (Pascanu, Mikolov & Bengio 2013);
    ``mean_log[0]`` bounds the largest (finite-time) Lyapunov exponent of the
    same steps from above (``log ||J_T ... J_1|| <= sum_t log sigma_1(J_t)``), and
    ``sum_i mean_log[i]`` is the time-mean of ``log |det J_t|``, the sum of all
    Lyapunov exponents. The result equals :func:`singular_values` of
    :func:`step_jacobians` (``method``, ``sv_method``) reduced afterwards, to
    float rounding, but the ``(T, S, S)`` stack is never formed.

    **Streaming.** One ``lax.scan`` carries the state; each chunk of ``chunk``
    steps forms its Jacobians (``vmap`` of the cell's analytic Jacobian, else
    ``jacfwd``), their singular values with the :func:`singular_values` kernel,
    and folds them into the running sums (float64 when x64 is enabled, else
    compensated summation), per-batch-mean sums and the per-step reductions.
    Working memory is ``O(B chunk S^2)`` plus ``O(B T' (q + 2))`` for the
    per-step outputs; with ``per_step=False`` nothing grows with ``T``.
    ``mode="stacked"`` is one chunk of all ``T'`` steps (fastest when it
    fits); ``"chunked"`` uses ``chunk`` steps (default: a quarter of
    ``memory_budget``); ``"auto"``
    stacks when ``3 B T' S^2`` bytes-per-entry fit ``memory_budget`` (default
    256 MiB, :data:`~jrnn.diagnostics.DEFAULT_MEMORY_BUDGET`), else
    chunks. ``T'`` need not be a multiple of ``chunk``.

    Quantiles interpolate linearly between the order statistics of the ``S``
    singular values of one step (numpy's default ``"linear"``): level ``q``
    sits at position ``q (S - 1)`` of the ascending spectrum, so ``0`` is
    ``sigma_S`` and ``1`` is ``sigma_1``. A step whose Jacobian holds a NaN or
    inf has NaN singular values (:func:`singular_values`), so NaN statistics.

    Args:
      cell, params, xs, carry: as in :func:`step_jacobians`; ``xs`` is
        ``(T, d)`` or ``(B, T, d)`` with ``T >= 1``.
      quantiles: levels in ``[0, 1]`` for the per-step quantiles (may be empty).
      transient: leading steps that only advance the state (not summarised);
        ``0 <= transient < T``.
      per_step: also return ``sigma_max``, ``sigma_min`` and ``quantiles`` for
        every step.
      method: Jacobian method (:func:`step_jacobians`).
      sv_method: ``method`` of :func:`singular_values`.
      mode: ``"auto"``, ``"stacked"`` or ``"chunked"`` (above).
      memory_budget: bytes for the ``"auto"`` rule and the default chunk.
      chunk: steps per chunk in ``"chunked"`` mode, ``>= 1``.

    Returns:
      :class:`SingularValueStats`, in the Jacobians' dtype.

    Raises:
      ValueError: ``xs`` with ``T = 0`` or of the wrong shape (and what
        :func:`jrnn.unroll` rejects for ``cell``, ``params``, ``carry``);
        ``quantiles`` not a sequence of levels in ``[0, 1]``; ``transient``
        out of ``[0, T)``; ``chunk < 1``; unknown ``mode``, ``method`` or
        ``sv_method``; a bad ``memory_budget``; whatever
        :func:`singular_values` raises for ``sv_method`` (e.g. ``"sturm"`` on
        float32 with x64 disabled). TypeError: ``chunk`` / ``transient`` not
        an integer, ``per_step`` not a bool.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (48, 1))
        >>> st = jrnn.diagnostics.singular_value_stats(cell, params, xs, mode="chunked", chunk=16)
        >>> st.mean_log.shape, st.stderr.shape, st.sigma_max.shape, st.quantiles.shape
        ((8,), (8,), (48,), (48, 3))
        >>> bool(jnp.all(st.sigma_max >= st.quantiles[:, -1]))
        True
    """
    batch = prepare(cell, params, xs, carry)
    xs = jnp.asarray(xs)
    T, S = xs.shape[-2], cell.state_size
    if T == 0:
        raise ValueError(
            f"xs must hold at least one step, got shape {tuple(xs.shape)} (T = 0): there is "
            "no Jacobian to summarise."
        )
    levels = _check_quantiles(quantiles)
    transient = validation.check_int(transient, "transient", low=0)
    if transient >= T:
        raise ValueError(
            f"transient must be in [0, T) = [0, {T}) (at least one step to summarise), got "
            f"{transient}."
        )
    per_step = validation.check_bool(per_step, "per_step")
    jac = jacobian_fn(cell, params, method)  # validates method
    if sv_method not in SINGULAR_VALUE_METHODS:
        raise ValueError(f"sv_method must be one of {SINGULAR_VALUE_METHODS}, got {sv_method!r}.")
    if mode not in SV_STATS_MODES:
        raise ValueError(f"mode must be one of {SV_STATS_MODES}, got {mode!r}.")
    budget = check_budget(memory_budget)
    if chunk is not None:
        chunk = validation.check_int(chunk, "chunk", low=1)

    T_run = T - transient
    B = 1 if batch is None else batch
    x_sd = jax.ShapeDtypeStruct(xs.shape[-1:], xs.dtype)
    u_sd = jax.eval_shape(lambda x: cell.input_map(params, x), x_sd)

    def start(c):  # the carry in the recurrence's dtypes (promoted once, up front)
        c = cell.initial_carry(params) if c is None else c
        return match_carry_dtype(cell, params, c, u_sd)

    dtype = jax.eval_shape(lambda c, u: jac(start(c), u), one_carry(carry, batch), u_sd).dtype
    itemsize = jnp.dtype(dtype).itemsize
    mode = choose_mode(mode, T=T_run, S=S, k=S, batch=B, itemsize=itemsize, memory_budget=budget)
    if mode == "stacked":
        chunk = T_run
    elif chunk is None:
        chunk = chunk_length(S, itemsize, B, budget, 1, T_run)
    chunk = min(chunk, T_run)
    acc = jnp.float64 if jax.config.read("jax_enable_x64") else dtype
    M = min(_GROUPS, T_run)
    L = T_run // M
    drop = T_run - M * L

    def one(x, c):
        c = start(c)

        def advance(cc, x_t):
            return cell.recur(params, cc, cell.input_map(params, x_t))[0], None

        if transient:
            c = lax.scan(advance, c, x[:transient])[0]

        def fn(st, xb):  # xb (chunk, d)
            cc, t0, total, comp, groups, gcomp = st
            tb = t0 + jnp.arange(xb.shape[0])  # step indices in 0..T'-1
            ub = jax.vmap(lambda x_t: cell.input_map(params, x_t))(xb)
            c_new, prev = lax.scan(lambda a, u: (cell.recur(params, a, u)[0], a), cc, ub)
            sv = singular_values(jax.vmap(jac)(prev, ub), method=sv_method)  # (chunk, S)
            logs = jnp.log(sv).astype(acc)
            total, comp = _compensated_add(total, comp, jnp.sum(logs, axis=0))
            g = jnp.where(tb >= drop, (tb - drop) // L, M)  # M: not in any batch
            part = jnp.zeros((M, S), acc).at[g].add(logs, mode="drop")
            groups, gcomp = _compensated_add(groups, gcomp, part)
            if per_step:
                out = (sv[:, 0], sv[:, -1], _spectrum_quantiles(sv, levels))
            else:
                out = ()
            return (c_new, t0 + xb.shape[0], total, comp, groups, gcomp), out

        zS, zMS = jnp.zeros((S,), acc), jnp.zeros((M, S), acc)
        st0 = (c, jnp.zeros((), jnp.int32), zS, zS, zMS, zMS)
        st, out = scan_chunks(fn, st0, x[transient:], chunk)
        _, _, total, _, groups, _ = st
        mean_log = (total / T_run).astype(dtype)
        if M >= 2:
            means = groups / L
            stderr = jnp.std(means, axis=0, ddof=1) / jnp.sqrt(jnp.asarray(M, acc))
        else:
            stderr = jnp.full((S,), jnp.nan, acc)
        per = out if per_step else (None, None, None)
        return SingularValueStats(mean_log, stderr.astype(dtype), *per)

    return map_sequences(one, batch, xs, carry)
