"""check_cell: the Cell contract and every derivative a cell offers, against autodiff.

The analytic derivatives are the cell's :class:`~jrnn.cells.Linearization`
(``cell.linear.jacobian``, ``cell.linear.tangent``), each checked when present.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jrnn import validation as _validation
from jrnn.cells.base import Cell, flatten_carry
from jrnn.testing._checker import Checker
from jrnn.unrolling import unroll

__all__ = ["TOLERANCES", "check_cell"]

#: Relative tolerances (difference / max(1, largest reference entry)) per dtype.
TOLERANCES = {
    "float32": {"exact": 1e-5, "derivative": 2e-4, "jit": 1e-5},
    "float64": {"exact": 1e-12, "derivative": 1e-9, "finite_differences": 1e-6, "jit": 1e-12},
}



def _x64(dtype: str):
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def _cast(tree, dtype):
    def cast(a):
        a = jnp.asarray(a)
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree_util.tree_map(cast, tree)


def _perturb(params, key, scale: float, dtype):
    """Every float leaf plus ``scale * N(0, 1) / sqrt(fan_in)``: no zero bias hides a term."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    out = []
    for k, leaf in zip(keys, leaves):
        if jnp.issubdtype(leaf.dtype, jnp.floating) and scale:
            fan = leaf.shape[-1] if leaf.ndim >= 2 else 1
            leaf = leaf + (scale / math.sqrt(fan)) * jax.random.normal(k, leaf.shape, dtype)
        out.append(leaf)
    return jax.tree_util.tree_unflatten(tree, out)


def _check_contract(chk: Checker, cell: Cell, params, carry, input_size: int, dtype) -> None:
    chk.true("contract", isinstance(cell, Cell), "", f"expected a Cell, got {type(cell)}")
    for field in ("hidden_size", "state_size"):
        v = getattr(cell, field)
        chk.true("contract", isinstance(v, int) and v > 0, field, f"{v!r} is not a positive int")
    got_d = cell.input_size(params)
    chk.true("input_size", got_d == input_size, "", f"input_size(params)={got_d}, "
             f"expected {input_size}")  # fmt: skip
    if cell.param_spec is not None:
        # jrnn.validation is the one place params meet param_spec (a stack's spec is a
        # tuple with one spec per layer).
        try:
            _validation.check_params(cell, params, input_size)
            problem = ""
        except (TypeError, ValueError) as err:
            problem = str(err)
        chk.true("param_spec", not problem, "params", problem)
    s = flatten_carry(carry)
    chk.true("initial_carry", s.shape == (cell.state_size,), "",
             f"flattened shape {s.shape}, expected ({cell.state_size},)")  # fmt: skip
    for leaf in jax.tree_util.tree_leaves(carry):
        chk.true("initial_carry", leaf.dtype == dtype, "",
                 f"dtype {leaf.dtype}, expected {jnp.dtype(dtype)} (the params')")  # fmt: skip
    chk.true("initial_carry", bool(jnp.all(s == 0)), "", "not all zeros")


def _state_fn(cell: Cell, params, carry0):
    _, unravel = ravel_pytree(carry0)

    def step(s, u):
        return flatten_carry(cell.recur(params, unravel(s), u)[0])

    return step, unravel



