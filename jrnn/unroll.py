"""Run a cell over time with ``jax.lax.scan`` (and over a batch with ``vmap``).

.. math::

   u_{1:T} = \\mathrm{input\\_map}(x_{1:T}) \\ \\text{(hoisted: one matmul for all steps)},
   \\qquad (s_t, h_t) = \\mathrm{recur}(s_{t-1}, u_t)

Variable-length batches freeze each carry past its sequence's end and zero the
outputs there; ``reverse`` runs from the last valid step backwards; ``remat``
checkpoints every ``k`` steps so a backward pass stores ``T/k`` carries plus
one chunk of intermediates instead of all ``T`` steps'.

Two faster paths compute the same function:

* cells with ``linear_coeffs`` (``min_gru``, ``min_lstm``, ``lru``), whose
  recurrence is ``s_t = a_t * s_{t-1} + b_t`` elementwise, can be run with
  ``jax.lax.associative_scan`` (``parallel``; by default on accelerators):
  ``O(log T)`` depth instead of ``T`` sequential steps;
* cells with a ``fused_rule`` (elman / irnn / residual / lstm / gru) run
  batch-major by default (:func:`jrnn.fast.batched_unroll`: one
  ``(B, n) x (n, G)`` product per step, a custom JVP with a linear tangent
  scan, so forward and reverse mode both work); ``fused=True`` uses the
  hand-written reverse pass instead (reverse mode only); ``fused=False`` the
  readable per-example scan (the reference the tests compare against).

With ``lengths``, padded inputs are replaced by zeros before any arithmetic,
so whatever the padding holds (NaN, inf) influences neither values nor
gradients.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import fast, validation
from jrnn.cells.base import Cell

__all__ = ["Bidirectional", "bidirectional", "check_inputs", "match_carry_dtype", "unroll"]


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
    return batch, T


def _empty_unroll(cell: Cell, params, xs, carry, batch):
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
    prefix = (0,) if batch is None else (batch, 0)
    return carry, jnp.zeros(prefix + h.shape, h.dtype)


def match_carry_dtype(cell: Cell, params, carry, u):
    """Casts ``carry`` to the dtypes ``cell.recur`` returns for input ``u``.

    A float32 zero carry fed float64 inputs (or params) would change dtype after
    one step, which ``lax.scan`` rejects; this promotes it up front.
    """
    out = jax.eval_shape(lambda c, v: cell.recur(params, c, v)[0], carry, u)
    return jax.tree_util.tree_map(lambda c, o: jnp.asarray(c, o.dtype), carry, out)


def _remat_chunk(remat: bool | int, T: int) -> int:
    if remat is False or remat is None:
        return 0
    if remat is True:
        return max(1, int(round(math.sqrt(T))))
    if isinstance(remat, int) and remat >= 1:
        return int(remat)
    raise ValueError(f"remat must be False, True or a positive int chunk length, got {remat!r}.")


def _scan_one(cell, params, xs, carry, length, reverse, unroll, chunk):
    """One sequence: xs (T, d) -> (final carry, hs (T, n))."""
    T = xs.shape[0]
    input_map = jax.vmap(lambda x: cell.input_map(params, x))
    # With remat the input projection is recomputed inside each checkpointed
    # chunk, so the backward pass does not keep the (T, G) projections either.
    us = xs if chunk else input_map(xs)
    u_struct = jax.eval_shape(lambda x: cell.input_map(params, x), xs[0])
    carry = match_carry_dtype(cell, params, carry, u_struct)
    ts = jnp.arange(T)
    masked = length is not None or chunk
    if chunk:
        n_chunks = -(-T // chunk)
        pad = n_chunks * chunk - T
        if pad:
            us = jnp.concatenate([us, jnp.zeros((pad,) + us.shape[1:], us.dtype)])
            ts = jnp.arange(T + pad)
        limit = T if length is None else jnp.minimum(length, T)
    else:
        limit = length

    def body(c, inp):
        u, t = inp
        new_c, h = cell.recur(params, c, u)
        if masked:
            keep = t < limit
            new_c = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new_c, c)
            h = jnp.where(keep, h, jnp.zeros_like(h))
        return new_c, h

    if not chunk:
        return jax.lax.scan(body, carry, (us, ts), reverse=reverse, unroll=unroll)

    @jax.checkpoint
    def run_chunk(c, inp):
        x_chunk, t_chunk = inp
        return jax.lax.scan(body, c, (input_map(x_chunk), t_chunk), reverse=reverse, unroll=unroll)

    us = us.reshape((n_chunks, chunk) + us.shape[1:])
    ts = ts.reshape(n_chunks, chunk)
    carry, hs = jax.lax.scan(run_chunk, carry, (us, ts), reverse=reverse)
    hs = hs.reshape((n_chunks * chunk,) + hs.shape[2:])[:T]
    return carry, hs


def _zero_padding(xs, lengths):
    """``xs`` with every step at or past its sequence's length set to 0 (any padding value)."""
    T = xs.shape[-2]
    valid = jnp.arange(T).reshape((1,) * lengths.ndim + (T,)) < lengths[..., None]  # (B, T)/(T,)
    return jnp.where(valid[..., None], xs, jnp.zeros((), xs.dtype))


