"""The fused training rule a cell family may carry (the ``Cell.fused`` capability).

A rule describes one step of a family on batch-major blocks, so that the
shared driver of :class:`jrnn.Fused` can run a whole batch with one
``(B, n) x (n, G)`` product per step and never needs to know which cell it
runs. With ``u = x W_xh^T + b_x`` and ``hh = h_{t-1} W_hh^T (+ b_hh)``
(both ``(B, G)``, ``G = gates * n``) and the carry a tuple of ``(B, n)``
arrays in ``jax.tree_util`` leaf order (output ``h_t`` = leaf 0):

* ``forward(carry, u, hh, with_res) -> (new_carry, res)``: one step; with
  ``with_res`` also the step's residuals ``res`` (a tuple of ``(B, k)``
  arrays: derivative coefficients formed from pre-activations with
  :func:`jrnn.activations.tanh_prime` / ``sigmoid_prime``, so they keep full
  relative accuracy), else ``res = ()``.
* ``tangent(res, dprev, du, dhh) -> dnew``: the step's linearisation,
  linear in ``(dprev, du, dhh)`` (``dhh`` includes ``dh_{t-1} W_hh^T``).
  The default path's custom JVP scans it; ``jax.grad`` transposes it.
* ``backward(res, dnew) -> (dprev_direct, du, dhh)``: its transpose, for the
  hand-written reverse pass (``jrnn.Fused``); ``dprev_direct`` is the part of
  the previous carry's cotangent that does not pass through ``W_hh``.
* ``weights(params) -> (W_xh (G, d), b_x (G,), W_hh (G, n), b_hh (G,) or None)``.

``tangent`` and ``backward`` are tested to be each other's transpose and
against ``jax.jvp`` / ``jax.grad`` of the cell's readable ``recur``
(``tests/test_unroll_fused.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["FusedRule"]


class FusedRule(NamedTuple):
    """One cell family's batch-major step, its linearisation and its transpose."""

    gates: int
    weights: Callable
    forward: Callable
    tangent: Callable
    backward: Callable
