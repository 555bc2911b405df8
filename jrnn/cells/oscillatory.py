"""Oscillator-based cells with a second-order state: coRNN and LEM.

**coRNN** (Rusch & Mishra 2021), the IMEX discretisation of the damped,
driven oscillators ``y'' = f(W y + calW y' + V u + b) - gamma y - epsilon y'``,
exactly as in the authors' code (``z`` first, then ``y`` with the new ``z``):

.. math::

   z_t = z_{t-1} + \\Delta t\\,\\big(f(W y_{t-1} + \\mathcal{W} z_{t-1} + V u_t + b)
         - \\gamma y_{t-1} - \\epsilon z_{t-1}\\big), \\qquad
   y_t = y_{t-1} + \\Delta t\\, z_t.

Parameters ``W (n, n)`` (``W`` in the paper), ``W_z (n, n)`` (the paper's
``calW``), ``V (n, d)``, ``b (n,)``; carry ``(y, z)``, output ``y``. The paper
proves ``||d y_T / d y_t||`` bounded above and below independently of ``T``.

**LEM** (long expressive memory, Rusch, Mishra, Erichson & Mahoney 2022), a
multiscale ODE with learned time steps:

.. math::

   \\Delta t_t = \\Delta t\\, \\sigma(W_1 y_{t-1} + V_1 u_t + b_1), \\quad
   \\bar{\\Delta t}_t = \\Delta t\\, \\sigma(W_2 y_{t-1} + V_2 u_t + b_2),

   z_t = (1 - \\Delta t_t) \\odot z_{t-1} + \\Delta t_t \\odot f(W_z y_{t-1} + V_z u_t + b_z),

   y_t = (1 - \\bar{\\Delta t}_t) \\odot y_{t-1}
         + \\bar{\\Delta t}_t \\odot f(W_y z_t + V_y u_t + b_y).

Carry ``(y, z)``, output ``y``; the state is ``s_t = [y_t; z_t]`` (size ``2n``).
Both cells give the exact Jacobian and tangent map of that state.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn import initializers as inits
from jrnn.activations import sigmoid_prime
from jrnn.cells._core_fields import check_input_size, float_spec, input_size_of, zeros_carry
from jrnn.cells.base import Cell, Linearization, Pointwise
from jrnn.validation import check_int, check_number

__all__ = ["cornn", "lem"]


def _pytorch_linear(fan_in: int):
    """``nn.Linear``'s default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (weights and bias)."""
    return inits.uniform_pytorch(fan_in)


def cornn(
    hidden_size: int,
    activation="tanh",
    *,
    dt: float = 0.042,
    gamma: float = 2.7,
    epsilon: float = 4.7,
) -> Cell:
    """Coupled oscillatory RNN (coRNN) cell with carry ``(y, z)``.

    Defaults ``dt, gamma, epsilon`` are the paper's sequential-MNIST values;
    initialisation as the authors' code (PyTorch ``nn.Linear`` default:
    ``U(+-1/sqrt(d))`` for ``V`` and the input part of ``b``,
    ``U(+-1/sqrt(2n))`` for ``[W, W_z]``).

    Args:
      hidden_size: ``n`` (the number of oscillators).
      activation: ``f``, a registered name or Activation (paper: tanh).
      dt: time step ``> 0``.
      gamma: stiffness (restoring force) ``>= 0``.
      epsilon: damping ``>= 0``.

    Raises:
      ValueError: ``dt <= 0``, ``gamma < 0`` or ``epsilon < 0``, naming the
        argument, the value and the interval; a bad ``hidden_size``.

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.cornn(4)
        >>> carry = cell.initial_carry(cell.init(jax.random.key(0), 2))
        >>> [c.shape for c in carry], cell.state_size
        ([(4,), (4,)], 8)
    """
    n = check_int(hidden_size, "hidden_size", low=1)
    dt = check_number(dt, "dt", low=0.0, low_open=True)
    gamma = check_number(gamma, "gamma", low=0.0)
    epsilon = check_number(epsilon, "epsilon", low=0.0)
    act = _activations.get(activation)
    f, df = act.fn, act.derivative

    def init(key, input_size):
        d = check_input_size(input_size)
        k_w, k_wz, k_v, k_b = jax.random.split(key, 4)
        rec = _pytorch_linear(2 * n)
        inp = _pytorch_linear(d)
        return {
            "W": rec(k_w, (n, n)),
            "W_z": rec(k_wz, (n, n)),
            "V": inp(k_v, (n, d)),
            "b": inp(k_b, (n,)),
        }

    def input_map(params, x):
        return params["V"] @ x + params["b"]

    def preactivation(params, carry, u):
        y, z = carry
        return params["W"] @ y + params["W_z"] @ z + u

    def recur(params, carry, u):
        y, z = carry
        z_new = z + dt * (f(preactivation(params, carry, u)) - gamma * y - epsilon * z)
        y_new = y + dt * z_new
        return (y_new, z_new), y_new

    def _blocks(params, carry, u):
        s = df(preactivation(params, carry, u))
        return s, dt * s

    def jacobian(params, carry, u):
        _, ds = _blocks(params, carry, u)
        eye = jnp.eye(n, dtype=ds.dtype)
        dz_dy = ds[:, None] * params["W"] - (dt * gamma) * eye
        dz_dz = (1.0 - dt * epsilon) * eye + ds[:, None] * params["W_z"]
        return jnp.block([[eye + dt * dz_dy, dt * dz_dz], [dz_dy, dz_dz]])

    def tangent(params, carry, u, V):
        _, ds = _blocks(params, carry, u)
        Vy, Vz = V[:n], V[n:]
        dz = (
            ds[:, None] * (params["W"] @ Vy + params["W_z"] @ Vz)
            - (dt * gamma) * Vy
            + (1.0 - dt * epsilon) * Vz
        )
        return jnp.concatenate([Vy + dt * dz, dz], axis=0)

    return Cell(
        name="cornn", hidden_size=n, state_size=2 * n,
        init=init, initial_carry=zeros_carry(n, "W", 2), input_map=input_map, recur=recur,
        input_size=input_size_of("V"),
        param_spec=lambda d: float_spec(W=(n, n), W_z=(n, n), V=(n, d), b=(n,)),
        config=(("activation", act.name), ("dt", dt), ("gamma", gamma), ("epsilon", epsilon)),
        linear=Linearization(jacobian, tangent),
        pointwise=Pointwise(act, preactivation),
    )  # fmt: skip


