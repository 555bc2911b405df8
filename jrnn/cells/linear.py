"""Linear-recurrence cells: minGRU, minLSTM (Feng et al. 2024) and the LRU (Orvieto et al. 2023).

Their state obeys an elementwise linear recurrence whose coefficients depend
on the input only,

.. math::

   s_t = a_t \\odot s_{t-1} + b_t, \\qquad (a_t, b_t) = \\mathrm{affine.coeffs}(x_t),

so the whole sequence of states is a prefix "sum" under the associative
composition of affine maps ``(a_1, b_1) . (a_2, b_2) = (a_1 a_2, a_2 b_1 + b_2)``
and :func:`jrnn.unroll` computes it with ``jax.lax.associative_scan`` in
``O(log T)`` depth (``method=jrnn.Associative()``, and by default on accelerators); the
sequential scan of ``recur`` remains the reference (``method=jrnn.Scan()``).

**Log space.** Feng et al. evaluate the scan in log space
(``log h_t = a*_t + logcumsumexp(log b_t - a*_t)``, ``a*_t = sum_{k<=t} log a_k``)
because their parallel form divides by the cumulative product of ``a``, which
underflows. ``jax.lax.associative_scan`` never divides: it only multiplies
coefficients in ``(0, 1]`` and adds, so the linear-space scan is stable and
handles any carry sign. :func:`parallel_scan_log` implements the paper's
log-space scan for users who want its exact numerics (it needs positive
states: ``g`` below keeps ``h~_t > 0``, and the initial state must be > 0).

**Activation.** Following the paper's log-space versions, the candidate state
is ``h~_t = g(W_h x_t + b_h)`` with ``g(x) = x + 0.5`` for ``x >= 0`` and
``sigmoid(x)`` otherwise (continuous, positive), and ``log_g`` its stable log.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jrnn import initializers as inits
from jrnn.cells._core_fields import check_input_size, input_size_of, zeros_carry
from jrnn.cells.base import Affine, Cell, Linearization
from jrnn.validation import check_int, check_number

__all__ = [
    "g",
    "log_g",
    "lru",
    "min_gru",
    "min_gru_log_coeffs",
    "min_lstm",
    "min_lstm_log_coeffs",
    "parallel_scan_log",
]


def g(x: jax.Array) -> jax.Array:
    """Feng et al.'s positive activation: ``x + 0.5`` for ``x >= 0``, else ``sigmoid(x)``."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_g(x: jax.Array) -> jax.Array:
    """``log g(x)`` computed stably: ``log(relu(x) + 0.5)`` or ``-softplus(-x)``."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def parallel_scan_log(log_a: jax.Array, log_b: jax.Array, log_h0: jax.Array) -> jax.Array:
    """Feng et al.'s log-space scan: ``h_t = a_t h_{t-1} + b_t`` for positive ``b, h0``.

    .. math::

       a^*_t = \\sum_{k \\le t} \\log a_k, \\qquad
       \\log h_t = a^*_t + \\mathrm{logcumsumexp}_{k \\le t}
       \\big([\\log h_0, \\log b_1, \\dots]_k - a^*_k\\big)

    Args:
      log_a, log_b: ``(T, n)`` logs of the coefficients.
      log_h0: ``(n,)`` log of the initial state.

    Returns:
      ``h (T, n)``.

    Example::

        >>> import jax.numpy as jnp
        >>> from jrnn.cells.linear import parallel_scan_log
        >>> h = parallel_scan_log(jnp.log(jnp.full((3, 1), 0.5)), jnp.zeros((3, 1)),
        ...                       jnp.zeros(1))
        >>> [round(float(v), 4) for v in h[:, 0]]   # h0 = 1: 0.5 + 1, 0.75 + 1, 0.875 + 1
        [1.5, 1.75, 1.875]
    """
    a_star = jnp.cumsum(log_a, axis=0)
    a_star = jnp.concatenate([jnp.zeros_like(a_star[:1]), a_star], axis=0)
    values = jnp.concatenate([log_h0[None], log_b], axis=0)
    log_h = a_star + jax.lax.cumlogsumexp(values - a_star, axis=0)
    return jnp.exp(log_h[1:])


def _linear_init(d):
    """``nn.Linear``'s default, as in the papers' reference code: ``U(+-1/sqrt(d))``."""
    return inits.uniform_pytorch(d)


def _gate_spec(n: int, d: int, gates: str) -> dict:
    """``W_k (n, d)``, ``b_k (n,)`` for each gate letter ``k`` (the cells' ``param_spec``)."""
    spec = {}
    for k in gates:
        spec[f"W_{k}"] = ((n, d), "f")
        spec[f"b_{k}"] = ((n,), "f")
    return spec


def _diag_jacobian(diag: jax.Array) -> jax.Array:
    return jnp.diag(diag)


def _gated(name, n, gates, init, input_map, recur, jacobian, tangent, coeffs) -> Cell:
    """A minGRU / minLSTM cell: carry ``h (n,)``, a weight ``W_k (n, d)`` and bias
    ``b_k (n,)`` per gate letter ``k``, and the ``linear`` and ``affine`` capabilities."""
    return Cell(
        name=name, hidden_size=n, state_size=n,
        init=init, initial_carry=zeros_carry(n, f"W_{gates[0]}"), input_map=input_map,
        recur=recur, input_size=input_size_of(f"W_{gates[0]}"),
        param_spec=lambda d: _gate_spec(n, d, gates),
        linear=Linearization(jacobian, tangent),
        affine=Affine(coeffs),
    )  # fmt: skip


# ----------------------------------------------------------------------------- minGRU


def min_gru(hidden_size: int) -> Cell:
    """minGRU (Feng et al. 2024, "Were RNNs All We Needed?").

    .. math::

       z_t = \\sigma(W_z x_t + b_z), \\quad \\tilde h_t = g(W_h x_t + b_h), \\quad
       h_t = (1 - z_t) \\odot h_{t-1} + z_t \\odot \\tilde h_t

    so ``a_t = 1 - z_t``, ``b_t = z_t * h~_t`` and the step Jacobian is
    ``diag(1 - z_t)``, independent of the state: gradients through time are
    products of gates, never of weight matrices. Params ``W_z, W_h (n, d)``,
    ``b_z, b_h (n,)`` (``nn.Linear`` default initialisation); carry ``h (n,)``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.min_gru(8)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> xs = jnp.ones((100, 3))
        >>> h_par = jrnn.unroll(cell, params, xs, method=jrnn.Associative())[1]
        >>> h_seq = jrnn.unroll(cell, params, xs, method=jrnn.Scan())[1]  # sequential
        >>> bool(jnp.allclose(h_par, h_seq, atol=1e-5))
        True
    """
    n = check_int(hidden_size, "hidden_size", low=1)

    def init(key, input_size):
        d = check_input_size(input_size)
        ks = jax.random.split(key, 4)
        lin = _linear_init(d)
        return {
            "W_z": lin(ks[0], (n, d)),
            "b_z": lin(ks[1], (n,)),
            "W_h": lin(ks[2], (n, d)),
            "b_h": lin(ks[3], (n,)),
        }

    def input_map(params, x):
        return jnp.concatenate(
            [params["W_z"] @ x + params["b_z"], params["W_h"] @ x + params["b_h"]]
        )

    def recur(params, h, u):
        z = jax.nn.sigmoid(u[:n])
        h_new = (1.0 - z) * h + z * g(u[n:])
        return h_new, h_new

    def coeffs(params, xs):
        k = xs @ params["W_z"].T + params["b_z"][None, :]
        pre = xs @ params["W_h"].T + params["b_h"][None, :]
        z = jax.nn.sigmoid(k)
        return 1.0 - z, z * g(pre)

    def jacobian(params, h, u):
        return _diag_jacobian(jax.nn.sigmoid(-u[:n]))  # 1 - z, without rounding to 0

    def tangent(params, h, u, V):
        return jax.nn.sigmoid(-u[:n])[:, None] * V  # 1 - sigmoid(z) without cancellation

    return _gated("min_gru", n, "zh", init, input_map, recur, jacobian, tangent, coeffs)


def min_gru_log_coeffs(params, xs):
    """The paper's log-space coefficients of :func:`min_gru`: ``(log a, log b)``, each (T, n).

    ``log z = -softplus(-k)``, ``log(1 - z) = -softplus(k)``,
    ``log b = log z + log_g(W_h x + b_h)``; use with :func:`parallel_scan_log`.
    """
    k = xs @ params["W_z"].T + params["b_z"][None, :]
    pre = xs @ params["W_h"].T + params["b_h"][None, :]
    return -jax.nn.softplus(k), -jax.nn.softplus(-k) + log_g(pre)


# ----------------------------------------------------------------------------- minLSTM


def min_lstm(hidden_size: int) -> Cell:
    """minLSTM (Feng et al. 2024), with the paper's time-independent gate normalisation.

    .. math::

       f_t = \\sigma(W_f x_t + b_f), \\quad i_t = \\sigma(W_i x_t + b_i), \\quad
       \\tilde h_t = g(W_h x_t + b_h),

       f'_t = \\frac{f_t}{f_t + i_t}, \\quad i'_t = \\frac{i_t}{f_t + i_t}, \\quad
       h_t = f'_t \\odot h_{t-1} + i'_t \\odot \\tilde h_t

    so ``a_t = f'_t``, ``b_t = i'_t h~_t``, Jacobian ``diag(f'_t)``. Params
    ``W_f, W_i, W_h (n, d)``, ``b_f, b_i, b_h (n,)``; carry ``h (n,)``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.min_lstm(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> jrnn.unroll(cell, params, jnp.ones((6, 5, 2)))[1].shape
        (6, 5, 4)
    """
    n = check_int(hidden_size, "hidden_size", low=1)

    def init(key, input_size):
        d = check_input_size(input_size)
        ks = jax.random.split(key, 6)
        lin = _linear_init(d)
        names = ("W_f", "b_f", "W_i", "b_i", "W_h", "b_h")
        shapes = ((n, d), (n,), (n, d), (n,), (n, d), (n,))
        return {name: lin(k, s) for name, k, s in zip(names, ks, shapes)}

    def input_map(params, x):
        return jnp.concatenate([params[f"W_{k}"] @ x + params[f"b_{k}"] for k in ("f", "i", "h")])

    def _gates(u):
        f = jax.nn.sigmoid(u[:n])
        i = jax.nn.sigmoid(u[n : 2 * n])
        return f / (f + i), i / (f + i)

    def recur(params, h, u):
        f, i = _gates(u)
        h_new = f * h + i * g(u[2 * n :])
        return h_new, h_new

    def coeffs(params, xs):
        k_f, k_i, pre = (xs @ params[f"W_{k}"].T + params[f"b_{k}"][None, :] for k in "fih")
        f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
        return f / (f + i), i / (f + i) * g(pre)

    def jacobian(params, h, u):
        # f' = f / (f + i) = sigmoid(-diff), diff = softplus(-k_f) - softplus(-k_i) = log(i/f):
        # finite where both sigmoids underflow (f / (f + i) would be 0 / 0).
        diff = jax.nn.softplus(-u[:n]) - jax.nn.softplus(-u[n : 2 * n])
        return _diag_jacobian(jax.nn.sigmoid(-diff))

    def tangent(params, h, u, V):
        return _gates(u)[0][:, None] * V

    return _gated("min_lstm", n, "fih", init, input_map, recur, jacobian, tangent, coeffs)


def min_lstm_log_coeffs(params, xs):
    """The paper's log-space coefficients of :func:`min_lstm`: ``(log f', log i' + log h~)``.

    With ``diff = softplus(-k_f) - softplus(-k_i)``: ``log f' = -softplus(diff)``,
    ``log i' = -softplus(-diff)``; use with :func:`parallel_scan_log`.
    """
    k_f = xs @ params["W_f"].T + params["b_f"][None, :]
    k_i = xs @ params["W_i"].T + params["b_i"][None, :]
    pre = xs @ params["W_h"].T + params["b_h"][None, :]
    diff = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)
    return -jax.nn.softplus(diff), -jax.nn.softplus(-diff) + log_g(pre)


