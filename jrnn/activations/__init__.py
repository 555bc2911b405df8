"""Activation functions with their analytic properties, and a registry.

An :class:`Activation` is a frozen record holding the function, its derivative
(closed form where one is known, else ``jax.grad``) and the numbers that decide
how gradients flow through a recurrent step:

.. math::

   h_t = f(W_{hh} h_{t-1} + W_{xh} x_t + b_h), \\qquad
   \\frac{\\partial h_t}{\\partial h_{t-1}} = \\mathrm{diag}(f'(a_t))\\, W_{hh},

so ``grad_bound = sup |f'|`` bounds every step's Jacobian norm by
``grad_bound * ||W_hh||`` (Pascanu, Mikolov & Bengio, 2013).

One derivative, every path. ``Activation.fn`` carries ``Activation.derivative``
as its ``jax.custom_jvp`` rule, so ``jax.grad`` / ``jax.jvp`` through a cell,
the cells' analytic Jacobians (which call ``derivative``) and the fused
backward pass all use the same numbers, also at kinks and in the saturated
tails. Two conventions hold for every record:

- **Kinks.** At a breakpoint ``x0`` of a piecewise activation the derivative is
  that of the piece valid on the *closed* side: the pieces are written
  ``where(x > 0, ...)`` and ``where(|x| < c, ...)``, as in PyTorch and
  ``jax.nn.relu``. So ``f'(0) = 0`` for relu, ``negative_slope`` for
  leaky_relu, ``alpha`` for elu, ``scale * alpha`` for selu (the ``x <= 0``
  branch), and ``f' = 0`` at hard_tanh's ``+-1`` and hard_sigmoid's ``+-3``.
- **Non-finite input.** ``derivative(nan)`` is NaN (never a plausible 0 or
  slope), so a NaN trajectory gives NaN Jacobians and gradients. The one
  exception is ``identity``, whose derivative is the constant 1: a linear
  cell's Jacobian does not depend on the state at all.

Every built-in derivative keeps full float32 relative accuracy wherever the
true value is a normal number: no ``1 - tanh^2``, ``s (1 - s)`` or
``1 + erf`` forms that round to 0 or cancel in the tails (see
:func:`tanh_prime`, :func:`sigmoid_prime`).

Example::

    >>> import jrnn
    >>> act = jrnn.activations.get("tanh")
    >>> float(act.derivative(0.0)), act.grad_bound, act.saturating
    (1.0, 1.0, True)
    >>> jrnn.activations.get("leaky_relu", negative_slope=0.1).grad_bound
    1.0

The package: :mod:`~jrnn.activations.registry` (the record and the registry),
:mod:`~jrnn.activations.derivatives` (closed-form derivatives) and
:mod:`~jrnn.activations.builtins` (the built-in entries, registered at import).
"""

# ruff: noqa: F401  (every import here is a re-export; __all__ is built from the modules')

from jrnn.activations import registry as _registry
from jrnn.activations.builtins import BUILTINS
from jrnn.activations.derivatives import sigmoid_prime, tanh_prime
from jrnn.activations.registry import (
    Activation,
    get,
    names,
    register,
    register_family,
    saturation_tolerance,
    unregister,
)

__all__ = sorted(["BUILTINS", "sigmoid_prime", "tanh_prime", *_registry.__all__])

del _registry
