"""Explicit ordering of independent computations inside one jitted program.

XLA runs independent operations of a program concurrently on its CPU thread
pool. jaxlib 0.10.0-0.10.2 spreads each *batched* LAPACK call (QR, SVD,
``eigh``, tridiagonalisation, Cholesky, ...) over that same pool and blocks a
pool thread until its pieces finish; when as many such calls run at once as the
pool has threads (2 on a 2-core machine), every thread waits and the program
never finishes. Diagnostics built on LAPACK (:func:`singular_values`,
:func:`propagation`, :func:`lyapunov_spectrum`, :func:`pascanu_bound`) are
independent of each other when called on the same parameters, so a program that
computes several of them can hit this. :func:`after` makes one wait for another.
"""

from __future__ import annotations

from typing import Any

from jax import lax

__all__ = ["after"]


def after(value: Any, *dependencies: Any) -> Any:
    """``value``, available only once every array in ``dependencies`` is computed.

    ``lax.optimization_barrier`` ties them together, so anything computed from
    the returned ``value`` is scheduled after the dependencies. Values and
    derivatives are unchanged.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jnp.ones((20, 1))
        >>> prop = jrnn.diagnostics.propagation(cell, params, xs)
        >>> params = jrnn.diagnostics.after(params, prop)  # the SVDs below wait for prop's
        >>> sv = jrnn.diagnostics.singular_values(jrnn.diagnostics.step_jacobians(cell, params, xs))
        >>> sv.shape
        (20, 8)
    """
    if not dependencies:
        return value
    return lax.optimization_barrier((value, dependencies))[0]
