"""Any recurrence as a Cell: a step function, a Flax linen or NNX cell, an Equinox cell.

.. math::

   (c_t, y_t) = \\mathrm{step}(\\theta, c_{t-1}, x_t), \\qquad
   s_t = \\mathrm{flatten}(c_t), \\qquad
   J_t = \\partial s_t / \\partial s_{t-1}

:func:`wrap` runs the user's own code on the user's own params: no weight
conversion, so ``jax.grad`` with respect to the params is the user's gradient
and trained params go straight back into the user's model. The state ``s_t`` of
every diagnostic is the carry flattened (:func:`~jrnn.cells.base.flatten_carry`:
leaves in ``jax.tree_util`` order, each raveled), as for the built-in LSTM's
``(h, c)`` and for stacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import validation
from jrnn.cells._wrap_adapters import PytreeSpec, Wrapped, adapt, float_dtype
from jrnn.cells.base import Cell, Linearization, flatten_carry

__all__ = ["wrap"]


def wrap(
    obj: Any,
    *,
    params: Any = None,
    carry: Any = None,
    input_size: int | None = None,
    jacobian: Callable | None = None,
    tangent: Callable | None = None,
) -> tuple[Cell, Any]:
    """A :class:`~jrnn.Cell` that runs ``obj``'s own step, and the params it runs on.

    .. math::

       (c_t, y_t) = \\mathrm{step}(\\theta, c_{t-1}, x_t), \\qquad
       J_t = \\frac{\\partial\\, \\mathrm{flat}(c_t)}{\\partial\\, \\mathrm{flat}(c_{t-1})}

    ``obj`` is one of

    - a pure step function ``step(params, carry, x) -> (carry, y)``, with
      ``params=`` (any pytree) and an example ``carry=`` (any pytree of float
      arrays) and ``input_size=``;
    - a Flax linen cell (``nn.SimpleCell``, ``nn.GRUCell``, ``nn.LSTMCell``, or
      your module following ``nn.RNNCellBase``: ``__call__(carry, x) -> (carry,
      y)``), with ``params=`` its variables (``module.init(key, carry, x)``);
      ``module.apply(params, carry, x)`` is the step;
    - a Flax NNX cell (``nnx.SimpleCell``, ``nnx.GRUCell``, ``nnx.LSTMCell``, or
      your ``nnx.Module`` with ``__call__(carry, x) -> (carry, y)``); params are
      ``nnx.state(obj, nnx.Param)`` (the default), the rest of the module's
      state is held fixed, and ``nnx.update(obj, params)`` puts trained params
      back;
    - an Equinox cell (``eqx.nn.GRUCell``, ``eqx.nn.LSTMCell``, or your
      ``eqx.Module`` with ``__call__(x, carry) -> carry``); params are its
      array leaves (``eqx.partition(obj, eqx.is_array)[0]``, the default) and
      ``eqx.combine(params, static)`` puts them back. The output ``y_t`` is
      the carry, or its first entry for a tuple carry (``h`` of ``(h, c)``).
      Needs ``pip install 'jrnn[equinox]'``.

    ``carry`` and ``input_size`` are inferred where the framework tells them
    (``initialize_carry``; the built-in cells' input kernels, ``in_features``,
    ``input_size``); otherwise pass them. ``carry`` gives the carry's
    structure and shapes only: ``cell.initial_carry(params)`` is zeros of that
    structure in the params' float dtype, as for the built-in cells (pass
    ``carry=`` to a diagnostic for another start).

    The returned cell works with everything that takes a cell:
    :func:`jrnn.unroll`, every diagnostic (``step_jacobians``, ``propagation``,
    ``lyapunov_spectrum`` in every mode, ...), :func:`jrnn.testing.check_cell`
    and :func:`jrnn.penalties.lyapunov_penalty`. Its fields:

    - ``input_map`` is the identity: the input projection lives inside the
      user's step and is not hoisted out of the scan (a wrapped step costs the
      projection of ``x_t`` at every step, as in the original framework);
    - ``recur(params, carry, x)`` is the user's step; ``h_t`` is ``y`` (raveled
      into one vector when ``y`` is not one);
    - ``linear``: without ``jacobian`` / ``tangent`` None, so ``J_t`` comes from
      ``jax.jacfwd`` and the streaming diagnostics' ``J_t V`` from
      ``jax.linearize`` of the step (exact, like every autodiff path);
      ``jacobian(params, carry, x) -> (S, S)`` / ``tangent(params, carry, x,
      V (S, k)) -> (S, k)`` in flattened-carry coordinates give an analytic
      :class:`~jrnn.cells.Linearization`, which ``check_cell`` checks against
      autodiff;
    - ``pointwise`` is None (the activation is inside the user's code), so
      :func:`jrnn.diagnostics.unit_health` and ``pascanu_bound`` refuse the
      cell with a ValueError; Jacobians, spectra, propagation and Lyapunov
      exponents all apply;
    - ``init(key, input_size)``: a Flax linen module is re-initialised by its
      own ``module.init(key, carry, x)`` (a new key gives new weights, the
      framework's own initialiser); for an NNX or Equinox module or a step
      function (whose weights live in the object, not in a function of a key)
      it returns the wrapped params, whatever the key;
    - ``param_spec`` checks params leaf by leaf against the wrapped params'
      paths, shapes and dtype kinds (any container type).

    Args:
      obj: the model or step function.
      params: the params (required for a step function and a linen module;
        defaults for NNX and Equinox as above).
      carry: an example carry (required for a step function and for modules
        without ``initialize_carry``).
      input_size: ``d``, the size of one input ``x_t`` (required where it cannot
        be inferred).
      jacobian, tangent: optional analytic derivatives, as above.

    Returns:
      ``(cell, params)``: the cell, and the params to give it (``params`` itself
      where given).

    Raises:
      TypeError: ``obj`` is none of the four kinds (or a class, or an Equinox
        module that is no cell); ``params`` of a linen module is not a mapping;
        ``jacobian`` / ``tangent`` not callable; a carry leaf or output that is
        not a real float array.
      ValueError: ``params`` or ``carry`` missing where required;
        ``input_size`` missing or not a positive integer; the step fails on
        ``x`` of shape ``(input_size,)``; the step returns a carry of another
        structure, shape or dtype than the one it received, or not a pair
        ``(carry, y)``; ``jacobian`` / ``tangent`` return the wrong shape. All
        raised here, before any diagnostic traces the step.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> def step(p, h, x):
        ...     h = jnp.tanh(p["W"] @ h + p["U"] @ x)
        ...     return h, h
        >>> p = {"W": 0.9 * jnp.eye(4), "U": jnp.ones((4, 2))}
        >>> cell, params = jrnn.wrap(step, params=p, carry=jnp.zeros(4), input_size=2)
        >>> cell.describe()
        'wrap(hidden_size=4, wraps=step function step)'
        >>> xs = jnp.zeros((10, 2))
        >>> h0 = jnp.full(4, 0.5)
        >>> lam = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, carry=h0, k=2)
        >>> lam.exponents.shape
        (2,)
    """
    w = adapt(obj, params, carry, input_size)
    d = _input_size(w, input_size)
    if w.carry is None:
        raise ValueError(
            f"carry is required for {w.label}: it has no initialize_carry to build one; pass an "
            f"example carry (any pytree of float arrays)."
        )
    validation.check_real_dtype(w.carry, "carry")
    example = w.carry
    if not w.strict_dtype:  # a framework's carry follows the params' dtype, as jrnn's own cells
        dtype = float_dtype(w.params, default=float_dtype(w.carry))
        example = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), w.carry)
    template = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype),
                                      example)  # fmt: skip
    x_sd = jax.ShapeDtypeStruct((d,), float_dtype(example))
    if not w.strict_dtype:
        template = _settle_dtypes(w, template, x_sd)
    y_sd = _check_step(w, template, x_sd, d)
    S = int(sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(template)))
    n = int(sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(y_sd)))
    if S == 0 or n == 0:
        raise ValueError(
            f"{w.label} has an empty {'carry' if S == 0 else 'output'}; a cell needs at least "
            f"one state entry and one output."
        )
    linear = _linearization(w, jacobian, tangent, template, x_sd, S)
    flat_y = not (isinstance(y_sd, jax.ShapeDtypeStruct) and y_sd.ndim == 1)
    user_step = w.step

    def recur(p, c, x):
        new, y = user_step(p, c, x)
        return new, (flatten_carry(y) if flat_y else y)

    def initial_carry(p):
        dtype = float_dtype(p, default=float_dtype(template))
        return jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, dtype), template)

    def init(key, size):
        if int(size) != d:
            raise ValueError(
                f"input_size must be {d} (the input size of the wrapped {w.label}), got {size}."
            )
        if w.init is None:
            return w.params
        zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), template)
        return w.init(key, zeros, jnp.zeros((d,), x_sd.dtype))

    spec = PytreeSpec(w.params)
    cell = Cell(
        name="wrap", hidden_size=n, state_size=S, init=init, initial_carry=initial_carry,
        input_map=lambda p, x: x, recur=recur, input_size=lambda p: d,
        param_spec=lambda size: spec, config=(("wraps", w.label),), linear=linear,
    )  # fmt: skip
    return cell, w.params


def _input_size(w: Wrapped, given) -> int:
    if given is not None:
        d = validation.check_int(given, "input_size", low=1)
        if w.input_size is not None and w.input_size != d:
            raise ValueError(
                f"input_size must be {w.input_size} (the input size of {w.label}'s params), "
                f"got {d}."
            )
        return d
    if w.input_size is None:
        raise ValueError(
            f"input_size is required for {w.label}: the size d of one input x_t (it cannot be "
            f"read from the model); got None."
        )
    return w.input_size


def _settle_dtypes(w: Wrapped, template, x_sd):
    """A framework's carry in the dtypes its step computes in (a module with ``dtype=float32``
    returns a float32 carry from float64 params); unchanged where the step fails or returns
    another structure or shape (:func:`_check_step` reports those)."""
    try:
        new = jax.eval_shape(w.step, w.params, template, x_sd)[0]
        same = jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(template)
        if same and all(a.shape == b.shape for a, b in zip(jax.tree_util.tree_leaves(new),
                                                          jax.tree_util.tree_leaves(template))):
            return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), new)
    except Exception:  # noqa: BLE001, S110 - reported by _check_step with context
        pass
    return template


def _struct(tree) -> str:
    shapes = jax.tree_util.tree_map(lambda a: f"{a.dtype}{list(a.shape)}", tree)
    return str(shapes).replace("'", "")


def _check_step(w: Wrapped, template, x_sd, d: int):
    """Runs the step abstractly once: a pair ``(carry, y)`` whose carry matches ``template``
    (structure, shapes, dtypes); returns ``y``'s ShapeDtypeStruct tree."""
    try:
        out = jax.eval_shape(w.step, w.params, template, x_sd)
    except Exception as err:  # noqa: BLE001 - the user's code: re-raised with context
        raise ValueError(
            f"{w.label} fails on params, carry {_struct(template)} and x of shape ({d},) "
            f"({type(err).__name__}: {err}); check params, carry and input_size (the size of "
            f"one input x_t)."
        ) from err
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(
            f"{w.label} must return a pair (carry, y), got {type(out).__name__}"
            f"{f' of length {len(out)}' if isinstance(out, tuple) else ''}."
        )
    new, y = out
    if jax.tree_util.tree_structure(new) != jax.tree_util.tree_structure(template):
        raise ValueError(
            f"{w.label} returns a carry of another structure than it receives: carry "
            f"{_struct(template)} in, {_struct(new)} out; a recurrent step must return the "
            f"carry it receives (same structure, shapes and dtypes)."
        )
    for path, a, b in zip(
        (jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(template)),
        jax.tree_util.tree_leaves(template),
        jax.tree_util.tree_leaves(new),
    ):
        if a.shape != b.shape or a.dtype != b.dtype:
            what = "dtype" if a.shape == b.shape else "shape"
            fix = (" (pass carry= in the dtype the step computes in, e.g. the params' dtype)"
                   if what == "dtype" else "")  # fmt: skip
            raise ValueError(
                f"{w.label} returns a carry of another {what} than it receives: carry{path} "
                f"is {a.dtype}{list(a.shape)} in, {b.dtype}{list(b.shape)} out{fix}."
            )
    for leaf in jax.tree_util.tree_leaves(y):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"{w.label} must output float arrays y, got dtype {leaf.dtype}.")
    if not jax.tree_util.tree_leaves(y):
        raise ValueError(f"{w.label} returns no output y (got {y!r}).")
    return y


