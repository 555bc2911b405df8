"""What every unroll method shares: input checks, capability reasons, carry dtypes and
shard_map typing, padding.

:func:`check_inputs` validates ``(cell, params, xs, carry, lengths)`` once, before any method
runs; the helpers below prepare what the methods consume, so no method repeats them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import validation
from jrnn.cells.base import Cell

__all__ = [
    "check_inputs",
    "empty_result",
    "match_carry_dtype",
    "missing_capability",
    "per_example",
    "varies",
    "vary_like",
    "zero_padding",
]


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def check_inputs(cell: Cell, params, xs, carry=None, lengths=None) -> tuple[int | None, int]:
    """Checks ``params``, ``xs``, ``carry``, ``lengths`` for ``cell``; returns ``(B or None, T)``.

    ``params`` are checked against ``cell.param_spec`` (keys, shapes, dtype
    kinds; see :func:`jrnn.validation.check_params`) with the input size taken
    from ``xs``, so a transposed ``W_xh`` is blamed on the params, a wrong
    feature size on ``xs``. ``xs`` may be real floating, integer or bool
    (:func:`jrnn.unroll` casts the last two to the params' float dtype);
    complex inputs are rejected. ``T = 0`` and ``B = 0`` are valid (empty
    outputs). Concrete ``lengths`` must be integers in ``[0, T]``; traced
    ``lengths`` (under ``jit``) cannot be checked and act clamped to
    ``[0, T]`` (a negative length is 0, a length past ``T`` is ``T``).

    Raises:
      ValueError: naming the argument, the shape received and the shape expected.
      TypeError: ``xs`` is complex or not numeric, a
        param has the wrong dtype kind.
    """
    if not isinstance(cell, Cell):
        raise ValueError(f"cell must be a jrnn Cell, got {type(cell).__name__}.")
    shape = tuple(np.shape(xs))
    validation.check_xs_dtype(xs)
    d_xs = shape[-1] if len(shape) in (2, 3) else None
    if d_xs is not None and d_xs >= 1 and cell.param_spec is not None:
        try:
            validation.check_params(cell, params, input_size=d_xs)
        except (TypeError, ValueError) as err_xs:
            # Params that are consistent on their own mean xs has the wrong feature size
            # (reported below); otherwise the params are wrong for these inputs.
            try:
                validation.check_params(cell, params)
            except (TypeError, ValueError):
                raise err_xs from None
    else:
        validation.check_params(cell, params)
    d = int(cell.input_size(params))
    if len(shape) not in (2, 3):
        raise ValueError(
            f"xs must have shape (T, {d}) for one sequence or (B, T, {d}) for a batch, "
            f"got {_shape_str(shape)} (rank {len(shape)})."
        )
    if shape[-1] != d:
        expected = f"(T, {d})" if len(shape) == 2 else f"(B, T, {d})"
        raise ValueError(
            f"xs must have feature size {d} (the cell's input size), got shape "
            f"{_shape_str(shape)}; expected {expected}."
        )
    batch = shape[0] if len(shape) == 3 else None
    T = shape[-2]
    if lengths is not None:
        l_shape = tuple(np.shape(lengths))
        expected = (batch,) if batch is not None else ()
        if l_shape != expected:
            raise ValueError(
                f"lengths must have shape {_shape_str(expected)} (one length per sequence), "
                f"got {_shape_str(l_shape)}."
            )
        l_dtype = np.dtype(getattr(lengths, "dtype", None) or np.asarray(lengths).dtype)
        if not np.issubdtype(l_dtype, np.integer):
            raise ValueError(f"lengths must be integers, got dtype {l_dtype}.")
        if not isinstance(lengths, jax.core.Tracer):
            arr = np.asarray(lengths)
            if arr.size and (arr.min() < 0 or arr.max() > T):
                raise ValueError(
                    f"lengths must lie in [0, T] = [0, {T}], got values in "
                    f"[{arr.min()}, {arr.max()}]."
                )
    if carry is not None:
        expected = jax.eval_shape(cell.initial_carry, params)
        exp_struct = jax.tree_util.tree_structure(expected)
        got_struct = jax.tree_util.tree_structure(carry)
        if exp_struct != got_struct:
            raise ValueError(
                f"carry must have the structure of cell.initial_carry(params), {exp_struct}, "
                f"got {got_struct}."
            )
        prefix = (batch,) if batch is not None else ()
        for i, (e, g) in enumerate(
            zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(carry))
        ):
            want = prefix + tuple(e.shape)
            if tuple(np.shape(g)) != want:
                raise ValueError(
                    f"carry leaf {i} must have shape {_shape_str(want)}, got "
                    f"{_shape_str(np.shape(g))}."
                )
            got_kind = validation.dtype_kind(getattr(g, "dtype", None) or np.asarray(g).dtype)
            want_kind = validation.dtype_kind(e.dtype)
            if got_kind == "c" and want_kind != "c":
                raise TypeError(
                    f"carry leaf {i} must be real (the cell's state is {e.dtype}), got complex "
                    f"dtype {np.dtype(getattr(g, 'dtype', None) or np.asarray(g).dtype)}."
                )
            if got_kind not in "biufc":
                raise TypeError(f"carry leaf {i} must be numeric, got dtype {g.dtype}.")
    return batch, T


def missing_capability(method: str, cell, capability: str, needs: str) -> str | None:
    """A method's ``supports`` answer: None when ``cell`` is a :class:`~jrnn.Cell` whose field
    ``capability`` is set, else the reason it cannot run.

    ``method`` names the record (``"Fused()"``), ``needs`` says what it needs (``"a fused
    capability (...)"``)."""
    if not isinstance(cell, Cell):
        return f"{method} runs a jrnn Cell, got {type(cell).__name__}."
    if getattr(cell, capability) is None:
        return f"{method} needs a cell with {needs}, got {cell.describe()}; use jrnn.Scan() for it."
    return None


def empty_result(cell: Cell, params, xs, carry, batch):
    """``T = 0``: the initial carry unchanged and ``hs`` of shape ``(0, n)`` / ``(B, 0, n)``."""
    c0 = cell.initial_carry(params)
    if carry is None:
        carry = (
            c0
            if batch is None
            else jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (batch,) + a.shape), c0)
        )
    u = jax.eval_shape(lambda x: cell.input_map(params, x), jnp.zeros(xs.shape[-1:], xs.dtype))
    h = jax.eval_shape(lambda c, v: cell.recur(params, c, v)[1], c0, u)
    # The carry in the dtype a step would give it (as for T >= 1: float32 params with float64
    # inputs give a float64 carry), so the result's dtypes do not depend on T.
    one = jax.tree_util.tree_map(lambda a: a[0] if batch is not None else a, carry)
    carry = jax.tree_util.tree_map(
        lambda c, o: jnp.asarray(c, o.dtype), carry,
        jax.eval_shape(lambda c, v: cell.recur(params, c, v)[0], one, u))
    prefix = (0,) if batch is None else (batch, 0)
    return carry, jnp.zeros(prefix + h.shape, h.dtype)


