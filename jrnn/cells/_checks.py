"""Eager checks of the real-valued hyper-parameters of the remedy cells."""

from __future__ import annotations

import math
from typing import Any


def check_real(
    value: Any,
    argument: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Returns ``float(value)`` if it is a finite real in the interval, else a ValueError.

    The message names ``argument``, the value received and the interval expected,
    e.g. ``"dt must be in (0, 1], got 1.5."``.
    """
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{low:g}, {high:g}{hi}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        msg = f"{argument} must be a real number in {interval}, got {value!r}."
        raise ValueError(msg) from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise ValueError(f"{argument} must be a finite real number in {interval}, got {value!r}.")
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if below or above:
        raise ValueError(f"{argument} must be in {interval}, got {value!r}.")
    return v


def spec(**shapes: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, "f")}``: a float ``param_spec`` from shapes."""
    return {name: (tuple(int(s) for s in shape), "f") for name, shape in shapes.items()}
