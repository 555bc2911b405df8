"""The diagnostics as a few named scalars, cheap enough to compute every N training steps.

.. math::

   \\lambda_1 \\ge \\dots \\ge \\lambda_k, \\qquad
   r = \\frac{1}{T} \\log \\frac{\\lVert \\partial s_T / \\partial s_0 \\rVert_F}
            {\\lVert I \\rVert_F}, \\qquad
   \\bar\\sigma = \\frac{1}{BT} \\sum_{b,t} \\sigma_1(J_{b,t})

:func:`snapshot` summarises one model state on one fixed batch of inputs as a flat
``dict[str, jax.Array]`` of scalars: the column names of a training log
(:func:`jrnn.train.fit` with ``monitor=``, Vogt et al. 2022's "Lyapunov spectra
predict performance" question, Engelken 2023's spectra during training). It is
jittable and vmappable over seeds, and its memory does not grow with ``T``
(without ``loss_fn``): the Lyapunov exponents come from
:func:`~jrnn.diagnostics.lyapunov_spectrum` in its ``"tangent"`` streaming mode, and
one forward scan of the trajectory kernel (:mod:`jrnn.diagnostics._trajectory`)
carries the state, a frame ``V_t = J_t V_{t-1}`` moved by the cell's tangent map and
renormalised each step, ``sigma_1(J_t)`` at a static set of sampled steps (the
first of each block of ``ceil(T / sv_steps)`` steps; no ``lax.cond``) and the
dead / saturation counts of :func:`~jrnn.diagnostics.unit_health`. No LAPACK call
runs inside the scan: ``sigma_1(J_t)`` comes from repeated squaring of the Gram
matrix (a Rayleigh quotient, ``sigma_1`` to rounding unless the top two singular
values agree to within ~1%, and never more than ``ln S / 2048`` relative below it).
Cost per step ``O(S^2 p)`` (``p`` probes) plus ``O(S^3)`` at the sampled steps.

The frame (``probes``): with ``probes = p < S`` it is ``V_0 = G / ||G||_F``, ``G``
an ``(S, p)`` standard normal matrix, independent per sequence, and
``||P_T G||_F / ||G||_F`` (``P_T = J_T \\cdots J_1``) estimates
``||P_T||_F / sqrt(S)``, since ``E ||P G||_F^2 = p ||P||_F^2``. Its log errs by
``1/2 log(S D)``, ``D ~ Beta(p/2, (S-1) p/2)``, when ``P_T`` is rank one (the
worst case for the bias: for any ``P_T`` the mean error lies between that case's
and 0, by Schur convexity and Jensen; a flat spectrum gives 0): mean
``(log S + psi(p/2) - psi(S p/2)) / 2``, spread ``sqrt(psi'(p/2) - psi'(S p/2)) / 2``;
at ``p = 8``, ``S = 128``: ``-0.065`` and ``0.27`` nats, so ``-0.25e-3`` and
``1.0e-3`` nats per step in the rate at ``T = 256``. That error is ``O(1) / T``,
independent of the net's size: its spread (rank-one case) is added in quadrature
to each sequence's standard error of the rate and its bias, shared by the sequences
(it does not average over a batch), to the pooled one. ``probes=None`` or ``p >= S``
propagates the full ``(S, S)`` frame ``I / sqrt(S)`` instead: the exact values of
:func:`~jrnn.diagnostics.propagation` (to float rounding), at ``O(S^3)`` per step.

The names (stable; ``i = 1..k``, ``l`` in ``lags``):

=============================  =============================================================
``lyap_i``                     ``i``-th Lyapunov exponent, nats per step, pooled over the batch
``lyap_i_stderr``              its standard error (within- and between-sequence spread)
``propagation_rate``           ``log ||d s_T / d s_0||_F / T`` less ``log sqrt(S) / T``,
                               nats per step (:attr:`Propagation.rate`), pooled; from
                               ``p`` probes an estimate, mean error in
                               ``[(log S + psi(p/2) - psi(Sp/2)) / 2T, 0]``, spread
                               ``sqrt(psi'(p/2) - psi'(Sp/2)) / 2T`` per sequence
                               (rank one; above); exact with the full frame
``propagation_rate_stderr``    its standard error, the probes' rms error included
``log_jacobian_norm``          ``log ||d s_T / d s_0||_2`` (nats), mean over sequences;
                               from probes ``log sigma_1(P_T G) - log sqrt(p)``:
                               error ``1/2 log(chi2_p / p)`` for a rank-one ``P_T``
                               (mean ``-0.065``, spread ``0.27`` nats at ``p = 8``),
                               up to ``+log(1 + sqrt(r / p))`` when ``r`` top singular
                               values of ``P_T`` are alike; exact with the full frame
``sv_mean``                    mean of ``sigma_1(J_t)`` over sampled steps and sequences
``sv_max``                     largest ``sigma_1(J_t)`` over sampled steps and sequences
``dead_fraction``              fraction of dead units (NaN: no activation with a dead zone)
``saturated_fraction``         fraction of saturated unit-steps (NaN: not saturating)
``recurrent_norm``             ``sigma_max`` of the effective recurrent matrix
                               (``cell.pointwise.recurrent_matrix``; NaN where none)
``grad_norm_lag{l}``           ``||dL/dh_{T-1-l}||`` of ``loss_fn`` (only with ``loss_fn``)
=============================  =============================================================

Pooling a batch of ``B`` sequences (Lyapunov exponents, propagation rate): the
estimate is the mean of the ``B`` per-sequence estimates ``x_b`` (equal lengths, so
the pooled time average), and its squared standard error is
``max(var_b(x_b), mean_b(se_b^2)) / B``: the between-sequence variance (ddof 1),
which includes the time-average noise, never taken below the within-sequence
estimate (batch means, Flyvbjerg & Petersen 1989) that a small ``B`` could
underestimate. ``B = 1`` gives the sequence's own batch-means error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jrnn import host, validation
from jrnn.cells.base import Cell, flatten_carry
from jrnn.diagnostics._trajectory import (
    inputs,
    jacobian_fn,
    prepare,
    scan_chunks,
    tangent_map,
)
from jrnn.diagnostics.lyapunov import lyapunov_spectrum
from jrnn.diagnostics.propagation import _check_loss_fn, gradient_norms
from jrnn.diagnostics.spectra import singular_values

__all__ = ["SNAPSHOT_NAMES", "snapshot", "snapshot_names"]

#: The always-present names of :func:`snapshot` besides ``lyap_i`` / ``lyap_i_stderr``
#: and ``grad_norm_lag{l}`` (see the module table).
SNAPSHOT_NAMES = (
    "propagation_rate",
    "propagation_rate_stderr",
    "log_jacobian_norm",
    "sv_mean",
    "sv_max",
    "dead_fraction",
    "saturated_fraction",
    "recurrent_norm",
)

_GROUPS = 20  # batch means for the propagation rate's standard error (as propagation())
_SQUARINGS = 10  # of the Gram matrix in _top_singular_value: bound ln(r) / 2^11


def snapshot_names(k: int = 4, lags: Sequence[int] = ()) -> tuple[str, ...]:
    """The keys :func:`snapshot` returns for ``k`` exponents and these ``lags``, in order.

    Example::

        >>> jrnn.diagnostics.snapshot_names(2)[:4]
        ('lyap_1', 'lyap_2', 'lyap_1_stderr', 'lyap_2_stderr')
    """
    k = validation.check_int(k, "k", low=1)
    lyap = tuple(f"lyap_{i + 1}" for i in range(k))
    return lyap + tuple(f"{n}_stderr" for n in lyap) + SNAPSHOT_NAMES + tuple(
        f"grad_norm_lag{int(lag)}" for lag in lags
    )


def _pool(values: jax.Array, stderr: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean over the leading batch axis and its error (module docstring); ``B = 1`` passes."""
    B = values.shape[0]
    mean = jnp.mean(values, axis=0)
    if B == 1:
        return mean, stderr[0]
    between = jnp.var(values, axis=0, ddof=1)
    within = jnp.mean(stderr**2, axis=0)
    return mean, jnp.sqrt(jnp.maximum(between, within) / B)


