"""Streaming tangent dynamics: the state and a tangent frame carried through one scan.

.. math::

   s_t = F(s_{t-1}, u_t), \\qquad V_t = J_t V_{t-1}, \\quad J_t = \\partial s_t / \\partial s_{t-1}

Every diagnostic that follows perturbations along a trajectory (Lyapunov
spectra, finite-time exponents, covariant Lyapunov vectors, propagation) needs
``J_t`` only through its action on a frame ``V (S, k)``. This module holds the
pieces they share:

* :func:`tangent_map` -- ``(carry, u, V) -> J_t V`` from the cell's analytic
  ``tangent`` field where it has one (e.g. ``f'(a) * (W_hh V)`` for Elman
  cells: one matrix product, ``J_t`` never formed), else ``jax.linearize`` of
  the step vmapped over the columns of ``V`` (any cell);
* :func:`advance` -- the state alone (the ``transient`` of the Lyapunov
  literature: no tangent work at all);
* :func:`scan_chunks` -- a ``lax.scan`` over fixed-size time chunks plus a
  remainder, so memory is ``O(chunk)`` and never grows with ``T``;
* :func:`choose_mode` -- the documented rule that picks the stacked
  ``(T, S, S)`` path, Jacobian chunks or the tangent scan from a memory
  budget (:data:`DEFAULT_MEMORY_BUDGET`, 256 MiB) and ``k / S``.

The mode never changes the result beyond float rounding; it changes time and
memory only. Nothing here dispatches on ``cell.name``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jrnn.cells.base import Cell, flatten_carry
from jrnn.diagnostics import jacobians as _jac
from jrnn.unrolling import match_carry_dtype

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "STREAM_MODES",
    "advance",
    "choose_mode",
    "chunk_length",
    "scan_chunks",
    "tangent_map",
]

#: Bytes the stacked ``(B, T, S, S)`` Jacobians (times :data:`_STACK_COPIES` working
#: copies) may take before ``mode="auto"`` streams instead; also the size of one chunk
#: of Jacobians in ``"chunked"`` mode (a quarter of it). Override per call with
#: ``memory_budget=``.
DEFAULT_MEMORY_BUDGET = 256 * 2**20

#: Accepted ``mode`` values of the streaming diagnostics.
STREAM_MODES = ("auto", "stacked", "chunked", "tangent")

# The stacked path holds the Jacobians, their padded/blocked copy and the QR work arrays.
_STACK_COPIES = 3
# "k much smaller than S": the tangent scan costs O(S^2 k) per step instead of O(S^3).
_THIN = 4


def tangent_map(cell: Cell, params) -> Callable[[object, jax.Array, jax.Array], jax.Array]:
    """``(carry_{t-1}, u_t, V (S, k)) -> J_t V (S, k)`` for any cell.

    Uses ``cell.tangent`` when the cell provides it; otherwise linearises one
    step of the flattened recurrence (:func:`jax.linearize`, primal computed
    once) and maps the linear function over the ``k`` columns of ``V``.
    """
    if cell.tangent is not None:
        return lambda c, u, V: cell.tangent(params, c, u, V)
    step = _jac.state_step(cell, params)

    def jvp_map(c, u, V):
        _, lin = jax.linearize(lambda s: step(s, u), flatten_carry(c))
        return jax.vmap(lin, in_axes=1, out_axes=1)(V)

    return jvp_map


def prepared_inputs(cell: Cell, params, xs: jax.Array, carry):
    """One sequence: ``(us (T, ...), carry)`` with the carry cast to the recurrence's dtype."""
    carry = cell.initial_carry(params) if carry is None else carry
    us = jax.vmap(lambda x: cell.input_map(params, x))(xs)
    carry = match_carry_dtype(cell, params, carry, jax.ShapeDtypeStruct(us.shape[1:], us.dtype))
    return us, carry


def advance(cell: Cell, params, us: jax.Array, carry):
    """The carry after the steps ``us (T, ...)``: the state alone, no tangent work."""
    if us.shape[0] == 0:
        return carry
    return lax.scan(lambda c, u: (cell.recur(params, c, u)[0], None), carry, us)[0]


def scan_chunks(fn, state, xs, chunk: int):
    """``fn(state, xs[i:i+chunk]) -> (state, ys)`` over consecutive chunks of axis 0.

    ``nc = T // chunk`` full chunks run in one ``lax.scan`` (one compiled body)
    and a shorter remainder, if any, once after it; the per-chunk outputs
    (leading axis: whatever ``fn`` emits per chunk) are concatenated. Only one
    chunk's intermediates are live at a time.
    """
    T = jax.tree_util.tree_leaves(xs)[0].shape[0]
    nc, rem = divmod(T, chunk)
    outs = []
    if nc:
        blocks = jax.tree_util.tree_map(
            lambda a: a[: nc * chunk].reshape((nc, chunk) + a.shape[1:]), xs
        )
        state, ys = lax.scan(fn, state, blocks)
        # (nc, chunk, ...) -> (nc * chunk, ...); explicit sizes, as -1 is undefined for 0-size
        flat = lambda a: a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])
        outs.append(jax.tree_util.tree_map(flat, ys))
    if rem:
        state, ys = fn(state, jax.tree_util.tree_map(lambda a: a[nc * chunk :], xs))
        outs.append(ys)
    if len(outs) == 1:
        return state, outs[0]
    return state, jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *outs)


def chunk_length(S: int, itemsize: int, batch: int, memory_budget: int, multiple: int, T: int):
    """Steps per chunk of Jacobians: a quarter of the budget, a multiple of ``multiple``."""
    per_step = max(batch, 1) * S * S * itemsize
    c = max(1, memory_budget // (4 * per_step))
    c = max(multiple, (c // multiple) * multiple)
    return int(min(c, -(-T // multiple) * multiple))


def choose_mode(
    mode: str, *, T: int, S: int, k: int, batch: int, itemsize: int, memory_budget: int
) -> str:
    """Resolves ``mode="auto"``: the rule every streaming diagnostic documents.

    * ``"tangent"`` when ``4 k <= S`` (a thin frame: ``J_t V`` costs
      ``O(S^2 k)`` and no ``S x S`` matrix is ever formed);
    * else ``"stacked"`` (all Jacobians at once, the fastest for short runs)
      when ``3 B T S^2 * itemsize <= memory_budget``;
    * else ``"chunked"`` (Jacobians for a chunk of steps at a time, memory
      ``O(chunk S^2)``, independent of ``T``).
    """
    if mode not in STREAM_MODES:
        raise ValueError(f"mode must be one of {STREAM_MODES}, got {mode!r}.")
    if mode != "auto":
        return mode
    if _THIN * k <= S:
        return "tangent"
    if _STACK_COPIES * max(batch, 1) * T * S * S * itemsize <= memory_budget:
        return "stacked"
    return "chunked"


def check_budget(memory_budget) -> int:
    """``memory_budget`` (bytes) or the default; ValueError naming it otherwise."""
    if memory_budget is None:
        return DEFAULT_MEMORY_BUDGET
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
        raise ValueError(f"memory_budget must be a positive int (bytes), got {memory_budget!r}.")
    return memory_budget
