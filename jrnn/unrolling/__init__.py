"""Run a cell over time (and over a batch): :func:`unroll`, its methods, and bidirectional runs.

.. math::

   u_{1:T} = \\mathrm{input\\_map}(x_{1:T}), \\qquad (s_t, h_t) = \\mathrm{recur}(s_{t-1}, u_t),
   \\quad t = 1, \\dots, T

Variable-length batches freeze each carry past its sequence's end and zero the outputs there;
``reverse`` runs from the last valid step backwards. With ``lengths``, padded inputs are
replaced by zeros before any arithmetic, so whatever the padding holds (NaN, inf) influences
neither values nor gradients.

How the recurrence is executed is a *method*: a small record (a NamedTuple of static
settings, so it can be a static argument of ``jax.jit``) with ``supports(cell)`` (None, or the
reason it cannot run the cell, as a sentence), ``check()`` (itself, its fields validated) and
``run(cell, params, xs, carry, lengths, reverse) -> (final_carry, hs)`` on inputs
:func:`unroll` has validated. All compute the same function:

* :class:`Scan` (``unroll``, ``remat``): the cell's one-example step under ``jax.lax.scan``,
  vmapped over the batch; runs every cell; the readable reference.
* :class:`Associative`: cells with an ``affine`` capability (``min_gru``, ``min_lstm``, ``lru``)
  through ``jax.lax.associative_scan``, ``O(log T)`` depth.
* :class:`Fused` (``backward``, ``weight_grads``, ``unroll``): cells with a ``fused`` capability
  (elman, irnn, residual, leaky, lstm, gru) batch-major, with a hand-written backward pass.
* :class:`Newton` (``jacobian``, ``damping``, ``max_iter``, ``tol``): every cell, by Newton
  iterations over the whole sequence, each a parallel linear recurrence (DEER, quasi-DEER,
  ELK; :mod:`jrnn.unrolling.newton`); a sequence that does not converge returns NaN.

``method="auto"`` (the default) is the one rule :func:`auto_method` (BENCHMARKS.md has the
measurements behind it). A new method is one more record in ``_METHODS`` (and in
:func:`auto_method` if it should ever be chosen on its own).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn import validation
from jrnn.cells.base import Cell
from jrnn.unrolling._inputs import check_inputs, empty_result, match_carry_dtype
from jrnn.unrolling.associative import Associative
from jrnn.unrolling.fused import Fused
from jrnn.unrolling.newton import Newton, NewtonResult
from jrnn.unrolling.scan import Scan

__all__ = [
    "Associative",
    "Bidirectional",
    "Fused",
    "Method",
    "Newton",
    "NewtonResult",
    "Scan",
    "auto_method",
    "bidirectional",
    "check_inputs",
    "match_carry_dtype",
    "unroll",
]

#: The type of a method record accepted by :func:`unroll` (``method=``).
Method = Scan | Associative | Fused | Newton
_METHODS = (Scan, Associative, Fused, Newton)


def auto_method(cell: Cell) -> Method:
    """The method ``method="auto"`` runs ``cell`` with, on the default backend.

    * :class:`Associative` for a cell with an ``affine`` capability when the default
      backend is not the CPU (on a CPU the associative scan does about twice the
      work of the sequential one with no parallel hardware to spend it on, and
      measured slower);
    * otherwise :class:`Fused` for a cell with a ``fused`` capability;
    * otherwise :class:`Scan`.

    Example::

        >>> import jrnn
        >>> jrnn.unrolling.auto_method(jrnn.cells.lstm(4))
        Fused(backward='transpose', weight_grads=None, unroll=1)
        >>> jrnn.unrolling.auto_method(jrnn.cells.indrnn(4))
        Scan(unroll=1, remat=None)
    """
    if Associative().supports(cell) is None and jax.default_backend() != "cpu":
        return Associative()
    if Fused().supports(cell) is None:
        return Fused()
    return Scan()


def _resolve(method: Any, cell: Cell) -> Method:
    """``method`` checked (and ``"auto"`` chosen) for ``cell``."""
    expected = (
        '"auto", jrnn.Scan(...), jrnn.Associative(), jrnn.Fused(...) or jrnn.Newton(...)'
    )
    if isinstance(method, str):
        if method == "auto":
            return auto_method(cell)
        raise ValueError(f"method must be {expected}, got {method!r}.")
    if not isinstance(method, _METHODS):
        hint = f"; did you mean jrnn.{method.__name__}()?" if method in _METHODS else "."
        raise TypeError(
            f"method must be {expected}, got {method!r} ({type(method).__name__}){hint}"
        )
    method.check()
    reason = method.supports(cell)
    if reason is not None:
        raise ValueError(f"method={method!r} cannot run this cell: {reason}")
    return method


def unroll(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    *,
    carry: Any = None,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    method: Method | str = "auto",
) -> tuple[Any, jax.Array]:
    """Runs ``cell`` over ``xs`` and returns ``(final_carry, hs)``.

    .. math::

       (s_t, h_t) = \\mathrm{recur}(s_{t-1}, \\mathrm{input\\_map}(x_t)), \\quad
       s_0 = \\mathrm{carry}

    Args:
      cell: any :class:`~jrnn.cells.base.Cell` (including a ``stack``).
      params: the cell's parameters.
      xs: ``(T, d)`` for one sequence or ``(B, T, d)`` batch-major; integer and
        bool inputs are cast to the params' float dtype.
      carry: initial carry (batched as xs); default ``cell.initial_carry``.
      lengths: ``(B,)`` (or ``()`` for one sequence) valid lengths in
        ``[0, T]``: the carry freezes after each sequence's end and the outputs
        there are zero.
      reverse: run from ``t = T-1`` down to 0 (outputs stay time-aligned).
      method: how to execute the recurrence: ``"auto"`` (:func:`auto_method`:
        :class:`Fused` for cells with a ``fused`` capability, :class:`Associative`
        for cells with an ``affine`` capability off the CPU, else :class:`Scan`), or a
        method record, :class:`Scan` ``(unroll=, remat=)``,
        :class:`Associative` ``()``, :class:`Fused` ``(backward=,
        weight_grads=, unroll=)`` or :class:`Newton` ``(jacobian=, damping=,
        max_iter=, tol=)`` (NaN for a sequence whose iteration did not converge).
        Every method gives the same values.

    Returns:
      ``final_carry`` and ``hs`` of shape ``(T, n)`` or ``(B, T, n)``.

    Raises:
      ValueError: bad ``params``, ``xs``, ``carry`` or ``lengths``
        (:func:`check_inputs`: the message names the argument, got and
        expected), a method that does not support ``cell`` (with its reason),
        a method field out of range, a string ``method`` other than ``"auto"``.
      TypeError: ``method`` is neither a string nor a method record,
        ``reverse`` is not a bool, a method field of the wrong type, complex
        ``xs``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.lstm(16)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> xs = jnp.ones((4, 10, 2))
        >>> (h, c), hs = jrnn.unroll(cell, params, xs, lengths=jnp.array([10, 7, 3, 0]))
        >>> hs.shape, h.shape
        ((4, 10, 16), (4, 16))
        >>> _, ref = jrnn.unroll(cell, params, xs, lengths=jnp.array([10, 7, 3, 0]),
        ...                      method=jrnn.Scan(remat=True))
        >>> bool(jnp.allclose(hs, ref, atol=1e-6))
        True
    """
    reverse = validation.check_bool(reverse, "reverse")
    batch, T = check_inputs(cell, params, xs, carry, lengths)
    method = _resolve(method, cell)
    xs = validation.float_inputs(xs, params)  # integer / bool inputs: the params' float dtype
    if T == 0:
        return empty_result(cell, params, xs, carry, batch)
    return method.run(cell, params, xs, carry, lengths, reverse)


class Bidirectional(NamedTuple):
    """A forward and a backward cell run over the same sequence.

    ``apply(params, xs, *, lengths=None, **unroll_kwargs)`` returns
    ``((fwd_carry, bwd_carry), hs)`` with ``hs`` the concatenation
    ``[h_fwd, h_bwd]`` (``merge="concat"``) or their sum (``merge="sum"``) at
    every step; ``unroll_kwargs`` (e.g. ``method``) go to :func:`unroll` for
    both directions.
    """

    forward: Cell
    backward: Cell
    merge: str

    def init(self, key, input_size):
        k_f, k_b = jax.random.split(key)
        return (self.forward.init(k_f, input_size), self.backward.init(k_b, input_size))

    def apply(self, params, xs, *, lengths=None, **kwargs):
        if not isinstance(params, tuple | list) or len(params) != 2:
            got = (
                f"a {type(params).__name__} of {len(params)} entries"
                if isinstance(params, tuple | list)
                else f"a {type(params).__name__}"
                + (f" with keys {sorted(map(str, params))}" if isinstance(params, dict) else "")
            )
            raise ValueError(
                f"params must be a pair (forward_params, backward_params) as "
                f"Bidirectional.init returns, got {got}."
            )
        c_f, h_f = unroll(self.forward, params[0], xs, lengths=lengths, **kwargs)
        c_b, h_b = unroll(self.backward, params[1], xs, lengths=lengths, reverse=True, **kwargs)
        hs = jnp.concatenate([h_f, h_b], axis=-1) if self.merge == "concat" else h_f + h_b
        return (c_f, c_b), hs


def bidirectional(forward: Cell, backward: Cell, merge: str = "concat") -> Bidirectional:
    """Combines a forward and a reverse pass (Schuster & Paliwal 1997, "Bidirectional
    recurrent neural networks").

    ``hs_t = [h^f_t, h^b_t]`` (``merge="concat"``, size ``n_f + n_b``) or
    ``h^f_t + h^b_t`` (``merge="sum"``, equal sizes), where ``h^b`` runs from the
    end. With ``lengths``, the backward pass starts at each sequence's last valid
    step, not at the padding.

    Raises:
      ValueError: an unknown ``merge``, or ``merge="sum"`` with unequal hidden sizes.
      TypeError: ``forward`` or ``backward`` is not a :class:`~jrnn.cells.base.Cell`.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> bi = jrnn.bidirectional(jrnn.cells.gru(8), jrnn.cells.gru(8))
        >>> params = bi.init(jax.random.key(0), 3)
        >>> bi.apply(params, jnp.ones((5, 3)))[1].shape
        (5, 16)
    """
    for argument, cell in (("forward", forward), ("backward", backward)):
        if not isinstance(cell, Cell):
            raise TypeError(
                f"{argument} must be a jrnn.Cell (e.g. jrnn.cells.gru(8)), got {cell!r} "
                f"({type(cell).__name__})."
            )
    if merge not in ("concat", "sum"):
        raise ValueError(f"merge must be 'concat' or 'sum', got {merge!r}.")
    if merge == "sum" and forward.hidden_size != backward.hidden_size:
        raise ValueError(
            f"merge='sum' needs equal hidden sizes, got {forward.hidden_size} and "
            f"{backward.hidden_size}."
        )
    return Bidirectional(forward, backward, merge)
