"""Cells with an elementwise affine recurrence through ``jax.lax.associative_scan``.

A cell with an ``affine`` capability (``min_gru``, ``min_lstm``: Feng et al. 2024, "Were RNNs All We
Needed?"; ``lru``: Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long
Sequences") has states

.. math::

   s_t = a_t \\odot s_{t-1} + b_t, \\qquad (a_t, b_t) = \\mathrm{linear\\_coeffs}(x_t),

and the composition of two such affine maps is again one,
``(a_r, b_r) \\circ (a_l, b_l) = (a_r a_l, a_r b_l + b_r)``, an associative operation: the
parallel prefix scan (Blelloch 1990, "Prefix sums and their applications") computes every
``s_t`` in ``O(log T)`` depth instead of ``T`` sequential steps, at about twice the work.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jrnn.cells.base import Cell
from jrnn.unrolling._inputs import missing_capability, per_example

__all__ = ["Associative"]


class Associative(NamedTuple):
    """The states of a cell with an ``affine`` capability by one parallel prefix scan.

    ``carry``, ``lengths`` (steps past a sequence's end get ``a = 1, b = 0``:
    the carry freezes) and ``reverse`` work; the outputs come from
    ``cell.recur`` applied at every step to the scanned previous state,
    vectorised over time. Complex ``(a, b)`` (the LRU) act on the complex state
    ``s[:N] + i s[N:]`` of a real carry ``[Re s; Im s]``. Values equal those of
    :class:`Scan` to float rounding (the order of the products differs).

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.min_gru(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> xs = jnp.ones((3, 16, 2))
        >>> _, hs = jrnn.unroll(cell, params, xs, method=jrnn.Associative())
        >>> _, ref = jrnn.unroll(cell, params, xs, method=jrnn.Scan())
        >>> bool(jnp.allclose(hs, ref, atol=1e-6))
        True
    """

    def supports(self, cell: Cell) -> str | None:
        """None when ``cell`` has an ``affine`` capability, else the reason it cannot run."""
        return missing_capability(
            "Associative()",
            cell,
            "affine",
            "an affine capability, an elementwise affine recurrence s_t = a_t * s_{t-1} + b_t "
            "(min_gru, min_lstm, lru)",
        )

    def check(self) -> Associative:
        """This record (it has no fields to check)."""
        return self

    def run(self, cell: Cell, params, xs, carry, lengths, reverse: bool):
        """``(final carry, hs)`` for checked inputs (:func:`jrnn.unroll` checks them).

        Raises:
          ValueError: the cell's carry is not a single array.
        """
        one = lambda x, c, length: _associative_one(cell, params, x, c, length, reverse)
        return per_example(one, cell, params, xs, carry, lengths)


def _combine(left, right):
    """Composition of affine maps ``s -> a s + b``: ``right`` after ``left``."""
    a_l, b_l = left
    a_r, b_r = right
    return a_r * a_l, a_r * b_l + b_r


def _associative_one(cell, params, xs, carry, length, reverse):
    """One sequence through ``jax.lax.associative_scan``: xs (T, d) -> (carry, hs).

    The initial carry is folded into the first step's ``b``.
    """
    T = xs.shape[0]
    a, b = cell.affine.coeffs(params, xs)
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    if len(leaves) != 1:
        raise ValueError(
            f"Associative() needs a cell whose carry is one array, got {len(leaves)} leaves."
        )
    dtype = jnp.result_type(a, b, leaves[0])
    a, b = a.astype(dtype), b.astype(dtype)
    s0_real = leaves[0].astype(jnp.finfo(dtype).dtype)  # the real dtype of `dtype`
    cplx = jnp.iscomplexobj(a)
    if cplx:
        N = a.shape[-1]
        s0 = jax.lax.complex(s0_real[:N], s0_real[N:])
    else:
        s0 = s0_real
    if length is not None:
        keep = (jnp.arange(T) < length)[:, None]
        a = jnp.where(keep, a, jnp.ones_like(a))
        b = jnp.where(keep, b, jnp.zeros_like(b))
    first = T - 1 if reverse else 0
    b = b.at[first].add(a[first] * s0)
    _, states = jax.lax.associative_scan(_combine, (a, b), reverse=reverse)
    if cplx:
        states = jnp.concatenate([jnp.real(states), jnp.imag(states)], axis=-1)
    if reverse:
        prev = jnp.concatenate([states[1:], s0_real[None]], axis=0)
    else:
        prev = jnp.concatenate([s0_real[None], states[:-1]], axis=0)
    us = jax.vmap(lambda x: cell.input_map(params, x))(xs)
    _, hs = jax.vmap(lambda s, u: cell.recur(params, treedef.unflatten([s]), u))(prev, us)
    if length is not None:
        hs = jnp.where((jnp.arange(T) < length)[:, None], hs, jnp.zeros_like(hs))
    final = states[0] if reverse else states[-1]
    return treedef.unflatten([final]), hs
