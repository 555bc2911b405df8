"""The trajectory kernel of the diagnostics: the state and a tangent frame through one scan.

.. math::

   s_t = F(s_{t-1}, u_t), \\qquad V_t = J_t V_{t-1}, \\quad J_t = \\partial s_t / \\partial s_{t-1}

Every diagnostic that follows a trajectory (step Jacobians, spectra,
propagation, Lyapunov spectra, covariant vectors, unit health) shares these
pieces:

* :func:`prepare`, :func:`map_sequences` -- validate ``(cell, params, xs,
  carry)`` once and run a one-sequence function on a sequence or a batch;
* :func:`inputs`, :func:`carries` -- the hoisted inputs ``u_t = input_map(x_t)``
  with the carry in the recurrence's dtype, and the carries ``s_0..s_{T-1}``;
* :func:`state_step`, :func:`jacobian_fn` -- the recurrence on the flat state
  ``s (S,)`` and ``(carry, u) -> J_t`` (analytic, ``jacfwd`` or ``jacrev``);
* :func:`tangent_map` -- ``(carry, u, V) -> J_t V`` from the cell's analytic
  ``tangent`` where it has one (e.g. ``f'(a) * (W_hh V)`` for Elman cells: one
  matrix product, ``J_t`` never formed), else ``jax.linearize`` of the step
  vmapped over the columns of ``V`` (any cell);
* :func:`advance` -- the state alone (the ``transient`` of the Lyapunov
  literature: no tangent work at all);
* :func:`scan_chunks` -- a ``lax.scan`` over fixed-size time chunks plus a
  remainder, so memory is ``O(chunk)`` and never grows with ``T``;
* :func:`choose_mode`, :func:`chunk_length`, :func:`check_budget` -- the
  documented rule that picks the stacked ``(T, S, S)`` path, Jacobian chunks or
  the tangent scan from a memory budget (:data:`DEFAULT_MEMORY_BUDGET`,
  256 MiB) and ``k / S``.

The mode never changes the result beyond float rounding; it changes time and
memory only. Nothing here dispatches on ``cell.name``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from jrnn import validation
from jrnn.cells.base import Cell, flatten_carry
from jrnn.unrolling import check_inputs, match_carry_dtype

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "JACOBIAN_METHODS",
    "STREAM_MODES",
    "advance",
    "carries",
    "check_budget",
    "check_phases",
    "choose_mode",
    "chunk_length",
    "inputs",
    "jacobian_fn",
    "map_sequences",
    "one_carry",
    "prepare",
    "scan_chunks",
    "state_step",
    "tangent_map",
]

#: Accepted values of ``method`` in :func:`jrnn.diagnostics.step_jacobians`.
JACOBIAN_METHODS = ("auto", "analytic", "jacfwd", "jacrev")

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


# --------------------------------------------------------------------------- sequences


def prepare(cell: Cell, params, xs, carry) -> int | None:
    """Validates the common ``(cell, params, xs, carry)`` arguments; returns B or None."""
    batch, _ = check_inputs(cell, params, xs, carry)
    return batch


def map_sequences(fn: Callable, batch: int | None, xs, carry, *extra):
    """Applies ``fn(xs, carry, *extra)`` to one sequence or vmaps it over a batch.

    ``carry=None`` means the cell's zero carry (``fn`` must handle ``None``).
    """
    if batch is None:
        return fn(xs, carry, *extra)
    in_axes = (0, None if carry is None else 0) + (None,) * len(extra)
    return jax.vmap(fn, in_axes=in_axes)(xs, carry, *extra)


def one_carry(carry, batch: int | None):
    """The shapes of one sequence's carry: ``carry`` itself, or its leaves less the batch axis
    (``ShapeDtypeStruct``) when ``batch`` is not None; None stays None."""
    if carry is None or batch is None:
        return carry
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), carry)


def inputs(cell: Cell, params, xs: jax.Array, carry):
    """One sequence: ``(us (T, ...), carry)`` with the carry cast to the recurrence's dtype."""
    carry = cell.initial_carry(params) if carry is None else carry
    us = jax.vmap(lambda x: cell.input_map(params, x))(xs)
    carry = match_carry_dtype(cell, params, carry, jax.ShapeDtypeStruct(us.shape[1:], us.dtype))
    return us, carry


