"""IndRNN (Li, Li, Cook, Zhu & Gao 2018): independent recurrent units.

.. math::

   h_t = f(w_{hh} \\odot h_{t-1} + W_{xh} x_t + b_h)

Each unit recurs only onto itself, so the step Jacobian is diagonal,
``J_t = diag(f'(a_t) * w_hh)``, and ``|d h_T / d h_t|`` is a product of
scalars per unit that the recurrent weight can pin near 1. A member of the
pointwise family (:mod:`jrnn.cells._pointwise`) with a diagonal ``W_hh``; its
Pascanu bound is ``sup|f'| max|w_hh|``.
"""

from __future__ import annotations

from jrnn import initializers as inits
from jrnn.cells._pointwise import pointwise_cell
from jrnn.cells.base import Cell

__all__ = ["indrnn"]


def indrnn(
    hidden_size: int,
    activation="relu",
    *,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
) -> Cell:
    """IndRNN cell with diagonal recurrent weights ``w_hh (n,)``.

    Default ``w_hh ~ U[0, 1]`` (the paper's choice for ReLU IndRNN) and
    Glorot-uniform ``W_xh``.

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.indrnn(4)
        >>> cell.init(jax.random.key(0), 2)["w_hh"].shape
        (4,)
    """
    return pointwise_cell(
        "indrnn",
        hidden_size,
        activation,
        diagonal=True,
        input_init=input_init or inits.glorot_uniform(),
        recurrent_init=recurrent_init or inits.uniform(0.0, 1.0),
        bias_init=bias_init,
    )
