"""Parallel-in-time evaluation of any cell, and when it pays: ``jrnn.newton``.

:func:`unroll` evaluates a cell over a whole sequence by Newton's method on the stacked
residual ``s_t - F(s_{t-1}, u_t) = 0`` (DEER, Lim et al., ICLR 2024), its diagonal
variant (quasi-DEER) and its damped, Kalman-smoother variant (ELK, Gonzalez et al.,
NeurIPS 2024); each iteration is one parallel linear recurrence of ``O(log T)`` depth
(:mod:`jrnn.unrolling.newton` has the equations and costs). It returns the iteration's
diagnostics (:class:`NewtonResult`); ``jrnn.unroll(..., method=jrnn.Newton(...))`` is
the same computation inside the ordinary unroll (NaN where it did not converge).

:func:`predict_iterations` says from the largest Lyapunov exponent whether and how fast
DEER converges (Gonzalez et al. 2025, "Predictability enables parallelization of
nonlinear state space models"): the stacked residual's Jacobian has the inverse
``(I - J)^{-1}`` whose norm is bounded by ``A(lambda, T) = sum_{tau < T} e^{lambda tau}``
(perturbations that persist ``~1/|lambda|`` steps), which sets how long Newton takes to
reach its quadratic phase.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import validation
from jrnn.cells.base import Cell
from jrnn.diagnostics.lyapunov import lyapunov_spectrum
from jrnn.unrolling import check_inputs
from jrnn.unrolling._inputs import empty_result
from jrnn.unrolling.newton import Newton, NewtonResult, default_tol, newton_run, state_size

__all__ = [
    "ITERATION_SLOPE",
    "IterationForecast",
    "Newton",
    "NewtonResult",
    "iteration_rule",
    "predict_iterations",
    "unroll",
]

#: The fitted slope ``c`` of :func:`iteration_rule` (DEER iterations per step of
#: the amplification ``A(lambda, T)``), from the gain sweep of tanh Elman nets in
#: ``experiments/parallel_evaluation.py`` (N = 32, T = 1000, float64).
ITERATION_SLOPE = 0.5


def unroll(
    cell: Cell,
    params: Any,
    xs,
    *,
    carry: Any = None,
    lengths=None,
    reverse: bool = False,
    jacobian: str = "full",
    damping: float | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    init=None,
) -> NewtonResult:
    """Evaluates ``cell`` over ``xs`` by Newton iterations on the whole trajectory.

    .. math::

       s^{(i+1)}_t = J_t s^{(i+1)}_{t-1} + F(s^{(i)}_{t-1}, u_t) - J_t s^{(i)}_{t-1},
       \\qquad J_t = \\partial F / \\partial s\\,(s^{(i)}_{t-1}, u_t)

    one parallel prefix scan per iteration (``O(log T)`` depth, ``O(T S^3)`` work for
    ``jacobian="full"``, an ``O(T S)`` solve for ``"diagonal"``, whose diagonals still cost
    what the cell's Jacobian costs to form); ``damping = lambda > 0`` takes
    the Levenberg-Marquardt step instead (ELK, a parallel Kalman smoother). Stops when
    ``max_t |s_t - F(s_{t-1}, u_t)|_inf <= tol``, after ``max_iter`` iterations, or when an
    iterate is not finite (then the last finite iterate is returned, ``converged=False``).
    ``jax.grad`` through the result is the implicit-function gradient, equal to that of
    :func:`jrnn.unroll` at a converged solution (Lim et al. 2024, "Parallelizing
    non-linear sequential models over the sequence length"; Gonzalez et al. 2024,
    "Towards scalable and stable parallelization of nonlinear RNNs").

    Args:
      cell, params, xs, carry, lengths, reverse: as in :func:`jrnn.unroll`.
      jacobian: ``"full"`` (DEER) or ``"diagonal"`` (quasi-DEER).
      damping: None, or ELK's ``lambda >= 0`` (0 is plain Newton).
      max_iter: iterations allowed, ``>= 1``; None: ``min(T, 100)``.
      tol: residual tolerance ``> 0``; None: ``eps ** 0.75`` of the state dtype.
      init: initial guess of the flat states ``s_1..s_T`` (:func:`jrnn.cells.flatten_carry`
        order), ``(T, S)`` or ``(B, T, S)``; None: zeros.

    Returns:
      :class:`NewtonResult` ``(final_carry, hs, iterations, converged, residual)``.

    Raises:
      ValueError: everything :func:`jrnn.unroll` raises; ``jacobian`` not one of the two,
        ``damping < 0`` or not finite, ``max_iter < 1``, ``tol <= 0``, ``init`` of the
        wrong shape (each message names the argument, what came and what was expected).
      TypeError: a field of the wrong type.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8)
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (200, 1))
        >>> res = jrnn.newton.unroll(cell, params, xs)
        >>> bool(res.converged), int(res.iterations) < 20
        (True, True)
        >>> _, ref = jrnn.unroll(cell, params, xs)
        >>> bool(jnp.allclose(res.hs, ref, atol=1e-5))
        True
    """
    method = Newton(jacobian, damping, max_iter, tol).check()
    reverse = validation.check_bool(reverse, "reverse")
    batch, T = check_inputs(cell, params, xs, carry, lengths)
    xs = validation.float_inputs(xs, params)
    if init is not None:
        S = state_size(cell, params)
        want = (T, S) if batch is None else (batch, T, S)
        got = tuple(np.shape(init))
        if got != want:
            raise ValueError(
                f"init must have shape {want} (the flat states s_1..s_T"
                f"{', per sequence' if batch is not None else ''}), got {got}."
            )
    if T == 0:
        final, hs = empty_result(cell, params, xs, carry, batch)
        shape = () if batch is None else (batch,)
        return NewtonResult(
            final, hs, jnp.zeros(shape, jnp.int32), jnp.ones(shape, bool),
            jnp.zeros(shape, hs.dtype),
        )
    return newton_run(method, cell, params, xs, carry, lengths, reverse, init)


class IterationForecast(NamedTuple):
    """What :func:`predict_iterations` returns.

    Fields:
      lambda_max: the largest Lyapunov exponent (nats per step) used.
      stderr: its standard error (NaN when given directly).
      amplification: ``A(lambda, T) = sum_{tau < T} e^{lambda tau}``.
      iterations: the predicted DEER iterations, ``min(T, K_0 + c A)``.
      predictable: ``lambda_max < 0`` (DEER then needs ``O(1/|lambda|)`` iterations,
        independent of ``T``); False: about ``T`` iterations, no parallel speed-up, and in
        floating point the iterates usually overflow (``converged=False``).
    """

    lambda_max: float
    stderr: float
    amplification: float
    iterations: int
    predictable: bool


def iteration_rule(lambda_max: float, T: int, tol: float = 1.8e-12) -> IterationForecast:
    """The rule behind :func:`predict_iterations`, from an exponent you already have.

    .. math::

       K(\\lambda, T) = \\min\\Big(T,\\ K_0 + c\\,A(\\lambda, T)\\Big), \\quad
       A = \\sum_{\\tau=0}^{T-1} e^{\\lambda\\tau} = \\frac{1 - e^{\\lambda T}}{1 - e^{\\lambda}},
       \\quad K_0 = \\Big\\lceil \\log_2 \\frac{\\ln(1/\\mathrm{tol})}{4} \\Big\\rceil

    ``A`` bounds ``||(I - \\mathcal{J})^{-1}||`` of the stacked residual's Jacobian
    (Gonzalez et al. 2025: its conditioning is governed by ``lambda_max``), which sets
    how many iterations pass before Newton's quadratic phase; ``K_0`` is that phase
    (squaring an error ``e^{-4}`` down to ``tol``); ``c =`` :data:`ITERATION_SLOPE`
    (0.5) was fitted on a gain sweep of tanh Elman nets, where the rule is within a
    factor 2 of the measured count for ``lambda_max < 0``. ``T`` iterations always
    suffice in exact arithmetic. For quasi-DEER and ELK (linear convergence) it is a
    lower bound. The rule reads the time-averaged exponent: where finite-time exponents
    stay positive over long stretches while the average is slightly negative (small nets,
    strong drive, near the edge of chaos) Newton takes far longer than forecast (measured:
    a tanh net, N = 16, W_hh = 3 N(0, 1/N), T = 200, lambda_max = -0.089 +- 0.028, took 133
    iterations against a forecast of 9), so a small ``|lambda_max|`` is a warning, not a
    promise.

    Raises:
      ValueError: ``lambda_max`` not finite, ``T < 1``, ``tol`` not in ``(0, 1)``.

    Example::

        >>> import jrnn
        >>> jrnn.newton.iteration_rule(-0.5, 1000).iterations
        5
        >>> jrnn.newton.iteration_rule(0.1, 1000).iterations
        1000
    """
    lam = validation.check_number(lambda_max, "lambda_max")
    T = validation.check_int(T, "T", low=1)
    tol = validation.check_number(tol, "tol", low=0.0, high=1.0, low_open=True, high_open=True)
    if lam == 0.0:
        amp = float(T)
    elif lam * T > 700:
        amp = math.inf
    else:
        amp = math.expm1(lam * T) / math.expm1(lam)
    k0 = max(1, math.ceil(math.log2(math.log(1.0 / tol) / 4.0)))
    k = T if not math.isfinite(amp) else min(T, k0 + math.ceil(ITERATION_SLOPE * amp))
    return IterationForecast(lam, math.nan, amp, int(k), lam < 0)


def predict_iterations(
    cell: Cell, params: Any, xs, *, carry: Any = None, tol: float | None = None,
    warmup: int = 0,
) -> IterationForecast:
    """Whether and how fast DEER converges on ``xs``, from the largest Lyapunov exponent.

    Measures ``lambda_max`` with :func:`jrnn.diagnostics.lyapunov_spectrum` (``k = 1``,
    the same inputs; a batch is averaged) and applies :func:`iteration_rule` with
    ``T = xs.shape[-2]``: ``lambda_max < 0`` means a number of iterations independent of
    ``T`` (about ``3 + 0.5 / (1 - e^{lambda})``), ``lambda_max >= 0`` about ``T``
    (Gonzalez et al. 2025, "Predictability enables parallelization of nonlinear state
    space models").

    Raises:
      ValueError: everything :func:`jrnn.diagnostics.lyapunov_spectrum` raises; a
        non-finite exponent (e.g. an overflowing trajectory).

    Example::

        >>> import jax, jrnn
        >>> cell = jrnn.cells.elman(8)
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (300, 1))
        >>> f = jrnn.newton.predict_iterations(cell, params, xs)
        >>> f.predictable, f.iterations < 30
        (True, True)
    """
    spec = lyapunov_spectrum(cell, params, xs, carry=carry, k=1, warmup=warmup)
    lam = float(jnp.mean(spec.exponents[..., 0]))
    err = float(jnp.mean(spec.stderr[..., 0]))
    if tol is None:
        tol = default_tol(jnp.result_type(*[jnp.asarray(p) for p in _leaves(params)]))
    forecast = iteration_rule(lam, int(np.shape(xs)[-2]), tol)
    return forecast._replace(stderr=err)


def _leaves(params):
    return [p for p in jax.tree_util.tree_leaves(params) if jnp.issubdtype(p.dtype, jnp.floating)]
