"""Models: a cell (or stack of cells) plus a readout ``o_t = g(W_ho h_t + b_o)``.

The seed article's Keras program

.. code-block:: python

   Sequential([SimpleRNN(64, return_sequences=True, input_shape=(10, 1)),
               SimpleRNN(32), Dense(1)])

is one expression here::

    >>> import jrnn
    >>> model = jrnn.models.rnn([jrnn.cells.elman(64), jrnn.cells.elman(32)], output_size=1)

(a stacked layer reads the full output sequence of the layer below, which is
what ``return_sequences=True`` means in Keras).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn import initializers as inits
from jrnn import validation
from jrnn.cells.base import Cell
from jrnn.cells.stack import stack
from jrnn.unrolling import unroll
from jrnn.validation import check_int

__all__ = ["Model", "rnn"]


class Model(NamedTuple):
    """A recurrent model: ``params = {"cell": ..., "readout": {"W_ho", "b_o"}}``.

    Fields:
      cell: the recurrent part (a single cell or a ``stack``).
      output_size: size of ``o_t``.
      output_activation: ``g`` in ``o_t = g(W_ho h_t + b_o)``.
      return_sequences: output at every step ``(B, T, m)`` or only at the last
        valid one ``(B, m)``.
    """

    cell: Cell
    output_size: int
    output_activation: _activations.Activation
    return_sequences: bool

    def init(self, key: jax.Array, input_size: int) -> dict[str, Any]:
        """Initialises the cell and a Glorot-uniform readout with zero bias."""
        k_cell, k_out = jax.random.split(key)
        n, m = self.cell.hidden_size, self.output_size
        return {
            "cell": self.cell.init(k_cell, input_size),
            "readout": {
                "W_ho": inits.glorot_uniform()(k_out, (m, n)),
                "b_o": jnp.zeros((m,)),
            },
        }

    def check_params(self, params: Any) -> None:
        """Checks the model's own layout: ``{"cell": ..., "readout": {"W_ho" (m, n),
        "b_o" (m,)}}`` with real floating readout weights (the cell's params are
        checked by :func:`jrnn.unroll`).

        Raises:
          ValueError: a missing ``"cell"`` / ``"readout"``, a readout key or
            shape that is wrong (a ``b_o`` of shape ``(1,)`` would broadcast);
          TypeError: params that are not a dict, an integer readout.
        """
        if not isinstance(params, Mapping):
            raise TypeError(
                f"params must be a dict {{'cell': ..., 'readout': ...}} (model.init's "
                f"layout), got {type(params).__name__}."
            )
        missing = [k for k in ("cell", "readout") if k not in params]
        if missing:
            hint = (
                " These look like a cell's params: pass {'cell': params, 'readout': ...}, "
                "or call jrnn.unroll(model.cell, params, xs)."
                if "cell" in missing and "readout" in missing
                else ""
            )
            raise ValueError(
                f"params is missing {', '.join(repr(k) for k in missing)}; expected the keys "
                f"'cell' and 'readout' (model.init's layout), got keys "
                f"{sorted(map(str, params))}.{hint}"
            )
        m, n = self.output_size, self.cell.hidden_size
        spec = {"W_ho": ((m, n), "f"), "b_o": ((m,), "f")}
        validation.check_spec(params["readout"], spec, "params['readout']")

    def readout(self, params: dict[str, Any], h: jax.Array) -> jax.Array:
        """``g(W_ho h + b_o)`` for ``h`` of shape ``(..., n)``."""
        r = params["readout"]
        b = jnp.expand_dims(r["b_o"], tuple(range(h.ndim - 1)))
        return self.output_activation.fn(h @ r["W_ho"].T + b)

    def apply(
        self, params: dict[str, Any], xs: jax.Array, *, lengths=None, **unroll_kwargs
    ) -> jax.Array:
        """Outputs for ``xs`` ``(T, d)`` or ``(B, T, d)``.

        ``unroll_kwargs`` go to :func:`jrnn.unroll` (``carry``, ``method``).

        Returns ``(T, m)`` / ``(B, T, m)`` with ``return_sequences``, else the
        readout of the last valid step, ``(m,)`` / ``(B, m)``. An empty sequence
        ``T = 0`` is fine with ``return_sequences`` (an empty output, as
        :func:`jrnn.unroll` gives) but has no last output: it raises. A sequence
        of ``lengths[b] = 0`` inside a batch with ``T >= 1`` reads out the
        zeroed padding output, ``g(b_o)``.

        Raises:
          ValueError: ``xs`` with ``T = 0`` steps and ``return_sequences=False``
            (checked before tracing), and everything :func:`jrnn.unroll` raises.
        """
        self.check_params(params)
        shape = jnp.shape(xs)
        if not self.return_sequences and len(shape) in (2, 3) and shape[-2] == 0:
            raise ValueError(
                f"xs has T=0 steps (shape {tuple(shape)}), but the model reads out the last "
                "step's output (return_sequences=False) and an empty sequence has none; pass "
                "at least one step, or build the model with return_sequences=True."
            )
        _, hs = unroll(self.cell, params["cell"], xs, lengths=lengths, **unroll_kwargs)
        if not self.return_sequences:
            if lengths is None:
                hs = hs[..., -1, :]
            else:
                idx = jnp.clip(jnp.asarray(lengths) - 1, 0, None)
                hs = jnp.take_along_axis(hs, idx[..., None, None], axis=-2)[..., 0, :]
        return self.readout(params, hs)


def rnn(
    cells: Cell | Sequence[Cell],
    output_size: int,
    *,
    output_activation="identity",
    return_sequences: bool = False,
    residual: bool = False,
) -> Model:
    """Builds ``cells`` (stacked if several) with a dense readout.

    Args:
      cells: one cell or a list stacked bottom to top.
      output_size: ``m``.
      output_activation: ``g``, any registered activation name.
      return_sequences: readout at every step instead of the last one.
      residual: residual connections between stacked layers.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> model = jrnn.models.rnn([jrnn.cells.elman(64), jrnn.cells.elman(32)], 1)
        >>> params = model.init(jax.random.key(0), 1)
        >>> model.apply(params, jnp.zeros((32, 10, 1))).shape
        (32, 1)
    """
    if isinstance(cells, Cell):
        cell = cells
    else:
        cells = list(cells)
        cell = cells[0] if len(cells) == 1 and not residual else stack(cells, residual)
    m = check_int(output_size, "output_size", low=1)
    return Model(cell, m, _activations.get(output_activation), bool(return_sequences))
