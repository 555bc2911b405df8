"""How gradients travel back through time: ``||d s_T / d s_t||`` and ``||dL/dh_t||``.

.. math::

   \\frac{\\partial s_T}{\\partial s_t} = J_T J_{T-1} \\cdots J_{t+1}

is the factor backpropagation through time multiplies every error signal by
(Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013). Its norm
decays or grows geometrically, so :func:`propagation` never forms it: it
carries a Frobenius-normalised product and the log of the scale.
:func:`gradient_norms` measures the actual ``||dL/dh_t||`` and
``||dL/dx_t||`` of a loss, all ``t`` from one backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jrnn.cells.base import Cell
from jrnn.diagnostics._trajectory import (
    carries,
    check_budget,
    jacobian_fn,
    map_sequences,
    one_carry,
    prepare,
)
from jrnn.diagnostics.jacobians import sequence_jacobians
from jrnn.diagnostics.spectra import singular_values
from jrnn.unrolling import match_carry_dtype
from jrnn.validation import float_inputs

__all__ = ["PROPAGATION_MODES", "GradientNorms", "Propagation", "gradient_norms", "propagation"]

#: Accepted ``mode`` values of :func:`propagation` and :func:`gradient_norms`.
PROPAGATION_MODES = ("auto", "stacked", "streaming")


class Propagation(NamedTuple):
    """``log ||d s_T / d s_t||`` for ``t = 0..T`` (``t = 0``: the initial carry).

    Fields (shapes for one sequence; a batch adds a leading ``B``):
      log_spectral_norm: ``(T+1,)`` natural log of the largest singular value;
        entry ``T`` is 0 (the identity).
      log_frobenius_norm: ``(T+1,)``; entry ``T`` is ``0.5 log S``.
      rate: ``()`` mean growth per step of the Frobenius norm,
        ``(log ||P_0||_F - log ||P_T||_F) / T`` (nats per step).
      rate_stderr: ``()`` its standard error from 20 batch means of the
        per-step increments (the spread of the growth along the trajectory).
    """

    log_spectral_norm: jax.Array  # (T+1,) or (B, T+1)
    log_frobenius_norm: jax.Array  # (T+1,) or (B, T+1)
    rate: jax.Array | None = None  # () or (B,)
    rate_stderr: jax.Array | None = None  # () or (B,)


def _accumulator_dtype(dtype):
    return jnp.float64 if jax.config.read("jax_enable_x64") else dtype


def _backward_scan(jac_at, xs_rev, S: int, dtype, spectral_inside: bool):
    """Backward products ``P_t = J_T ... J_{t+1} = exp(ell_t) M_t``, ``||M_t||_F = 1``.

    ``jac_at(x) -> J_t`` for each element of ``xs_rev`` (scanned in reverse).
    ``ell`` is accumulated in float64 when x64 is enabled, else with Kahan's
    compensated summation, so its error does not grow with ``T``. Returns
    ``(ells (T,), tops (T,) or None, Ms (T, S, S) or None)``.
    """
    acc = _accumulator_dtype(dtype)
    eye = jnp.eye(S, dtype=dtype)
    M_T = eye / jnp.sqrt(jnp.asarray(S, dtype))
    ell_T = 0.5 * jnp.log(jnp.asarray(S, acc))

    def body(state, x):
        M, ell, comp = state
        A = M @ jac_at(x)
        norm = jnp.linalg.norm(A)
        safe = jnp.where(norm > 0, norm, 1.0)
        y = jnp.log(norm).astype(acc) - comp  # Kahan: comp is 0 in float64 mode
        t = ell + y
        # once the product is exactly 0 (t = -inf) it stays -inf; never inf - inf = NaN
        comp = jnp.where(jnp.isfinite(t), (t - ell) - y, 0.0) if acc == dtype else comp
        M = A / safe
        out = (t, jnp.linalg.svd(M, compute_uv=False)[0]) if spectral_inside else (t, M)
        return (M, t, comp), out

    init = (M_T, ell_T, jnp.zeros((), acc))
    _, (ells, second) = jax.lax.scan(body, init, xs_rev, reverse=True)
    return ells, ell_T, second


def _batch_means_stderr(incr: jax.Array, groups: int = 20) -> jax.Array:
    n = incr.shape[-1]
    M = min(groups, n)
    if M < 2:
        return jnp.full(incr.shape[:-1], jnp.nan, incr.dtype)
    L = n // M
    means = jnp.mean(incr[..., n - M * L :].reshape(incr.shape[:-1] + (M, L)), axis=-1)
    return jnp.std(means, axis=-1, ddof=1) / jnp.sqrt(jnp.asarray(M, incr.dtype))


def propagation(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    carry=None,
    method: str = "auto",
    mode: str = "auto",
    memory_budget: int | None = None,
) -> Propagation:
    """``log ||d s_T / d s_t||`` (spectral and Frobenius) for every ``t``, stably.

    .. math::

       P_T = I, \\qquad P_{t-1} = P_t J_t = \\frac{\\partial s_T}{\\partial s_{t-1}},

    computed backwards as ``P_t = exp(ell_t) M_t`` with ``M_t`` renormalised
    to unit Frobenius norm at every step, ``ell_{t-1} = ell_t + log ||M_t J_t||_F``,
    so ``T`` in the thousands works in float32 whatever the growth rate.
    ``log ||P_t||_F = ell_t`` and ``log ||P_t||_2 = ell_t + log sigma_max(M_t)``.
    The running sum ``ell`` is accumulated in float64 when x64 is enabled and
    with compensated (Kahan) summation otherwise: float32 at ``T = 20000``
    matches the closed form to ~1e-6 relative (a plain float32 sum drifts by
    nats). A product that is exactly zero gives ``-inf``.

    Memory: ``mode="stacked"`` forms all ``(T, S, S)`` Jacobians and products
    at once; ``"streaming"`` stores only the ``(T, S)`` states and forms each
    ``J_t`` inside the backward scan (``O(T S + S^2)``). ``"auto"`` streams when
    ``3 B T S^2`` entries exceed ``memory_budget`` bytes (default 256 MiB,
    :data:`~jrnn.diagnostics.DEFAULT_MEMORY_BUDGET`). Same result to
    float rounding.

    Args:
      cell, params, xs, carry: as in :func:`step_jacobians`; ``xs`` is
        ``(T, d)`` or ``(B, T, d)``.
      method: Jacobian method passed to :func:`step_jacobians`.
      mode: ``"auto"``, ``"stacked"`` or ``"streaming"``.
      memory_budget: bytes for the ``"auto"`` rule.

    Returns:
      :class:`Propagation` with ``(T+1,)`` (or ``(B, T+1)``) fields; entry
      ``t = 0`` refers to the initial carry ``s_0``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> p = jrnn.diagnostics.propagation(cell, params, jnp.ones((100, 1)))
        >>> p.log_spectral_norm.shape, float(p.log_spectral_norm[-1])
        ((101,), 0.0)
    """
    batch = prepare(cell, params, xs, carry)
    jac = jacobian_fn(cell, params, method)  # validates method
    if mode not in PROPAGATION_MODES:
        raise ValueError(f"mode must be one of {PROPAGATION_MODES}, got {mode!r}.")
    budget = check_budget(memory_budget)
    xs = jnp.asarray(xs)
    T, S = xs.shape[-2], cell.state_size
    itemsize = jnp.dtype(jnp.result_type(*jax.tree_util.tree_leaves(params))).itemsize
    if mode == "auto":
        big = 3 * (batch or 1) * T * S * S * itemsize > budget
        mode = "streaming" if big else "stacked"

    def one(x, c):
        if mode == "stacked":
            Js = sequence_jacobians(cell, params, x, c, method)[0]
            ells, ell_T, Ms = _backward_scan(lambda J: J, Js, S, Js.dtype, False)
            top = singular_values(Ms)[..., 0]
        else:
            us, prev, _ = carries(cell, params, x, c)
            dtype = jax.eval_shape(jac, jax.tree_util.tree_map(lambda a: a[0], prev), us[0]).dtype
            ells, ell_T, top = _backward_scan(lambda a: jac(*a), (prev, us), S, dtype, True)
        out_dtype = top.dtype
        ell_all = jnp.concatenate([ells, ell_T[None]])
        log_frob = ell_all.astype(out_dtype)
        log_spectral = jnp.concatenate(
            [(ells + jnp.log(top).astype(ells.dtype)).astype(out_dtype), jnp.zeros((1,), out_dtype)]
        )
        incr = ell_all[:-1] - ell_all[1:]
        rate = ((ell_all[0] - ell_all[-1]) / T).astype(out_dtype)
        return Propagation(
            log_spectral, log_frob, rate, _batch_means_stderr(incr).astype(out_dtype)
        )

    return map_sequences(one, batch, xs, carry)


class GradientNorms(NamedTuple):
    """Per-step gradient norms of a loss (one sequence; a batch adds ``B``).

    Fields:
      loss: the scalar loss.
      hidden: ``(T,)`` ``||dL/dh_t||``, the total derivative with respect to
        the output node ``h_t`` (BPTT's ``delta_t``: the direct term plus
        everything that flows back through later steps).
      state: ``(T,)`` ``||dL/ds_t||`` with respect to the carry ``s_t`` as it
        enters step ``t+1`` (all carry leaves, e.g. LSTM ``h`` and ``c``), i.e.
        only the part that flows back through the recurrence; 0 at ``t = T``.
      input: ``(T,)`` ``||dL/dx_t||``.
    """

    loss: jax.Array  # ()
    hidden: jax.Array  # (T,) or (B, T)
    state: jax.Array  # (T,) or (B, T)
    input: jax.Array  # (T,) or (B, T)


class _Step(NamedTuple):
    """One sequence's recurrence, fixed in Python before any scan (static)."""

    start: Callable  # carry or None -> initial carry in the recurrence's dtypes
    step: Callable  # (carry, x_t) -> (carry, h_t)
    hits: tuple  # per carry leaf: is it the output array h_t itself?
    carry: object  # ShapeDtypeStruct pytree of one carry
    h: jax.ShapeDtypeStruct  # (n,)
    unravel: Callable  # (S,) -> carry


