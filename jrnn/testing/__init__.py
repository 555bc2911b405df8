"""The property-test kit: check any cell or activation the way jrnn checks its own.

:func:`check_cell` verifies the :class:`~jrnn.cells.base.Cell` contract and
every derivative a cell offers against independent ones; :func:`check_activation`
verifies an :class:`~jrnn.activations.Activation`'s derivative and metadata.
Both raise an ``AssertionError`` that names the property, the step (or input)
and the largest difference, and return a small report when everything holds.
:mod:`jrnn.testing.strategies` holds hypothesis strategies (needs the
``hypothesis`` package; this module does not). The kit lives in
:mod:`jrnn.testing.cell` and :mod:`jrnn.testing.activation`.

Example::

    >>> import jrnn
    >>> report = jrnn.testing.check_cell(jrnn.cells.elman(3), 2, quick=True)
    >>> report["float64"]["jacobian == jacfwd"] < 1e-9
    True
"""

from jrnn.testing.activation import KINKS, check_activation
from jrnn.testing.cell import TOLERANCES, check_cell

__all__ = ["KINKS", "TOLERANCES", "check_activation", "check_cell"]
