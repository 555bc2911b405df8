"""Memory capacity of a driven network: how well past inputs can be read linearly off the state.

.. math::

   MC_k = \\max_w \\mathrm{corr}^2(z_{t-k},\\, w^\\top s_t), \\qquad
   MC = \\sum_{k \\ge 0} MC_k \\le S

for an i.i.d. scalar input ``z_t`` (Jaeger 2001, "Short term memory in echo
state networks"). For a linear network ``s_t = A s_{t-1} + c z_t``,

.. math::

   MC_k = (A^k c)^\\top \\Gamma^{+} (A^k c), \\qquad
   \\Gamma = \\sum_{j \\ge 0} A^j c c^\\top A^{j\\top} = K K^\\top, \\quad
   K = [c, A c, A^2 c, \\dots]

so ``MC_k = e_k^T K^T (K K^T)^+ K e_k`` is the ``k``-th *leverage score* of the
Krylov (controllability) matrix ``K``: the squared norm of row ``k`` of an
orthonormal basis of its row space. Hence ``sum_k MC_k = rank K`` exactly, the
Kalman rank (Gonon, Grigoryeva & Ortega 2020), and the curve is independent of
the input mask ``c`` (Ballarin, Grigoryeva & Ortega 2024, "Memory of recurrent
networks: do we compute it right?", who show that estimates which ignore this
Krylov structure -- inverting an ill-conditioned sample covariance, regressing
in-sample -- contradict the theorem). :func:`memory_capacity` computes the
linear case that way (one SVD of ``K``, no covariance inverted) and the
nonlinear case by a well-conditioned, held-out regression.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import validation
from jrnn.cells.base import Cell, flatten_carry
from jrnn.diagnostics._trajectory import _unflattener
from jrnn.unrolling import check_inputs, match_carry_dtype

__all__ = ["MEMORY_CAPACITY_METHODS", "MemoryCapacity", "memory_capacity"]

#: Accepted ``method`` values of :func:`memory_capacity`.
MEMORY_CAPACITY_METHODS = ("auto", "krylov", "regression")
_MAX_HORIZON = 100_000


class MemoryCapacity(NamedTuple):
    """Result of :func:`memory_capacity`.

    Fields:
      curve: ``(max_delay + 1,)`` ``MC_k`` for delays ``k = 0..max_delay``
        (``k = 0``: the current input), each in ``[0, 1]``.
      total: ``()`` ``sum_k MC_k`` (at most the state size ``S``).
      stderr: ``(max_delay + 1,)`` standard error of each ``MC_k`` (from 10
        held-out blocks; 0 for ``"krylov"``, exact to rounding).
      rank: ``()`` the numerical rank of the Krylov matrix (``"krylov"``, which
        equals the total over all delays) or of the state sample (``"regression"``).
      method: ``"krylov"`` or ``"regression"``, the method used.
      linear: whether the step was found affine in ``(state, input)``.
    """

    curve: jax.Array
    total: jax.Array
    stderr: jax.Array
    rank: jax.Array
    method: str
    linear: bool


def _linearization(cell: Cell, params, direction, dtype):
    """``(A (S, S), c (S,), carry0, step)`` at the zero state and zero input, with the
    scalar input entering as ``x = z * direction``."""
    unravel = _unflattener(cell, params)
    d = direction.shape[0]
    u_struct = jax.eval_shape(cell.input_map, params, jnp.zeros((d,), dtype))
    c0 = match_carry_dtype(cell, params, cell.initial_carry(params), u_struct)
    s0 = flatten_carry(c0)

    def step(s, z):
        return flatten_carry(cell.step(params, unravel(s), z * direction)[0])

    z0 = jnp.zeros((), s0.dtype)
    A = jax.jacfwd(step, argnums=0)(s0, z0)
    c = jax.jacfwd(step, argnums=1)(s0, z0)
    return A, c, s0, step


def _is_affine(step, A, c, s0, key) -> bool:
    """Whether ``step(s, z) = step(s0, 0) + A (s - s0) + c z`` at a few random points."""
    S = s0.shape[0]
    f0 = step(s0, jnp.zeros((), s0.dtype))
    ks = jax.random.split(key, 2)
    ds = jax.random.normal(ks[0], (3, S), s0.dtype)
    zs = jax.random.normal(ks[1], (3,), s0.dtype)
    got = jax.vmap(step)(s0[None] + ds, zs)
    want = f0[None] + ds @ A.T + zs[:, None] * c[None]
    scale = 1.0 + jnp.max(jnp.abs(want))
    eps = float(jnp.finfo(s0.dtype).eps)
    return bool(jnp.max(jnp.abs(got - want)) <= 1e3 * eps * scale * S)


def _work(a):
    """At least float32: bfloat16 / float16 have no SVD or eigensolver."""
    return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def _spectral_radius(A) -> float:
    S = A.shape[0]
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(A, np.float64))))) if S else 0.0


def _krylov(A, c, max_delay: int, horizon: int | None):
    """Leverage scores of ``K = [c, A c, ..., A^{L-1} c]``: ``(curve, rank)``."""
    A, c = _work(A), _work(c)
    S = A.shape[0]
    rho = _spectral_radius(A)
    if not rho < 1.0:  # no stationary state: Gamma diverges and MC_k is undefined
        return jnp.full((max_delay + 1,), jnp.nan, A.dtype), jnp.asarray(0)
    if horizon is None:
        eps = float(jnp.finfo(A.dtype).eps)
        need = math.log(eps) / math.log(rho) if rho > 0 else 1
        horizon = int(min(_MAX_HORIZON, max(max_delay + 1, 2 * S, math.ceil(need) + S)))
    L = max(int(horizon), max_delay + 1)

    def body(v, _):
        return A @ v, v

    _, cols = jax.lax.scan(body, c, None, length=L)  # (L, S) = K^T
    _, sv, Vh = jnp.linalg.svd(cols.T, full_matrices=False)  # K = U diag(sv) Vh
    eps = float(jnp.finfo(A.dtype).eps)
    keep = sv > sv[0] * max(S, L) * eps
    lev = jnp.sum(jnp.where(keep[:, None], Vh**2, 0.0), axis=0)  # (L,)
    return lev[: max_delay + 1], jnp.sum(keep)


def _regression(step, s0, direction, max_delay, samples, washout, key, ridge, scale):
    """Held-out ridge regression of ``z_{t-k}`` on the standardised state."""
    n_total = washout + max_delay + samples
    z = jax.random.normal(key, (n_total,), s0.dtype)

    def body(s, zt):
        s = step(s, scale * zt)
        return s, s

    _, states = jax.lax.scan(body, s0, z)
    X = _work(states[washout + max_delay :])  # (samples, S)
    z = _work(z)
    lags = jnp.stack([z[washout + max_delay - k : n_total - k] for k in range(max_delay + 1)], 1)
    n_tr = samples // 2
    mu, sd = jnp.mean(X[:n_tr], 0)[None], jnp.std(X[:n_tr], 0)[None]
    live = sd > 0
    Xs = jnp.where(live, (X - mu) / jnp.where(live, sd, 1.0), 0.0)
    Xtr, Xte = Xs[:n_tr], Xs[n_tr:]
    ytr = lags[:n_tr] - jnp.mean(lags[:n_tr], 0)[None]
    U, sv, Vh = jnp.linalg.svd(Xtr, full_matrices=False)
    eps = float(jnp.finfo(X.dtype).eps)
    keep = sv > sv[0] * max(Xtr.shape) * eps
    lam = ridge * n_tr
    filt = jnp.where(keep, sv / (sv**2 + lam), 0.0)
    W = Vh.T @ (filt[:, None] * (U.T @ ytr))  # (S, K)
    pred = Xte @ W
    yte = lags[n_tr:]
    blocks = 10
    nb = (yte.shape[0] // blocks) * blocks

    def r2(p, y):
        pc, yc = p - jnp.mean(p, 0)[None], y - jnp.mean(y, 0)[None]
        den = jnp.sum(pc**2, 0) * jnp.sum(yc**2, 0)
        return jnp.where(den > 0, jnp.sum(pc * yc, 0) ** 2 / jnp.where(den > 0, den, 1.0), 0.0)

    curve = r2(pred, yte)
    per = jax.vmap(r2)(pred[:nb].reshape((blocks, -1) + pred.shape[1:]),
                       yte[:nb].reshape((blocks, -1) + yte.shape[1:]))
    stderr = jnp.std(per, axis=0, ddof=1) / math.sqrt(blocks)
    return curve, stderr, jnp.sum(keep)


def memory_capacity(
    cell: Cell,
    params,
    *,
    max_delay: int = 50,
    method: str = "auto",
    key: jax.Array | None = None,
    samples: int = 20_000,
    washout: int | None = None,
    input_scale: float = 1.0,
    input_direction: jax.Array | None = None,
    ridge: float = 1e-8,
    horizon: int | None = None,
) -> MemoryCapacity:
    """The memory-capacity curve ``MC_k``, ``k = 0..max_delay``, of a cell driven by i.i.d. input.

    .. math::

       x_t = \\sigma z_t\\, u, \\quad z_t \\sim N(0, 1), \\qquad
       MC_k = \\mathrm{corr}^2\\big(z_{t-k},\\, \\hat w_k^\\top s_t\\big)

    with ``s_t`` the flattened carry, ``u`` the unit ``input_direction`` and
    ``sigma = input_scale`` (Jaeger 2001).

    * ``method="krylov"``: the exact identity for the cell's linearisation at the
      zero state and input, ``s_t = A s_{t-1} + c z_t``: ``MC_k`` is the ``k``-th
      leverage score of ``K = [c, A c, ..., A^{L-1} c]`` (one SVD, rank cut at
      ``sigma_max max(S, L) eps``), so ``sum_k MC_k = rank K`` over all delays
      (Gonon et al. 2020) and nothing ill-conditioned is inverted (Ballarin et
      al. 2024). ``L = horizon`` (default: enough steps for ``rho(A)^L`` to
      reach rounding); exact for linear cells, the small-input limit otherwise.
      A spectral radius ``rho(A) >= 1`` has no stationary state: NaN.
    * ``method="regression"``: simulate ``washout + max_delay + samples``
      steps, standardise the states, fit ridge regression (SVD, ``ridge`` per
      sample) on the first half and report the squared correlation on the held-out
      second half (in-sample fits overstate ``MC_k`` by about ``S / samples``
      per delay, which adds up past ``S``); the error bar is over 10 held-out blocks.
    * ``"auto"`` (default): ``"krylov"`` when the step is affine in (state,
      input), checked numerically at random points, else ``"regression"``.

    Args:
      cell, params: the network.
      max_delay: largest delay ``k``, ``>= 0``.
      method: one of :data:`MEMORY_CAPACITY_METHODS`.
      key: PRNG key of the input (regression) and of the linearity check
        (default ``jax.random.key(0)``).
      samples: regression samples, ``>= 40``.
      washout: steps discarded before the first regression sample (default:
        ``max(100, 10 max_delay)``).
      input_scale: ``sigma > 0`` (a nonlinear network's MC depends on it).
      input_direction: ``(d,)`` direction the scalar input enters along
        (default ``ones(d) / sqrt(d)``); normalised.
      ridge: ``>= 0`` ridge penalty per sample on the standardised states.
      horizon: Krylov length ``L`` (``>= max_delay + 1``), default automatic.

    Returns:
      :class:`MemoryCapacity`. NaN parameters give NaN, and so does a step found
      linear with ``rho(A) >= 1`` whichever the method (no stationary state).
      Host-side decisions (the method, the rank, the horizon) make it eager:
      call it outside ``jax.jit``.

    Raises:
      ValueError: bad ``method``, ``max_delay < 0``, ``samples < 40``, ``input_scale <= 0``,
        ``ridge < 0``, an ``input_direction`` of the wrong shape or zero, bad params.
      TypeError: non-integer counts, a bad ``key``, a non-real ``input_direction``,
        params without floating leaves or traced (inside ``jax.jit``).

    Example::

        >>> cell = jrnn.cells.elman(3, "identity")
        >>> W = 0.5 * jnp.eye(3) + jnp.diag(jnp.array([0.0, 0.2, 0.4]))
        >>> params = {"W_xh": jnp.ones((3, 1)), "W_hh": W, "b_h": jnp.zeros(3)}
        >>> mc = jrnn.diagnostics.memory_capacity(cell, params, max_delay=200)
        >>> mc.method, int(mc.rank), round(float(mc.total), 3)
        ('krylov', 3, 3.0)
    """
    if method not in MEMORY_CAPACITY_METHODS:
        raise ValueError(f"method must be one of {MEMORY_CAPACITY_METHODS}, got {method!r}.")
    max_delay = validation.check_int(max_delay, "max_delay", low=0)
    samples = validation.check_int(samples, "samples", low=40)
    washout = max(100, 10 * max_delay) if washout is None else validation.check_int(
        washout, "washout", low=0)
    input_scale = validation.check_number(input_scale, "input_scale", low=0.0, low_open=True)
    ridge = validation.check_number(ridge, "ridge", low=0.0)
    if horizon is not None:
        horizon = validation.check_int(horizon, "horizon", low=max_delay + 1)
    key = jax.random.key(0) if key is None else validation.check_key(key, "key")
    leaves = jax.tree_util.tree_leaves(params)
    if any(isinstance(a, jax.core.Tracer) for a in leaves):
        raise TypeError("params must be concrete arrays: memory_capacity makes host-side "
                        "decisions (method, rank, horizon), so call it outside jax.jit / vmap, "
                        "got traced params.")
    validation.check_params(cell, params)
    floats = [a for a in leaves if validation.dtype_kind(getattr(a, "dtype", None)
                                                         or np.asarray(a).dtype) == "f"]
    if not floats:
        raise TypeError("params must have at least one real floating leaf, got none "
                        "(cast them with .astype(float)).")
    dtype = jnp.result_type(*floats)
    d = int(cell.input_size(params))
    check_inputs(cell, params, jnp.zeros((1, d), dtype), None)
    if input_direction is None:
        direction = jnp.ones((d,), dtype) / math.sqrt(d)
    else:
        if isinstance(input_direction, str | bytes | bool) or input_direction is None:
            raise TypeError(f"input_direction must be a real ({d},) vector, got "
                            f"{input_direction!r}.")
        raw = np.asarray(input_direction)
        if validation.dtype_kind(raw.dtype) not in "iuf":
            raise TypeError(f"input_direction must be a real ({d},) vector, got dtype "
                            f"{raw.dtype}.")
        if raw.shape != (d,):
            raise ValueError(f"input_direction must have shape ({d},), got {raw.shape}.")
        raw = raw.astype(np.float64)
        if not (np.all(np.isfinite(raw)) and np.any(raw != 0)):
            raise ValueError(f"input_direction must be a nonzero finite vector, got "
                             f"{raw.tolist()}.")
        direction = jnp.asarray(raw / np.linalg.norm(raw), dtype)

    A, c, s0, step = _linearization(cell, params, direction, dtype)
    finite = bool(jnp.all(jnp.isfinite(A)) & jnp.all(jnp.isfinite(c)))
    linear = finite and _is_affine(step, A, c, s0, jax.random.fold_in(key, 1))
    use = ("krylov" if linear else "regression") if method == "auto" else method
    n = max_delay + 1
    if not finite:
        nan = jnp.full((n,), jnp.nan, s0.dtype)
        return MemoryCapacity(nan, nan[0], nan, jnp.asarray(0), use, False)
    if use == "krylov":
        curve, rank = _krylov(A, c, max_delay, horizon)
        stderr = jnp.zeros_like(curve)
    elif linear and not _spectral_radius(A) < 1.0:
        # A linear network with rho(A) >= 1 has no stationary state: MC_k is undefined,
        # whatever a finite-sample regression on its growing states would report.
        curve = jnp.full((n,), jnp.nan, _work(A).dtype)
        stderr, rank = curve, jnp.asarray(0)
    else:
        curve, stderr, rank = _regression(step, s0, direction, max_delay, samples, washout,
                                          key, ridge, input_scale)
    return MemoryCapacity(curve, jnp.sum(curve), stderr, rank, use, linear)