def _recurrence(cell: Cell, params, xs: jax.Array, carry, batch: int | None) -> _Step:
    """Dtypes promoted once, up front: the carry is cast to what ``recur`` returns
    for these params and inputs (float32 params with float64 ``xs`` run in float64,
    as :func:`jrnn.unroll` does), so the scan's carry never changes type."""
    x_sd = jax.ShapeDtypeStruct(xs.shape[-1:], xs.dtype)
    u_sd = jax.eval_shape(lambda x: cell.input_map(params, x), x_sd)

    def start(c):
        c = cell.initial_carry(params) if c is None else c
        return match_carry_dtype(cell, params, c, u_sd)

    def step(c, x):
        return cell.recur(params, c, cell.input_map(params, x))

    c_sd = jax.eval_shape(start, one_carry(carry, batch))
    hits = []

    def probe(c, x):  # records, while tracing, which carry leaves are h_t itself
        new_c, h = step(c, x)
        hits[:] = [leaf is h for leaf in jax.tree_util.tree_leaves(new_c)]
        return h

    h_sd = jax.eval_shape(probe, c_sd, x_sd)
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), c_sd)
    return _Step(start, step, tuple(hits), c_sd, h_sd, ravel_pytree(zeros)[1])


def _perturbed_run(rec: _Step):
    """``(x, carry, p, e) -> hs`` with ``h_t + p_t`` (output and its carry leaf) and
    ``s_t + e_t`` added inside the scan: the stacked path differentiates this."""

    def run(x, c, p, e):
        def body(carry_, inp):
            x_t, p_t, e_t = inp
            new_c, h = rec.step(carry_, x_t)
            h = h + p_t
            leaves, treedef = jax.tree_util.tree_flatten(new_c)
            leaves = [h if hit else leaf for leaf, hit in zip(leaves, rec.hits)]
            new_c = jax.tree_util.tree_unflatten(treedef, leaves)
            new_c = jax.tree_util.tree_map(jnp.add, new_c, rec.unravel(e_t))
            return new_c, h

        return jax.lax.scan(body, rec.start(c), (x, p, e))[1]

    return run


