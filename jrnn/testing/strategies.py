"""Hypothesis strategies for property tests of cells and activations.

Needs the ``hypothesis`` package (a test dependency, not a library one).
Every drawn object is small (every new shape recompiles), and
:func:`register_profile` installs a deterministic profile
(``derandomize=True``, no deadline), so a failing example reproduces.

Example::

    >>> from hypothesis import given
    >>> import jrnn
    >>> from jrnn.testing import strategies as jst
    >>> jst.register_profile(load=False)
    'jrnn'
    >>> @given(jst.cells(), jst.sequences())
    ... def test_unroll_shapes(cell, xs):
    ...     params = cell.init(jrnn.testing.strategies.KEY, xs.shape[-1])
    ...     assert jrnn.unroll(cell, params, xs)[1].shape[-1] == cell.hidden_size
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from jrnn import activations as _activations
from jrnn import cells as _cells
from jrnn.cells.base import Cell

__all__ = [
    "CELL_FACTORIES",
    "KEY",
    "activations",
    "cells",
    "register_profile",
    "sequences",
    "shapes",
]

#: A fixed key for params in property tests (deterministic).
KEY = jax.random.key(0)

#: ``family -> (hidden_size, activation) -> Cell``; gated cells ignore the activation.
CELL_FACTORIES: dict[str, Callable[[int, str], Cell]] = {
    "elman": lambda n, a: _cells.elman(n, a),
    "residual": lambda n, a: _cells.residual(n, a, 0.5),
    "indrnn": lambda n, a: _cells.indrnn(n, a),
    "leaky": lambda n, a: _cells.leaky(n, a, dt=0.5),
    "antisymmetric": lambda n, a: _cells.antisymmetric(n, a, eps=0.5, gamma=0.1),
    "lipschitz": lambda n, a: _cells.lipschitz(n, a, eps=0.3),
    "cornn": lambda n, a: _cells.cornn(n, a, dt=0.3),
    "orthogonal": lambda n, a: _cells.orthogonal(n, a),
    "irnn": lambda n, a: _cells.irnn(n),
    "lstm": lambda n, a: _cells.lstm(n),
    "gru": lambda n, a: _cells.gru(n),
    "mgu": lambda n, a: _cells.mgu(n),
    "lem": lambda n, a: _cells.lem(n, a, dt=0.5),
    "min_gru": lambda n, a: _cells.min_gru(n),
    "min_lstm": lambda n, a: _cells.min_lstm(n),
    "lru": lambda n, a: _cells.lru(n),
}


def register_profile(name: str = "jrnn", max_examples: int = 12, load: bool = True) -> str:
    """Registers (and by default loads) a deterministic, small hypothesis profile."""
    settings.register_profile(
        name,
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    if load:
        settings.load_profile(name)
    return name


def activations(names: Sequence[str] | None = None) -> st.SearchStrategy:
    """Registered :class:`~jrnn.activations.Activation` records (default: all)."""
    names = sorted(names if names is not None else _activations.names())
    return st.sampled_from(names).map(_activations.get)


def cells(
    families: Sequence[str] | None = None,
    hidden_sizes: st.SearchStrategy[int] | None = None,
    activations: Sequence[str] = ("tanh", "relu", "sigmoid", "sin"),
) -> st.SearchStrategy[Cell]:
    """Cells of the given families (default: all of :data:`CELL_FACTORIES`)."""
    families = sorted(families if families is not None else CELL_FACTORIES)
    unknown = [f for f in families if f not in CELL_FACTORIES]
    if unknown:
        raise ValueError(f"families must be among {sorted(CELL_FACTORIES)}, got {unknown}.")
    sizes = hidden_sizes if hidden_sizes is not None else st.integers(1, 4)
    return st.builds(
        lambda fam, n, act: CELL_FACTORIES[fam](n, act),
        st.sampled_from(families),
        sizes,
        st.sampled_from(tuple(activations)),
    )


def shapes(
    max_batch: int = 3, max_time: int = 6, max_features: int = 3, batched: bool | None = None
) -> st.SearchStrategy[tuple[int, ...]]:
    """``(T, d)`` or ``(B, T, d)`` input shapes (``batched=None``: either)."""
    T, d = st.integers(1, max_time), st.integers(1, max_features)
    one = st.tuples(T, d)
    many = st.tuples(st.integers(1, max_batch), T, d)
    if batched is None:
        return one | many
    return many if batched else one


def sequences(
    shape: st.SearchStrategy[tuple[int, ...]] | tuple[int, ...] | None = None,
    dtype=np.float64,
    scale: float = 1.0,
) -> st.SearchStrategy[np.ndarray]:
    """Gaussian inputs ``scale * N(0, 1)`` of the drawn shape (seeded: cheap to shrink)."""
    shape_st = shapes() if shape is None else shape
    if isinstance(shape_st, tuple):
        shape_st = st.just(shape_st)
    return st.builds(
        lambda s, seed: (scale * np.random.default_rng(seed).normal(size=s)).astype(dtype),
        shape_st,
        st.integers(0, 2**32 - 1),
    )