# ----------------------------------------------------------------------------- LRU


def lru(
    hidden_size: int,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
) -> Cell:
    """Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks").

    .. math::

       \\lambda = \\exp(-\\exp(\\nu^{\\log}) + i \\exp(\\theta^{\\log})), \\quad
       h_t = \\lambda \\odot h_{t-1} + \\gamma \\odot (B x_t), \\quad
       y_t = \\Re(C h_t) + D x_t

    with complex ``h_t, B, C`` and the normalisation
    ``gamma = exp(gamma_log) = sqrt(1 - |lambda|^2)``. Ring initialisation:
    ``|lambda| = sqrt(u1 (r_max^2 - r_min^2) + r_min^2)`` and phase
    ``max_phase * u2`` with ``u1, u2 ~ U[0, 1]``, i.e. ``lambda`` uniform on the
    ring ``r_min <= |lambda| <= r_max`` (within the phase range).

    **Representation.** ``hidden_size = n`` complex state units; the carry is
    the *real* vector ``s = [Re h; Im h]`` of size ``2n`` (so every diagnostic,
    ``jax.jacfwd`` included, sees a real state), and the step Jacobian is the
    real ``2n x 2n`` matrix ``[[diag Re l, -diag Im l], [diag Im l, diag Re l]]``.
    ``affine.coeffs`` returns complex ``(a, b)`` of shape ``(T, n)`` acting on
    ``h = s[:n] + i s[n:]``; :func:`jrnn.unroll` converts. The output ``y_t``
    has size ``n``: ``C (n, n)`` complex and, so that any input size ``d``
    works, a dense skip ``D (n, d)`` (the paper's layer has ``d == n`` and a
    diagonal ``D``). Initialisation as the paper's code: ``B ~ N(0, 1/(2d))``,
    ``C ~ N(0, 1/n)`` (real and imaginary parts), ``D ~ N(0, 1/d)``.

    Params: ``nu_log, theta_log, gamma_log (n,)``, ``B_re, B_im (n, d)``,
    ``C_re, C_im (n, n)``, ``D (n, d)``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.lru(8, r_min=0.9, r_max=0.999)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> carry, ys = jrnn.unroll(cell, params, jnp.ones((50, 3)))
        >>> carry.shape, ys.shape
        ((16,), (50, 8))
    """
    n = check_int(hidden_size, "hidden_size", low=1)
    r_min = check_number(r_min, "r_min", low=0.0, high=1.0)
    r_max = check_number(r_max, "r_max", low=0.0, high=1.0)
    max_phase = check_number(max_phase, "max_phase", low=0.0, low_open=True)
    if not 0.0 <= r_min < r_max <= 1.0:
        raise ValueError(f"need 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}.")
    if max_phase <= 0:
        raise ValueError(f"max_phase must be positive, got {max_phase}.")

    def init(key, input_size):
        d = check_input_size(input_size)
        ks = jax.random.split(key, 7)
        u1 = jax.random.uniform(ks[0], (n,))
        u2 = jax.random.uniform(ks[1], (n,))
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = jnp.log(max_phase * u2)
        mod = jnp.exp(-jnp.exp(nu_log))
        gamma_log = jnp.log(jnp.sqrt(1.0 - mod**2))
        normal = jax.random.normal
        return {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": gamma_log,
            "B_re": normal(ks[2], (n, d)) / math.sqrt(2 * d),
            "B_im": normal(ks[3], (n, d)) / math.sqrt(2 * d),
            "C_re": normal(ks[4], (n, n)) / math.sqrt(n),
            "C_im": normal(ks[5], (n, n)) / math.sqrt(n),
            "D": normal(ks[6], (n, d)) / math.sqrt(d),
        }

    def _lambda(params):
        mod = jnp.exp(-jnp.exp(params["nu_log"]))
        phase = jnp.exp(params["theta_log"])
        return mod * jnp.cos(phase), mod * jnp.sin(phase)

    def input_map(params, x):
        gamma = jnp.exp(params["gamma_log"])
        return jnp.concatenate(
            [gamma * (params["B_re"] @ x), gamma * (params["B_im"] @ x), params["D"] @ x]
        )

    def recur(params, s, u):
        lr, li = _lambda(params)
        hr, hi = s[:n], s[n:]
        new_r = lr * hr - li * hi + u[:n]
        new_i = li * hr + lr * hi + u[n : 2 * n]
        y = params["C_re"] @ new_r - params["C_im"] @ new_i + u[2 * n :]
        return jnp.concatenate([new_r, new_i]), y

    def coeffs(params, xs):
        lr, li = _lambda(params)
        gamma = jnp.exp(params["gamma_log"])[None, :]
        a = jnp.broadcast_to(jax.lax.complex(lr, li), (xs.shape[0], n))
        b = jax.lax.complex(gamma * (xs @ params["B_re"].T), gamma * (xs @ params["B_im"].T))
        return a, b

    def jacobian(params, s, u):
        lr, li = _lambda(params)
        return jnp.block([[jnp.diag(lr), -jnp.diag(li)], [jnp.diag(li), jnp.diag(lr)]])

    def tangent(params, s, u, V):
        lr, li = _lambda(params)
        V_r, V_i = V[:n], V[n:]
        return jnp.concatenate(
            [lr[:, None] * V_r - li[:, None] * V_i, li[:, None] * V_r + lr[:, None] * V_i]
        )

    def param_spec(d):
        return {
            **{k: ((n,), "f") for k in ("nu_log", "theta_log", "gamma_log")},
            **{k: ((n, d), "f") for k in ("B_re", "B_im", "D")},
            **{k: ((n, n), "f") for k in ("C_re", "C_im")},
        }

    return Cell(
        name="lru", hidden_size=n, state_size=2 * n,
        init=init, initial_carry=zeros_carry(2 * n, "B_re"), input_map=input_map, recur=recur,
        input_size=input_size_of("B_re"), param_spec=param_spec,
        config=(("r_min", r_min), ("r_max", r_max), ("max_phase", max_phase)),
        linear=Linearization(jacobian, tangent),
        affine=Affine(coeffs),
    )  # fmt: skip
