"""The leaky (continuous-time) rate network of theoretical neuroscience.

Euler discretisation, step ``dt`` (in units of the neurons' time constant), of
``tau dh/dt = -h + f(W_hh h + W_xh x(t) + b_h)`` (Sompolinsky, Crisanti &
Sommers 1988; Engelken, Wolf & Abbott 2023):

.. math::

   h_t = (1 - \\Delta t)\\, h_{t-1} + \\Delta t\\, f(W_{hh} h_{t-1} + W_{xh} x_t + b_h),
   \\qquad
   J_t = (1 - \\Delta t) I + \\Delta t\\, \\mathrm{diag}(f'(a_t)) W_{hh}.

``dt = 1`` is exactly the Elman cell. For ``dt < 1`` every unit keeps a
fraction ``1 - dt`` of its state, so a step Jacobian is a convex combination
of the identity and the Elman Jacobian and gradients decay at most like
``(1 - dt)^k`` per ``k`` steps on saturated units instead of vanishing at once.

Units: the diagnostics (:func:`jrnn.diagnostics.lyapunov_spectrum`,
:func:`jrnn.diagnostics.propagation`) measure per *step* (nats per step).
Divide a Lyapunov exponent by ``dt`` for nats per unit time (per ``tau``), the
quantity that converges as ``dt -> 0`` to the exponent of the ODE and that
papers on rate networks report (e.g. ``lambda_max ~ 0`` at ``g = 1`` and
positive beyond it for ``W_hh ~ N(0, g^2 / n)``).
"""

from __future__ import annotations

from jrnn import initializers as inits
from jrnn.cells._pointwise import pointwise_cell
from jrnn.cells.base import Cell
from jrnn.validation import check_number

__all__ = ["leaky"]


def leaky(
    hidden_size: int,
    activation="tanh",
    dt: float = 0.1,
    *,
    gain: float = 1.0,
    input_init=None,
    recurrent_init=None,
    bias_init=inits.zeros,
) -> Cell:
    """Leaky rate network ``h_t = (1 - dt) h_{t-1} + dt f(W_hh h_{t-1} + W_xh x_t + b_h)``.

    Args:
      hidden_size: ``n``.
      activation: a registered name or :class:`~jrnn.activations.Activation`
        (``tanh``, the neuroscience default, or any other).
      dt: Euler step in units of the time constant, in ``(0, 1]``; ``1`` is Elman.
      gain: ``g`` of the default recurrent init ``W_hh ~ N(0, g^2 / n)`` (the
        random-network ensemble: chaos for ``g > 1`` with tanh, as ``dt -> 0``).
      input_init, recurrent_init, bias_init: initialisers for ``W_xh (n, d)``
        (default Glorot uniform), ``W_hh (n, n)`` (default
        :func:`~jrnn.initializers.scaled_normal` ``(gain)``), ``b_h (n,)``.

    Returns:
      A :class:`~jrnn.cells.base.Cell` with carry ``h (n,)``, analytic
      ``jacobian`` and ``tangent``, the fused training path and the Pascanu
      bound ``(1 - dt) + dt sup|f'| sigma_max(W_hh)`` (a member of the pointwise
      family, :mod:`jrnn.cells._pointwise`). Its exponents are per step; divide
      by ``dt`` for per unit time.

    Raises:
      ValueError: ``hidden_size < 1``, ``dt`` outside ``(0, 1]``, ``gain``
        negative, or an unknown activation.
      TypeError: ``hidden_size`` not an integer.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.leaky(8, "tanh", dt=0.1)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> _, hs = jrnn.unroll(cell, params, jnp.ones((5, 2)))
        >>> hs.shape
        (5, 8)
    """
    dt = check_number(dt, "dt", low=0.0, high=1.0, low_open=True)
    gain = check_number(gain, "gain", low=0.0)
    return pointwise_cell(
        "leaky",
        hidden_size,
        activation,
        beta=1.0 - dt,
        alpha=dt,
        input_init=input_init or inits.glorot_uniform(),
        recurrent_init=recurrent_init or inits.scaled_normal(gain),
        bias_init=bias_init,
        config=(("dt", dt), ("gain", gain)),
    )
