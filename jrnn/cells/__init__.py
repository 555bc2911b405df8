"""Recurrent cells: NamedTuples of pure functions, one factory per family."""

from jrnn.cells.base import Cell, flatten_carry
from jrnn.cells.elman import elman, irnn, residual
from jrnn.cells.gru import gru
from jrnn.cells.indrnn import indrnn
from jrnn.cells.linear import lru, min_gru, min_lstm
from jrnn.cells.lstm import lstm
from jrnn.cells.stack import stack

__all__ = [
    "Cell",
    "elman",
    "flatten_carry",
    "gru",
    "indrnn",
    "irnn",
    "lru",
    "lstm",
    "min_gru",
    "min_lstm",
    "residual",
    "stack",
]
