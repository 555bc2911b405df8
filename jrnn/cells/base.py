"""The Cell contract: a NamedTuple of pure functions made by a factory.

A cell handles one time step of one example; :func:`jrnn.unroll` scans it over
time and vmaps it over a batch. The recurrence is split in two so the input
projection can be hoisted out of the scan and computed for every step at once:

.. math::

   u_t = \\mathrm{input\\_map}(x_t), \\qquad (s_t, h_t) = \\mathrm{recur}(s_{t-1}, u_t)

where ``s_t`` is the carry (``h`` for Elman cells, ``(h, c)`` for the LSTM)
and ``h_t`` the output. ``jacobian(params, s_{t-1}, u_t)`` is the exact
``d s_t / d s_{t-1}`` with the carry flattened in ``jax.flatten_util`` order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn import activations as _activations

__all__ = ["Cell", "check_positive_int", "flatten_carry"]

Params = Any
Carry = Any


class Cell(NamedTuple):
    """A recurrent cell: static config closed over by pure functions.

    Fields:
      name: family name ("elman", "lstm", ...).
      hidden_size: size of the output ``h_t``.
      state_size: size of the flattened carry ``s_t`` (``2n`` for the LSTM).
      init: ``(key, input_size) -> params``, a dict named as in the equations.
      initial_carry: ``params -> carry`` for one sequence (zeros).
      input_map: ``(params, x_t (d,)) -> u_t``; independent of the carry, so
        it can be applied to all steps at once before the scan.
      recur: ``(params, carry, u_t) -> (carry, h_t)``: the recurrence proper.
      input_size: ``params -> d``, the feature size the params expect.
      jacobian: optional analytic ``(params, carry, u_t) -> (S, S)``.
      tangent: optional ``(params, carry, u_t, V (S, k)) -> J_t V (S, k)``:
        the Jacobian applied to a frame of tangent vectors without forming
        ``J_t`` (flattened-carry coordinates, :func:`flatten_carry` order).
        Streaming diagnostics use it; without it they fall back to ``jax.jvp``.
      fused_rule: optional fused training rule of the family (hand-written
        forward/backward for the fast training path); owned by the cell's
        module, read by :class:`jrnn.Fused`.
      param_spec: optional ``input_size -> {name: (shape, kind)}``: the
        params the cell expects (``kind`` a ``numpy`` dtype kind such as
        ``"f"``), for eager validation with a message naming the key
        (:func:`jrnn.validation.check_params`); a ``stack`` returns the tuple
        of its layers' specs.
      activation: the :class:`~jrnn.activations.Activation` the cell applies to
        its pre-activation (None for gated cells).
      preactivation: optional ``(params, carry, u_t) -> a_t (n,)``, the argument
        of ``activation`` (for dead / saturated unit counts).
      recurrent_matrix: optional ``params -> (n, n)`` effective ``W_hh`` (for
        the Pascanu bound).
      linear_coeffs: optional ``(params, xs (T, d)) -> (a, b)`` with
        ``h_t = a_t * h_{t-1} + b_t`` elementwise, for parallel scans.
      config: static hyper-parameters, for reports and reprs.
    """

    name: str
    hidden_size: int
    state_size: int
    init: Callable[..., Params]
    initial_carry: Callable[[Params], Carry]
    input_map: Callable[[Params, jax.Array], jax.Array]
    recur: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    input_size: Callable[[Params], int]
    jacobian: Callable[[Params, Carry, jax.Array], jax.Array] | None = None
    tangent: Callable[[Params, Carry, jax.Array, jax.Array], jax.Array] | None = None
    fused_rule: Any = None
    param_spec: Callable[[int], dict[str, tuple[tuple[int, ...], str]]] | None = None
    activation: _activations.Activation | None = None
    preactivation: Callable[[Params, Carry, jax.Array], jax.Array] | None = None
    recurrent_matrix: Callable[[Params], jax.Array] | None = None
    linear_coeffs: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]] | None = None
    config: tuple[tuple[str, Any], ...] = ()

    def step(self, params: Params, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
        """One full step: ``recur(params, carry, input_map(params, x))``."""
        return self.recur(params, carry, self.input_map(params, x))

    def describe(self) -> str:
        """``"elman(hidden_size=64, activation=tanh)"``-style label."""
        items = ", ".join(f"{k}={v}" for k, v in (("hidden_size", self.hidden_size),) + self.config)
        return f"{self.name}({items})"


def check_positive_int(value: Any, argument: str) -> int:
    """Returns ``int(value)`` or raises a ValueError naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, int | jnp.integer) or int(value) < 1:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}.")
    return int(value)


def flatten_carry(carry: Carry) -> jax.Array:
    """The state vector ``s_t``: all carry leaves raveled and concatenated."""
    leaves = jax.tree_util.tree_leaves(carry)
    return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])
