"""The fused method: cells with a ``fused`` capability (pointwise family, LSTM, GRU) run
batch-major.

The reference (:class:`~jrnn.unrolling.scan.Scan`) scans the cell's one-example ``recur`` and
vmaps it over the batch; ``jax.grad`` then differentiates that scan step by step. This method
runs the same function batch-major: one ``(B, n) x (n, G)`` product per step for all gates of
all units, the cell's step written on ``(B, n)`` blocks by its family
(:class:`jrnn.cells.fused.FusedRule`, the ``Cell.fused`` capability), dtypes matched once
outside the scan, and no mask unless ``lengths`` is given. It only holds the shared scan and
chunking machinery; it never looks at a cell's name. With ``u_t = x_t W_xh^T + b_x`` (all
steps) and ``hh_t = h_{t-1} W_hh^T (+ b_hh)``, both ``(B, G)`` with ``G = gates * n``:

.. math::

   (s_t, \\mathrm{res}_t) = \\mathrm{rule.forward}(s_{t-1}, u_t, hh_t), \\qquad h_t = s_t[0].

Two differentiation rules (:attr:`Fused.backward`), same values:

* ``"transpose"`` (default): a ``jax.custom_jvp`` whose tangent is a *linear* scan of the
  rule's ``tangent`` over residuals saved by the forward scan (derivative coefficients formed
  from pre-activations), bound as one linear primitive (``jrnntangent_scan``,
  :mod:`jrnn.unrolling.fused_derivatives`). Forward mode (``jax.jvp``, ``jacfwd``) evaluates
  the scan; reverse mode (``jax.grad``) uses the primitive's transpose rule, the family's
  hand-written ``backward`` (weight gradients as one ``(n, kB) x (kB, G)`` product per chunk
  of ``k`` steps). Under ``vmap`` and for second-order derivatives the primitive inlines the
  readable tangent scan, which JAX batches, differentiates and transposes itself, so every
  mode and higher orders work.
* ``"custom_vjp"``: a ``jax.custom_vjp`` with the same hand-written ``backward``; reverse mode
  only (``jax.grad``, ``jax.vjp``; no ``jax.jvp`` / ``jacfwd``).

Weight-gradient schedule (:attr:`Fused.weight_grads`): ``"in_loop"`` uses chunks of ``k``
steps whose ``delta`` and ``h_{t-1}`` fit in about 2 MiB (faster on CPU than one big product,
BENCHMARKS.md), ``"after"`` one chunk of all ``T`` steps (one large product; accelerators).

Values and derivatives equal those of the reference scan to float rounding
(``tests/test_unroll_fused.py``: 1e-10 in float64).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jrnn import validation
from jrnn.cells.base import Cell
from jrnn.unrolling._inputs import missing_capability, varies, vary_like
from jrnn.unrolling.fused_derivatives import (
    backward_scan,
    bind_tangent,
    is_zero,
    mask_out,
    tangent_scan,
)

__all__ = ["Fused", "default_weight_grads"]

_BACKWARDS = ("transpose", "custom_vjp")
_WEIGHT_GRADS = ("in_loop", "after")


class Fused(NamedTuple):
    """Batch-major recurrence with a hand-written backward pass (cells with a ``fused`` capability).

    Fields:
      backward: ``"transpose"`` (default): a custom JVP with a linear tangent
        scan whose transpose is the hand-written backward; ``jax.grad``,
        ``jax.jvp``, ``jacfwd``, ``vmap`` and higher orders all work.
        ``"custom_vjp"``: the same backward as a ``jax.custom_vjp``, reverse
        mode only.
      weight_grads: ``"in_loop"`` (weight gradients per chunk of steps that
        fits a cache) or ``"after"`` (one product over all ``T`` steps);
        ``None`` picks :func:`default_weight_grads` (by backend).
      unroll: steps unrolled per scan iteration (``lax.scan(unroll=...)``), an
        integer ``>= 1``; values are unchanged.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.lstm(8)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> xs = jnp.ones((4, 10, 2))
        >>> _, hs = jrnn.unroll(cell, params, xs, method=jrnn.Fused(backward="custom_vjp"))
        >>> _, ref = jrnn.unroll(cell, params, xs, method=jrnn.Scan())
        >>> bool(jnp.allclose(hs, ref, atol=1e-6))
        True
    """

    backward: str = "transpose"
    weight_grads: str | None = None
    unroll: int = 1

    def supports(self, cell: Cell) -> str | None:
        """None when ``cell`` has a ``fused`` capability, else the reason it cannot run."""
        return missing_capability(
            "Fused()", cell, "fused", "a fused capability (elman, irnn, residual, leaky, lstm, gru)"
        )

    def check(self) -> Fused:
        """This record with its fields checked.

        Raises:
          ValueError: ``backward`` or ``weight_grads`` is not one of the names above,
            ``unroll < 1``.
          TypeError: ``unroll`` is not an integer.
        """
        if self.backward not in _BACKWARDS:
            raise ValueError(f"Fused.backward must be one of {_BACKWARDS}, got {self.backward!r}.")
        if self.weight_grads is not None and self.weight_grads not in _WEIGHT_GRADS:
            raise ValueError(
                f"Fused.weight_grads must be one of {_WEIGHT_GRADS} or None, got "
                f"{self.weight_grads!r}."
            )
        validation.check_int(self.unroll, "Fused.unroll", low=1)
        return self

    def run(self, cell: Cell, params, xs, carry, lengths, reverse: bool):
        """``(final carry, hs)`` for checked inputs (:func:`jrnn.unroll` checks them)."""
        mode = default_weight_grads() if self.weight_grads is None else self.weight_grads
        custom = self.backward == "custom_vjp"
        return _run(cell, params, xs, carry, lengths, reverse, self.unroll, mode, custom)


def default_weight_grads() -> str:
    """``"in_loop"`` on CPU, ``"after"`` on accelerators: what ``Fused(weight_grads=None)`` uses."""
    return "in_loop" if jax.default_backend() == "cpu" else "after"


def _chunk_size(T: int, target: int) -> int:
    """The largest divisor of ``T`` that is at most ``target``."""
    return max(k for k in range(1, max(1, min(target, T)) + 1) if T % k == 0)


# Bytes of delta and h_{t-1} one in-loop chunk keeps for its weight-gradient product: about
# an L2 cache (the chunk lengths it picks matched the measured optima, BENCHMARKS.md).
_CHUNK_BYTES = 2 << 20


def _chunk(mode: str, T: int, B: int, G: int, n: int, itemsize: int) -> int:
    if mode == "after":
        return max(T, 1)
    return _chunk_size(T, max(1, _CHUNK_BYTES // max(1, B * (G + n) * itemsize)))


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


def _h_prev(H, carry0):
    return jnp.concatenate([carry0[0][None], H[:-1]], axis=0)


@functools.lru_cache(maxsize=256)
def _jvp_runner(rule, unroll: int, mode: str):
    """Custom-JVP map ``(W_xh, b_x, W_hh, b_hh, X, carry0, mask) -> (carry_T, hs (B, T, n))``."""

    @jax.custom_jvp
    def run(W_xh, b_x, W_hh, b_hh, X, carry0, mask):
        final, H, _ = _scan_forward(rule, W_xh, b_x, W_hh, b_hh, X, carry0, mask, unroll, False)
        return final, jnp.swapaxes(mask_out(H, mask), 0, 1)

    def run_jvp(primals, tangents):
        W_xh, b_x, W_hh, b_hh, X, carry0, mask = primals
        final, H, res = _scan_forward(rule, W_xh, b_x, W_hh, b_hh, X, carry0, mask, unroll, True)
        T, B, _ = X.shape
        G, n = W_hh.shape
        k = _chunk(mode, T, B, G, n, jnp.dtype(X.dtype).itemsize)
        same = b_hh is None
        H_prev = _h_prev(H, carry0)
        lin = tuple(None if is_zero(t) else t for t in tangents[:5])
        dcarry0 = tuple(jnp.zeros_like(c) if is_zero(d) else d for c, d in zip(carry0, tangents[5]))
        resid = (W_xh, W_hh, X, H_prev, mask, res)
        # A linear primitive: forward mode runs the tangent scan, jax.grad its transpose rule,
        # the family's hand-written backward (per-chunk weight products).
        # (Inside shard_map, where operands carry varying mesh axes, JAX's own transpose.)
        if varies(X):
            dfinal, dH = tangent_scan(rule, unroll, k, same, *resid, lin + (dcarry0,))
            out = (dfinal, jnp.swapaxes(dH, 0, 1))
        else:
            out = bind_tangent(rule, unroll, k, same, *resid, lin + (dcarry0,))
        return (final, jnp.swapaxes(mask_out(H, mask), 0, 1)), out

    run.defjvp(run_jvp, symbolic_zeros=True)
    return run


@functools.lru_cache(maxsize=256)
def _vjp_runner(rule, unroll: int, mode: str):
    """Custom-VJP map ``(W_xh, b_x, W_hh, b_hh, X, carry0, mask) -> (carry_T, hs (B, T, n))``."""

    def forward(W_xh, b_x, W_hh, b_hh, X, carry0, mask):
        final, H, res = _scan_forward(rule, W_xh, b_x, W_hh, b_hh, X, carry0, mask, unroll, True)
        # Returned batch-major: the backward reads its cotangent d_hs[:, t] in place instead of
        # transposing the whole (B, T, n) cotangent (a measurable share of the step).
        hs = jnp.swapaxes(mask_out(H, mask), 0, 1)
        return (final, hs), (W_xh, W_hh, b_hh is None, X, carry0, H, res, mask)

    @jax.custom_vjp
    def run(W_xh, b_x, W_hh, b_hh, X, carry0, mask):
        final, H, _ = _scan_forward(rule, W_xh, b_x, W_hh, b_hh, X, carry0, mask, unroll, False)
        return final, jnp.swapaxes(mask_out(H, mask), 0, 1)

    def backward(saved, cts):
        W_xh, W_hh, same, X, carry0, H, res, mask = saved
        d_final, d_hs = cts  # d_hs (B, T, n)
        T, B, _ = X.shape
        G, n = W_hh.shape
        k = _chunk(mode, T, B, G, n, jnp.dtype(X.dtype).itemsize)
        grads = backward_scan(
            rule, unroll, k, W_xh, W_hh, same, X, _h_prev(H, carry0), mask, res, d_final, d_hs, 1
        )
        return grads + (None,)

    run.defvjp(forward, backward)
    return run


def _run(cell, params, xs, carry, lengths, reverse, unroll, mode, custom):
    """The driver: ``xs`` ``(T, d)`` or ``(B, T, d)`` -> ``(final carry, hs)``, batch-major."""
    rule = cell.fused
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