def _stacked_norms(loss_fn, rec: _Step, xs, carry, batch, S: int) -> GradientNorms:
    T, n = xs.shape[-2], rec.h.shape[-1]
    run = _perturbed_run(rec)
    lead = () if batch is None else (batch,)
    p0 = jnp.zeros(lead + (T, n), rec.h.dtype)
    e0 = jnp.zeros(lead + (T, S), _flat_dtype(rec))

    def loss(x, p, e):
        if batch is None:
            hs = run(x, carry, p, e)
        else:
            hs = jax.vmap(run, in_axes=(0, None if carry is None else 0, 0, 0))(x, carry, p, e)
        return loss_fn(hs)

    value, (gx, gp, ge) = jax.value_and_grad(loss, argnums=(0, 1, 2))(xs, p0, e0)
    norm = lambda g: jnp.linalg.norm(g, axis=-1)
    return GradientNorms(value, norm(gp), norm(ge), norm(gx))


def _flat_dtype(rec: _Step):
    return jnp.result_type(*[a.dtype for a in jax.tree_util.tree_leaves(rec.carry)])


def _streaming_norms(loss_fn, rec: _Step, xs, carry, batch) -> GradientNorms:
    """Forward scan keeping ``s_{t-1}`` and ``h_t``; one reverse scan of per-step VJPs.

    ``lambda_t = dL/ds_t`` (the carry after step ``t``) runs backwards:
    ``(lambda_{t-1}, dL/dx_t) = vjp(step)(lambda_t, g_t)`` with ``g_t`` the loss's
    direct gradient on ``h_t``; ``dL/dh_t = g_t + lambda_t`` restricted to the
    carry leaves that are ``h_t``. Nothing per step is kept beyond ``s_{t-1}``.
    """

    def forward(x, c):
        def body(c_, x_t):
            new_c, h = rec.step(c_, x_t)
            return new_c, (c_, h)

        return jax.lax.scan(body, rec.start(c), x)[1]

    prev, hs = map_sequences(forward, batch, xs, carry)
    value, g = jax.value_and_grad(loss_fn)(hs)

    def backward(x, prev, g):
        lam0 = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), rec.carry)

        def body(lam, inp):
            c, x_t, g_t = inp
            _, vjp = jax.vjp(rec.step, c, x_t)
            dh = g_t
            for leaf, hit in zip(jax.tree_util.tree_leaves(lam), rec.hits):
                if hit:
                    dh = dh + leaf
            lam_prev, dx = vjp((lam, g_t))
            flat = ravel_pytree(lam)[0]
            return lam_prev, (jnp.linalg.norm(dh), jnp.linalg.norm(flat), jnp.linalg.norm(dx))

        return jax.lax.scan(body, lam0, (prev, x, g), reverse=True)[1]

    back = backward if batch is None else jax.vmap(backward)
    hidden, state, inp = back(xs, prev, g)
    return GradientNorms(value, hidden, state, inp)