def _check_dtype(cell: Cell, input_size: int, dtype: str, key, steps: int, perturb: float,
                 quick: bool) -> dict[str, float]:  # fmt: skip
    tol = TOLERANCES[dtype]
    chk = Checker(f"check_cell({cell.describe()}, dtype={dtype})")

    k_init, k_pert, k_carry, k_x, k_v = jax.random.split(key, 5)
    params = _cast(cell.init(k_init, input_size), dtype)
    carry0 = cell.initial_carry(params)
    _check_contract(chk, cell, params, carry0, input_size, jnp.dtype(dtype))
    params = _perturb(params, k_pert, perturb, dtype)
    flat0, unravel = ravel_pytree(carry0)
    carry = unravel(0.5 * jax.random.normal(k_carry, flat0.shape, dtype))
    xs = jax.random.normal(k_x, (steps, input_size), dtype)
    Vs = jax.random.normal(k_v, (steps, cell.state_size, 3), dtype)
    structure = jax.tree_util.tree_structure(carry0)
    state_step, _ = _state_fn(cell, params, carry0)
    S, n = cell.state_size, cell.hidden_size
    fd = dtype == "float64" and not quick
    jacobian, tangent = cell.linear if cell.linear is not None else (None, None)

    @jax.jit
    def probe(params, carry, x, V):
        # Everything about one step, compiled once for all steps.
        u = cell.input_map(params, x)
        s = flatten_carry(carry)
        out = {"step": cell.step(params, carry, x), "recur": cell.recur(params, carry, u)}
        out["jacfwd"] = jax.jacfwd(state_step)(s, u)
        if not quick:
            out["jacrev"] = jax.jacrev(state_step)(s, u)
        if jacobian is not None:
            out["jacobian"] = jacobian(params, carry, u)
        if tangent is not None:
            out["tangent"] = tangent(params, carry, u, V)
        if fd:
            h = 1e-6
            eye = jnp.eye(S, dtype=s.dtype)
            col = lambda e: (state_step(s + h * e, u) - state_step(s - h * e, u)) / (2 * h)
            out["fd"] = jax.vmap(col, out_axes=1)(eye)
        return out

    # No retracing: a jitted step fed its own carry, from initial_carry, traces once.
    traces = [0]

    def counted(p, c, x):
        traces[0] += 1
        return cell.step(p, c, x)

    counted_step = jax.jit(counted)
    c, loop_hs = carry0, []
    for t in range(steps):
        c, h = counted_step(params, c, xs[t])
        loop_hs.append(h)
        chk.true("no retracing", traces[0] == 1, f"step t={t}",
                 f"step traced {traces[0]} times for same-shaped inputs (the carry's dtype, "
                 "weak type or shape changes from step to step)")  # fmt: skip
    for t in range(steps):
        where = f"step t={t}"
        out = probe(params, carry, xs[t], Vs[t])
        new_carry, h = out["step"]
        chk.close("step == recur(input_map)", out["step"], out["recur"], tol["exact"], where)
        chk.true("output shape", h.shape == (n,) and h.dtype == jnp.dtype(dtype), where,
                 f"h_t {h.shape} {h.dtype}, expected ({n},) {dtype}")  # fmt: skip
        chk.true("carry structure", jax.tree_util.tree_structure(new_carry) == structure, where,
                 f"{jax.tree_util.tree_structure(new_carry)}, expected {structure}")  # fmt: skip
        for a, b in zip(jax.tree_util.tree_leaves(new_carry), jax.tree_util.tree_leaves(carry0)):
            chk.true(
                "carry dtype/shape",
                a.shape == b.shape and a.dtype == b.dtype,
                where,
                f"{a.shape} {a.dtype}, expected {b.shape} {b.dtype} (as initial_carry)",
            )
        J = out["jacfwd"]
        chk.true("jacobian shape", J.shape == (S, S), where, f"{J.shape}, expected ({S}, {S})")
        if "jacrev" in out:
            chk.close("jacrev == jacfwd", out["jacrev"], J, tol["derivative"], where)
        if "jacobian" in out:
            chk.close("jacobian == jacfwd", out["jacobian"], J, tol["derivative"], where)
        if "tangent" in out:
            chk.close("tangent == jacfwd @ V", out["tangent"], J @ Vs[t], tol["derivative"], where)
        if "fd" in out:
            chk.close("finite differences == jacfwd", out["fd"], J, tol["finite_differences"],
                      where)  # fmt: skip
        if t == 0:  # the same quantities without jit (op by op), once
            u = cell.input_map(params, xs[0])
            chk.close("jit == no-jit (step)", cell.step(params, carry, xs[0]), out["step"],
                      tol["jit"], where)  # fmt: skip
            if jacobian is not None:
                chk.close("jit == no-jit (jacobian)", jacobian(params, carry, u),
                          out["jacobian"], tol["jit"], where)  # fmt: skip
            if tangent is not None:
                chk.close("jit == no-jit (tangent)", tangent(params, carry, u, Vs[0]),
                          out["tangent"], tol["jit"], where)  # fmt: skip
        carry = new_carry

    _check_unroll(chk, cell, params, xs, (c, jnp.stack(loop_hs)), tol["exact"], quick)
    return chk.report


