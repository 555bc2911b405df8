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
carries the state, the Frobenius-normalised product ``J_t \\cdots J_1`` (as
:func:`~jrnn.diagnostics.propagation` does, forwards), the per-step ``sigma_1(J_t)``
and the dead / saturation counts of :func:`~jrnn.diagnostics.unit_health`.

The names (stable; ``i = 1..k``, ``l`` in ``lags``):

=============================  =============================================================
``lyap_i``                     ``i``-th Lyapunov exponent, nats per step, pooled over the batch
``lyap_i_stderr``              its standard error (within- and between-sequence spread)
``propagation_rate``           ``log ||d s_T / d s_0||_F / T`` less ``log sqrt(S) / T``,
                               nats per step (:attr:`Propagation.rate`), pooled
``propagation_rate_stderr``    its standard error
``log_jacobian_norm``          ``log ||d s_T / d s_0||_2`` (nats), mean over sequences
``sv_mean``                    mean of ``sigma_1(J_t)`` over (sampled) steps and sequences
``sv_max``                     largest ``sigma_1(J_t)`` over (sampled) steps and sequences
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

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jrnn import host, validation
from jrnn.cells.base import Cell, flatten_carry
from jrnn.diagnostics._trajectory import inputs, jacobian_fn, map_sequences, prepare
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