def _stacked_bytes(rec: _Step, T: int, batch: int | None, d: int, S: int) -> int:
    """Bytes the stacked backward pass keeps: per step, the residuals ``jax.vjp``
    saves for the scan (measured by tracing 1 and 2 steps, no compilation) plus the
    perturbations and their gradients ``(n + S)`` twice and ``dL/dx_t`` ``(d,)``."""
    n = rec.h.shape[-1]
    itemsize = jnp.dtype(rec.h.dtype).itemsize
    run = _perturbed_run(rec)

    def saved(steps: int) -> int:
        args = (
            jax.ShapeDtypeStruct((steps, d), rec.h.dtype),
            jax.ShapeDtypeStruct((steps, n), rec.h.dtype),
            jax.ShapeDtypeStruct((steps, S), _flat_dtype(rec)),
        )
        f = lambda x, p, e: jax.vjp(lambda *a: run(a[0], None, *a[1:]), x, p, e)[1]
        res = jax.tree_util.tree_leaves(jax.eval_shape(f, *args))
        return sum(a.size * jnp.dtype(a.dtype).itemsize for a in res)

    per_step = max(saved(2) - saved(1), 0) + (2 * (n + S) + d) * itemsize
    return (batch or 1) * T * per_step


def _check_loss_fn(loss_fn, hs_shape, dtype) -> None:
    """``loss_fn`` must be callable and map ``hs`` to a real scalar (checked by tracing)."""
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a function hs -> scalar, got {type(loss_fn).__name__}."
        )
    out = jax.eval_shape(loss_fn, jax.ShapeDtypeStruct(hs_shape, dtype))
    shape = getattr(out, "shape", None)
    if shape != ():
        got = f"shape {tuple(shape)}" if shape is not None else f"a {type(out).__name__}"
        raise ValueError(
            f"loss_fn must return a scalar (shape ()) for hs of shape {tuple(hs_shape)}, got "
            f"{got}; reduce it, e.g. with jnp.sum or jnp.mean."
        )


