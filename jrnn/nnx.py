"""Flax NNX adapters: jrnn cells as ``flax.nnx`` Modules.

:class:`RNN` holds a jrnn cell's params as one ``nnx.Param`` per leaf, in the
cell's own pytree structure (``{"W_xh", "W_hh", "b_h"}`` for an Elman cell, a
tuple of such dicts for a :func:`jrnn.stack`), and runs :func:`jrnn.unroll`;
:class:`RNNModel` adds the readout ``o_t = g(W_ho h_t + b_o)`` of
:func:`jrnn.models.rnn`. Both train with ``nnx.Optimizer`` / ``nnx.grad`` /
``nnx.jit``, and ``module.params()`` returns the pure pytree, so every jrnn
diagnostic runs on an NNX model unchanged::

    J = jrnn.diagnostics.step_jacobians(module.cell, module.params(), xs)

The forward pass is the pure one with the params read out of the Variables:
``RNN(cell, d, rngs=...)(xs) == jrnn.unroll(cell, module.params(), xs)[1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx

from jrnn.cells.base import Cell
from jrnn.models import Model
from jrnn.models import rnn as _rnn
from jrnn.unrolling import unroll as _unroll

__all__ = ["RNN", "RNNModel"]


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def _to_params(pure: Any) -> Any:
    return jax.tree.map(nnx.Param, pure)


def _to_pure(wrapped: Any) -> Any:
    return jax.tree.map(lambda v: v.get_value(), wrapped, is_leaf=_is_variable)


def _check_structure(expected: Any, got: Any, argument: str) -> None:
    exp_struct = jax.tree_util.tree_structure(expected)
    got_struct = jax.tree_util.tree_structure(got)
    if exp_struct != got_struct:
        raise ValueError(
            f"{argument} must have the structure {exp_struct} (as the cell's init), "
            f"got {got_struct}."
        )
    for path, e, g in zip(
        jax.tree_util.tree_leaves_with_path(expected),
        jax.tree.leaves(expected),
        jax.tree.leaves(got),
    ):
        if e.shape != g.shape:
            raise ValueError(
                f"{argument}{jax.tree_util.keystr(path[0])} has shape {tuple(g.shape)}, "
                f"expected {tuple(e.shape)}."
            )


class _Wrapped(nnx.Module):
    """Shared storage: ``self.weights`` is the pure pytree with ``nnx.Param`` leaves."""

    weights: Any

    def params(self) -> Any:
        """The params as a pure pytree of arrays (the structure of ``init``)."""
        return _to_pure(self.weights)

    def set_params(self, params: Any) -> None:
        """Overwrites every ``nnx.Param`` in place with ``params`` (same structure and shapes)."""
        _check_structure(self.params(), params, "params")
        jax.tree.map(lambda v, new: v.set_value(new), self.weights, params, is_leaf=_is_variable)


class RNN(_Wrapped):
    """A jrnn cell as an NNX Module: ``hs = RNN(cell, d, rngs=rngs)(xs)``.

    .. math::

       (s_t, h_t) = \\mathrm{cell}(s_{t-1}, x_t), \\qquad s_0 = 0,

    run by :func:`jrnn.unroll` on ``xs`` ``(T, d)`` or ``(B, T, d)``, returning
    ``hs`` ``(T, n)`` or ``(B, T, n)``.

    Args:
      cell: any jrnn cell or :func:`jrnn.stack` (static; kept as ``self.cell``).
      input_size: ``d``.
      rngs: ``nnx.Rngs``; the params come from ``cell.init(rngs.params(), d)``.
      params: optional existing params (e.g. from :mod:`jrnn.interop`) used
        instead of a fresh init; ``rngs`` may then be None.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> from flax import nnx
        >>> layer = jrnn.nnx.RNN(jrnn.cells.lstm(8), 3, rngs=nnx.Rngs(0))
        >>> layer(jnp.ones((4, 10, 3))).shape
        (4, 10, 8)
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        *,
        rngs: nnx.Rngs | None = None,
        params: Any = None,
    ):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a jrnn Cell, got {type(cell).__name__}.")
        self.cell = nnx.static(cell)
        self.weights = nnx.data(_to_params(_init_or_check(cell.init, input_size, rngs, params)))

    def unroll(self, xs: jax.Array, *, lengths=None, carry=None, **unroll_kwargs):
        """``(final_carry, hs)`` as :func:`jrnn.unroll` (``reverse``, ``method``, ...)."""
        return _unroll(self.cell, self.params(), xs, lengths=lengths, carry=carry, **unroll_kwargs)

    def __call__(self, xs: jax.Array, lengths=None, *, carry=None, **unroll_kwargs) -> jax.Array:
        """``hs`` for ``xs`` ``(T, d)`` or ``(B, T, d)``; ``lengths`` ``(B,)`` masks padding."""
        return self.unroll(xs, lengths=lengths, carry=carry, **unroll_kwargs)[1]


class RNNModel(_Wrapped):
    """:func:`jrnn.models.rnn` as an NNX Module: cell stack plus readout.

    .. math::

       o_t = g(W_{ho} h_t + b_o)

    at the last valid step ``(B, m)`` or every step ``(B, T, m)``
    (``return_sequences``). Params are ``{"cell": ..., "readout": {"W_ho",
    "b_o"}}`` as :meth:`jrnn.models.Model.init`.

    Args:
      cells: one cell or a list stacked bottom to top (as :func:`jrnn.models.rnn`).
      input_size: ``d``.
      output_size: ``m``.
      rngs: ``nnx.Rngs`` for the init (None when ``params`` is given).
      output_activation, return_sequences, residual: as :func:`jrnn.models.rnn`.
      params: optional existing params.

    Example::

        >>> import jax.numpy as jnp, jrnn
        >>> from flax import nnx
        >>> model = jrnn.nnx.RNNModel([jrnn.cells.elman(64), jrnn.cells.elman(32)], 1, 1,
        ...                           rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((32, 10, 1))).shape
        (32, 1)
    """

    def __init__(
        self,
        cells: Cell | Sequence[Cell],
        input_size: int,
        output_size: int,
        *,
        rngs: nnx.Rngs | None = None,
        output_activation="identity",
        return_sequences: bool = False,
        residual: bool = False,
        params: Any = None,
    ):
        model = _rnn(
            cells,
            output_size,
            output_activation=output_activation,
            return_sequences=return_sequences,
            residual=residual,
        )
        self.model = nnx.static(model)
        self.weights = nnx.data(_to_params(_init_or_check(model.init, input_size, rngs, params)))

    @property
    def cell(self) -> Cell:
        """The recurrent part (a cell or a stack); its params are ``params()["cell"]``."""
        return self.model.cell

    def __call__(self, xs: jax.Array, lengths=None, **unroll_kwargs) -> jax.Array:
        """Outputs ``o`` as :meth:`jrnn.models.Model.apply`."""
        return Model.apply(self.model, self.params(), xs, lengths=lengths, **unroll_kwargs)


def _init_or_check(init, input_size: int, rngs: nnx.Rngs | None, params: Any) -> Any:
    if params is None:
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(
                f"rngs must be an nnx.Rngs (e.g. nnx.Rngs(0)) when params is None, got "
                f"{type(rngs).__name__}."
            )
        return init(rngs.params(), input_size)
    expected = jax.eval_shape(lambda key: init(key, input_size), jax.random.key(0))
    _check_structure(expected, params, "params")
    return params