def carries(cell: Cell, params, xs: jax.Array, carry=None):
    """One sequence: ``(us (T, ...), prev (T, ...) carries s_0..s_{T-1}, final carry)``."""
    us, carry = inputs(cell, params, xs, carry)

    def body(c, u):
        new_c, _ = cell.recur(params, c, u)
        return new_c, c

    final, prev = lax.scan(body, carry, us)
    return us, prev, final


def advance(cell: Cell, params, us: jax.Array, carry):
    """The carry after the steps ``us (T, ...)``: the state alone, no tangent work."""
    if us.shape[0] == 0:
        return carry
    return lax.scan(lambda c, u: (cell.recur(params, c, u)[0], None), carry, us)[0]


# --------------------------------------------------------------------------- the flat state


def _unflattener(cell: Cell, params) -> Callable[[jax.Array], Any]:
    """``s (S,) -> carry`` inverse of :func:`flatten_carry` (``ravel_pytree`` order)."""
    template = jax.eval_shape(cell.initial_carry, params)
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), template)
    _, unravel = ravel_pytree(zeros)
    return unravel


def state_step(cell: Cell, params) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(s_{t-1} (S,), u_t) -> s_t (S,)``: the recurrence on the flat state."""
    unravel = _unflattener(cell, params)

    def step(s, u):
        return flatten_carry(cell.recur(params, unravel(s), u)[0])

    return step


def jacobian_fn(cell: Cell, params, method: str) -> Callable[[Any, jax.Array], jax.Array]:
    """``(carry, u) -> J (S, S)`` for ``method``; validates the method."""
    if method not in JACOBIAN_METHODS:
        raise ValueError(f"method must be one of {JACOBIAN_METHODS}, got {method!r}.")
    jacobian = None if cell.linear is None else cell.linear.jacobian
    if method == "analytic" and jacobian is None:
        raise ValueError(
            f"method='analytic' needs a cell with an analytic jacobian, but cell "
            f"{cell.describe()} has none; use method='jacfwd', 'jacrev' or 'auto'."
        )
    if method in ("analytic", "auto") and jacobian is not None:
        return lambda c, u: jacobian(params, c, u)
    step = state_step(cell, params)
    diff = jax.jacrev if method == "jacrev" else jax.jacfwd
    return lambda c, u: diff(step)(flatten_carry(c), u)


def tangent_map(cell: Cell, params) -> Callable[[object, jax.Array, jax.Array], jax.Array]:
    """``(carry_{t-1}, u_t, V (S, k)) -> J_t V (S, k)`` for any cell.

    Uses ``cell.linear.tangent`` when the cell provides it; otherwise linearises one
    step of the flattened recurrence (:func:`jax.linearize`, primal computed
    once) and maps the linear function over the ``k`` columns of ``V``.
    """
    tangent = None if cell.linear is None else cell.linear.tangent
    if tangent is not None:
        return lambda c, u, V: tangent(params, c, u, V)
    step = state_step(cell, params)

    def jvp_map(c, u, V):
        _, lin = jax.linearize(lambda s: step(s, u), flatten_carry(c))
        return jax.vmap(lin, in_axes=1, out_axes=1)(V)

    return jvp_map


# --------------------------------------------------------------------------- time and memory


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
    """``memory_budget`` (bytes, an integer >= 1) or the default; TypeError / ValueError
    naming it otherwise (:func:`jrnn.validation.check_int`)."""
    if memory_budget is None:
        return DEFAULT_MEMORY_BUDGET
    return validation.check_int(memory_budget, "memory_budget", low=1)


def check_phases(T: int, **counts) -> tuple[int, ...]:
    """Leading step counts of a ``T``-step run (e.g. ``transient``, ``warmup``), in order.

    Each is an integer in ``[0, steps left - 1]``, so every phase leaves at
    least one step after it; TypeError / ValueError naming the argument
    (:func:`jrnn.validation.check_int`).
    """
    left, out = T, []
    for name, value in counts.items():
        value = validation.check_int(value, name, low=0, high=left - 1)
        left -= value
        out.append(value)
    return tuple(out)