def match_carry_dtype(cell: Cell, params, carry, u):
    """Casts ``carry`` to the dtypes ``cell.recur`` returns for input ``u``.

    A float32 zero carry fed float64 inputs (or params) would change dtype after
    one step, which ``lax.scan`` rejects; this promotes it up front.
    """
    out = jax.eval_shape(lambda c, v: cell.recur(params, c, v)[0], carry, u)
    return jax.tree_util.tree_map(lambda c, o: jnp.asarray(c, o.dtype), carry, out)


def zero_padding(xs, lengths):
    """``xs`` with every step at or past its sequence's length set to 0 (any padding value).

    ``xs`` is ``(T, d)`` with ``lengths`` ``()`` or ``(B, T, d)`` with ``lengths`` ``(B,)``.
    Padding never reaches the arithmetic, so NaN or inf there influences neither values nor
    gradients.
    """
    T = xs.shape[-2]
    valid = jnp.arange(T).reshape((1,) * lengths.ndim + (T,)) < lengths[..., None]  # (B, T)/(T,)
    return jnp.where(valid[..., None], xs, jnp.zeros((), xs.dtype))


def varies(x) -> bool:
    """True inside ``jax.shard_map`` (with ``check_vma``) when ``x`` varies over mesh axes."""
    mat = getattr(jax.typeof(x), "mat", None)
    return bool(getattr(mat, "varying", ()))


def vary_like(tree, x):
    """``tree`` plus an exact zero made from ``x``: inside ``jax.shard_map`` the carry then
    varies over the same mesh axes as the inputs (an initial carry built from replicated
    params is invariant, and a scan whose carry turns varying after one step is a type error).
    Elsewhere (``x`` varies over no mesh axis) ``tree`` is returned as is, with no op added."""
    if not varies(x):
        return tree
    z = jnp.zeros_like(x, shape=())
    return jax.tree_util.tree_map(lambda a: a + z.astype(jnp.result_type(a)), tree)


def per_example(one, cell: Cell, params, xs, carry, lengths):
    """Runs ``one(x (T, d), carry, length) -> (carry, hs (T, n))`` on one sequence or vmapped
    over a batch ``(B, T, d)``.

    Padding is zeroed first (:func:`zero_padding`), and the carry (``cell.initial_carry``
    when None) is made to vary like the inputs inside ``jax.shard_map`` (:func:`vary_like`).
    """
    xs = jnp.asarray(xs)
    lengths = None if lengths is None else jnp.asarray(lengths)
    if lengths is not None:
        xs = zero_padding(xs, lengths)

    def run(x, c, length):
        c = vary_like(cell.initial_carry(params) if c is None else c, x)
        return one(x, c, length)

    if xs.ndim == 2:
        return run(xs, carry, lengths)
    in_axes = (0, None if carry is None else 0, None if lengths is None else 0)
    return jax.vmap(run, in_axes=in_axes)(xs, carry, lengths)