def _check_unroll(chk: Checker, cell: Cell, params, xs, loop, tol: float, quick: bool):
    T = xs.shape[0]
    L = max(T - 2, 1)

    @jax.jit
    def runs(params, xs):
        out = {"fwd": unroll(cell, params, xs), "rev": unroll(cell, params, xs, reverse=True),
               "flip": unroll(cell, params, xs[::-1])}  # fmt: skip
        if not quick:
            batch = jnp.stack([xs, xs[::-1]])
            out["batch"] = unroll(cell, params, batch, lengths=jnp.asarray([T, L]))
            out["short"] = unroll(cell, params, batch[1, :L])
        return out

    out = runs(params, xs)
    final, hs = out["fwd"]
    chk.close("unroll == loop of step", out["fwd"], loop, tol, f"T={T}")
    f_final, f_hs = out["flip"]
    chk.close("unroll reverse", out["rev"], (f_final, f_hs[::-1]), tol, "reverse=True")
    if quick:
        return
    b_final, b_hs = out["batch"]
    short_final, short_hs = out["short"]
    chk.close("unroll batch", jax.tree_util.tree_map(lambda a: a[0], (b_final, b_hs)),
              (final, hs), tol, "sequence 0 of a batch")  # fmt: skip
    chk.close("unroll lengths (frozen carry)", jax.tree_util.tree_map(lambda a: a[1], b_final),
              short_final, tol, f"lengths[1]={L}")  # fmt: skip
    chk.close("unroll lengths (outputs)", b_hs[1, :L], short_hs, tol, f"lengths[1]={L}")
    chk.close("unroll lengths (zeros past the end)", b_hs[1, L:], jnp.zeros_like(b_hs[1, L:]),
              0.0, f"t >= {L}")  # fmt: skip


def check_cell(
    cell: Cell,
    input_size: int,
    *,
    dtype: str | Sequence[str] = ("float32", "float64"),
    key: jax.Array | None = None,
    steps: int = 4,
    perturb: float = 0.3,
    quick: bool = False,
) -> dict[str, dict[str, float]]:
    """Checks ``cell`` against the Cell contract and its derivatives against autodiff.

    Properties checked at every step ``t`` of a random trajectory (random
    params: the cell's init plus ``perturb`` noise on every leaf, biases
    included; a random start carry; standard-normal inputs):

    - contract: ``input_size(params)``, ``param_spec`` (when given) keys,
      shapes and dtype kinds, ``initial_carry`` zeros of the params' dtype with
      ``state_size`` entries; ``h_t`` of shape ``(hidden_size,)``; the carry
      keeps its structure, shapes and dtypes from step to step;
    - ``step == recur(input_map)``;
    - ``jax.jacrev == jax.jacfwd`` of the flattened step (not in ``quick``),
      the analytic ``jacobian`` and ``tangent`` (when the cell has them) ``==
      jax.jacfwd``, and central finite differences ``== jax.jacfwd`` (float64,
      not in ``quick``);
    - ``jax.jit`` == no jit for ``step``, ``jacobian`` and ``tangent``;
    - no retracing: a jitted step fed its own carry traces once;
    - :func:`jrnn.unroll` equals a Python loop of ``step``, ``reverse=True``
      equals the flipped sequence, and (not in ``quick``) a batch with
      ``lengths`` equals each sequence alone, with the carry frozen and zero
      outputs past the end.

    Differences are relative: ``max |got - ref| / max(1, max |ref|)``, against
    :data:`TOLERANCES` (float32: ``2e-4`` for derivatives; float64: ``1e-9``,
    finite differences ``1e-6``). float64 runs inside ``jax.enable_x64(True)``,
    which restores the previous setting on exit.

    Args:
      cell: the cell to check.
      input_size: ``d`` for ``cell.init``.
      dtype: ``"float32"``, ``"float64"`` or a sequence of both.
      key: PRNG key (default ``jax.random.key(0)``).
      steps: trajectory length ``T`` (at least 2).
      perturb: scale of the noise added to the initial params.
      quick: fewer properties (no jacrev, finite differences, batch/lengths)
        for fast checks over many cells.

    Returns:
      ``{dtype: {property: largest relative difference}}``.

    Raises:
      AssertionError: naming the failing property, the dtype, the step and the
        largest difference.
      TypeError: ``cell`` is not a Cell, or ``steps`` not an integer.
      ValueError: a bad (or empty) ``dtype``, ``steps < 2`` or a bad ``perturb``.
    """
    if not isinstance(cell, Cell):
        hint = " (for a jrnn.models.Model pass model.cell)" if hasattr(cell, "cell") else ""
        raise TypeError(f"cell must be a jrnn.Cell{hint}, got {type(cell).__name__}.")
    dtypes = (dtype,) if isinstance(dtype, str) else tuple(dtype or ())
    if not dtypes:
        raise ValueError(f"dtype must be 'float32', 'float64' or both, got {dtype!r}.")
    perturb = _validation.check_number(perturb, "perturb", low=0.0)
    for dt in dtypes:
        if dt not in TOLERANCES:
            raise ValueError(f"dtype must be 'float32', 'float64' or both, got {dt!r}.")
    steps = _validation.check_int(steps, "steps", low=2)
    key = jax.random.key(0) if key is None else key
    report = {}
    for dt in dtypes:
        with _x64(dt):
            report[dt] = _check_dtype(cell, input_size, dt, key, steps, perturb, quick)
    return report

