"""Reading the arguments of :mod:`jrnn.plot`: one record, several, or a labelled mapping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["collect", "legend_names", "numbers"]


def _names(record_type) -> str:
    types = record_type if isinstance(record_type, tuple) else (record_type,)
    return " or ".join(t.__name__ for t in types)


def collect(value: Any, record_type, argument: str, labels: Sequence[str] | None = None,
            ) -> list[tuple[str | None, Any]]:
    """``[(label, record), ...]`` from a record, a sequence of records or ``{label: record}``.

    Raises:
      TypeError: something else (naming ``argument``, what came and what was expected).
      ValueError: ``labels`` of the wrong length.
    """
    if isinstance(value, record_type):
        items: list[tuple[str | None, Any]] = [(None, value)]
    elif isinstance(value, Mapping) and not hasattr(value, "_fields"):
        items = [(str(k), v) for k, v in value.items()]
    elif (isinstance(value, Sequence) and not isinstance(value, str | bytes)
          and not hasattr(value, "_fields")):  # another record (a NamedTuple) is no sequence
        items = [(None, v) for v in value]
    else:
        raise TypeError(
            f"{argument} must be a {_names(record_type)}, a sequence of them or a mapping "
            f"label -> record, got {type(value).__name__}."
        )
    if not items:
        raise ValueError(f"{argument} is empty: give at least one {_names(record_type)}.")
    for i, (_, r) in enumerate(items):
        if not isinstance(r, record_type):
            raise TypeError(
                f"{argument}[{i}] must be a {_names(record_type)}, got {type(r).__name__}."
            )
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(items):
            raise ValueError(
                f"labels must give one label per record: {len(items)} records, got "
                f"{len(labels)} labels."
            )
        items = [(str(lab), r) for lab, (_, r) in zip(labels, items)]
    return items


def legend_names(items: Sequence[tuple[str | None, Any]], single: str, kind: str) -> list[str]:
    """One legend name per ``(label, value)`` item: its label, else ``single`` when it is the
    only item, else ``"{kind} {i}"`` (1-based)."""
    return [lab if lab is not None else (single if len(items) == 1 else f"{kind} {i + 1}")
            for i, (lab, _) in enumerate(items)]


def numbers(value: Any, argument: str) -> np.ndarray:
    """``value`` as a float64 numpy array (TypeError naming ``argument`` if not numeric)."""
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{argument} must be numeric (an array of numbers), got "
                        f"{type(value).__name__}.") from e
    return out
