"""Deep RNNs: a stack of cells that is itself a :class:`~jrnn.cells.base.Cell`.

Layer ``l`` reads layer ``l-1``'s output at the same step:

.. math::

   (s^l_t, h^l_t) = \\mathrm{cell}_l(s^l_{t-1}, h^{l-1}_t), \\qquad h^0_t = x_t,

optionally with residual connections ``h^l_t \\leftarrow h^l_t + h^{l-1}_t``
between layers of equal width. The carry is the tuple of the layers' carries,
so every diagnostic sees the full state of all layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jax.flatten_util import ravel_pytree

from jrnn.cells.base import Cell, Linearization

__all__ = ["stack"]


def stack(cells: Sequence[Cell], residual: bool = False) -> Cell:
    """Stacks ``cells`` bottom to top; the result's output is the top layer's.

    Args:
      cells: one or more cells; layer ``l``'s input size is layer ``l-1``'s
        hidden size.
      residual: add each layer's input to its output (layers 2..L; their
        widths must match).

    Example::

        >>> import jax, jrnn
        >>> deep = jrnn.stack([jrnn.cells.elman(16), jrnn.cells.lstm(8)])
        >>> params = deep.init(jax.random.key(0), 3)
        >>> deep.state_size
        32
    """
    cells = tuple(cells)
    if not cells or not all(isinstance(c, Cell) for c in cells):
        raise ValueError(
            f"cells must be a non-empty sequence of Cell, got {[type(c).__name__ for c in cells]}."
        )
    if residual:
        for l in range(1, len(cells)):
            if cells[l].hidden_size != cells[l - 1].hidden_size:
                raise ValueError(
                    f"residual=True needs equal widths, but cells[{l}].hidden_size="
                    f"{cells[l].hidden_size} != cells[{l - 1}].hidden_size="
                    f"{cells[l - 1].hidden_size}."
                )

    def init(key, input_size):
        keys = jax.random.split(key, len(cells))
        params, d = [], input_size
        for cell, k in zip(cells, keys):
            params.append(cell.init(k, d))
            d = cell.hidden_size
        return tuple(params)

    def initial_carry(params):
        return tuple(c.initial_carry(p) for c, p in zip(cells, params))

    def input_map(params, x):
        return cells[0].input_map(params[0], x)

    def recur(params, carry, u):
        c0, h = cells[0].recur(params[0], carry[0], u)
        new = [c0]
        for l in range(1, len(cells)):
            c, out = cells[l].step(params[l], carry[l], h)
            new.append(c)
            h = out + h if residual else out
        return tuple(new), h

    def tangent(params, carry, u, V):
        # J V by forward-mode through the whole step (the layers couple through their
        # outputs, which the per-layer state tangents do not carry); primal computed once.
        _, unravel = ravel_pytree(carry)
        step = lambda s: ravel_pytree(recur(params, unravel(s), u)[0])[0]
        _, lin = jax.linearize(step, ravel_pytree(carry)[0])
        return jax.vmap(lin, in_axes=1, out_axes=1)(V)

    def param_spec(d):
        # One spec per layer; a layer without a spec is not checked (None).
        specs = []
        for cell in cells:
            specs.append(None if cell.param_spec is None else cell.param_spec(d))
            d = cell.hidden_size
        return tuple(specs)

    return Cell(
        name="stack", hidden_size=cells[-1].hidden_size,
        state_size=sum(c.state_size for c in cells),
        init=init, initial_carry=initial_carry, input_map=input_map, recur=recur,
        input_size=lambda params: cells[0].input_size(params[0]), param_spec=param_spec,
        config=(("layers", tuple(c.describe() for c in cells)), ("residual", residual)),
        linear=Linearization(None, tangent),  # J_t by jax.jacfwd; the tangent map is exact
    )  # fmt: skip
