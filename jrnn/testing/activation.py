"""check_activation: an Activation's derivative and metadata, checked numerically."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import activations as _activations
from jrnn import validation as _validation
from jrnn.testing._checker import Checker

__all__ = ["KINKS", "check_activation"]

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
    chk = Checker(f"check_activation({act.name})")
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

