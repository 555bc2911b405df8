"""Recurrent cells: a core of pure functions plus capability records, one factory per family;
``wrap`` makes any step function, Flax linen / NNX or Equinox cell a Cell."""

from jrnn.cells.antisymmetric import antisymmetric
from jrnn.cells.base import Affine, Cell, Linearization, Pointwise, flatten_carry
from jrnn.cells.elman import elman, irnn, residual
from jrnn.cells.fused import FusedRule
from jrnn.cells.gru import gru
from jrnn.cells.indrnn import indrnn
from jrnn.cells.leaky import leaky
from jrnn.cells.linear import lru, min_gru, min_lstm
from jrnn.cells.lipschitz import lipschitz
from jrnn.cells.lstm import lstm
from jrnn.cells.mgu import mgu
from jrnn.cells.orthogonal import exprnn, orthogonal
from jrnn.cells.oscillatory import cornn, lem
from jrnn.cells.stack import stack
from jrnn.cells.wrap import wrap

__all__ = [
    "Affine",
    "Cell",
    "FusedRule",
    "Linearization",
    "Pointwise",
    "antisymmetric",
    "cornn",
    "elman",
    "exprnn",
    "flatten_carry",
    "gru",
    "indrnn",
    "irnn",
    "leaky",
    "lem",
    "lipschitz",
    "lru",
    "lstm",
    "mgu",
    "min_gru",
    "min_lstm",
    "orthogonal",
    "residual",
    "stack",
    "wrap",
]
