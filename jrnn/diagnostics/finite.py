"""The non-finite guard every diagnostic shares: NaN in, NaN out.

A diagnostic of a trajectory, a weight matrix or a Jacobian that holds NaN or
inf has no meaningful value. Many numerical kernels still return one: a Sturm
count treats a NaN pivot as "not negative", a ``where(x > 0, 1, 0)``
derivative maps NaN to 0, a threshold count ``|a| > c`` is False for NaN. So
each diagnostic decides *by its inputs*, not by what its kernel happened to
return: :func:`finite` says which slices of the inputs are all finite, and
:func:`nan_unless` turns every floating result of a slice that is not into NaN
(booleans into False, integers are left alone).

Example::

    >>> import jax.numpy as jnp
    >>> from jrnn.diagnostics.finite import finite, nan_unless
    >>> J = jnp.array([[[1.0, 0.0], [0.0, 2.0]], [[jnp.nan, 0.0], [0.0, 1.0]]])
    >>> ok = finite(J, batch_dims=1)
    >>> ok.tolist()
    [True, False]
    >>> nan_unless(ok, jnp.array([[2.0, 1.0], [1.0, 1.0]])).tolist()
    [[2.0, 1.0], [nan, nan]]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["finite", "nan_unless"]


def finite(*trees: Any, batch_dims: int = 0) -> jax.Array:
    """True where every entry of every leaf is finite, per leading batch index.

    Args:
      *trees: arrays or pytrees of arrays. Each inexact leaf's first
        ``batch_dims`` axes are kept, the rest reduced; integer and boolean
        leaves are always finite.
      batch_dims: number of leading axes shared by all leaves (0: one scalar).

    Returns:
      bool array of the leaves' common leading shape (``()`` for
      ``batch_dims=0``).
    """
    ok = jnp.asarray(True)
    for leaf in jax.tree_util.tree_leaves(trees):
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        axes = tuple(range(batch_dims, leaf.ndim))
        ok = ok & jnp.all(jnp.isfinite(leaf), axis=axes)
    return ok


def nan_unless(ok: jax.Array, tree: Any) -> Any:
    """``tree`` with NaN (floating), False (bool) wherever ``ok`` is False.

    ``ok`` broadcasts against the leading axes of every leaf (trailing axes of
    a leaf beyond ``ok.ndim`` share its value). Integer leaves are returned
    unchanged. Gradients flow through the kept entries only.
    """
    ok = jnp.asarray(ok)

    def guard(x):
        x = jnp.asarray(x)
        mask = ok.reshape(ok.shape + (1,) * (x.ndim - ok.ndim))
        if jnp.issubdtype(x.dtype, jnp.inexact):
            return jnp.where(mask, x, jnp.asarray(jnp.nan, x.dtype))
        if x.dtype == jnp.bool_:
            return x & mask
        return x

    return jax.tree_util.tree_map(guard, tree)