def _linearization(w: Wrapped, jacobian, tangent, template, x_sd, S: int):
    """The analytic Linearization from ``jacobian`` / ``tangent`` (shapes checked), or None."""
    for name, fn in (("jacobian", jacobian), ("tangent", tangent)):
        if fn is not None and not callable(fn):
            raise TypeError(
                f"{name} must be a function {name}(params, carry, x"
                f"{', V' if name == 'tangent' else ''}), got {type(fn).__name__}."
            )
    if jacobian is None and tangent is None:
        return None
    dtype = float_dtype(template)
    checks = []
    if jacobian is not None:
        checks.append(("jacobian", jacobian, (w.params, template, x_sd), (S, S)))
    if tangent is not None:
        V = jax.ShapeDtypeStruct((S, 2), dtype)
        checks.append(("tangent", tangent, (w.params, template, x_sd, V), (S, 2)))
    for name, fn, args, want in checks:
        try:
            got = jax.eval_shape(fn, *args)
        except Exception as err:  # noqa: BLE001 - the user's code
            raise ValueError(f"{name} fails on the wrapped params and carry: {err}") from err
        if not hasattr(got, "shape") or tuple(got.shape) != want:
            raise ValueError(
                f"{name} must return an array of shape {want} (state size S = {S}), got "
                f"{getattr(got, 'shape', type(got).__name__)}."
            )
    return Linearization(jacobian, tangent)
