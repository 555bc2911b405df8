"""Lyapunov spectra of a driven recurrent network by the Benettin/QR method.

.. math::

   J_t Q_{t-1} = Q_t R_t, \\qquad
   \\lambda_i = \\frac{1}{T} \\sum_{t=1}^{T} \\log |(R_t)_{ii}|

(Benettin, Galgani, Giorgilli & Strelcyn 1980; Shimada & Nagashima 1979). The
exponents are the asymptotic growth rates of ``||d s_T / d s_t||`` along
nested subspaces: ``lambda_1 < 0`` means every gradient through the recurrence
vanishes exponentially, ``lambda_1 > 0`` means some explode (Engelken, Wolf &
Abbott 2023). The computation is differentiable, so the spectrum can serve as a
training penalty ("gradient flossing", Engelken 2023).

:func:`lyapunov_spectrum` reads as validate, plan, run, summarise:
:func:`_validate` checks the arguments eagerly, :func:`_plan` fixes the static
choices (mode, QR chain, chunk, block tolerance), the runners of
:mod:`jrnn.diagnostics._benettin` stream the state and the QR chain through one
``lax.scan`` (the trajectory kernel :mod:`jrnn.diagnostics._trajectory`, the QR
chains :mod:`jrnn.linalg.qr`), and :func:`_summarise` turns the sums of
``log |diag R|`` into the exponents with their error bars and trust checks.

Scale: in ``"chunked"`` and ``"tangent"`` mode memory does not grow with ``T``;
the stacked ``(T, S, S)`` path is kept where it fits a memory budget. Speed: the
Jacobians are computed for a whole chunk at once (:func:`step_jacobians`); only
the thin chain of QR factorisations is sequential. From ``S = 128`` states the
default chain keeps each Householder QR in LAPACK's compact form and applies it
to the next Jacobian with ``ormqr`` instead of forming ``Q`` (``orgqr``) and
multiplying: the same algorithm with one product per step instead of two
(timings: BENCHMARKS.md); below, the explicit chain (``ormqr``'s BLAS threads
stall on shared cores, :data:`COMPACT_MIN_STATE`). ``qr="mixed"`` runs the
chain in float64 on float32 Jacobians (exact to float64 rounding for the given
Jacobians). The interval between QRs can be adaptive (opt-in,
``reorth_every="adaptive"``, :func:`jrnn.diagnostics._benettin.run_adaptive`:
grown while the measured block error allows, failing blocks redone step by
step); a fixed ``reorth_every = r``
re-orthonormalises once per ``r`` steps; each block is checked against the
Householder error bound and redone step by step where it fails, so blocking
never silently loses accuracy. CholeskyQR2 (Yamamoto et al. 2015) is available
as ``qr="cholesky"``. On the CPU the chain is LAPACK-bound (``geqrf`` +
``ormqr``); where several processes share few cores, run it under
:func:`jrnn.host.lapack_threads` ``(1)`` (BENCHMARKS.md).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import host, validation
from jrnn.cells.base import Cell
from jrnn.diagnostics._benettin import Plan, Run, run
from jrnn.diagnostics._dimension import _entropy_rate, kaplan_yorke_dimension
from jrnn.diagnostics._errors import (
    batch_means_stderr,
    roundoff_floor,
    start_up_transient,
    warn_sum_rule,
)
from jrnn.diagnostics._trajectory import (
    check_budget,
    check_phases,
    choose_mode,
    chunk_length,
    inputs,
    jacobian_fn,
    map_sequences,
    prepare,
)
from jrnn.linalg.qr import HAS_ORMQR, adaptive_intervals, block_tolerance

__all__ = [
    "LyapunovSpectrum",
    "QR_METHODS",
    "kaplan_yorke_dimension",
    "lyapunov_spectrum",
]

#: The adaptive choice of ``reorth_every`` in :func:`lyapunov_spectrum` (opt-in).
ADAPTIVE = "adaptive"

#: Smallest state size at which ``qr="auto"`` / ``"mixed"`` take the compact (``ormqr``)
#: chain. Below it LAPACK's ``geqrf`` / ``orgqr`` run unblocked (level-2 code, no BLAS
#: threads; crossover 128) while ``ormqr`` is blocked from 33 columns on and hands its
#: ``gemm`` to OpenBLAS's threads, which busy-wait where the cores are shared: the compact
#: chain measured 12-46x slower than the explicit one at S = 64 on a loaded 2-core CPU and
#: equal to it with one BLAS thread (:func:`jrnn.host.lapack_threads`; BENCHMARKS.md).
COMPACT_MIN_STATE = 128

#: Accepted values of ``qr`` in :func:`lyapunov_spectrum`.
QR_METHODS = ("auto", "compact", "cholesky", "householder", "mixed")


class LyapunovSpectrum(NamedTuple):
    """Result of :func:`lyapunov_spectrum` (one sequence; a batch adds ``B``).

    Fields:
      exponents: ``(k,)`` descending, natural log per step (nats / step).
      local: ``(T', k)`` local exponents, ``log |diag R| / (steps in block)``
        per re-orthonormalisation block after the transient and warmup
        (``T' = ceil((T - transient - warmup) / reorth_every)``), in Benettin
        column order.
      kaplan_yorke_dimension: ``()`` ``j + sum_{i<=j} lambda_i / |lambda_{j+1}|``;
        NaN where undetermined (see :func:`kaplan_yorke_dimension`) or where it
        would use an ``unresolved`` exponent.
      entropy_rate: ``()`` sum of the positive exponents (Pesin's bound on
        the Kolmogorov-Sinai entropy rate, nats per step); NaN when ``k < S``
        and ``lambda_k > 0`` (positive exponents may be missing).
      stderr: ``(k,)`` standard error of each exponent from 20 contiguous
        batch means of the local exponents that cover the same steps as the
        mean (adaptive interval: batches of whole blocks, weighted by their
        steps; NaN with fewer than 2 blocks). A start-up transient inflates it
        and biases the mean: see ``warmup_needed``.
      unresolved: ``(k,)`` bool, exponents below the round-off floor of the
        chain's precision (or not finite): ``0.5 log(eps) + lambda_1`` for a
        float32 chain (where its bias starts to exceed the error bar),
        ``log(eps) + lambda_1`` for float64.
      sum_rule_residual: ``()`` ``sum_i lambda_i - mean_t log |det J_t|`` when
        ``k = S`` (zero up to rounding), else NaN.
      stationary: ``()`` bool, True when the trajectory did not move over the
        averaged steps (a fixed point: the exponents are the fixed point's).
      final_frame: ``(S, k)`` the frame ``Q_T`` (continue a run with ``Q0=``).
      final_carry: the carry ``s_T`` (continue a run with ``carry=``).
      reorth_interval: ``()`` steps per QR factorisation actually used after the
        transient (``reorth_every`` when fixed; the mean adaptive interval,
        redone blocks included, with ``reorth_every="adaptive"``).
      warmup_needed: ``()`` int, 0 when the averaged steps hold no start-up
        transient; else the steps of one (MSER truncation, White 1997) that
        move some exponent by more than 4 of its error bars: rerun with
        ``warmup`` (or ``transient``) at least this large, or longer.
    """

    exponents: jax.Array  # (k,)
    local: jax.Array  # (T', k)
    kaplan_yorke_dimension: jax.Array  # ()
    entropy_rate: jax.Array  # ()
    stderr: jax.Array | None = None  # (k,)
    unresolved: jax.Array | None = None  # (k,) bool
    sum_rule_residual: jax.Array | None = None  # ()
    stationary: jax.Array | None = None  # () bool
    final_frame: jax.Array | None = None  # (S, k)
    final_carry: object = None  # carry pytree
    reorth_interval: jax.Array | None = None  # () steps per QR actually used
    warmup_needed: jax.Array | None = None  # () int


def _frame_dtype(dtype, qr: str):
    if qr == "mixed" and jnp.dtype(dtype) == jnp.float32 and jax.config.read("jax_enable_x64"):
        return jnp.dtype(jnp.float64)  # float64 chain on float32 Jacobians / tangents
    return jnp.dtype(dtype)


def _stable_sum(x: jax.Array) -> jax.Array:
    """``sum(x, axis=0)`` in float64 when x64 is on, else two-level (error ~ sqrt(n) eps)."""
    if jax.config.read("jax_enable_x64"):
        return jnp.sum(x.astype(jnp.float64), axis=0)
    n = x.shape[0]
    m = max(1, int(n**0.5))
    pad = (-n) % m
    x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    return jnp.sum(jnp.sum(x.reshape((-1, m) + x.shape[1:]), axis=1), axis=0)


def _check_frame(Q0, S: int, k: int | None, batch: int | None):
    """Validates ``Q0`` eagerly (shape; orthonormality when its values are concrete)."""
    Q0 = jnp.asarray(Q0)
    ok_shapes = [(S, Q0.shape[-1])] + ([(batch, S, Q0.shape[-1])] if batch is not None else [])
    if Q0.ndim < 2 or tuple(Q0.shape) not in ok_shapes or Q0.shape[-1] < 1:
        exp = f"(S, k) = ({S}, k)" + (f" or (B, S, k) = ({batch}, {S}, k)" if batch else "")
        raise ValueError(f"Q0 must have shape {exp} with 1 <= k <= {S}, got {tuple(Q0.shape)}.")
    if Q0.shape[-1] > S:
        raise ValueError(f"Q0 must have at most S = {S} columns, got {Q0.shape[-1]}.")
    if k is not None and Q0.shape[-1] != k:
        raise ValueError(f"k={k} does not match Q0's {Q0.shape[-1]} columns; pass one of them.")
    if not isinstance(Q0, jax.core.Tracer):
        # In NumPy: under an enclosing jit, jnp ops on a concrete Q0 would be staged.
        Qn = np.asarray(Q0)
        G = np.einsum("...ji,...jk->...ik", Qn, Qn)
        err = float(np.max(np.abs(G - np.eye(G.shape[-1]))))
        tol = 100 * float(jnp.finfo(Q0.dtype).eps) * S
        if not err <= tol:
            raise ValueError(
                f"Q0 must have orthonormal columns (max |Q0^T Q0 - I| <= {tol:.1e}), got "
                f"{err:.2e}; orthonormalise it with jnp.linalg.qr(Q0)[0]."
            )
    return Q0


def lyapunov_spectrum(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    carry=None,
    k: int | None = None,
    reorth_every: int | str = 1,
    reorth_tol: float | None = None,
    max_reorth_every: int = 32,
    warmup: int = 0,
    transient: int = 0,
    Q0: jax.Array | None = None,
    method: str = "auto",
    qr: str = "auto",
    mode: str = "auto",
    memory_budget: int | None = None,
    chunk: int | None = None,
    key: jax.Array | None = None,
) -> LyapunovSpectrum:
    """The ``k`` leading Lyapunov exponents of the state dynamics driven by ``xs``.

    .. math::

       J_t Q_{t-1} = Q_t R_t, \\quad Q_0^\\top Q_0 = I_k, \\qquad
       \\lambda_i = \\frac{1}{T - T_{tr} - T_w} \\sum_{t > T_{tr} + T_w} \\log |(R_t)_{ii}|

    (nats per step; Benettin et al. 1980). The first ``transient`` steps advance
    only the state (no tangent work), the next ``warmup`` steps align ``Q`` with
    the dynamics without being averaged, the rest are averaged.

    **Memory and modes.** ``mode="stacked"`` forms all ``(T, S, S)`` Jacobians
    at once (fastest for short runs); ``"chunked"`` streams the state and the
    QR chain over time and forms the Jacobians for ``chunk`` steps at a time
    (memory ``O(chunk S^2)``, independent of ``T``); ``"tangent"`` never forms
    ``J_t`` and applies the cell's tangent map to the frame, ``J_t Q`` in
    ``O(S^2 k)`` per step (:func:`jrnn.diagnostics.tangent_map`; cells
    without ``tangent`` use ``jax.linearize``). ``"auto"`` takes ``"tangent"``
    when ``4 k <= S``, else ``"stacked"`` when ``3 B T S^2`` bytes-per-entry fit
    ``memory_budget`` (default 256 MiB, :data:`~jrnn.diagnostics.DEFAULT_MEMORY_BUDGET`),
    else ``"chunked"`` with chunks of a quarter of the budget. Every mode gives
    the same result to float rounding.

    **Adaptive interval (opt-in).** ``reorth_every="adaptive"``
    re-orthonormalises every ``r = 2^i <= max_reorth_every`` steps and adapts ``r``
    after every QR from the measured block error bound (below): ``r`` grows while
    the doubled block is predicted to stay an e-fold under ``reorth_tol``, and a
    block over it is thrown away and redone one QR per step (the every-step
    chain), so each block's ``log |R_jj|`` carries a relative error of at most
    ``reorth_tol`` and each exponent at most ``reorth_tol`` per step on top of the
    every-step chain's own rounding. ``r`` grows where the ``k`` exponents are
    close (``k << S``, the top of a spectrum: intervals of 8-32) and stays near 1
    for full spectra spread over ``~log(tol / eps)`` nats per step (strongly
    chaotic or saturated networks). The frame is propagated with the tangent map
    (``mode="tangent"``) or the per-step Jacobian (other modes). ``local`` then
    holds each step's block mean; ``reorth_interval`` the mean interval used.
    Under differentiation the every-step chain runs (values and derivatives).
    ``stderr`` then comes from batches of whole blocks weighted by their steps
    (calibrated: the spread over 48 trajectories is 1.0-1.1 error bars with
    blocks of 32 steps and batches of 15).
    ``reorth_every=1`` (the default) is the every-step chain (``local`` per step,
    as needed by finite-time exponents). The adaptive interval is opt-in, by
    measurement (BENCHMARKS.md, this loaded 2-core CPU): it pays for the top of a
    spectrum (``k << S``: intervals 23-25, 1.3-1.4x the chain's speed at N = 64,
    k = 8 and N = 256, k = 32) and in float64 (intervals 1.3-2 on full spectra:
    1.2-3x at N = 32-256, 1.9x at N = 2048) but not for full float32 spectra
    (interval 1.0 at N = 512), it compiles 25-35% longer (N = 8, k = 2:
    9.0 / 13.3 s against 7.3 / 9.7 s), which short runs and the test suite do
    not recover, and under ``jax.vmap`` its decisions become selects that run the
    QR every step (8 vmapped nets, N = 32, k = 1, T = 1000: 1.03 s against
    0.30 s for the chain).

    **Blocks.** With a fixed ``reorth_every = r > 1`` the product of ``r`` Jacobians is
    applied before each QR; in exact arithmetic ``diag R`` of the block is the
    product of the per-step diagonals, but the block has condition
    ``~exp(r (lambda_1 - lambda_k))``. Each block is checked (Householder QR is
    column-wise backward stable: ``R_jj`` carries a relative error
    ``~eps ||A_j|| / |R_jj|``); a block whose bound exceeds ``1e-8`` (float64
    chain) or ``1e-5`` (float32), or is not finite, is redone one step at a
    time. The check is one decision for all trajectories of a batch; under
    ``jax.vmap`` it becomes a select that runs both branches, so pass
    trajectories as a ``(B, T, d)`` batch rather than vmapping when ``r > 1``.

    **Accuracy.** A float32 chain resolves exponents to about ``1e-5`` on
    non-chaotic networks but only to ~``1e-3`` on chaotic ones (``lambda_1 > 0``:
    the tail of a float32 spectrum of a g = 2 tanh net is off by ~1.4e-3 from a
    float64 run). Use ``qr="mixed"`` (float64 chain on float32 Jacobians, with
    x64 enabled) or float64 params where that matters. ``stderr`` is the
    statistical error of the time average; ``unresolved`` flags exponents below
    the round-off floor: ``log(eps) + lambda_1`` (about ``-36 + lambda_1`` per
    step) in float64, which QR cannot resolve, and ``0.5 log(eps) + lambda_1``
    (about ``-8 + lambda_1``) in float32: a float32 chain biases the tail
    upwards well above the QR floor (tanh, g = 5, N = 256: +0.03 at
    ``lambda = -8.7`` rising to +3.6 nats at the bottom, 46 exponents off by
    more than 0.1 while only 8 were below ``log(eps) + lambda_1``). A large
    ``sum_rule_residual`` (above ``1e-3 (1 + |mean log|det J||)``) is warned
    about (``RuntimeWarning``). **The cure is** ``qr="mixed"`` **with**
    ``jax.config.update("jax_enable_x64", True)``: the chain then runs in
    float64 on the float32 Jacobians and the tail matches a float64 run.

    **Trust checks.** ``stationary`` is True where the averaged trajectory never
    moved (``max_t ||s_t - s_{t-1}||_inf <= 10 eps max(1, ||s||_inf)``): the
    exponents are then those of a fixed point, not of an attractor. An
    autonomous tanh network without bias started from the zero carry sits on
    the fixed point ``h = 0`` for ever; start it from a random state, e.g.
    ``carry=0.5 * jax.random.normal(key, (n,))``, and use ``transient`` steps.
    ``sum_rule_residual`` (``k = S``) is ``sum_i lambda_i - mean_t log|det J_t|``,
    zero up to rounding.

    Args:
      cell, params, xs, carry: as in :func:`step_jacobians`; ``xs`` is
        ``(T, d)`` or ``(B, T, d)`` (trajectories are processed together).
      k: number of exponents, ``1 <= k <= S`` (default ``S = cell.state_size``,
        or ``Q0``'s column count).
      reorth_every: a fixed number of steps between QRs (default 1) or ``"adaptive"``;
        re-orthonormalisations (checked blocks, above; 1 = the every-step chain).
      reorth_tol: accepted block error bound (relative error of ``R_jj`` per
        block), ``> 0`` and finite; default ``1e-8`` (float64 chain) / ``1e-5``
        (float32). Used by the adaptive interval and the fixed-block checks.
      max_reorth_every: largest adaptive interval (rounded down to a power of
        two), an integer ``>= 1``.
      warmup: steps after the transient that align ``Q`` but are not averaged;
        ``0 <= warmup < T - transient``.
      transient: leading steps that advance the state only; ``0 <= transient < T``.
      Q0: initial frame ``(S, k)`` or ``(B, S, k)`` with orthonormal columns
        (continuation: pass the ``final_frame`` and ``final_carry`` of a previous
        segment; the segments then equal one run to rounding).
      method: Jacobian method (see :func:`step_jacobians`).
      qr: ``"compact"`` (Householder QR kept in compact form and applied with
        ``ormqr``; derivatives through the explicit chain), ``"householder"``
        (``jnp.linalg.qr``, ``Q`` formed each step), ``"cholesky"``
        (CholeskyQR2 with a Householder fallback), ``"mixed"`` (the chain in
        float64 when the inputs are float32 and x64 is enabled), or ``"auto"``
        (``"compact"`` for formed Jacobians of ``S >= 128`` states,
        ``"householder"`` below and in tangent mode: LAPACK's blocked ``ormqr``
        hands even small products to OpenBLAS's threads, which stall on shared
        cores, :data:`COMPACT_MIN_STATE`).
      mode: ``"auto"``, ``"stacked"``, ``"chunked"`` or ``"tangent"`` (above).
      memory_budget: bytes for the ``"auto"`` rule and the chunk size. The rule
        sees the batch axis of ``xs`` only, not an enclosing ``jax.vmap`` (seeds):
        there divide the budget by the vmapped size or fix ``mode`` (as
        :func:`jrnn.diagnostics.snapshot` does, ``"tangent"``).
      chunk: steps per chunk in ``"chunked"`` mode (a multiple of
        ``reorth_every``; default from ``memory_budget``).
      key: PRNG key for the initial orthonormal ``Q_0`` when ``k < S`` and no
        ``Q0`` is given (default ``jax.random.key(0)``); ``k = S`` starts from
        the identity.

    Returns:
      :class:`LyapunovSpectrum`. Differentiable with respect to ``params``.

    Raises:
      ValueError: ``xs`` with ``B = 0`` or ``T = 0``; ``k`` out of ``[1, S]``,
        ``transient`` / ``warmup`` out of range, a ``Q0`` of the wrong shape or
        not orthonormal, unknown ``qr`` / ``mode``, bad ``chunk`` /
        ``memory_budget`` / ``reorth_every`` (neither an integer ``>= 1`` nor
        ``"adaptive"``), ``reorth_tol <= 0`` or not finite, ``max_reorth_every < 1``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(16, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = 0.1 * jax.random.normal(jax.random.key(1), (200, 1))
        >>> spec = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, warmup=50)
        >>> spec.exponents.shape, spec.local.shape, spec.stderr.shape
        ((16,), (150, 16), (16,))
        >>> bool(spec.reorth_interval >= 1)
        True
    """
    args = _validate(
        cell,
        params,
        xs,
        carry,
        k=k,
        reorth_every=reorth_every,
        reorth_tol=reorth_tol,
        max_reorth_every=max_reorth_every,
        warmup=warmup,
        transient=transient,
        Q0=Q0,
        method=method,
        qr=qr,
        memory_budget=memory_budget,
        chunk=chunk,
    )
    if key is not None:
        validation.check_key(key, "key")
    xs = jnp.asarray(xs)
    plan, dtype, fdtype = _plan(cell, params, xs, args, qr=qr, mode=mode, method=method)
    us, c0, F0 = _start(cell, params, xs, carry, args, dtype, fdtype, key)
    raw = run(cell, plan, params, us, c0, F0)
    out = _summarise(raw, args, plan, dtype, fdtype)
    if plan.sum_rule:
        warn_sum_rule(out.sum_rule_residual, raw.logdet / (args.T - args.transient - args.warmup))
    if args.batch is None:
        out = jax.tree_util.tree_map(lambda a: a[0], out)
    return out


class _Args(NamedTuple):
    """The validated arguments of :func:`lyapunov_spectrum`."""

    batch: int | None  # B, or None for one sequence
    T: int
    S: int
    k: int
    Q0: jax.Array | None  # (S, k) or (B, S, k), checked
    r: int  # reorth_every (1 when adaptive: one log row per step)
    adaptive: bool
    tol: float | None  # reorth_tol
    r_max: int  # max_reorth_every
    transient: int
    warmup: int
    budget: int  # memory_budget in bytes
    chunk: int | None


def _validate(
    cell,
    params,
    xs,
    carry,
    *,
    k,
    reorth_every,
    reorth_tol,
    max_reorth_every,
    warmup,
    transient,
    Q0,
    method,
    qr,
    memory_budget,
    chunk,
) -> _Args:
    """Every eager check of :func:`lyapunov_spectrum`, in the order the errors surface."""
    batch = prepare(cell, params, xs, carry)
    T, S = jnp.shape(xs)[-2], cell.state_size
    if batch == 0 or T == 0:
        raise ValueError(f"xs must hold at least one {'sequence' if batch == 0 else 'step'}, "
                         f"got shape {tuple(jnp.shape(xs))}.")
    if Q0 is not None:
        Q0 = _check_frame(Q0, S, k if k is None else validation.check_int(k, "k", low=1), batch)
        k = Q0.shape[-1]
    k = S if k is None else validation.check_int(k, "k", low=1)
    if k > S:
        raise ValueError(f"k must be at most the state size {S}, got {k}.")
    adaptive = isinstance(reorth_every, str)
    if adaptive and reorth_every != ADAPTIVE:
        raise ValueError(
            f"reorth_every must be an integer >= 1 or {ADAPTIVE!r}, got {reorth_every!r}."
        )
    r = 1 if adaptive else validation.check_int(reorth_every, "reorth_every", low=1)
    tol = reorth_tol
    if tol is not None:
        tol = validation.check_number(tol, "reorth_tol", low=0.0, low_open=True)
    r_max = validation.check_int(max_reorth_every, "max_reorth_every", low=1)
    r_max = max(adaptive_intervals(r_max))
    transient, warmup = check_phases(T, transient=transient, warmup=warmup)
    if qr not in QR_METHODS:
        raise ValueError(f"qr must be one of {QR_METHODS}, got {qr!r}.")
    jacobian_fn(cell, params, method)  # validate eagerly
    budget = check_budget(memory_budget)
    if chunk is not None:
        chunk = validation.check_int(chunk, "chunk", low=1)
        if chunk % r:
            raise ValueError(f"chunk must be a multiple of reorth_every={r}, got {chunk}.")
    return _Args(batch, T, S, k, Q0, r, adaptive, tol, r_max, transient, warmup, budget, chunk)


def _plan(cell: Cell, params, xs, a: _Args, *, qr: str, mode: str, method: str):
    """The static choices: ``(Plan, dtype of the Jacobians, dtype of the frame)``."""
    u_dt = jax.eval_shape(lambda x: cell.input_map(params, x), xs.reshape(-1, xs.shape[-1])[0])
    dtype = jnp.result_type(u_dt.dtype, *jax.tree_util.tree_leaves(params))  # Python scalars too
    fdtype = _frame_dtype(dtype, qr)
    itemsize = jnp.dtype(dtype).itemsize
    T_run, B = a.T - a.transient, 1 if a.batch is None else a.batch
    mode = choose_mode(
        mode, T=T_run, S=a.S, k=a.k, batch=B, itemsize=itemsize, memory_budget=a.budget
    )
    chain = {"auto": "compact", "mixed": "compact"}.get(qr, qr)
    if qr in ("auto", "mixed") and a.S < COMPACT_MIN_STATE:
        chain = "householder"  # ormqr alone would hand small products to BLAS threads
    if (mode == "tangent" or a.adaptive) and qr in ("auto", "mixed", "compact"):
        chain = "householder"  # the tangent map and the adaptive chain need Q itself
    if chain == "compact" and not HAS_ORMQR:
        if qr == "compact":
            raise ValueError(
                "qr='compact' needs jax.lax.linalg.ormqr (a newer jax); use qr='householder'."
            )
        chain = "householder"
    chunk = a.chunk
    if a.adaptive:
        chunk = None
    elif mode == "stacked":
        chunk = -(-T_run // a.r) * a.r
    elif mode == "chunked" and chunk is None:
        chunk = chunk_length(a.S, itemsize, B, a.budget, a.r, T_run)
    plan = Plan(
        variant="tangent" if mode == "tangent" else "jacobian",
        chain=chain,
        r=a.r,
        tol=block_tolerance(fdtype) if a.tol is None else a.tol,
        chunk=chunk or a.r,
        transient=a.transient,
        warmup=a.warmup,
        identity_start=a.Q0 is None and a.k == a.S,
        sum_rule=a.k == a.S,
        jac_method=method,
        adaptive=a.adaptive,
        r_max=a.r_max,
    )
    return plan, dtype, fdtype


def _start(cell: Cell, params, xs, carry, a: _Args, dtype, fdtype, key):
    """Time-major inputs ``(T, B, ...)``, the batched carry and the initial frame ``(B, S, k)``."""
    us, c0 = map_sequences(lambda x, c: inputs(cell, params, x, c), a.batch, xs, carry)
    if a.batch is None:
        us, c0 = us[None], jax.tree_util.tree_map(lambda v: v[None], c0)
    S, k = a.S, a.k
    if a.Q0 is not None:
        F0 = a.Q0.astype(fdtype)
    elif k == S:
        F0 = jnp.eye(S, dtype=fdtype)
    else:
        key = jax.random.key(0) if key is None else key
        # The barrier makes the QR of Q_0 wait for the inputs: independent LAPACK calls
        # that XLA may run concurrently can deadlock jaxlib 0.10's CPU thread pool
        # (README, Known issues); ordered after them it never overlaps the caller's init.
        Z, us = host.together((jax.random.normal(key, (S, k), dtype), us))
        F0 = jnp.linalg.qr(Z)[0].astype(fdtype)
    F0 = jnp.broadcast_to(F0, (us.shape[0], S, k))
    return jnp.moveaxis(us, 1, 0), c0, F0


def _summarise(raw: Run, a: _Args, plan: Plan, dtype, fdtype) -> LyapunovSpectrum:
    """Exponents (descending), error bars and trust checks from the runner's sums."""
    S, k, r, logs = a.S, a.k, a.r, raw.logs
    T_avg = a.T - a.transient - a.warmup
    nb = -(-T_avg // r)
    steps = jnp.full((nb,), r).at[-1].set(T_avg - r * (nb - 1))
    rates = (_stable_sum(logs) / T_avg).astype(dtype)  # (B, k), Benettin column order
    order = jnp.argsort(-rates, axis=-1)
    take = lambda v: jnp.take_along_axis(v, order, axis=-1)
    exponents = take(rates)
    if raw.blocks is None:
        stderr = batch_means_stderr(logs, steps)
    else:  # batches of whole blocks, weighted by their steps (a block is one sample)
        stderr = batch_means_stderr(*raw.blocks)
    stderr = take(stderr.astype(dtype))
    blocks, _, significant = start_up_transient(logs, steps)
    cum_steps = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(steps)])
    warmup_needed = jnp.max(jnp.where(significant, cum_steps[blocks], 0), axis=-1)
    local = (logs / steps.astype(logs.dtype).reshape((-1, 1, 1))).astype(dtype)
    local = jnp.moveaxis(local, 0, -2)  # (B, T', k)
    eps = jnp.finfo(fdtype).eps
    unresolved = ~(exponents > roundoff_floor(exponents, float(eps)))  # also True on NaN
    if plan.sum_rule:
        residual = jnp.sum(rates.astype(raw.logdet.dtype), axis=-1) - raw.logdet / T_avg
        residual = residual.astype(dtype)
    else:
        residual = jnp.full((rates.shape[0],), jnp.nan, dtype)
    stationary = raw.movement <= 10 * eps * jnp.maximum(1.0, raw.scale)
    ky = kaplan_yorke_dimension(exponents, state_size=S)
    j_needed = jnp.minimum(jnp.floor(jnp.nan_to_num(ky)).astype(jnp.int32), k - 1)
    blind = jnp.take_along_axis(
        jnp.cumsum(unresolved.astype(jnp.int32), axis=-1), j_needed[..., None], axis=-1
    )[..., 0]
    ky = jnp.where(blind > 0, jnp.nan, ky)
    return LyapunovSpectrum(
        exponents=exponents,
        local=local,
        kaplan_yorke_dimension=ky.astype(dtype),
        entropy_rate=_entropy_rate(exponents, S),
        stderr=stderr,
        unresolved=unresolved,
        sum_rule_residual=residual,
        stationary=stationary,
        final_frame=raw.frame,
        final_carry=raw.carry,
        reorth_interval=_interval(raw, a, dtype),
        warmup_needed=warmup_needed,
    )


def _interval(raw: Run, a: _Args, dtype) -> jax.Array:
    """Steps per QR after the transient, ``(B,)``: counted by the adaptive runner, else ``r``."""
    B = raw.logdet.shape[0]
    if raw.qrs is None:
        return jnp.full((B,), a.r, dtype)
    return jnp.full((B,), (a.T - a.transient) / raw.qrs, dtype)