def _forward(cell: Cell, params, x, c, pw_stats: bool, sv_every: int):
    """One sequence: ``(incr group sums (M,), sum incr, log ||P||_2, sum sigma_1, max sigma_1,
    dead (n,), saturated counts (n,), finite)`` from one scan (memory independent of ``T``)."""
    us, c = inputs(cell, params, x, c)
    T, S = us.shape[0], cell.state_size
    jac = jacobian_fn(cell, params, "auto")
    dtype = jax.eval_shape(jac, c, us[0]).dtype
    acc = jnp.float64 if jax.config.read("jax_enable_x64") else dtype
    M = min(_GROUPS, T)
    L = T // M
    drop = T - M * L
    pw = cell.pointwise
    n = cell.hidden_size

    def body(st, inp):
        carry, P, groups, total, sv_sum, sv_max, dead, sat, ok = st
        t, u = inp
        J = jac(carry, u)
        sampled = t % sv_every == 0  # unbatched: stays a cond under vmap
        sv1 = lax.cond(sampled, lambda J: singular_values(J[None])[0, 0].astype(acc),
                       lambda J: jnp.zeros((), acc), J)
        A = J @ P
        norm = jnp.linalg.norm(A)
        y = jnp.log(norm).astype(acc)
        P = A / jnp.where(norm > 0, norm, 1.0)
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
        sv_max = jnp.where(sampled, jnp.maximum(sv_max, sv1), sv_max)
        st = (new_carry, P, groups, total + y, sv_sum + sv1, sv_max, dead, sat, ok)
        return st, None

    P0 = jnp.eye(S, dtype=dtype) / jnp.sqrt(jnp.asarray(S, dtype))
    st0 = (c, P0, jnp.zeros((M,), acc), jnp.zeros((), acc), jnp.zeros((), acc),
           jnp.full((), -jnp.inf, acc), jnp.ones((n,), bool), jnp.zeros((n,), acc),
           jnp.ones((), bool))
    st, _ = lax.scan(body, st0, (jnp.arange(T), us))
    _, P, groups, total, sv_sum, sv_max, dead, sat, ok = st
    ell = total + 0.5 * jnp.log(jnp.asarray(S, acc))  # log ||P_T||_F
    log_norm = ell + jnp.log(singular_values(P[None])[0, 0]).astype(acc)
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
    sv_steps: int | None = 32,
    carry=None,
    warmup: int = 0,
    key: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """A few scalars that say how gradients travel through ``cell`` on ``xs`` now.

    .. math::

       J_t = \\frac{\\partial s_t}{\\partial s_{t-1}}, \\quad
       \\lambda_i = \\lim \\frac{1}{T} \\log \\sigma_i(J_T \\cdots J_1), \\quad
       \\mathrm{rate} = \\frac{1}{T} \\sum_t \\log
         \\frac{\\lVert J_t P_{t-1} \\rVert_F}{\\lVert P_{t-1} \\rVert_F}

    The names and their meaning are the module table (:mod:`jrnn.diagnostics.snapshot`;
    :func:`snapshot_names` lists them). Units: exponents and rates in nats per step,
    log norms in nats. Each value equals the full diagnostic it summarises to float
    rounding: ``lyap_i`` is ``lyapunov_spectrum(..., k=k, warmup=warmup).exponents[i-1]``
    (mean over a batch), ``propagation_rate`` is :attr:`Propagation.rate`,
    ``log_jacobian_norm`` is ``Propagation.log_spectral_norm[0]``, the fractions are
    :func:`unit_health`'s. ``propagation_rate_stderr`` comes from 20 batch means of
    the forward increments ``log ||J_t P_{t-1}||_F`` (``P`` renormalised each step);
    :func:`propagation` uses the backward ones, so the two error bars differ slightly.
    A batch ``(B, T, d)`` gives one pooled estimate with one error bar (module
    docstring).

    Memory: without ``loss_fn`` nothing grows with ``T`` beyond the inputs: the
    Lyapunov chain runs in ``mode="tangent"`` (``O(B S k)``) and one forward scan forms
    one ``J_t`` per step. The modes are fixed, not sized from a memory budget, so an
    enclosing ``jax.vmap`` (seeds) cannot make it pick a mode that does not fit.
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
        step. An SVD per step is the snapshot's dearest part (``O(S^3)``).
      carry: initial carry (default the cell's zeros).
      warmup: steps aligning the Lyapunov frame before averaging, ``[0, T)``.
      key: PRNG key for the initial frame when ``k < S`` (default ``key(0)``).

    Returns:
      ``dict[str, jax.Array]`` of ``()`` arrays. NaN where a quantity is undefined
      (not applicable to the cell, non-finite input).

    Raises:
      ValueError / TypeError (naming the argument, before tracing): ``k`` not an
      integer in ``[1, S]``, ``lags`` out of ``[0, T)`` or repeated, ``loss_fn``
      not callable or not scalar, ``warmup`` out of range, ``xs`` with ``T = 0``,
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

    spec = lyapunov_spectrum(cell, params, xs, carry=carry, k=k, warmup=warmup,
                             mode="tangent", key=key)
    lead = lambda a: a.reshape((-1,) + a.shape[(0 if batch is None else 1):])
    lam, lam_se = _pool(lead(spec.exponents), lead(spec.stderr))
    dtype = lam.dtype

    pw = cell.pointwise
    pw_stats = pw is not None and pw.preactivation is not None and pw.activation is not None
    # LAPACK calls (QR, SVD) that XLA could run concurrently are ordered (jrnn.host).
    xs_after = host.after(xs, spec.exponents)
    fwd = map_sequences(lambda x, c: _forward(cell, params, x, c, pw_stats, sv_every), batch,
                        xs_after, carry)
    means, rate, log_norm, sv_sum, sv_max, dead, sat, ok = jax.tree_util.tree_map(lead, fwd)
    Mg = means.shape[-1]
    if Mg >= 2:
        rate_se = jnp.std(means, axis=-1, ddof=1) / jnp.sqrt(jnp.asarray(Mg, means.dtype))
    else:
        rate_se = jnp.full(rate.shape, jnp.nan, rate.dtype)
    rate, rate_se = _pool(rate, rate_se)
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
    out["recurrent_norm"] = nan if W is None else jnp.linalg.svd(
        W, compute_uv=False)[0].astype(dtype)
    if loss_fn is not None:
        g = gradient_norms(loss_fn, cell, params, host.after(xs, fwd, out["recurrent_norm"]),
                           carry=carry, mode="streaming").hidden
        g = g.reshape((-1, T))  # (B, T): the norm over the batch of dL/dh_t
        total = jnp.sqrt(jnp.sum(g.astype(dtype) ** 2, axis=0))
        for lag in lags:
            out[f"grad_norm_lag{lag}"] = total[T - 1 - lag]
    return out