def _combine(left, right):
    """Composition of affine maps ``s -> a s + b``: ``right`` after ``left``."""
    a_l, b_l = left
    a_r, b_r = right
    return a_r * a_l, a_r * b_l + b_r


def _parallel_one(cell, params, xs, carry, length, reverse):
    """One sequence through ``jax.lax.associative_scan``: xs (T, d) -> (carry, hs).

    The states are ``s_t = a_t * s_{t-1} + b_t`` with ``(a, b) = linear_coeffs``;
    the initial carry is folded into the first step's ``b`` and steps past
    ``length`` get ``a = 1, b = 0`` (the carry freezes). Complex ``(a, b)``
    (the LRU) act on the complex state ``s[:N] + i s[N:]`` of a real carry
    ``[Re s; Im s]``. The outputs come from ``cell.recur`` applied at every step
    to the scanned previous state, vectorised over time.
    """
    T = xs.shape[0]
    a, b = cell.linear_coeffs(params, xs)
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    if len(leaves) != 1:
        raise ValueError(
            f"parallel=True needs a cell whose carry is one array, got {len(leaves)} leaves."
        )
    dtype = jnp.result_type(a, b, leaves[0])
    a, b = a.astype(dtype), b.astype(dtype)
    s0_real = leaves[0].astype(jnp.finfo(dtype).dtype)  # the real dtype of `dtype`
    cplx = jnp.iscomplexobj(a)
    if cplx:
        N = a.shape[-1]
        s0 = jax.lax.complex(s0_real[:N], s0_real[N:])
    else:
        s0 = s0_real
    if length is not None:
        keep = (jnp.arange(T) < length)[:, None]
        a = jnp.where(keep, a, jnp.ones_like(a))
        b = jnp.where(keep, b, jnp.zeros_like(b))
    first = T - 1 if reverse else 0
    b = b.at[first].add(a[first] * s0)
    _, states = jax.lax.associative_scan(_combine, (a, b), reverse=reverse)
    if cplx:
        states = jnp.concatenate([jnp.real(states), jnp.imag(states)], axis=-1)
    if reverse:
        prev = jnp.concatenate([states[1:], s0_real[None]], axis=0)
    else:
        prev = jnp.concatenate([s0_real[None], states[:-1]], axis=0)
    us = jax.vmap(lambda x: cell.input_map(params, x))(xs)
    _, hs = jax.vmap(lambda s, u: cell.recur(params, treedef.unflatten([s]), u))(prev, us)
    if length is not None:
        hs = jnp.where((jnp.arange(T) < length)[:, None], hs, jnp.zeros_like(hs))
    final = states[0] if reverse else states[-1]
    return treedef.unflatten([final]), hs


