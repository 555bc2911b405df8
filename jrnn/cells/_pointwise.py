"""One builder for the pointwise family ``h' = beta h + alpha f(W h + U x + b)``.

.. math::

   a_t = W_{hh} h_{t-1} + W_{xh} x_t + b_h, \\qquad
   h_t = \\beta\\, h_{t-1} + \\alpha\\, f(a_t), \\qquad
   J_t = \\beta I + \\alpha\\, \\mathrm{diag}(f'(a_t)) W_{hh}

covers elman and irnn (``beta = 0, alpha = 1``), residual (``beta = 1``),
leaky (``beta = 1 - dt, alpha = dt``) and, with a diagonal ``W_hh = diag(w_hh)``,
indrnn. :func:`pointwise_cell` gives every member its params, ``init``,
``input_map``, ``recur``, the analytic Jacobian and tangent map
(:class:`~jrnn.cells.base.Linearization`), the fused rule (dense ``W_hh``;
:class:`~jrnn.cells.fused.FusedRule`) and the :class:`~jrnn.cells.base.Pointwise`
capability with its Pascanu bound

.. math::

   \\|J_t\\|_2 \\le |\\beta| + |\\alpha|\\, \\gamma\\, \\sigma_{\\max}(W_{hh}),
   \\qquad \\gamma = \\sup |f'|

(``sigma_max = max |w_hh|`` for a diagonal ``W_hh``). Coefficients that are
``beta = 0`` or ``alpha = 1`` are left out of the arithmetic, so each member
computes exactly what its own formula says.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jrnn import activations as _activations
from jrnn import validation as _validation
from jrnn.cells._core_fields import check_input_size, input_size_of, zeros_carry
from jrnn.cells.base import Cell, Linearization, Pointwise
from jrnn.cells.fused import FusedRule

__all__ = ["pascanu_step_bound", "pointwise_cell"]


def pascanu_step_bound(
    activation: _activations.Activation,
    sigma_max: Callable,
    *,
    alpha: float = 1.0,
    beta: float = 0.0,
) -> Callable:
    """``Pointwise.step_bound`` of ``h' = beta h + alpha f(a)``: ``params -> (bound, branch)``.

    ``branch = |alpha| grad_bound sigma_max(params)`` bounds the activation
    branch, ``bound = |beta| + branch`` the whole step Jacobian.
    """

    def step_bound(params):
        sigma = sigma_max(params)
        branch = jnp.asarray(activation.grad_bound, sigma.dtype) * sigma
        if alpha != 1.0:
            branch = jnp.asarray(abs(alpha), sigma.dtype) * branch
        return (branch if beta == 0.0 else abs(beta) + branch), branch

    return step_bound


def largest_singular_value(recurrent_matrix: Callable) -> Callable:
    """``params -> sigma_max(recurrent_matrix(params))``."""
    return lambda params: jnp.linalg.svd(recurrent_matrix(params), compute_uv=False)[0]


def pointwise_cell(
    name: str,
    hidden_size: int,
    activation,
    *,
    beta: float = 0.0,
    alpha: float = 1.0,
    diagonal: bool = False,
    input_init,
    recurrent_init,
    bias_init,
    use_bias: bool = True,
    config: tuple = (),
) -> Cell:
    """A cell of the family ``h' = beta h + alpha f(W_hh h + W_xh x + b_h)``.

    Args:
      name: the family name (reports only).
      hidden_size: ``n``.
      activation: ``f``, a registered name or Activation.
      beta, alpha: the skip and branch coefficients (static floats).
      diagonal: ``W_hh = diag(w_hh)`` with params ``w_hh (n,)`` (indrnn); no fused rule.
      input_init, recurrent_init, bias_init: initialisers for ``W_xh (n, d)``,
        the recurrent weight (``W_hh (n, n)`` or ``w_hh (n,)``) and ``b_h (n,)``.
      use_bias: include ``b_h``.
      config: hyper-parameters for the report, after ``("activation", name)``.

    Returns:
      A :class:`~jrnn.cells.base.Cell` with carry ``h (n,)`` and the
      ``linear``, ``pointwise`` and (dense ``W_hh``) ``fused`` capabilities.
    """
    n = _validation.check_int(hidden_size, "hidden_size", low=1)
    use_bias = _validation.check_bool(use_bias, "use_bias")
    act = _activations.get(activation)
    f, df = act.fn, act.derivative
    rec = "w_hh" if diagonal else "W_hh"
    rec_shape = (n,) if diagonal else (n, n)

    def init(key, input_size):
        d = check_input_size(input_size)
        k_x, k_h, k_b = jax.random.split(key, 3)
        params = {"W_xh": input_init(k_x, (n, d)), rec: recurrent_init(k_h, rec_shape)}
        if use_bias:
            params["b_h"] = bias_init(k_b, (n,))
        return params

    def param_spec(d):
        spec = {"W_xh": ((n, d), "f"), rec: (rec_shape, "f")}
        return {**spec, "b_h": ((n,), "f")} if use_bias else spec

    def input_map(params, x):
        u = params["W_xh"] @ x
        return u + params["b_h"] if use_bias else u

    def preactivation(params, h, u):
        if diagonal:
            return params["w_hh"] * h + u
        return params["W_hh"] @ h + u

    def skip(h):
        """``beta * h``, or None when ``beta = 0``."""
        if beta == 0.0:
            return None
        return h if beta == 1.0 else beta * h

    def plus_skip(h, y):
        s = skip(h)
        return y if s is None else s + y

    def branch(y):
        return y if alpha == 1.0 else alpha * y

    def recur(params, h, u):
        h_new = plus_skip(h, branch(f(preactivation(params, h, u))))
        return h_new, h_new

    def gain(params, h, u):
        """``alpha f'(a_t)`` (times ``w_hh`` when diagonal): the rows of the branch's ``J_t``."""
        d = branch(df(preactivation(params, h, u)))
        return d * params["w_hh"] if diagonal else d

    def jacobian(params, h, u):
        d = gain(params, h, u)
        J = jnp.diag(d) if diagonal else d[:, None] * params["W_hh"]
        return plus_skip(jnp.eye(n, dtype=d.dtype), J)

    def tangent(params, h, u, V):
        d = gain(params, h, u)
        return plus_skip(V, d[:, None] * (V if diagonal else params["W_hh"] @ V))

    if diagonal:
        recurrent_matrix = lambda params: jnp.diag(params["w_hh"])
        sigma_max = lambda params: jnp.max(jnp.abs(params["w_hh"]))
    else:
        recurrent_matrix = lambda params: params["W_hh"]
        sigma_max = largest_singular_value(recurrent_matrix)
    pointwise = Pointwise(
        act, preactivation, recurrent_matrix,
        pascanu_step_bound(act, sigma_max, alpha=alpha, beta=beta),
    )  # fmt: skip
    return Cell(
        name=name, hidden_size=n, state_size=n,
        init=init, initial_carry=zeros_carry(n, rec), input_map=input_map, recur=recur,
        input_size=input_size_of("W_xh"), param_spec=param_spec,
        config=(("activation", act.name),) + tuple(config),
        linear=Linearization(jacobian, tangent),
        fused=None if diagonal else _fused_rule(act, alpha, beta, use_bias),
        pointwise=pointwise,
    )  # fmt: skip


def _fused_rule(act, alpha: float, beta: float, use_bias: bool) -> FusedRule:
    """Batch-major step of ``h' = beta h + alpha f(a)``, ``a = u + hh``.

    Residual ``D = alpha f'(a)``, from the pre-activation with the activation's
    own derivative (full relative accuracy for tanh and sigmoid). Tangent
    ``dh' = beta dh + D (du + dhh)``; backward ``delta = D dh'``, and the direct
    part ``beta dh'`` of the previous carry's cotangent.
    """
    f, df = act.fn, act.derivative

    def scaled(c, y):
        return y if c == 1.0 else c * y

    def weights(params):
        W_xh, W_hh = params["W_xh"], params["W_hh"]
        b = params["b_h"] if use_bias else jnp.zeros(W_xh.shape[0], W_xh.dtype)
        return W_xh, b, W_hh, None

    def forward(carry, u, hh, with_res):
        (h,) = carry
        a = u + hh
        y = scaled(alpha, f(a))
        h_new = y if beta == 0.0 else scaled(beta, h) + y
        if not with_res:
            return (h_new,), ()
        return (h_new,), (scaled(alpha, df(a)),)

    def tangent(res, dprev, du, dhh):
        dh = res[0] * (du + dhh)
        return (dh,) if beta == 0.0 else (scaled(beta, dprev[0]) + dh,)

    def backward(res, dnew):
        (dh,) = dnew
        delta = res[0] * dh
        direct = jnp.zeros_like(dh) if beta == 0.0 else scaled(beta, dh)
        return (direct,), delta, delta

    return FusedRule(1, weights, forward, tangent, backward)
