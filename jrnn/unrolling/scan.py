"""The reference method: the cell's one-example step under ``jax.lax.scan``, vmapped over a batch.

.. math::

   u_{1:T} = \\mathrm{input\\_map}(x_{1:T}) \\ \\text{(hoisted: one matmul for all steps)},
   \\qquad (s_t, h_t) = \\mathrm{recur}(s_{t-1}, u_t)

It runs every cell and is the readable reference the other methods are tested against.
``remat`` checkpoints every ``k`` steps (``jax.checkpoint`` around a scan of ``k`` steps, Chen
et al. 2016, "Training deep nets with sublinear memory cost"), so a backward pass stores
``T/k`` carries plus one chunk of intermediates instead of all ``T`` steps'.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jrnn import validation
from jrnn.cells.base import Cell
from jrnn.unrolling._inputs import match_carry_dtype, per_example

__all__ = ["Scan"]


class Scan(NamedTuple):
    """Per-example ``jax.lax.scan`` of ``cell.recur``, vmapped over the batch (the reference).

    Fields:
      unroll: steps unrolled per scan iteration (``lax.scan(unroll=...)``), an
        integer ``>= 1``; values are unchanged.
      remat: ``None`` or ``False``: no checkpointing; ``True``: checkpoint every
        ``round(sqrt(T))`` steps; an integer ``k >= 1``: every ``k`` steps.
        Values and gradients are unchanged, the backward pass's memory drops
        from ``O(T)`` to ``O(T/k + k)`` steps.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.gru(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> _, hs = jrnn.unroll(cell, params, jnp.ones((3, 9, 2)), method=jrnn.Scan(remat=3))
        >>> hs.shape
        (3, 9, 4)
    """

    unroll: int = 1
    remat: int | bool | None = None

    def supports(self, cell: Cell) -> str | None:
        """None: the scan runs every :class:`~jrnn.Cell`."""
        if not isinstance(cell, Cell):
            return f"Scan() runs a jrnn Cell, got {type(cell).__name__}."
        return None

    def check(self) -> Scan:
        """This record with its fields checked.

        Raises:
          TypeError: ``unroll`` is not an integer, ``remat`` not None, a bool or an integer.
          ValueError: ``unroll < 1`` or an integer ``remat < 1``.
        """
        validation.check_int(self.unroll, "Scan.unroll", low=1)
        if self.remat is not None and not isinstance(self.remat, bool):
            validation.check_int(self.remat, "Scan.remat", low=1)
        return self

    def run(self, cell: Cell, params, xs, carry, lengths, reverse: bool):
        """``(final carry, hs)`` for checked inputs (:func:`jrnn.unroll` checks them)."""
        chunk = _remat_chunk(self.remat, xs.shape[-2])
        one = lambda x, c, length: _scan_one(
            cell, params, x, c, length, reverse, self.unroll, chunk
        )
        return per_example(one, cell, params, xs, carry, lengths)


def _remat_chunk(remat: bool | int | None, T: int) -> int:
    """The checkpoint chunk length for ``remat`` (0: no checkpointing)."""
    if remat is False or remat is None:
        return 0
    if remat is True:
        return max(1, int(round(math.sqrt(T))))
    return int(remat)


def _scan_one(cell, params, xs, carry, length, reverse, unroll, chunk):
    """One sequence: xs (T, d) -> (final carry, hs (T, n))."""
    T = xs.shape[0]
    input_map = jax.vmap(lambda x: cell.input_map(params, x))
    # With remat the input projection is recomputed inside each checkpointed
    # chunk, so the backward pass does not keep the (T, G) projections either.
    us = xs if chunk else input_map(xs)
    u_struct = jax.eval_shape(lambda x: cell.input_map(params, x), xs[0])
    carry = match_carry_dtype(cell, params, carry, u_struct)
    ts = jnp.arange(T)
    masked = length is not None or chunk
    if chunk:
        n_chunks = -(-T // chunk)
        pad = n_chunks * chunk - T
        if pad:
            us = jnp.concatenate([us, jnp.zeros((pad,) + us.shape[1:], us.dtype)])
            ts = jnp.arange(T + pad)
        limit = T if length is None else jnp.minimum(length, T)
    else:
        limit = length

    def body(c, inp):
        u, t = inp
        new_c, h = cell.recur(params, c, u)
        if masked:
            keep = t < limit
            new_c = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new_c, c)
            h = jnp.where(keep, h, jnp.zeros_like(h))
        return new_c, h

    if not chunk:
        return jax.lax.scan(body, carry, (us, ts), reverse=reverse, unroll=unroll)

    @jax.checkpoint
    def run_chunk(c, inp):
        x_chunk, t_chunk = inp
        return jax.lax.scan(body, c, (input_map(x_chunk), t_chunk), reverse=reverse, unroll=unroll)

    us = us.reshape((n_chunks, chunk) + us.shape[1:])
    ts = ts.reshape(n_chunks, chunk)
    carry, hs = jax.lax.scan(run_chunk, carry, (us, ts), reverse=reverse)
    hs = hs.reshape((n_chunks * chunk,) + hs.shape[2:])[:T]
    return carry, hs
