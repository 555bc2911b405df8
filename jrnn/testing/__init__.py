"""The property-test kit: check any cell or activation the way jrnn checks its own.

:func:`check_cell` verifies the :class:`~jrnn.cells.base.Cell` contract and
every derivative a cell offers against independent ones; :func:`check_activation`
verifies an :class:`~jrnn.activations.Activation`'s derivative and metadata.
Both raise an ``AssertionError`` that names the property, the step (or input)
and the largest difference, and return a small report when everything holds.
:mod:`jrnn.testing.strategies` holds hypothesis strategies (needs the
``hypothesis`` package; this module does not).

Example::

    >>> import jrnn
    >>> report = jrnn.testing.check_cell(jrnn.cells.elman(3), 2, quick=True)
    >>> report["float64"]["jacobian == jacfwd"] < 1e-9
    True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jrnn import activations as _activations
from jrnn import validation as _validation
from jrnn.cells.base import Cell, flatten_carry
from jrnn.unrolling import unroll

__all__ = ["check_activation", "check_cell"]

#: Relative tolerances (difference / max(1, largest reference entry)) per dtype.
TOLERANCES = {
    "float32": {"exact": 1e-5, "derivative": 2e-4, "jit": 1e-5},
    "float64": {"exact": 1e-12, "derivative": 1e-9, "finite_differences": 1e-6, "jit": 1e-12},
}


class _Checker:
    """Collects the largest difference per property and fails with a precise message."""

    def __init__(self, label: str):
        self.label = label
        self.report: dict[str, float] = {}

    def close(self, prop: str, got, ref, tol: float, where: str = "") -> None:
        got_leaves = jax.tree_util.tree_leaves(got)
        ref_leaves = jax.tree_util.tree_leaves(ref)
        if len(got_leaves) != len(ref_leaves):
            self.fail(prop, where, f"{len(got_leaves)} leaves, expected {len(ref_leaves)}")
        worst = 0.0
        for g, r in zip(got_leaves, ref_leaves):
            g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
            if g.shape != r.shape:
                self.fail(prop, where, f"shape {g.shape}, expected {r.shape}")
            if g.size == 0:
                continue
            scale = max(1.0, float(np.max(np.abs(r))) if np.all(np.isfinite(r)) else 1.0)
            diff = float(np.max(np.abs(g - r))) / scale
            if not math.isfinite(diff):
                diff = math.inf
            worst = max(worst, diff)
        self.report[prop] = max(self.report.get(prop, 0.0), worst)
        if not worst <= tol:
            self.fail(prop, where, f"largest difference {worst:.3g} > tolerance {tol:.3g}")

    def true(self, prop: str, ok: bool, where: str, detail: str) -> None:
        if not ok:
            self.fail(prop, where, detail)

    def fail(self, prop: str, where: str, detail: str):
        at = f" at {where}" if where else ""
        raise AssertionError(f"{self.label}: property {prop!r} fails{at}: {detail}.")


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


def _check_contract(chk: _Checker, cell: Cell, params, carry, input_size: int, dtype) -> None:
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


def _finite_differences(fn, s, u, h: float = 1e-6):
    eye = np.eye(s.shape[0], dtype=np.float64)
    cols = [(fn(s + h * e, u) - fn(s - h * e, u)) / (2 * h) for e in eye]
    return jnp.stack(cols, axis=1)


def _check_dtype(cell: Cell, input_size: int, dtype: str, key, steps: int, perturb: float,
                 quick: bool) -> dict[str, float]:  # fmt: skip
    tol = TOLERANCES[dtype]
    chk = _Checker(f"check_cell({cell.describe()}, dtype={dtype})")

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

    @jax.jit
    def probe(params, carry, x, V):
        # Everything about one step, compiled once for all steps.
        u = cell.input_map(params, x)
        s = flatten_carry(carry)
        out = {"step": cell.step(params, carry, x), "recur": cell.recur(params, carry, u)}
        out["jacfwd"] = jax.jacfwd(state_step)(s, u)
        if not quick:
            out["jacrev"] = jax.jacrev(state_step)(s, u)
        if cell.jacobian is not None:
            out["jacobian"] = cell.jacobian(params, carry, u)
        if cell.tangent is not None:
            out["tangent"] = cell.tangent(params, carry, u, V)
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
            if cell.jacobian is not None:
                chk.close("jit == no-jit (jacobian)", cell.jacobian(params, carry, u),
                          out["jacobian"], tol["jit"], where)  # fmt: skip
            if cell.tangent is not None:
                chk.close("jit == no-jit (tangent)", cell.tangent(params, carry, u, Vs[0]),
                          out["tangent"], tol["jit"], where)  # fmt: skip
        carry = new_carry

    _check_unroll(chk, cell, params, xs, (c, jnp.stack(loop_hs)), tol["exact"], quick)
    return chk.report


def _check_unroll(chk: _Checker, cell: Cell, params, xs, loop, tol: float, quick: bool):
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
      TypeError: ``cell`` is not a Cell.
      ValueError: a bad (or empty) ``dtype``, ``steps`` or ``perturb``.
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
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}.")
    key = jax.random.key(0) if key is None else key
    report = {}
    for dt in dtypes:
        with _x64(dt):
            report[dt] = _check_dtype(cell, input_size, dt, key, steps, perturb, quick)
    return report


# ------------------------------------------------------------------ activations
#: Points where built-in activations have kinks; the grids include them exactly.
KINKS = (-3.0, -1.0, 0.0, 1.0, 3.0)


def check_activation(
    act,
    *,
    kinks: Sequence[float] = (),
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> dict[str, float]:
    """Checks an activation's derivative and metadata numerically (in float64).

    - ``derivative`` equals ``jax.grad(fn)`` on a dense grid over
      ``[-12, 12]`` (step ``1e-3``) that includes :data:`KINKS`, ``kinks`` and
      ``dead_below``. Where they differ (a kink, or autodiff splitting a tie as
      ``jnp.minimum(x, 0)`` does at 0), ``derivative`` must equal the left or
      the right limit (``jax.grad`` at ``x -+ 1e-7``).
    - ``grad_bound`` is ``sup |f'|`` on ``[-30, 30]`` (step ``1e-4``, plus the
      points ``1e-12`` either side of every kink): never exceeded, and
      approached within a relative ``1e-6``.
    - ``output_range``: ``f`` on ``[-40, 40]`` and at ``+-1e3`` stays inside.
    - ``dead_below``: ``f'`` is exactly zero below it and nonzero just above.
    - ``saturating``: ``|f'|`` at ``+-30`` is below
      ``saturation_tolerance * grad_bound`` on both sides iff saturating, and
      ``saturation_threshold`` (if any) is where that tolerance is crossed.

    Args:
      act: an :class:`~jrnn.activations.Activation`, a registered name or a
        callable (as :func:`jrnn.activations.get` accepts).
      kinks: extra points where ``f'`` may jump.
      rtol, atol: tolerance of ``derivative`` vs ``jax.grad``.

    Returns:
      ``{property: largest difference}``.

    Raises:
      AssertionError: naming the property, the input ``x`` and the difference.
      ValueError: ``rtol`` / ``atol`` not finite numbers >= 0, ``kinks`` not finite numbers.

    Example::

        >>> import jrnn
        >>> r = jrnn.testing.check_activation("relu")
        >>> r["derivative"]
        0.0
    """
    act = _activations.get(act)
    rtol = _validation.check_number(rtol, "rtol", low=0.0)
    atol = _validation.check_number(atol, "atol", low=0.0)
    try:
        kinks = tuple(float(k) for k in kinks)
    except (TypeError, ValueError):
        raise ValueError(f"kinks must be a sequence of finite numbers, got {kinks!r}.") from None
    if not all(math.isfinite(k) for k in kinks):
        raise ValueError(f"kinks must be a sequence of finite numbers, got {kinks!r}.")
    with jax.enable_x64(True):
        return _check_activation(act, kinks, rtol, atol)


def _check_activation(act, kinks, rtol, atol) -> dict[str, float]:
    chk = _Checker(f"check_activation({act.name})")
    special = list(KINKS) + [float(k) for k in kinks]
    if act.dead_below is not None:
        special.append(float(act.dead_below))
    grid = np.union1d(np.linspace(-12.0, 12.0, 24_001), special)
    deriv = lambda x: np.asarray(act.derivative(jnp.asarray(x, jnp.float64)), np.float64)
    # act.fn carries act.derivative as its custom_jvp rule: differentiate the implementation.
    raw = getattr(act.fn, "_jrnn_raw", act.fn)
    grad = jax.jit(jax.vmap(jax.grad(lambda x: raw(x))))
    auto = lambda x: np.asarray(grad(jnp.asarray(x, jnp.float64)), np.float64)

    d, g = deriv(grid), auto(grid)
    tol = atol + rtol * np.abs(g)
    bad = ~(np.abs(d - g) <= tol)
    if np.any(bad):
        xb = grid[bad]
        left, right = auto(xb - 1e-7), auto(xb + 1e-7)
        # At a kink (or where autodiff splits a tie, e.g. jnp.minimum(x, 0) at 0) the
        # derivative must equal the left or the right limit of jax.grad.
        ok = (np.abs(d[bad] - left) <= 1e-5 * np.maximum(1.0, np.abs(left))) | (
            np.abs(d[bad] - right) <= 1e-5 * np.maximum(1.0, np.abs(right))
        )
        if not np.all(ok):
            i = int(np.argmax(~ok))
            diff = float(np.abs(d[bad] - g[bad])[i])
            chk.fail("derivative", f"x={xb[i]:.6g}", f"derivative {d[bad][i]:.9g} vs jax.grad "
                     f"{g[bad][i]:.9g} (difference {diff:.3g}), and it is neither one-sided "
                     f"limit ({left[i]:.9g}, {right[i]:.9g})")  # fmt: skip
    good = ~bad
    chk.report["derivative"] = float(np.max(np.abs(d - g)[good])) if np.any(good) else 0.0

    fine = np.linspace(-30.0, 30.0, 600_001)
    near = np.concatenate([[k - 1e-12, k + 1e-12] for k in special])
    x = np.concatenate([fine, near])
    a = np.abs(deriv(x))
    sup = float(np.max(a))
    i = int(np.argmax(a))
    chk.report["grad_bound"] = abs(sup - act.grad_bound) / max(act.grad_bound, 1e-300)
    chk.true("grad_bound", sup <= act.grad_bound * (1 + 1e-9), f"x={x[i]:.6g}",
             f"|f'| = {sup:.9g} exceeds grad_bound {act.grad_bound:.9g}")  # fmt: skip
    chk.true("grad_bound", sup >= act.grad_bound * (1 - 1e-6), "[-30, 30]",
             f"sup |f'| = {sup:.9g} is below grad_bound {act.grad_bound:.9g} "
             f"(relative gap {chk.report['grad_bound']:.3g})")  # fmt: skip

    lo, hi = act.output_range
    xs = np.concatenate([np.linspace(-40.0, 40.0, 8001), [-1e3, 1e3]])
    y = np.asarray(act.fn(jnp.asarray(xs)), np.float64)
    j = int(np.argmin(y)) if y.min() < lo else int(np.argmax(y))
    chk.report["output_range"] = float(max(lo - y.min(), y.max() - hi, 0.0))
    chk.true("output_range", bool(np.all((y >= lo) & (y <= hi))), f"x={xs[j]:.6g}",
             f"f = {y[j]:.9g} outside output_range {act.output_range}")  # fmt: skip

    if act.dead_below is not None:
        below = np.linspace(act.dead_below - 10.0, act.dead_below - 1e-6, 1001)
        db = deriv(below)
        k = int(np.argmax(db != 0))
        chk.true(
            "dead_below",
            bool(np.all(db == 0)),
            f"x={below[k]:.6g}",
            f"f' = {db[k]:.3g} is not exactly 0 below dead_below={act.dead_below}",
        )
        above = deriv(np.asarray([act.dead_below + 1e-3]))[0]
        chk.true(
            "dead_below",
            above != 0,
            f"x={act.dead_below + 1e-3:.6g}",
            "f' is 0 just above dead_below: the dead region extends further",
        )

    cut = _activations.saturation_tolerance * act.grad_bound
    ends = np.abs(deriv(np.asarray([-30.0, 30.0])))
    both_flat = bool(np.all(ends < cut))
    chk.true("saturating", both_flat == act.saturating, "x=+-30",
             f"|f'(-30)|, |f'(30)| = {ends[0]:.3g}, {ends[1]:.3g} vs {cut:.3g}, but "
             f"saturating={act.saturating}")  # fmt: skip
    th = act.saturation_threshold
    if th is not None:
        out = np.abs(deriv(np.asarray([-th * 1.001, th * 1.001])))
        inside = np.abs(deriv(np.asarray([th * 0.9])))[0]
        chk.true(
            "saturation_threshold",
            bool(np.all(out <= cut * (1 + 1e-6))),
            f"x=+-{th * 1.001:.6g}",
            f"|f'| = {out.max():.3g} above {cut:.3g}",
        )
        chk.true(
            "saturation_threshold",
            inside > cut,
            f"x={th * 0.9:.6g}",
            f"|f'| = {inside:.3g} already below {cut:.3g} inside the threshold",
        )
    return chk.report
