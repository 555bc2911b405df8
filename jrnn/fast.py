"""Batch-major training paths for every cell with a ``fused_rule`` (elman family, LSTM, GRU).

The readable reference (:func:`jrnn.unroll` with ``fused=False``) scans the
cell's one-example ``recur`` and vmaps it over the batch; ``jax.grad`` then
differentiates that scan step by step. This module runs the same function
batch-major: one ``(B, n) x (n, G)`` product per step for all gates of all
units, the cell's step written on ``(B, n)`` blocks by its family
(:class:`jrnn.cells.fused.FusedRule`, the ``Cell.fused_rule`` field), dtypes
matched once outside the scan, and no mask unless ``lengths`` is given. This
module only holds the shared scan and chunking machinery; it never looks at a
cell's name.

Two differentiation rules, same values:

* **default** (:func:`batched_unroll`, what :func:`jrnn.unroll` uses for these
  cells): a ``jax.custom_jvp`` whose tangent is a *linear* scan of the rule's
  ``tangent`` over residuals saved by the forward scan (derivative
  coefficients formed from pre-activations), bound as one linear primitive
  (``jrnn_tangent_scan``). Forward mode (``jax.jvp``, ``jacfwd``) evaluates
  the scan; reverse mode (``jax.grad``) uses the primitive's transpose rule,
  which is the family's hand-written ``backward`` (the same reverse pass as
  ``fused=True``: weight gradients as one ``(n, kB) x (kB, G)`` product per
  chunk of ``k`` steps). Under ``vmap`` and for second-order derivatives the
  primitive inlines the readable tangent scan, which JAX batches,
  differentiates and transposes itself, so every mode and higher orders work.
* ``fused=True`` (:func:`fused_unroll`): a ``jax.custom_vjp`` with the rule's
  hand-written ``backward``; reverse mode only.

Weight-gradient schedule (``weight_grads``): ``"in_loop"`` uses chunks of
``k`` steps whose ``delta`` and ``h_{t-1}`` fit in about 2 MiB (on this CPU
1.2-1.7x faster than one big product, see ``BENCHMARKS.md``), ``"after"``
one chunk of all ``T`` steps (one large product; accelerators).

With the cotangent ``delta_t`` of the pre-activations
``a_t = W_xh x_t + W_hh h_{t-1} + b`` (Elman: ``delta_t = (dh_t + g_t) f'(a_t)``,
``dh_{t-1} = delta_t W_hh``):

.. math::

   \\frac{\\partial L}{\\partial W_{hh}} = \\sum_t \\delta_t^\\top h_{t-1}, \\quad
   \\frac{\\partial L}{\\partial W_{xh}} = \\sum_t \\delta_t^\\top x_t, \\quad
   \\frac{\\partial L}{\\partial b} = \\sum_t \\delta_t .

Values and derivatives equal those of the reference scan to float rounding
(``tests/test_fast.py``: 1e-10 in float64).

Example::

    >>> import jax, jax.numpy as jnp, jrnn
    >>> cell = jrnn.cells.lstm(8)
    >>> params = cell.init(jax.random.key(0), 2)
    >>> xs = jnp.ones((4, 10, 2))
    >>> _, hs = jrnn.fast.batched_unroll(cell, params, xs)
    >>> _, ref = jrnn.unroll(cell, params, xs, fused=False)
    >>> bool(jnp.allclose(hs, ref, atol=1e-6))
    True
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jrnn.cells.base import Cell

__all__ = [
    "batched_unroll",
    "default_weight_grads",
    "fused_unroll",
    "supports",
]


def _varies(x) -> bool:
    """True inside ``jax.shard_map`` (with ``check_vma``) when ``x`` varies over mesh axes."""
    mat = getattr(jax.typeof(x), "mat", None)
    return bool(getattr(mat, "varying", ()))


def vary_like(tree, x):
    """``tree`` plus an exact zero made from ``x``: inside ``jax.shard_map`` the carry then
    varies over the same mesh axes as the inputs (an initial carry built from replicated
    params is invariant, and a scan whose carry turns varying after one step is a type error).
    Elsewhere (``x`` varies over no mesh axis) ``tree`` is returned as is, with no op added."""
    if not _varies(x):
        return tree
    z = jnp.zeros_like(x, shape=())
    return jax.tree_util.tree_map(lambda a: a + z.astype(jnp.result_type(a)), tree)


def supports(cell: Cell) -> bool:
    """True when ``cell`` carries a fused rule (``cell.fused_rule is not None``)."""
    return isinstance(cell, Cell) and cell.fused_rule is not None


def default_weight_grads() -> str:
    """``"in_loop"`` on CPU, ``"after"`` on accelerators (see the module docstring)."""
    return "in_loop" if jax.default_backend() == "cpu" else "after"


def _chunk_size(T: int, target: int) -> int:
    """The largest divisor of ``T`` that is at most ``target``."""
    return max(k for k in range(1, max(1, min(target, T)) + 1) if T % k == 0)


# Bytes of delta and h_{t-1} one in-loop chunk keeps for its weight-gradient product: about
# an L2 cache. On the 2-core benchmark machine this picked 32 steps for the Elman cell
# (1.89x flax vs 1.71x at 8), 16 for the GRU and 8 for the LSTM (the measured optima).
_CHUNK_BYTES = 2 << 20


def _chunk(mode: str, T: int, B: int, G: int, n: int, itemsize: int) -> int:
    if mode == "after":
        return max(T, 1)
    return _chunk_size(T, max(1, _CHUNK_BYTES // max(1, B * (G + n) * itemsize)))


def _mask_out(H, mask):
    return H if mask is None else jnp.where(mask, H, jnp.zeros((), H.dtype))


def _scan_forward(rule, W_xh, b_x, W_hh, b_hh, X, carry0, mask, unroll, with_res):
    """Time-major forward scan: ``(final carry, H (T, B, n), residual stacks)``."""
    W_xh_t, W_hh_t = W_xh.T, W_hh.T  # transposed once, outside the loop

    def body(carry, inp):
        x, m = inp
        u = x @ W_xh_t + b_x[None, :]
        hh = carry[0] @ W_hh_t
        if b_hh is not None:
            hh = hh + b_hh[None, :]
        new, res = rule.forward(carry, u, hh, with_res)
        if m is not None:
            new = tuple(jnp.where(m, a, b) for a, b in zip(new, carry))
        return new, (new[0], res)

    final, (H, res) = jax.lax.scan(body, carry0, (X, mask), unroll=unroll)
    return final, H, res


def _split(a, k):
    return None if a is None else a.reshape((a.shape[0] // k, k) + a.shape[1:])


def _is_zero(t) -> bool:
    return t is None or isinstance(t, SymbolicZero)


def _tangent_scan(rule, unroll, k, same, W_xh, W_hh, X, H_prev, mask, res, lin):
    """The linear tangent map: ``lin = (dW_xh, db_x, dW_hh, db_hh, dX, dcarry0) -> (dfinal, dH)``.

    Entries of ``lin`` may be None (zero). Weight and input terms are formed once per chunk of
    ``k`` steps (one product each), so the transpose accumulates per chunk too.
    """
    dW_xh, db_x, dW_hh, db_hh, dX, dcarry0 = lin
    T, B, _ = X.shape
    G, n = W_hh.shape
    W_xh_t, W_hh_t = W_xh.T, W_hh.T
    dW_xh_t = None if dW_xh is None else dW_xh.T
    dW_hh_t = None if dW_hh is None else dW_hh.T
    hp_all = None if dW_hh is None else H_prev

    def outer(dcarry, inp):
        x, dx, hp, m, r = inp
        e_u = jnp.zeros(x.shape[:2] + (G,), X.dtype)
        if dW_xh_t is not None:
            e_u = e_u + x @ dW_xh_t
        if dx is not None:
            e_u = e_u + dx @ W_xh_t
        if db_x is not None:
            e_u = e_u + db_x[None, None, :]
        e_hh = None if hp is None else hp @ dW_hh_t
        if not same:
            if db_hh is not None:
                e_hh = db_hh[None, None, :] if e_hh is None else e_hh + db_hh[None, None, :]
            e_hh = jnp.zeros_like(e_u) if e_hh is None else jnp.broadcast_to(e_hh, e_u.shape)
        elif e_hh is not None:
            e_u, e_hh = e_u + e_hh, None

        def inner(dc, inp2):
            eu, ehh, m_t, r_t = inp2
            dhh = dc[0] @ W_hh_t
            if ehh is not None:
                dhh = dhh + ehh
            dnew = rule.tangent(r_t, dc, eu, dhh)
            if m_t is not None:
                dnew = tuple(jnp.where(m_t, a, b) for a, b in zip(dnew, dc))
            return dnew, dnew[0]

        return jax.lax.scan(inner, dcarry, (e_u, e_hh, m, r), unroll=unroll)

    ins = (_split(X, k), _split(dX, k), _split(hp_all, k), _split(mask, k))
    ins = ins + (jax.tree_util.tree_map(lambda a: _split(a, k), res),)
    dfinal, dH = jax.lax.scan(outer, tuple(dcarry0), ins)
    return dfinal, _mask_out(dH.reshape((T,) + dH.shape[2:]), mask)


def _backward_scan(rule, unroll, k, W_xh, W_hh, same, X, H_prev, mask, res, d_final, d_hs, axis):
    """The hand-written transpose: ``(d_final, d_hs) -> (dW_xh, db_x, dW_hh, db_hh, dX, dcarry0)``.

    ``d_hs`` is time-major (``axis=0``) or batch-major (``axis=1``), read in place. Weight
    gradients are accumulated once per chunk of ``k`` steps; ``db_hh`` is None when ``same``.
    """
    T, B, d = X.shape
    G, n = W_hh.shape
    ob = jax.lax.optimization_barrier

    def inner(dcarry, inp):
        t, m, r = inp
        g = jax.lax.dynamic_index_in_dim(d_hs, t, axis=axis, keepdims=False)
        dnew = (dcarry[0] + g,) + tuple(dcarry[1:])
        if m is not None:
            dnew = tuple(jnp.where(m, a, jnp.zeros((), a.dtype)) for a in dnew)
        # Materialise this step's slices of the saved stacks before the gate arithmetic:
        # fused into it, the dynamic slices made the LSTM step ~8% slower.
        r = ob(r)
        direct, du, dhh = rule.backward(r, dnew)
        dprev = (direct[0] + dhh @ W_hh,) + tuple(direct[1:])
        if m is not None:
            dprev = tuple(jnp.where(m, a, b) for a, b in zip(dprev, dcarry))
        return dprev, (du, None if same else dhh)

    def outer(carry, inp):
        dcarry, acc = carry
        ts, m, r, x, hp = inp
        dcarry, (du, dhh) = jax.lax.scan(inner, dcarry, (ts, m, r), reverse=True, unroll=unroll)
        du2 = du.reshape(-1, G)
        dhh2 = du2 if same else dhh.reshape(-1, G)
        # Transposed accumulators dW^T += h^T delta with h^T materialised (behind the
        # barrier): on CPU 1.7x faster than delta^T h, which contracts both leading axes.
        acc = (
            acc[0] + ob(x.reshape(-1, d).T) @ du2,
            acc[1] + du2.sum(0),
            acc[2] + ob(hp.reshape(-1, n).T) @ dhh2,
            acc[3] + dhh2.sum(0),
        )
        return (dcarry, acc), du @ W_xh

    ins = (_split(jnp.arange(T), k), _split(mask, k))
    ins = ins + (jax.tree_util.tree_map(lambda a: _split(a, k), res), _split(X, k))
    ins = ins + (_split(H_prev, k),)
    z = jnp.zeros_like
    acc0 = (z(W_xh.T), z(W_xh[:, 0]), z(W_hh.T), z(W_hh[:, 0]))
    (dcarry0, acc), dX = jax.lax.scan(outer, (tuple(d_final), acc0), ins, reverse=True)
    dX = dX.reshape(X.shape)
    return acc[0].T, acc[1], acc[2].T, None if same else acc[3], dX, dcarry0


_NOT_MAPPED = getattr(batching, "not_mapped", None)


def _h_prev(H, carry0):
    return jnp.concatenate([carry0[0][None], H[:-1]], axis=0)


# ----------------------------------------------------------------------------- tangent primitive
#
# The default path's tangent scan is bound as one primitive, linear in its last operands, whose
# transpose rule is the family's hand-written backward (``_backward_scan``). JAX's own transpose
# of the tangent scan is correct but slow on CPU: it turns the gate slices into pads and the
# weight terms into contractions over two leading axes (GRU train step 185 vs 99 ms, LSTM
# 182 vs 136 ms, profiled on the 2-core benchmark machine). Other rules keep every mode working:
# forward mode evaluates the scan itself; under ``vmap`` and for derivatives with respect to
# the residuals (second order) the primitive inlines the readable scan, which JAX
# differentiates and transposes as usual.


class _TangentSpec(NamedTuple):
    """Static description of one tangent-scan binding (hashable primitive parameter)."""

    rule: Any
    unroll: int
    k: int
    same: bool
    has_mask: bool
    res_tree: Any  # treedef of the rule's residual stacks
    n_res_leaves: int
    present: tuple  # which of (dW_xh, db_x, dW_hh, db_hh, dX) carry a tangent
    n_carry: int


def _unpack(spec, ops):
    """Operands -> (W_xh, W_hh, X, H_prev, mask, res, lin)."""
    it = iter(ops)
    W_xh, W_hh, X, H_prev = next(it), next(it), next(it), next(it)
    mask = next(it) if spec.has_mask else None
    res = jax.tree_util.tree_unflatten(spec.res_tree, [next(it) for _ in range(spec.n_res_leaves)])
    lin = [next(it) if p else None for p in spec.present]
    dcarry0 = tuple(next(it) for _ in range(spec.n_carry))
    return W_xh, W_hh, X, H_prev, mask, res, tuple(lin) + (dcarry0,)


def _n_residual_ops(spec):
    return 4 + int(spec.has_mask) + spec.n_res_leaves


def _tangent_eval(*ops, spec):
    W_xh, W_hh, X, H_prev, mask, res, lin = _unpack(spec, ops)
    dfinal, dH = _tangent_scan(
        spec.rule, spec.unroll, spec.k, spec.same, W_xh, W_hh, X, H_prev, mask, res, lin
    )
    return (*dfinal, jnp.swapaxes(dH, 0, 1))  # dhs batch-major, as the primal hs


_tangent_p = Primitive("jrnn_tangent_scan")
_tangent_p.multiple_results = True
_tangent_p.def_impl(_tangent_eval)


def _tangent_abstract(*avals, spec):
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals]
    out = jax.eval_shape(functools.partial(_tangent_eval, spec=spec), *shapes)
    return [jax.core.ShapedArray(o.shape, o.dtype) for o in out]


_tangent_p.def_abstract_eval(_tangent_abstract)
mlir.register_lowering(_tangent_p, mlir.lower_fun(_tangent_eval, multiple_results=True))


def _tangent_jvp(primals, tangents, *, spec):
    n_res = _n_residual_ops(spec)
    out = _tangent_p.bind(*primals, spec=spec)
    if all(type(t) is ad.Zero for t in tangents[:n_res]):
        # Linear in the remaining operands: the tangent is the map itself.
        lin_t = [ad.instantiate_zeros(t) for t in tangents[n_res:]]
        return out, _tangent_p.bind(*primals[:n_res], *lin_t, spec=spec)
    tangents = [ad.instantiate_zeros(t) for t in tangents]
    _, out_t = jax.jvp(functools.partial(_tangent_eval, spec=spec), primals, tangents)
    return out, list(out_t)


def _tangent_transpose(cts, *ops, spec):
    n_res = _n_residual_ops(spec)
    if any(ad.is_undefined_primal(o) for o in ops[:n_res]):
        raise NotImplementedError("jrnn tangent scan: transpose with respect to residuals.")
    padded = list(ops[:n_res]) + [None] * (len(ops) - n_res)  # linear operands: unknown
    W_xh, W_hh, X, H_prev, mask, res, _ = _unpack(spec, padded)
    T, B, _ = X.shape
    n = W_hh.shape[1]
    # Output cotangents: one per carry leaf (each (B, n_leaf)), then d_hs (B, T, n).
    carry_avals = [o.aval for o in ops[-spec.n_carry :]]
    cts = [
        jnp.zeros(av.shape, av.dtype) if type(c) is ad.Zero else c
        for c, av in zip(cts, carry_avals + [jax.core.ShapedArray((B, T, n), X.dtype)])
    ]
    d_final, d_hs = tuple(cts[: spec.n_carry]), cts[spec.n_carry]  # d_hs (B, T, n)
    dW_xh, db_x, dW_hh, db_hh, dX, dcarry0 = _backward_scan(
        spec.rule, spec.unroll, spec.k, W_xh, W_hh, spec.same, X, H_prev, mask, res,
        d_final, d_hs, 1,
    )  # fmt: skip
    lin = [g for g, p in zip((dW_xh, db_x, dW_hh, db_hh, dX), spec.present) if p]
    return [None] * n_res + lin + list(dcarry0)


def _tangent_batch(args, dims, *, spec):
    # Under vmap the scan is inlined (JAX batches, differentiates and transposes it as usual).
    in_axes = [None if d is None or d is _NOT_MAPPED else d for d in dims]
    out = jax.vmap(functools.partial(_tangent_eval, spec=spec), in_axes=in_axes)(*args)
    return list(out), [0] * len(out)


ad.primitive_jvps[_tangent_p] = _tangent_jvp
ad.primitive_transposes[_tangent_p] = _tangent_transpose
batching.primitive_batchers[_tangent_p] = _tangent_batch


def _bind_tangent(rule, unroll, k, same, W_xh, W_hh, X, H_prev, mask, res, lin):
    """``_tangent_scan`` as the linear primitive (hand-written transpose); ``dhs`` batch-major
    ``(B, T, n)``, so the transpose reads the cotangent of ``hs`` in place."""
    *lin_w, dcarry0 = lin
    res_leaves, res_tree = jax.tree_util.tree_flatten(res)
    present = tuple(a is not None for a in lin_w)
    spec = _TangentSpec(
        rule,
        int(unroll),
        int(k),
        bool(same),
        mask is not None,
        res_tree,
        len(res_leaves),
        present,
        len(dcarry0),
    )
    ops = [W_xh, W_hh, X, H_prev] + ([mask] if mask is not None else []) + res_leaves
    ops += [a for a in lin_w if a is not None] + list(dcarry0)
    out = _tangent_p.bind(*ops, spec=spec)
    return tuple(out[: spec.n_carry]), out[spec.n_carry]


@functools.lru_cache(maxsize=256)
def _jvp_runner(rule, unroll: int, mode: str):
    """Custom-JVP map ``(W_xh, b_x, W_hh, b_hh, X, carry0, mask) -> (carry_T, hs (B, T, n))``."""

    @jax.custom_jvp
    def run(W_xh, b_x, W_hh, b_hh, X, carry0, mask):
        final, H, _ = _scan_forward(rule, W_xh, b_x, W_hh, b_hh, X, carry0, mask, unroll, False)
        return final, jnp.swapaxes(_mask_out(H, mask), 0, 1)

    def run_jvp(primals, tangents):
        W_xh, b_x, W_hh, b_hh, X, carry0, mask = primals
        final, H, res = _scan_forward(rule, W_xh, b_x, W_hh, b_hh, X, carry0, mask, unroll, True)
        T, B, _ = X.shape
        G, n = W_hh.shape
        k = _chunk(mode, T, B, G, n, jnp.dtype(X.dtype).itemsize)
        same = b_hh is None
        H_prev = _h_prev(H, carry0)
        lin = tuple(None if _is_zero(t) else t for t in tangents[:5])
        dcarry0 = tuple(
            jnp.zeros_like(c) if _is_zero(d) else d for c, d in zip(carry0, tangents[5])
        )
        resid = (W_xh, W_hh, X, H_prev, mask, res)
        # A linear primitive: forward mode runs the tangent scan, jax.grad its transpose rule,
        # the family's hand-written backward (per-chunk weight products).
        # (Inside shard_map, where operands carry varying mesh axes, JAX's own transpose.)
        if _varies(X):
            dfinal, dH = _tangent_scan(rule, unroll, k, same, *resid, lin + (dcarry0,))
            out = (dfinal, jnp.swapaxes(dH, 0, 1))
        else:
            out = _bind_tangent(rule, unroll, k, same, *resid, lin + (dcarry0,))
        return (final, jnp.swapaxes(_mask_out(H, mask), 0, 1)), out

    run.defjvp(run_jvp, symbolic_zeros=True)
    return run


@functools.lru_cache(maxsize=256)
def _vjp_runner(rule, unroll: int, mode: str):
    """Custom-VJP map ``(W_xh, b_x, W_hh, b_hh, X, carry0, mask) -> (carry_T, hs (B, T, n))``."""

    def forward(W_xh, b_x, W_hh, b_hh, X, carry0, mask):
        final, H, res = _scan_forward(rule, W_xh, b_x, W_hh, b_hh, X, carry0, mask, unroll, True)
        # Returned batch-major: the backward reads its cotangent d_hs[:, t] in place instead of
        # transposing the whole (B, T, n) cotangent (8% of the Elman step at the benchmark size).
        hs = jnp.swapaxes(_mask_out(H, mask), 0, 1)
        return (final, hs), (W_xh, W_hh, b_hh is None, X, carry0, H, res, mask)

    @jax.custom_vjp
    def run(W_xh, b_x, W_hh, b_hh, X, carry0, mask):
        final, H, _ = _scan_forward(rule, W_xh, b_x, W_hh, b_hh, X, carry0, mask, unroll, False)
        return final, jnp.swapaxes(_mask_out(H, mask), 0, 1)

    def backward(saved, cts):
        W_xh, W_hh, same, X, carry0, H, res, mask = saved
        d_final, d_hs = cts  # d_hs (B, T, n)
        T, B, _ = X.shape
        G, n = W_hh.shape
        k = _chunk(mode, T, B, G, n, jnp.dtype(X.dtype).itemsize)
        grads = _backward_scan(
            rule, unroll, k, W_xh, W_hh, same, X, _h_prev(H, carry0), mask, res, d_final, d_hs, 1
        )
        return grads + (None,)

    run.defvjp(forward, backward)
    return run


def _run(cell, params, xs, carry, lengths, reverse, unroll, weight_grads, custom):
    if not supports(cell):
        raise ValueError(
            f"cell must carry a fused_rule (elman, irnn, residual, lstm, gru), got "
            f"{cell.describe() if isinstance(cell, Cell) else type(cell).__name__}; "
            "use fused=False for other cells."
        )
    mode = default_weight_grads() if weight_grads is None else weight_grads
    if mode not in ("in_loop", "after"):
        raise ValueError(f"weight_grads must be 'in_loop', 'after' or None, got {mode!r}.")
    rule = cell.fused_rule
    xs = jnp.asarray(xs)
    single = xs.ndim == 2
    if single:
        xs = xs[None]
        carry = None if carry is None else jax.tree_util.tree_map(lambda c: c[None], carry)
        lengths = None if lengths is None else jnp.reshape(lengths, (1,))
    B, T, _ = xs.shape
    if carry is None:
        c1 = cell.initial_carry(params)
        carry = jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (B,) + c.shape), c1)
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    W_xh, b_x, W_hh, b_hh = rule.weights(params)
    # One dtype for everything, fixed outside the scan (e.g. float32 params, float64 inputs).
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params), xs, *leaves)
    X = jnp.swapaxes(xs, 0, 1).astype(dtype)  # (T, B, d)
    mask = None
    if lengths is not None:
        mask = (jnp.arange(T)[:, None] < jnp.asarray(lengths)[None, :])[:, :, None]
        # Padding never reaches the arithmetic, so NaN/inf there cannot leak into gradients.
        X = jnp.where(mask, X, jnp.zeros((), X.dtype))
    if reverse:
        X = X[::-1]
        mask = None if mask is None else mask[::-1]
    # Inside jax.shard_map every operand varies like the inputs (replicated params get an exact
    # zero from X; JAX sums their cotangents over the mesh axes as for any replicated operand).
    carry0 = tuple(c.astype(dtype) for c in vary_like(leaves, X))
    W_xh, b_x, W_hh = vary_like(tuple(a.astype(dtype) for a in (W_xh, b_x, W_hh)), X)
    b_hh = None if b_hh is None else vary_like(b_hh.astype(dtype), X)
    if custom:
        final, hs = _vjp_runner(rule, unroll, mode)(W_xh, b_x, W_hh, b_hh, X, carry0, mask)
    else:
        final, hs = _jvp_runner(rule, unroll, mode)(W_xh, b_x, W_hh, b_hh, X, carry0, mask)
    if reverse:
        hs = hs[:, ::-1]
    final = jax.tree_util.tree_unflatten(treedef, list(final))
    if single:
        hs = hs[0]
        final = jax.tree_util.tree_map(lambda c: c[0], final)
    return final, hs


def batched_unroll(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    *,
    carry: Any = None,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    unroll: int = 1,
    weight_grads: str | None = None,
) -> tuple[Any, jax.Array]:
    """:func:`jrnn.unroll`'s default path for cells with a ``fused_rule``.

    Same arguments and results as :func:`jrnn.unroll` (``remat`` excluded;
    inputs are validated there). Batch-major recurrence with a custom JVP
    (linear tangent scan): ``jax.grad``, ``jax.jvp``, ``jacfwd``, ``vmap`` and
    higher orders all work.

    Args:
      weight_grads: ``"in_loop"`` or ``"after"`` (see the module docstring);
        ``None`` picks :func:`default_weight_grads`.

    Raises:
      ValueError: if ``cell`` has no ``fused_rule`` or ``weight_grads`` is unknown.
    """
    return _run(cell, params, xs, carry, lengths, reverse, unroll, weight_grads, False)


def fused_unroll(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    *,
    carry: Any = None,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    unroll: int = 1,
    weight_grads: str | None = None,
) -> tuple[Any, jax.Array]:
    """As :func:`batched_unroll`, with the rule's hand-written backward (``jax.custom_vjp``).

    Reverse mode only (``jax.grad``, ``jax.vjp``; no ``jax.jvp`` / ``jacfwd``).
    :func:`jrnn.unroll` uses it with ``fused=True``.

    Raises:
      ValueError: if ``cell`` has no ``fused_rule`` or ``weight_grads`` is unknown.
    """
    return _run(cell, params, xs, carry, lengths, reverse, unroll, weight_grads, True)