def _top_singular_value(J: jax.Array, squarings: int = _SQUARINGS) -> jax.Array:
    """``sigma_1`` of ``(..., m, n)`` matrices from matrix products alone (no LAPACK call).

    ``G`` is the smaller Gram matrix (``r x r``, ``r = min(m, n)``); ``q`` squarings of
    ``G / tr G`` give ``U = tr(G^(2^q))^(1/2^(q+1))``, with ``sigma_1 <= U <=
    r^(1/2^(q+1)) sigma_1``, and the converged ``G^(2^q)`` (a projector onto the top
    singular direction but for ``(sigma_2 / sigma_1)^(2^(q+1))``) gives the Rayleigh
    quotient ``L = sqrt(x^T G x / x^T x) <= sigma_1``. Returns ``max(L, U r^(-1/2^(q+1)))``:
    never more than a relative ``r^(1/2^(q+1)) - 1`` (``ln r / 2^(q+1)``, 2.4e-3 for
    ``r = 128``) below ``sigma_1``, and ``sigma_1`` to rounding unless the top two
    singular values agree to a few ``1 / 2^q`` (the error is about
    ``(sigma_2 / sigma_1)^(2^(q+2))``). 0 for a zero matrix, NaN for non-finite.
    """
    m, n = J.shape[-2:]
    # Scaled by max |J_ij| first: the Gram matrix squares the entries, which would overflow
    # (NaN) or flush to zero (sigma_1 = 0) from |J_ij| ~ 1e19 or 1e-19 in float32.
    scale = jnp.max(jnp.abs(J), axis=(-2, -1))
    scale = jnp.where((scale > 0) & jnp.isfinite(scale), scale, jnp.ones_like(scale))
    J = J / scale[..., None, None]
    Jt = jnp.swapaxes(J, -1, -2)
    G = Jt @ J if n <= m else J @ Jt
    r = G.shape[-1]
    tr = jnp.trace(G, axis1=-2, axis2=-1)
    safe = jnp.where(tr > 0, tr, 1.0)
    H = G / safe[..., None, None]
    c = jnp.log(safe)
    for _ in range(squarings):
        H = H @ H
        t = jnp.trace(H, axis1=-2, axis2=-1)
        H = H / t[..., None, None]
        c = 2 * c + jnp.log(t)
    m2 = 2.0 ** (squarings + 1)
    floor = jnp.exp((c - jnp.log(jnp.asarray(r, c.dtype))) / m2)
    j = jnp.argmax(jnp.diagonal(H, axis1=-2, axis2=-1), axis=-1)
    x = jnp.take_along_axis(H, j[..., None, None], axis=-1)[..., 0]
    num = jnp.einsum("...i,...ij,...j->...", x, G, x)
    lower = jnp.sqrt(num / jnp.sum(x * x, axis=-1))
    return jnp.where(tr == 0, jnp.zeros_like(tr), jnp.maximum(lower, floor)) * scale