def gradient_norms(
    loss_fn: Callable[[jax.Array], jax.Array],
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    carry=None,
    mode: str = "auto",
    memory_budget: int | None = None,
) -> GradientNorms:
    """``||dL/dh_t||``, ``||dL/ds_t||`` and ``||dL/dx_t||`` for all ``t``, one backward pass.

    .. math::

       \\delta_t = \\frac{\\partial L}{\\partial h_t}
       = \\frac{\\partial \\ell}{\\partial h_t} + J_{t+1}^\\top \\delta_{t+1}

    Pascanu, Mikolov & Bengio (2013) plot exactly these norms. ``mode="stacked"``
    adds zero perturbations ``p_t`` (output, size ``n``) and ``e_t`` (state,
    size ``S``) inside the scan, ``h_t + p_t`` and ``s_t + e_t``, and one
    ``jax.grad`` with respect to ``(xs, p, e)`` gives every ``t`` at once.
    ``mode="streaming"`` runs the adjoint recursion itself: a forward scan keeps
    the states ``s_{t-1}`` and outputs ``h_t``, ``g_t = d loss_fn / d h_t`` is
    taken once, and a reverse scan applies one step's VJP at a time,
    ``(lambda_{t-1}, dL/dx_t) = vjp_t(lambda_t, g_t)`` with ``lambda_t = dL/ds_t``,
    emitting only the three norms. Where the cell's carry holds the output
    array itself (Elman, GRU, IndRNN; the LSTM's ``h``; the top of a
    non-residual stack), ``p_t`` perturbs that carry leaf too, so ``hidden`` is
    the full BPTT derivative (streaming: ``g_t`` plus that leaf of
    ``lambda_t``). The two modes agree to float rounding.

    Memory: ``"stacked"`` keeps, per step, the residuals of the scan's
    backward pass (for an LSTM about ``10 n``) plus ``p``, ``e``, their
    gradients and ``dL/dx`` (``2 (n + S) + d``); ``"streaming"`` keeps
    ``s_{t-1}``, ``h_t`` and ``g_t`` (``S + 2 n``) and nothing else per step.
    Both grow with ``T``: ``loss_fn`` sees the whole ``(T, n)`` output, so
    ``O(T n)`` is the floor. ``"auto"`` streams when the stacked pass's bytes
    (its residuals measured by tracing, not compiling, one and two steps)
    exceed ``memory_budget`` (default 256 MiB,
    :data:`~jrnn.diagnostics.DEFAULT_MEMORY_BUDGET`).

    Dtypes are promoted once: the carry takes the dtype ``cell.recur`` returns
    for these params and inputs (float32 params with float64 ``xs`` run in
    float64, as :func:`jrnn.unroll` does); integer ``xs`` take the params'
    float dtype.

    Args:
      loss_fn: ``hs -> scalar`` where ``hs`` is exactly what
        ``jrnn.unroll(cell, params, xs)`` returns: ``(T, n)`` for one
        sequence, ``(B, T, n)`` for a batch (so the loss may mix sequences,
        e.g. a batch mean). Parameters of a readout should be closed over.
      cell, params, xs, carry: as in :func:`step_jacobians`.
      mode: ``"auto"``, ``"stacked"`` or ``"streaming"`` (above).
      memory_budget: bytes for the ``"auto"`` rule.

    Returns:
      :class:`GradientNorms`.

    Raises:
      ValueError: unknown ``mode``, a bad ``memory_budget``, a ``loss_fn``
        that does not return a scalar, and everything :func:`jrnn.unroll`
        raises for ``cell``, ``params``, ``xs``, ``carry``.
      TypeError: a ``loss_fn`` that is not callable.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8)
        >>> params = cell.init(jax.random.key(0), 1)
        >>> g = jrnn.diagnostics.gradient_norms(lambda hs: jnp.sum(hs[-1]), cell,
        ...                                     params, jnp.ones((20, 1)), mode="streaming")
        >>> g.hidden.shape
        (20,)
    """
    batch = prepare(cell, params, xs, carry)
    if mode not in PROPAGATION_MODES:
        raise ValueError(f"mode must be one of {PROPAGATION_MODES}, got {mode!r}.")
    budget = check_budget(memory_budget)
    xs = float_inputs(xs, params)
    _check_loss_fn(loss_fn, xs.shape[:-1] + (cell.hidden_size,), xs.dtype)
    rec = _recurrence(cell, params, xs, carry, batch)
    T, d, S = xs.shape[-2], xs.shape[-1], cell.state_size
    if mode == "auto":
        big = _stacked_bytes(rec, T, batch, d, S) > budget
        mode = "streaming" if big else "stacked"
    if mode == "streaming":
        return _streaming_norms(loss_fn, rec, xs, carry, batch)
    return _stacked_norms(loss_fn, rec, xs, carry, batch, S)