_LEM_BLOCKS = ("1", "2", "z", "y")


def lem(hidden_size: int, activation="tanh", *, dt: float = 1.0) -> Cell:
    """Long expressive memory (LEM) cell with carry ``(y, z)``.

    Initialisation as the authors' code: every weight ``U(+-1/sqrt(n))``,
    biases ``nn.Linear``'s default ``U(+-1/sqrt(n))``.

    Args:
      hidden_size: ``n``.
      activation: ``f`` of the two state updates (paper: tanh); the time-step
        gates are sigmoids.
      dt: the maximal time step ``Delta t`` in ``(0, 1]`` (the gates scale it).

    Raises:
      ValueError: ``dt`` outside ``(0, 1]`` (naming the argument, the value and
        the interval), a bad ``hidden_size`` or an unknown activation.

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.lem(4, dt=0.5)
        >>> sorted(cell.init(jax.random.key(0), 2))[:4]
        ['V_1', 'V_2', 'V_y', 'V_z']
    """
    n = check_int(hidden_size, "hidden_size", low=1)
    dt = check_number(dt, "dt", low=0.0, high=1.0, low_open=True)
    act = _activations.get(activation)
    f, df = act.fn, act.derivative
    weight = inits.uniform(-1.0 / math.sqrt(n), 1.0 / math.sqrt(n))

    def init(key, input_size):
        d = check_input_size(input_size)
        keys = iter(jax.random.split(key, 12))
        params = {}
        for b in _LEM_BLOCKS:
            params[f"W_{b}"] = weight(next(keys), (n, n))
            params[f"V_{b}"] = weight(next(keys), (n, d))
            params[f"b_{b}"] = weight(next(keys), (n,))
        return params

    def input_map(params, x):
        # u = [V_1 x + b_1; V_2 x + b_2; V_z x + b_z; V_y x + b_y]  (4n,)
        return jnp.concatenate([params[f"V_{b}"] @ x + params[f"b_{b}"] for b in _LEM_BLOCKS])

    def _forward(params, carry, u):
        y, z = carry
        a1 = params["W_1"] @ y + u[:n]
        a2 = params["W_2"] @ y + u[n : 2 * n]
        az = params["W_z"] @ y + u[2 * n : 3 * n]
        D1, D2 = dt * jax.nn.sigmoid(a1), dt * jax.nn.sigmoid(a2)
        cz = f(az)
        z_new = (1.0 - D1) * z + D1 * cz
        ay = params["W_y"] @ z_new + u[3 * n :]
        cy = f(ay)
        y_new = (1.0 - D2) * y + D2 * cy
        return (a1, a2, az, ay, D1, D2, cz, cy, z_new), (y_new, z_new)

    def recur(params, carry, u):
        _, (y_new, z_new) = _forward(params, carry, u)
        return (y_new, z_new), y_new

    def tangent(params, carry, u, V):
        y, z = carry
        (a1, a2, az, ay, D1, D2, cz, cy, z_new), _ = _forward(params, carry, u)
        Vy, Vz = V[:n], V[n:]
        col = lambda v: v[:, None]
        dD1 = col(dt * sigmoid_prime(a1)) * (params["W_1"] @ Vy)
        dD2 = col(dt * sigmoid_prime(a2)) * (params["W_2"] @ Vy)
        dcz = col(df(az)) * (params["W_z"] @ Vy)
        # 1 - D = (1 - dt) + dt sigmoid(-a): 1 - dt sigmoid(a) rounds to 0 at dt = 1, a >~ 17.
        keep1 = (1.0 - dt) + dt * jax.nn.sigmoid(-a1)
        keep2 = (1.0 - dt) + dt * jax.nn.sigmoid(-a2)
        dz = col(cz - z) * dD1 + col(keep1) * Vz + col(D1) * dcz
        dcy = col(df(ay)) * (params["W_y"] @ dz)
        dy = col(cy - y) * dD2 + col(keep2) * Vy + col(D2) * dcy
        return jnp.concatenate([dy, dz], axis=0)

    def jacobian(params, carry, u):
        dtype = jnp.result_type(params["W_y"], u)
        return tangent(params, carry, u, jnp.eye(2 * n, dtype=dtype))

    def param_spec(d):
        shapes = {}
        for b in _LEM_BLOCKS:
            shapes.update({f"W_{b}": (n, n), f"V_{b}": (n, d), f"b_{b}": (n,)})
        return float_spec(**shapes)

    return Cell(
        name="lem", hidden_size=n, state_size=2 * n,
        init=init, initial_carry=zeros_carry(n, "W_y", 2), input_map=input_map, recur=recur,
        input_size=input_size_of("V_y"), param_spec=param_spec,
        config=(("activation", act.name), ("dt", dt)),
        linear=Linearization(jacobian, tangent),
    )  # fmt: skip
