"""The Cell contract: a core of pure functions plus capability records.

A cell handles one time step of one example; :func:`jrnn.unroll` scans it over
time and vmaps it over a batch. The recurrence is split in two so the input
projection can be hoisted out of the scan and computed for every step at once:

.. math::

   u_t = \\mathrm{input\\_map}(x_t), \\qquad (s_t, h_t) = \\mathrm{recur}(s_{t-1}, u_t)

where ``s_t`` is the carry (``h`` for Elman cells, ``(h, c)`` for the LSTM)
and ``h_t`` the output. Every family fills the core; what only some families
can offer is a *capability*, a small record read by one subsystem (None where
the family has none):

=================  ==============================================  ==========================
field              record                                          read by
=================  ==============================================  ==========================
``linear``         :class:`Linearization` (jacobian, tangent)      the diagnostics' kernel
``fused``          :class:`~jrnn.cells.fused.FusedRule`            the fused unroll method
``affine``         :class:`Affine` (coeffs)                        the associative scan
``pointwise``      :class:`Pointwise` (activation, preactivation,  :mod:`jrnn.diagnostics.health`
                   recurrent_matrix, step_bound)
=================  ==============================================  ==========================

Shared code asks for a capability; it never reads ``cell.name`` or
``cell.config`` to decide what to do.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn import validation
from jrnn.cells.fused import FusedRule

__all__ = [
    "Affine",
    "Cell",
    "Linearization",
    "Pointwise",
    "flatten_carry",
]

Params = Any
Carry = Any


class Linearization(NamedTuple):
    """The exact derivative of one step (``Cell.linear``), read by the diagnostics' kernel.

    Both work in flattened-carry coordinates (:func:`flatten_carry` order).
    Without the capability the diagnostics differentiate ``recur`` with
    ``jax.jacfwd`` / ``jax.jvp``.

    Fields:
      jacobian: ``(params, carry, u_t) -> J_t (S, S)``, the exact
        ``d s_t / d s_{t-1}``; None where only ``tangent`` is offered (a stack).
      tangent: ``(params, carry, u_t, V (S, k)) -> J_t V (S, k)`` without
        forming ``J_t`` (streaming diagnostics); None falls back to ``jax.jvp``.
    """

    jacobian: Callable[[Params, Carry, jax.Array], jax.Array] | None
    tangent: Callable[[Params, Carry, jax.Array, jax.Array], jax.Array] | None = None


class Affine(NamedTuple):
    """An elementwise affine recurrence (``Cell.affine``), read by the associative scan.

    Fields:
      coeffs: ``(params, xs (T, d)) -> (a, b)``, each ``(T, m)``, with
        ``h_t = a_t * h_{t-1} + b_t`` elementwise (complex for the LRU, acting on
        ``h = s[:m] + i s[m:]``).
    """

    coeffs: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]


class Pointwise(NamedTuple):
    """One elementwise activation of a pre-activation (``Cell.pointwise``).

    Read by :mod:`jrnn.diagnostics.health` (dead / saturated units, the Pascanu
    bound), the penalties and the mean-field predictions.

    Fields:
      activation: the :class:`~jrnn.activations.Activation` ``f`` of the step.
      preactivation: ``(params, carry, u_t) -> a_t (n,)``, the argument of ``f``.
      recurrent_matrix: ``params -> (n, n)`` effective ``W_hh`` in ``a_t``, or
        None where the step has no single one.
      step_bound: ``params -> (bound, branch)``: ``bound`` is a Pascanu-style
        bound on every ``||J_t||_2`` (``grad_bound * sigma_max(W_hh)`` for
        ``h' = f(a)``, ``|beta| + |alpha| grad_bound sigma_max`` for
        ``h' = beta h + alpha f(a)``), ``branch`` the bound on the activation
        branch alone (``|alpha| grad_bound sigma_max``); None where unknown.
    """

    activation: _activations.Activation
    preactivation: Callable[[Params, Carry, jax.Array], jax.Array]
    recurrent_matrix: Callable[[Params], jax.Array] | None = None
    step_bound: Callable[[Params], tuple[jax.Array, jax.Array]] | None = None


class _CellFields(NamedTuple):
    """The fields of :class:`Cell` (see there)."""

    name: str
    hidden_size: int
    state_size: int
    init: Callable[..., Params]
    initial_carry: Callable[[Params], Carry]
    input_map: Callable[[Params, jax.Array], jax.Array]
    recur: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    input_size: Callable[[Params], int]
    param_spec: Callable[[int], Any]
    config: tuple[tuple[str, Any], ...] = ()
    linear: Linearization | None = None
    fused: FusedRule | None = None
    affine: Affine | None = None
    pointwise: Pointwise | None = None

    def step(self, params: Params, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
        """One full step: ``recur(params, carry, input_map(params, x))``."""
        return self.recur(params, carry, self.input_map(params, x))

    def describe(self) -> str:
        """``"elman(hidden_size=64, activation=tanh)"``-style label."""
        items = ", ".join(f"{k}={v}" for k, v in (("hidden_size", self.hidden_size),) + self.config)
        return f"{self.name}({items})"



#: Parameters above this many bytes are refused by ``cell.init`` before allocating:
#: the memory of the default device (its ``bytes_limit``; the host's physical memory
#: for the CPU) times this fraction.
MAX_PARAM_FRACTION = 1.0


def _memory_limit() -> tuple[int | None, str]:
    """Bytes the default device can hold, and its name (None when unknown)."""
    try:
        device = jax.devices()[0]
        stats = device.memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"{device.platform} device"
    except Exception:  # noqa: BLE001 - a backend without memory stats
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host (physical)"
    except (AttributeError, ValueError, OSError):
        return None, "host"


def _spec_sizes(spec):
    """``(name, shape, bytes)`` of every entry of a param_spec (a stack's spec is a tuple)."""
    if isinstance(spec, dict):
        for name, (shape, kind) in spec.items():
            count = math.prod(int(s) for s in shape)
            yield name, tuple(shape), count * (8 if kind == "c" else 4)
    elif isinstance(spec, tuple | list):
        for i, layer in enumerate(spec):
            for name, shape, size in _spec_sizes(layer):
                yield f"[{i}][{name!r}]" if not name.startswith("[") else f"[{i}]{name}", \
                    shape, size


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} PB"


def _guard_init(cell: _CellFields) -> Callable[..., Params]:
    """``cell.init`` that checks ``key`` and ``input_size`` and refuses, before
    allocating, params larger than the device's memory (:data:`MAX_PARAM_FRACTION`)."""
    raw, spec_of, label = cell.init, cell.param_spec, cell.describe()

    def init(key, input_size, *args, **kwargs):
        validation.check_key(key, "key")
        d = validation.check_int(input_size, "input_size", low=1)
        if spec_of is not None:
            sizes = list(_spec_sizes(spec_of(d)))
            total = sum(size for _, _, size in sizes)
            limit, where = _memory_limit()
            if sizes and limit is not None and total > MAX_PARAM_FRACTION * limit:
                name, shape, _ = max(sizes, key=lambda t: t[2])
                raise ValueError(
                    f"{label}.init(key, input_size={d}) would allocate {_bytes(total)} of "
                    f"params (largest {name} {shape}, float32), more than the "
                    f"{_bytes(limit)} of memory on the {where}; reduce hidden_size or "
                    f"input_size."
                )
        return raw(key, input_size, *args, **kwargs)

    init._jrnn_guarded = True  # type: ignore[attr-defined]
    init.__wrapped__ = raw  # type: ignore[attr-defined]
    return init


class Cell(_CellFields):
    """A recurrent cell: static config closed over by pure functions.

    Core fields (every family fills them):
      name: family name ("elman", "lstm", ...), for reports.
      hidden_size: size of the output ``h_t``.
      state_size: size of the flattened carry ``s_t`` (``2n`` for the LSTM).
      init: ``(key, input_size) -> params``, a dict named as in the equations.
      initial_carry: ``params -> carry`` for one sequence (zeros).
      input_map: ``(params, x_t (d,)) -> u_t``; independent of the carry, so
        it can be applied to all steps at once before the scan.
      recur: ``(params, carry, u_t) -> (carry, h_t)``: the recurrence proper.
      input_size: ``params -> d``, the feature size the params expect.
      param_spec: ``input_size -> {name: (shape, kind)}``: the params the cell
        expects (``kind`` a ``numpy`` dtype kind such as ``"f"``), for eager
        validation with a message naming the key
        (:func:`jrnn.validation.check_params`); a ``stack`` returns the tuple
        of its layers' specs.
      config: static hyper-parameters, for reports and reprs only: no code
        reads it to decide behaviour.

    Capabilities (None where the family has none; see the module docstring):
      linear: :class:`Linearization`, analytic ``jacobian`` / ``tangent``.
      fused: :class:`~jrnn.cells.fused.FusedRule`, the batch-major training step.
      affine: :class:`Affine`, coefficients for parallel (associative) scans.
      pointwise: :class:`Pointwise`, the elementwise activation and its bound.
    """

    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls, *args, **kwargs)
        if callable(self.init) and not getattr(self.init, "_jrnn_guarded", False):
            self = self._replace(init=_guard_init(self))
        return self


def flatten_carry(carry: Carry) -> jax.Array:
    """The state vector ``s_t``: all carry leaves raveled and concatenated."""
    leaves = jax.tree_util.tree_leaves(carry)
    return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])
