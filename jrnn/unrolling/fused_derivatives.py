"""The fused method's derivatives: the linear tangent scan, its hand-written transpose (the
backward pass) and the primitive that binds the two.

With the cotangent ``delta_t`` of the pre-activations
``a_t = W_xh x_t + W_hh h_{t-1} + b`` (Elman: ``delta_t = (dh_t + g_t) f'(a_t)``,
``dh_{t-1} = delta_t W_hh``) the backward pass accumulates the weight gradients

.. math::

   \\frac{\\partial L}{\\partial W_{hh}} = \\sum_t \\delta_t^\\top h_{t-1}, \\quad
   \\frac{\\partial L}{\\partial W_{xh}} = \\sum_t \\delta_t^\\top x_t, \\quad
   \\frac{\\partial L}{\\partial b} = \\sum_t \\delta_t

once per chunk of ``k`` steps: one ``(n, kB) x (kB, G)`` product per chunk. Each step is the
family's :class:`~jrnn.cells.fused.FusedRule` (``tangent`` and its transpose ``backward``);
nothing here looks at a cell's name. Arrays are time-major: ``X (T, B, d)``, ``H (T, B, n)``.

The default ``Fused()`` path binds :func:`tangent_scan` as one primitive
(``jrnn_tangent_scan``), linear in its tangent operands, whose transpose rule is
:func:`backward_scan`. JAX's own transpose of the tangent scan is correct but slower on CPU:
it turns the gate slices into pads and the weight terms into contractions over two leading
axes (BENCHMARKS.md). Other rules keep every mode working: forward mode evaluates the scan
itself; under ``vmap`` and for derivatives with respect to the residuals (second order) the
primitive inlines the readable scan, which JAX differentiates and transposes as usual.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["backward_scan", "bind_tangent", "is_zero", "mask_out", "split_chunks", "tangent_scan"]


def mask_out(H, mask):
    """``H`` with the steps past each sequence's end (``mask`` False) set to 0."""
    return H if mask is None else jnp.where(mask, H, jnp.zeros((), H.dtype))


def split_chunks(a, k):
    """``(T, ...) -> (T // k, k, ...)`` (None stays None)."""
    return None if a is None else a.reshape((a.shape[0] // k, k) + a.shape[1:])


def is_zero(t) -> bool:
    """True for an absent or symbolic-zero tangent."""
    return t is None or isinstance(t, SymbolicZero)


def tangent_scan(rule, unroll, k, same, W_xh, W_hh, X, H_prev, mask, res, lin):
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

    ins = (split_chunks(X, k), split_chunks(dX, k), split_chunks(hp_all, k), split_chunks(mask, k))
    ins = ins + (jax.tree_util.tree_map(lambda a: split_chunks(a, k), res),)
    dfinal, dH = jax.lax.scan(outer, tuple(dcarry0), ins)
    return dfinal, mask_out(dH.reshape((T,) + dH.shape[2:]), mask)


def backward_scan(rule, unroll, k, W_xh, W_hh, same, X, H_prev, mask, res, d_final, d_hs, axis):
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
        # fused into it, the dynamic slices made the LSTM step slower (BENCHMARKS.md).
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
        # barrier): faster on CPU than delta^T h, which contracts both leading axes.
        acc = (
            acc[0] + ob(x.reshape(-1, d).T) @ du2,
            acc[1] + du2.sum(0),
            acc[2] + ob(hp.reshape(-1, n).T) @ dhh2,
            acc[3] + dhh2.sum(0),
        )
        return (dcarry, acc), du @ W_xh

    ins = (split_chunks(jnp.arange(T), k), split_chunks(mask, k))
    ins = ins + (jax.tree_util.tree_map(lambda a: split_chunks(a, k), res), split_chunks(X, k))
    ins = ins + (split_chunks(H_prev, k),)
    z = jnp.zeros_like
    acc0 = (z(W_xh.T), z(W_xh[:, 0]), z(W_hh.T), z(W_hh[:, 0]))
    (dcarry0, acc), dX = jax.lax.scan(outer, (tuple(d_final), acc0), ins, reverse=True)
    dX = dX.reshape(X.shape)
    return acc[0].T, acc[1], acc[2].T, None if same else acc[3], dX, dcarry0


_NOT_MAPPED = getattr(batching, "not_mapped", None)


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
    dfinal, dH = tangent_scan(
        spec.rule, spec.unroll, spec.k, spec.same, W_xh, W_hh, X, H_prev, mask, res, lin
    )
    return (*dfinal, jnp.swapaxes(dH, 0, 1))  # dhs batch-major, as the primal hs


_tangent_p = Primitive("jrnntangent_scan")
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
    dW_xh, db_x, dW_hh, db_hh, dX, dcarry0 = backward_scan(
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


def bind_tangent(rule, unroll, k, same, W_xh, W_hh, X, H_prev, mask, res, lin):
    """``tangent_scan`` as the linear primitive (hand-written transpose); ``dhs`` batch-major
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
