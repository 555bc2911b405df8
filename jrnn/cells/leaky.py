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

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn import initializers as inits
from jrnn.cells._checks import spec
from jrnn.cells.base import Cell, check_positive_int
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
      ``jacobian`` and ``tangent``. Its exponents are per step; divide by ``dt``
      for per unit time.

    Raises:
      ValueError: ``hidden_size`` not a positive integer, ``dt`` outside
        ``(0, 1]``, ``gain`` negative, or an unknown activation.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.leaky(8, "tanh", dt=0.1)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> _, hs = jrnn.unroll(cell, params, jnp.ones((5, 2)))
        >>> hs.shape
        (5, 8)
    """
    n = check_positive_int(hidden_size, "hidden_size")
    dt = check_number(dt, "dt", low=0.0, high=1.0, low_open=True)
    gain = check_number(gain, "gain", low=0.0)
    act = _activations.get(activation)
    f, df = act.fn, act.derivative
    input_init = input_init or inits.glorot_uniform()
    recurrent_init = recurrent_init or inits.scaled_normal(gain)

    def init(key, input_size):
        d = check_positive_int(input_size, "input_size")
        k_x, k_h, k_b = jax.random.split(key, 3)
        return {
            "W_xh": input_init(k_x, (n, d)),
            "W_hh": recurrent_init(k_h, (n, n)),
            "b_h": bias_init(k_b, (n,)),
        }

    def initial_carry(params):
        return jnp.zeros((n,), params["W_hh"].dtype)

    def input_map(params, x):
        return params["W_xh"] @ x + params["b_h"]

    def preactivation(params, h, u):
        return params["W_hh"] @ h + u

    def recur(params, h, u):
        h_new = (1.0 - dt) * h + dt * f(preactivation(params, h, u))
        return h_new, h_new

    def jacobian(params, h, u):
        d = dt * df(preactivation(params, h, u))
        return (1.0 - dt) * jnp.eye(n, dtype=d.dtype) + d[:, None] * params["W_hh"]

    def tangent(params, h, u, V):
        d = dt * df(preactivation(params, h, u))
        return (1.0 - dt) * V + d[:, None] * (params["W_hh"] @ V)

    return Cell(
        name="leaky",
        hidden_size=n,
        state_size=n,
        init=init,
        initial_carry=initial_carry,
        input_map=input_map,
        recur=recur,
        input_size=lambda params: params["W_xh"].shape[1],
        jacobian=jacobian,
        tangent=tangent,
        param_spec=lambda d: spec(W_xh=(n, d), W_hh=(n, n), b_h=(n,)),
        activation=act,
        preactivation=preactivation,
        config=(("activation", act.name), ("dt", dt), ("gain", gain)),
    )