def unroll(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    *,
    carry: Any = None,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    unroll: int = 1,
    remat: bool | int = False,
    parallel: bool | None = None,
    fused: bool | None = None,
) -> tuple[Any, jax.Array]:
    """Runs ``cell`` over ``xs`` and returns ``(final_carry, hs)``.

    Args:
      cell: any :class:`~jrnn.cells.base.Cell` (including a ``stack``).
      params: the cell's parameters.
      xs: ``(T, d)`` for one sequence or ``(B, T, d)`` batch-major.
      carry: initial carry (batched as xs); default ``cell.initial_carry``.
      lengths: ``(B,)`` (or ``()`` for one sequence) valid lengths in
        ``[0, T]``: the carry freezes after each sequence's end and the outputs
        there are zero.
      reverse: run from ``t = T-1`` down to 0 (outputs stay time-aligned).
      unroll: steps unrolled per scan iteration (``lax.scan(unroll=...)``).
      remat: ``True`` checkpoints every ``round(sqrt(T))`` steps, an int ``k``
        every ``k`` steps; gradients are unchanged, peak memory drops.
      parallel: run a cell with ``linear_coeffs`` through
        ``jax.lax.associative_scan``. ``None`` (default): whenever the cell has
        ``linear_coeffs``, ``remat`` is off and the default backend is not the
        CPU (where the sequential scan measured faster); ``False``: the
        sequential scan (the reference); ``True``: require it. ``carry``,
        ``lengths`` and ``reverse`` are supported; ``unroll`` is ignored.
      fused: ``None`` (default): cells with a ``fused_rule`` (elman, irnn,
        residual, lstm, gru) run batch-major through
        :func:`jrnn.fast.batched_unroll` unless ``remat`` is set (every
        differentiation mode works); other cells, and ``remat``, use the
        per-example scan. ``True``: :func:`jrnn.fast.fused_unroll`, the
        hand-written backward pass (reverse mode only, no ``jax.jvp`` /
        ``jacfwd``; not with ``remat``). ``False``: the readable per-example
        scan, vmapped over the batch (the reference).

    Returns:
      ``final_carry`` and ``hs`` of shape ``(T, n)`` or ``(B, T, n)``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.lstm(16)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> (h, c), hs = jrnn.unroll(cell, params, jnp.ones((4, 10, 2)),
        ...                          lengths=jnp.array([10, 7, 3, 0]))
        >>> hs.shape, h.shape
        ((4, 10, 16), (4, 16))
    """
    batch, T = check_inputs(cell, params, xs, carry, lengths)
    xs = validation.float_inputs(xs, params)  # integer / bool inputs: the params' float dtype
    if T == 0:
        return _empty_unroll(cell, params, xs, carry, batch)
    chunk = _remat_chunk(remat, T)
    if parallel not in (None, True, False):
        raise ValueError(f"parallel must be None, True or False, got {parallel!r}.")
    if parallel and cell.linear_coeffs is None:
        raise ValueError(
            f"parallel=True needs a cell with linear_coeffs (min_gru, min_lstm, lru), "
            f"got {cell.describe()}."
        )
    if parallel and chunk:
        raise ValueError("parallel=True does not combine with remat; pass remat=False.")
    if parallel is None:
        # Auto: the associative scan wins on accelerators; on a CPU it did ~2x
        # the work of the sequential scan with no parallel hardware to spend it
        # on, and measured 1.5-2.5x slower (BENCHMARKS.md).
        parallel = cell.linear_coeffs is not None and not chunk and jax.default_backend() != "cpu"
    use_parallel = parallel
    if fused not in (None, True, False):
        raise ValueError(f"fused must be None, True or False, got {fused!r}.")
    if fused:
        if chunk:
            raise ValueError("fused=True does not combine with remat; pass remat=False.")
        if not fast.supports(cell):
            raise ValueError(
                "fused=True needs a cell with a fused_rule (elman, irnn, residual, lstm, gru), "
                f"got {cell.describe()}."
            )
        return fast.fused_unroll(
            cell, params, xs, carry=carry, lengths=lengths, reverse=reverse, unroll=unroll
        )
    if fused is None and not chunk and not use_parallel and fast.supports(cell):
        return fast.batched_unroll(
            cell, params, xs, carry=carry, lengths=lengths, reverse=reverse, unroll=unroll
        )
    xs = jnp.asarray(xs)
    lengths = None if lengths is None else jnp.asarray(lengths)
    if lengths is not None:
        xs = _zero_padding(xs, lengths)

    def one(x, c, length):
        c = fast.vary_like(cell.initial_carry(params) if c is None else c, x)
        if use_parallel:
            return _parallel_one(cell, params, x, c, length, reverse)
        return _scan_one(cell, params, x, c, length, reverse, unroll, chunk)

    if batch is None:
        return one(xs, carry, lengths)
    in_axes = (0, None if carry is None else 0, None if lengths is None else 0)
    return jax.vmap(one, in_axes=in_axes)(xs, carry, lengths)


class Bidirectional(NamedTuple):
    """A forward and a backward cell run over the same sequence.

    ``apply`` returns ``((fwd_carry, bwd_carry), hs)`` with ``hs`` the
    concatenation ``[h_fwd, h_bwd]`` (``merge="concat"``) or their sum
    (``merge="sum"``) at every step.
    """

    forward: Cell
    backward: Cell
    merge: str

    def init(self, key, input_size):
        k_f, k_b = jax.random.split(key)
        return (self.forward.init(k_f, input_size), self.backward.init(k_b, input_size))

    def apply(self, params, xs, *, lengths=None, **kwargs):
        c_f, h_f = unroll(self.forward, params[0], xs, lengths=lengths, **kwargs)
        c_b, h_b = unroll(self.backward, params[1], xs, lengths=lengths, reverse=True, **kwargs)
        hs = jnp.concatenate([h_f, h_b], axis=-1) if self.merge == "concat" else h_f + h_b
        return (c_f, c_b), hs


def bidirectional(forward: Cell, backward: Cell, merge: str = "concat") -> Bidirectional:
    """Combines a forward and a reverse pass (Schuster & Paliwal 1997).

    With ``lengths``, the backward pass starts at each sequence's last valid
    step, not at the padding.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> bi = jrnn.bidirectional(jrnn.cells.gru(8), jrnn.cells.gru(8))
        >>> params = bi.init(jax.random.key(0), 3)
        >>> bi.apply(params, jnp.ones((5, 3)))[1].shape
        (5, 16)
    """
    if merge not in ("concat", "sum"):
        raise ValueError(f"merge must be 'concat' or 'sum', got {merge!r}.")
    if merge == "sum" and forward.hidden_size != backward.hidden_size:
        raise ValueError(
            f"merge='sum' needs equal hidden sizes, got {forward.hidden_size} and "
            f"{backward.hidden_size}."
        )
    return Bidirectional(forward, backward, merge)