def _probe_error(S: int, p: int) -> tuple[float, float]:
    """``(bias, spread)`` in nats of the probe estimate of ``log ||P||_F`` (module docstring).

    For a rank-one ``P`` (the worst case for the bias), ``log(||P G||_F ||P||_F^-1
    ||G||_F^-1 sqrt S) = 1/2 log(S D)``, ``D ~ Beta(p/2, (S-1) p/2)``: mean
    ``(log S + psi(p/2) - psi(S p/2)) / 2 <= 0`` and standard deviation
    ``sqrt(psi'(p/2) - psi'(S p/2)) / 2``. For any ``P`` the mean lies in
    ``[bias, 0]`` (Schur convexity; Jensen); a flat spectrum gives 0 exactly.
    """
    from scipy.special import digamma, polygamma

    bias = 0.5 * (math.log(S) + digamma(p / 2) - digamma(S * p / 2))
    spread = 0.5 * math.sqrt(polygamma(1, p / 2) - polygamma(1, S * p / 2))
    return float(bias), float(spread)


def _forward(cell: Cell, params, x, c, V0, pw_stats: bool, sv_every: int):
    """One sequence: ``(incr group sums (M,), sum incr, log sigma_1(P_T V_0), sum sigma_1,
    max sigma_1, dead (n,), saturated counts (n,), finite)`` from one scan over blocks of
    ``sv_every`` steps (memory independent of ``T``).

    The frame ``V`` (``V_0`` normalised: ``(S, S)`` identity or ``(S, p)`` probes) moves by
    the cell's tangent map; the first step of each block forms ``J_t`` (analytic where the
    cell has it) for ``sigma_1(J_t)``: a static set of steps, no ``lax.cond``.
    """
    us, c = inputs(cell, params, x, c)
    T = us.shape[0]
    jac = jacobian_fn(cell, params, "auto")
    tan = tangent_map(cell, params)
    dtype = jax.eval_shape(jac, c, us[0]).dtype
    acc = jnp.float64 if jax.config.read("jax_enable_x64") else dtype
    M = min(_GROUPS, T)
    L = T // M
    drop = T - M * L
    pw = cell.pointwise
    n = cell.hidden_size
    V0 = V0.astype(dtype)
    g_norm = jnp.linalg.norm(V0)

    def step(st, t, u, J=None):
        carry, V, groups, total, dead, sat, ok = st
        A = tan(carry, u, V) if J is None else J @ V
        norm = jnp.linalg.norm(A)
        y = jnp.log(norm).astype(acc)
        V = A / jnp.where(norm > 0, norm, 1.0)
        g = jnp.where(t >= drop, (t - drop) // max(L, 1), M)
        groups = groups.at[g].add(y, mode="drop")
        if pw_stats:
            a = pw.preactivation(params, carry, u)
            act = pw.activation
            if act.dead_below is not None:
                dead = dead & (a <= act.dead_below)
            if act.saturating and act.saturation_threshold is not None:
                sat = sat + (jnp.abs(a) > act.saturation_threshold).astype(acc)
            ok = ok & jnp.all(jnp.isfinite(a))
        new_carry = cell.recur(params, carry, u)[0]
        ok = ok & jnp.all(jnp.isfinite(flatten_carry(new_carry)))
        return (new_carry, V, groups, total + y, dead, sat, ok)

    def block(state, inp):
        st, sv_sum, sv_max = state
        ts, ub = inp
        J = jac(st[0], ub[0])
        sv1 = _top_singular_value(J).astype(acc)
        st = step(st, ts[0], ub[0], J)
        st = lax.scan(lambda s, tu: (step(s, *tu), None), st, (ts[1:], ub[1:]))[0]
        return (st, sv_sum + sv1, jnp.maximum(sv_max, sv1)), None

    st0 = (c, V0 / g_norm, jnp.zeros((M,), acc), jnp.zeros((), acc), jnp.ones((n,), bool),
           jnp.zeros((n,), acc), jnp.ones((), bool))
    state0 = (st0, jnp.zeros((), acc), jnp.full((), -jnp.inf, acc))
    (st, sv_sum, sv_max), _ = scan_chunks(block, state0, (jnp.arange(T), us), sv_every)
    _, V, groups, total, dead, sat, ok = st
    if V.shape[-1] == V.shape[-2]:  # the full frame: the exact singular value (LAPACK, once)
        s1 = singular_values(V[None])[0, 0]
    else:  # probes: a thin (S, p) frame
        s1 = _top_singular_value(V)
    log_norm = total + jnp.log(g_norm).astype(acc) + jnp.log(s1).astype(acc)
    return groups / max(L, 1), total / T, log_norm, sv_sum, sv_max, dead, sat, ok


def _check_lags(lags, T: int) -> tuple[int, ...]:
    if isinstance(lags, int | str) or not isinstance(lags, Sequence):
        raise TypeError(f"lags must be a sequence of integers, got {type(lags).__name__}.")
    out = tuple(validation.check_int(lag, "lags", low=0, high=T - 1) for lag in lags)
    if len(set(out)) != len(out):
        raise ValueError(f"lags must not repeat, got {list(out)}.")
    return out


def snapshot(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    k: int = 4,
    loss_fn: Callable[[jax.Array], jax.Array] | None = None,
    lags: Sequence[int] | None = None,
    sv_steps: int | None = 4,
    probes: int | None = 8,
    carry=None,
    warmup: int = 0,
    key: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """A few scalars that say how gradients travel through ``cell`` on ``xs`` now.

    .. math::

       J_t = \\frac{\\partial s_t}{\\partial s_{t-1}}, \\quad
       \\lambda_i = \\lim \\frac{1}{T} \\log \\sigma_i(J_T \\cdots J_1), \\quad
       \\mathrm{rate} = \\frac{1}{T} \\sum_t \\log
         \\frac{\\lVert J_t V_{t-1} \\rVert_F}{\\lVert V_{t-1} \\rVert_F},
       \\quad V_0 = I_S \\text{ or } G \\in \\mathbb{R}^{S \\times p}

    The names and their meaning are the module table (:mod:`jrnn.diagnostics.snapshot`;
    :func:`snapshot_names` lists them). Units: exponents and rates in nats per step,
    log norms in nats. ``lyap_i`` is ``lyapunov_spectrum(..., k=k, warmup=warmup)
    .exponents[i-1]`` (mean over a batch) to float rounding, the fractions are
    :func:`unit_health`'s exactly, ``sv_mean`` / ``sv_max`` are the sampled
    ``sigma_1(J_t)`` to rounding (unless ``sigma_1 ~ sigma_2``; then at most a relative
    ``ln S / 2048`` low); ``recurrent_norm`` likewise. With ``probes=None`` (or ``probes >= S``)
    ``propagation_rate`` is :attr:`Propagation.rate` and ``log_jacobian_norm`` is
    ``Propagation.log_spectral_norm[0]`` to float rounding; with ``p < S`` probes
    (the default ``8``) they are estimates from a thin random frame whose error is
    stated in the module table: ``O(1) / T`` nats per step for the rate, ``O(1)``
    nats for the log norm. ``propagation_rate_stderr`` comes from 20 batch means of
    the forward increments ``log ||J_t V_{t-1}||_F`` (``V`` renormalised each step),
    plus the probes' error; :func:`propagation` uses the backward ones, so the two
    error bars differ slightly. A batch ``(B, T, d)`` gives one pooled estimate with
    one error bar (module docstring).

    Memory: without ``loss_fn`` nothing grows with ``T`` beyond the inputs: the
    Lyapunov chain runs in ``mode="tangent"`` (``O(B S k)``) and one forward scan moves
    an ``(S, p)`` frame (``O(S^2 p)`` a step) and forms ``J_t`` at the sampled steps
    only. The modes are fixed, not sized from a memory budget, so an enclosing
    ``jax.vmap`` (seeds) cannot make it pick a mode that does not fit.
    ``loss_fn`` needs the whole ``(B, T, n)`` output (``gradient_norms`` streaming).

    Args:
      cell: any :class:`jrnn.Cell` (for a :class:`jrnn.models.Model`, ``model.cell``).
      params: the cell's params (``params["cell"]`` of a model).
      xs: ``(T, d)`` or ``(B, T, d)`` inputs, a fixed held-out batch.
      k: number of Lyapunov exponents, ``1 <= k <= cell.state_size``.
      loss_fn: ``hs -> scalar`` on ``jrnn.unroll``'s outputs (as
        :func:`gradient_norms`); adds ``grad_norm_lag{l}``, the norm over the batch of
        ``dL/dh_{T-1-l}``.
      lags: steps back from the end for the gradient norms (default
        ``(0, T // 2, T - 1)`` without repeats); each in ``[0, T)``.
      sv_steps: ``sv_mean`` / ``sv_max`` use the steps ``t = 0, m, 2m, ...`` with
        ``m = ceil(T / sv_steps)`` (at most ``sv_steps`` per sequence); None: every
        step. Each sampled step costs ``~22 S^3`` flops (11 ``S x S`` products).
      probes: columns ``p`` of the random frame for ``propagation_rate`` and
        ``log_jacobian_norm`` (``>= 1``); None or ``>= S``: the exact full frame.
      carry: initial carry (default the cell's zeros).
      warmup: steps aligning the Lyapunov frame before averaging, ``[0, T)``.
      key: PRNG key for the initial Lyapunov frame when ``k < S`` and, folded
        with 1, for the probes (default ``key(0)``).

    Returns:
      ``dict[str, jax.Array]`` of ``()`` arrays. NaN where a quantity is undefined
      (not applicable to the cell, non-finite input).

    Raises:
      ValueError / TypeError (naming the argument, before tracing): ``k`` not an
      integer in ``[1, S]``, ``lags`` out of ``[0, T)`` or repeated, ``loss_fn``
      not callable or not scalar, ``sv_steps`` or ``probes`` not an integer >= 1,
      ``warmup`` out of range, ``xs`` with ``T = 0``,
      and what :func:`jrnn.unroll` rejects for ``cell``, ``params``, ``xs``, ``carry``.

    Example::

        >>> import functools
        >>> cell = jrnn.cells.elman(8, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (4, 50, 1))
        >>> snap = jax.jit(functools.partial(jrnn.diagnostics.snapshot, cell, k=2))
        >>> out = snap(params, xs)
        >>> sorted(out)[:4]
        ['dead_fraction', 'log_jacobian_norm', 'lyap_1', 'lyap_1_stderr']
        >>> bool(out["lyap_1"] >= out["lyap_2"]), out["sv_max"].shape
        (True, ())
    """
    if not isinstance(cell, Cell):
        hint = " (for a jrnn.models.Model pass model.cell)" if hasattr(cell, "cell") else ""
        raise TypeError(f"cell must be a jrnn.Cell{hint}, got {type(cell).__name__}.")
    S = cell.state_size
    k = validation.check_int(k, "k", low=1)
    if k > S:
        raise ValueError(f"k must be at most the state size S = {S} of {cell.describe()}, got {k}.")
    batch = prepare(cell, params, xs, carry)
    xs = jnp.asarray(xs)
    T = xs.shape[-2]
    if T == 0:
        raise ValueError(f"xs must hold at least one step, got shape {tuple(xs.shape)}.")
    if loss_fn is not None:
        _check_loss_fn(loss_fn, xs.shape[:-1] + (cell.hidden_size,), xs.dtype)
    if lags is None:
        lags = tuple(dict.fromkeys((0, T // 2, T - 1)))
    lags = _check_lags(lags, T)
    if sv_steps is not None:
        sv_steps = validation.check_int(sv_steps, "sv_steps", low=1)
    sv_every = 1 if sv_steps is None else -(-T // sv_steps)
    if key is not None:
        validation.check_key(key, "key")
    if probes is not None:
        probes = validation.check_int(probes, "probes", low=1)
    thin = probes is not None and probes < S

    spec = lyapunov_spectrum(cell, params, xs, carry=carry, k=k, warmup=warmup,
                             mode="tangent", key=key)
    lead = lambda a: a.reshape((-1,) + a.shape[(0 if batch is None else 1):])
    lam, lam_se = _pool(lead(spec.exponents), lead(spec.stderr))
    dtype = lam.dtype

    pw = cell.pointwise
    pw_stats = pw is not None and pw.preactivation is not None and pw.activation is not None
    # LAPACK calls (QR, SVD) that XLA could run concurrently are ordered (jrnn.host); the
    # probe path calls none, so it may overlap the Lyapunov chain.
    xs_after = xs if thin else host.after(xs, spec.exponents)
    fn = lambda x, c, V0: _forward(cell, params, x, c, V0, pw_stats, sv_every)
    if thin:  # an independent (S, p) standard normal probe frame per sequence
        pkey = jax.random.fold_in(jax.random.key(0) if key is None else key, 1)
        V0 = jax.random.normal(pkey, (1 if batch is None else batch, S, probes))
    else:
        V0 = jnp.eye(S)
    if batch is None:
        fwd = fn(xs_after, carry, V0[0] if thin else V0)
    else:
        axes = (0, None if carry is None else 0, 0 if thin else None)
        fwd = jax.vmap(fn, in_axes=axes)(xs_after, carry, V0)
    means, rate, log_norm, sv_sum, sv_max, dead, sat, ok = jax.tree_util.tree_map(lead, fwd)
    Mg = means.shape[-1]
    if Mg >= 2:
        rate_se = jnp.std(means, axis=-1, ddof=1) / jnp.sqrt(jnp.asarray(Mg, means.dtype))
    else:
        rate_se = jnp.full(rate.shape, jnp.nan, rate.dtype)
    if thin:  # the probes' own error (rank-one case, module docstring): the spread is
        # independent per sequence, the bias is shared and does not average over the batch
        bias, spread = _probe_error(S, probes)
        rate_se = jnp.sqrt(rate_se**2 + spread**2 / T**2)
        log_norm = log_norm - 0.5 * math.log(probes)
    rate, rate_se = _pool(rate, rate_se)
    if thin:
        rate_se = jnp.sqrt(rate_se**2 + bias**2 / T**2)
    nan = jnp.full((), jnp.nan, dtype)
    count = rate.dtype.type(sv_sum.shape[0] * T)
    sv_count = rate.dtype.type(sv_sum.shape[0] * (-(-T // sv_every)))
    out = {f"lyap_{i + 1}": lam[i] for i in range(k)}
    out.update({f"lyap_{i + 1}_stderr": lam_se[i] for i in range(k)})
    out["propagation_rate"] = rate.astype(dtype)
    out["propagation_rate_stderr"] = rate_se.astype(dtype)
    out["log_jacobian_norm"] = jnp.mean(log_norm).astype(dtype)
    out["sv_mean"] = (jnp.sum(sv_sum) / sv_count).astype(dtype)
    out["sv_max"] = jnp.max(sv_max).astype(dtype)
    all_ok = jnp.all(ok)
    dead_ok = pw_stats and pw.activation.dead_below is not None
    sat_ok = pw_stats and bool(pw.activation.saturating) and (
        pw.activation.saturation_threshold is not None)
    if dead_ok:
        frac = jnp.mean(jnp.all(dead, axis=0)).astype(dtype)
        out["dead_fraction"] = jnp.where(all_ok, frac, jnp.nan)
    else:
        out["dead_fraction"] = nan
    if sat_ok:
        frac = (jnp.sum(sat) / (count * cell.hidden_size)).astype(dtype)
        out["saturated_fraction"] = jnp.where(all_ok, frac, jnp.nan)
    else:
        out["saturated_fraction"] = nan
    W = None if pw is None or pw.recurrent_matrix is None else host.after(
        pw.recurrent_matrix(params), fwd)
    out["recurrent_norm"] = nan if W is None else _top_singular_value(W).astype(dtype)
    if loss_fn is not None:
        g = gradient_norms(loss_fn, cell, params, host.after(xs, fwd, out["recurrent_norm"]),
                           carry=carry, mode="streaming").hidden
        g = g.reshape((-1, T))  # (B, T): the norm over the batch of dL/dh_t
        total = jnp.sqrt(jnp.sum(g.astype(dtype) ** 2, axis=0))
        for lag in lags:
            out[f"grad_norm_lag{lag}"] = total[T - 1 - lag]
    return out
