"""The float ``param_spec`` helper shared by the remedy cells.

Their real-valued hyper-parameters are checked by
:func:`jrnn.validation.check_number`, the one scalar check of the package.
"""

from __future__ import annotations


def spec(**shapes: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, "f")}``: a float ``param_spec`` from shapes."""
    return {name: (tuple(int(s) for s in shape), "f") for name, shape in shapes.items()}
