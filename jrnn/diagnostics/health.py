"""Unit health (dead and saturated units) and the Pascanu norm bound.

The seed article's two failure modes, measured directly: ReLU units that never
fire (their gradient is exactly zero forever) and saturating units (sigmoid,
tanh) whose derivative is nearly zero, which starves
``J_t = diag(f'(a_t)) W_hh`` of gain.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jrnn import validation as _validation
from jrnn.cells.base import Cell, Pointwise
from jrnn.diagnostics import _trajectory
from jrnn.diagnostics.finite import finite, nan_unless

__all__ = ["PascanuBound", "UnitHealth", "pascanu_bound", "unit_health"]


class UnitHealth(NamedTuple):
    """Result of :func:`unit_health` (pooled over all steps and sequences).

    Fields:
      dead_fraction: ``()`` fraction of units dead (0 when not applicable).
      saturated_fraction: ``()`` fraction of unit-steps saturated.
      dead: ``(n,)`` bool, unit ``i`` dead on every step of every sequence.
      saturated: ``(n,)`` per-unit fraction of steps saturated.
      dead_applicable: ``()`` bool, the activation has a ``dead_below``.
      saturation_applicable: ``()`` bool, the activation is saturating.
    """

    dead_fraction: jax.Array  # ()
    saturated_fraction: jax.Array  # ()
    dead: jax.Array  # (n,) bool
    saturated: jax.Array  # (n,)
    dead_applicable: jax.Array  # () bool
    saturation_applicable: jax.Array  # () bool


def _require_pointwise(cell: Cell, needs: tuple[str, ...], what: str) -> Pointwise:
    """``cell.pointwise`` when it has every member in ``needs``, else a ValueError naming it."""
    if not isinstance(cell, Cell):
        hint = " (for a jrnn.models.Model pass model.cell)" if hasattr(cell, "cell") else ""
        raise TypeError(f"{what}: cell must be a jrnn.Cell{hint}, got {type(cell).__name__}.")
    pw = cell.pointwise
    missing = "the pointwise capability (cell.pointwise is None)" if pw is None else ", ".join(
        f"pointwise.{m}" for m in needs if getattr(pw, m) is None
    )
    if missing:
        raise ValueError(
            f"{what} needs a cell with one elementwise activation and "
            f"{' and '.join(f'pointwise.{m}' for m in needs)} (elman, irnn, residual, leaky, "
            f"indrnn, orthogonal), got {cell.describe()}, which lacks {missing}. Gated cells "
            f"(lstm, gru) and stacks have no single activation; apply it to a layer instead, "
            f"e.g. to stack layer l with the inputs that layer sees."
        )
    return pw


def unit_health(cell: Cell, params, xs: jax.Array, *, carry=None) -> UnitHealth:
    """Dead-unit and saturation statistics of the cell's activation over ``xs``.

    With pre-activations ``a_{t,i}`` (``cell.pointwise.preactivation``) over every step
    ``t`` of every sequence ``b``:

    .. math::

       \\mathrm{dead}_i = \\bigwedge_{b,t}\\, [a_{b,t,i} \\le a_{\\mathrm{dead}}],
       \\qquad
       \\mathrm{saturated}_i = \\frac{1}{BT} \\sum_{b,t}\\,
       [\\,|a_{b,t,i}| > a_{\\mathrm{sat}}\\,]

    where ``a_dead = activation.dead_below`` (ReLU family: 0; a unit there
    outputs a constant and passes no gradient) and ``a_sat =
    activation.saturation_threshold`` (beyond it ``|f'| < 1% sup |f'|``; tanh
    2.99, sigmoid 5.99). Statistics that do not apply to the activation are
    0 with the ``*_applicable`` flag False. (Glorot & Bengio 2010 on
    saturation; Lu et al. 2020 on dying ReLU.)

    Non-finite input: if any pre-activation (hence any parameter, input or
    carry it depends on) is NaN or inf, the statistics are undefined:
    ``dead_fraction``, ``saturated_fraction`` and ``saturated`` are NaN and
    ``dead`` is all False (never "0% dead, 0% saturated" for a NaN network).

    Args:
      cell: a cell with the :class:`~jrnn.cells.Pointwise` capability (elman,
        irnn, residual, leaky, indrnn, orthogonal, antisymmetric, lipschitz,
        cornn); gated cells and stacks raise ``ValueError``.
      params, xs, carry: as in :func:`step_jacobians`.

    Returns:
      :class:`UnitHealth`, pooled over the batch.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8, "relu")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> h = jrnn.diagnostics.unit_health(cell, params, -jnp.ones((50, 1)))
        >>> h.dead.shape, bool(h.saturation_applicable)
        ((8,), False)
    """
    pw = _require_pointwise(cell, ("activation", "preactivation"), "unit_health")
    if 0 in jnp.shape(xs):
        raise ValueError(
            f"unit_health: xs must hold at least one step, got shape {jnp.shape(xs)} "
            "(the fractions of an empty sample are undefined)."
        )
    batch = _trajectory.prepare(cell, params, xs, carry)
    act = pw.activation

    def one(x, c):
        us, prev, _ = _trajectory.carries(cell, params, x, c)
        return jax.vmap(lambda h, u: pw.preactivation(params, h, u))(prev, us)

    a = _trajectory.map_sequences(one, batch, jnp.asarray(xs), carry)
    a = a.reshape((-1, a.shape[-1]))  # (B*T, n)
    n = a.shape[-1]
    dead_ok = act.dead_below is not None
    sat_ok = bool(act.saturating and act.saturation_threshold is not None)
    if dead_ok:
        dead = jnp.all(a <= act.dead_below, axis=0)
    else:
        dead = jnp.zeros((n,), bool)
    if sat_ok:
        saturated = jnp.mean(jnp.abs(a) > act.saturation_threshold, axis=0).astype(a.dtype)
    else:
        saturated = jnp.zeros((n,), a.dtype)
    stats = (jnp.mean(dead).astype(a.dtype), jnp.mean(saturated), dead, saturated)
    stats = nan_unless(finite(a, params, xs, carry), stats)
    return UnitHealth(*stats, jnp.asarray(dead_ok), jnp.asarray(sat_ok))


class PascanuBound(NamedTuple):
    """Result of :func:`pascanu_bound`.

    Fields:
      bound: ``()`` upper bound on every ``||J_t||_2``.
      grad_bound: ``()`` ``sup |f'|`` of the activation.
      sigma_max: ``()`` largest singular value of ``W_hh``.
      branch_bound: ``()`` the bound on the activation branch alone
        (``|alpha| * grad_bound * sigma_max`` for ``h' = beta h + alpha f(a)``;
        equal to ``bound`` without a skip path).
      must_vanish: ``()`` bool, ``bound < 1`` (False when the bound is NaN).
    """

    bound: jax.Array
    grad_bound: jax.Array
    sigma_max: jax.Array
    branch_bound: jax.Array
    must_vanish: jax.Array

    @property
    def verdict(self) -> str:
        """``"must vanish"`` when ``bound < 1``, ``"may explode or vanish"`` when
        ``bound >= 1``, ``"undefined (non-finite weights)"`` when it is NaN."""
        if bool(jnp.isnan(self.bound)):
            return "undefined (non-finite weights)"
        return "must vanish" if bool(self.must_vanish) else "may explode or vanish"


def pascanu_bound(cell: Cell, params) -> PascanuBound:
    """Pascanu, Mikolov & Bengio (2013)'s sufficient condition for vanishing gradients.

    .. math::

       \\|J_t\\|_2 = \\|\\mathrm{diag}(f'(a_t)) W_{hh}\\|_2
       \\le \\gamma\\, \\sigma_{\\max}(W_{hh}), \\qquad \\gamma = \\sup |f'|,

    so if ``gamma sigma_max < 1`` every ``||d s_T / d s_t|| <= (gamma
    sigma_max)^{T-t}`` vanishes ("must vanish"); otherwise nothing is
    guaranteed ("may explode or vanish"). The cell states its own bound
    (``cell.pointwise.step_bound``): for ``h' = beta h + alpha f(a)``,
    ``J_t = beta I + alpha diag(f') W_hh`` and the bound is
    ``|beta| + |alpha| gamma sigma_max`` (residual: ``1 + alpha gamma sigma_max``,
    never below 1: the skip path alone cannot make gradients vanish; leaky:
    ``(1 - dt) + dt gamma sigma_max``), and ``branch_bound = |alpha| gamma
    sigma_max`` is the bound on the branch.

    Args:
      cell: a cell whose :class:`~jrnn.cells.Pointwise` capability has a
        ``recurrent_matrix`` and a ``step_bound`` (elman, irnn, residual, leaky,
        indrnn, orthogonal).
      params: its parameters.

    Returns:
      :class:`PascanuBound`; ``.verdict`` gives the words. A recurrent matrix
      holding NaN or inf gives NaN bounds and the verdict
      ``"undefined (non-finite weights)"``.

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.elman(8, "sigmoid")
        >>> pb = jrnn.diagnostics.pascanu_bound(cell, cell.init(jax.random.key(0), 1))
        >>> pb.verdict  # orthogonal W_hh: 0.25 * 1 < 1
        'must vanish'
    """
    _validation.check_params(cell, params)
    pw = _require_pointwise(cell, ("recurrent_matrix", "step_bound"), "pascanu_bound")
    W = pw.recurrent_matrix(params)
    sigma = jnp.linalg.svd(W, compute_uv=False)[0]
    gamma = jnp.asarray(pw.activation.grad_bound, sigma.dtype)
    bound, branch = pw.step_bound(params)
    bound, sigma, branch = nan_unless(finite(W), (bound, sigma, branch))
    return PascanuBound(bound, gamma, sigma, branch, bound < 1)
