"""Helpers that fill a Cell's core fields: float param specs, zero carries, input sizes.

Each family's factory states only what is its own; the parts every family
shares are written once here. Real-valued hyper-parameters are checked by
:func:`jrnn.validation.check_number`, integers by :func:`jrnn.validation.check_int`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from jrnn.validation import check_int

__all__ = ["check_input_size", "float_spec", "input_size_of", "zeros_carry"]


def float_spec(**shapes: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, "f")}``: a float ``param_spec`` from shapes."""
    return {name: (tuple(int(s) for s in shape), "f") for name, shape in shapes.items()}


def zeros_carry(n: int, like: str, parts: int = 1) -> Callable[[Any], Any]:
    """``initial_carry``: zeros ``(n,)`` in the dtype of ``params[like]``.

    ``parts > 1`` gives a tuple of that many (the same) zero vectors, e.g. the
    LSTM's ``(h, c)``.
    """

    def initial_carry(params):
        z = jnp.zeros((n,), params[like].dtype)
        return z if parts == 1 else (z,) * parts

    return initial_carry


def input_size_of(weight: str) -> Callable[[Any], int]:
    """``input_size``: the column count of ``params[weight]`` (an ``(m, d)`` input weight)."""
    return lambda params: params[weight].shape[1]


def check_input_size(input_size: Any) -> int:
    """``input_size`` of ``init`` as an integer ``>= 1`` (``TypeError`` / ``ValueError``)."""
    return check_int(input_size, "input_size", low=1)

