"""The linear solves of a Newton unroll: affine recurrences and a Kalman smoother, in parallel.

Each Newton (DEER) iteration solves the linear recurrence

.. math::

   s_t = J_t s_{t-1} + b_t, \\quad t = 1..T, \\qquad s_0 \\text{ given},

by ``jax.lax.associative_scan`` over the affine maps ``s -> J s + b`` (composition
``(J_r, b_r) o (J_l, b_l) = (J_r J_l, J_r b_l + b_r)``), ``O(log T)`` depth. The damped
(Levenberg-Marquardt, ELK) iteration is the posterior mean of the linear-Gaussian model

.. math::

   s_t = J_t s_{t-1} + b_t + w_t,\\ w_t \\sim N(0, I), \\qquad
   y_t = s_t + v_t,\\ v_t \\sim N(0, \\lambda^{-1} I), \\quad y_t = s_t^{(i)},

computed by the parallel Kalman filter and Rauch-Tung-Striebel smoother of Särkkä &
García-Fernández (2021, "Temporal parallelization of Bayesian smoothers"), as in
Gonzalez et al. (NeurIPS 2024, "Towards scalable and stable parallelization of nonlinear
RNNs"). The gradient's adjoint ``a_t = g_t + J_{t+1}^T a_{t+1}`` is the same affine scan
run backwards with transposed Jacobians.

Every routine takes the Jacobians either full ``(T, S, S)`` or diagonal ``(T, S)``; the
diagonal case is the same algebra elementwise (``O(T S)`` memory and work).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["affine_solve", "adjoint_solve", "kalman_solve"]


def _gauss_jordan(a, b):
    """``a^{-1} b`` for ``a (..., S, S)``, ``b (..., S, m)``: Gauss-Jordan elimination with
    partial pivoting, in XLA operations only (a ``fori_loop`` over the ``S`` columns).

    The ELK smoother solves small systems at every level of an associative scan, batched
    over time; through ``jnp.linalg.solve`` those are batched LAPACK calls (``getrf``,
    ``trsm``), which jaxlib 0.10 spreads over its CPU thread pool and which hung the
    smoother there (both pool threads waiting in a batched ``trsm``, seen in gdb; ordering
    the calls with :func:`jrnn.host.after` did not prevent it, :mod:`jrnn.host`). Elimination
    with partial pivoting is backward stable in practice (Higham 2002, ch. 14) and costs
    ``O(S^2 (S + m))`` per system, as LU does; the systems here are ``I + C J`` with ``C``
    a covariance, well conditioned for the damping ELK uses.
    """
    S = a.shape[-1]
    aug = jnp.concatenate([a, b.astype(jnp.result_type(a, b))], axis=-1)
    rows = jnp.broadcast_to(jnp.arange(S), a.shape[:-1])  # (..., S)

    def column(k, aug):
        col = jax.lax.dynamic_index_in_dim(aug, k, axis=-1, keepdims=False)  # (..., S)
        p = jnp.argmax(jnp.where(rows >= k, jnp.abs(col), -1.0), axis=-1, keepdims=True)
        swap = jnp.where(rows == k, p, jnp.where(rows == p, k, rows))  # rows k <-> p
        aug = jnp.take_along_axis(aug, swap[..., None], axis=-2)
        pivot = jax.lax.dynamic_index_in_dim(aug, k, axis=-2)  # (..., 1, S + m)
        pivot = pivot / jax.lax.dynamic_index_in_dim(pivot, k, axis=-1)
        factor = jax.lax.dynamic_index_in_dim(aug, k, axis=-1)  # (..., S, 1)
        return jnp.where((rows == k)[..., None], pivot, aug - factor * pivot)

    return jax.lax.fori_loop(0, S, column, aug)[..., S:]


class _Full:
    """Matrix algebra on ``(..., S, S)`` blocks and ``(..., S)`` vectors."""

    @staticmethod
    def mm(a, b):
        return a @ b

    @staticmethod
    def mv(a, v):
        return jnp.einsum("...ij,...j->...i", a, v)

    @staticmethod
    def t(a):
        return jnp.swapaxes(a, -1, -2)

    @staticmethod
    def eye_like(a):
        return jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)

    @staticmethod
    def solve(a, b):
        """``a^{-1} b`` for a matrix ``b`` (:func:`_gauss_jordan`, no LAPACK call)."""
        return _gauss_jordan(a, b)

    @staticmethod
    def solve_v(a, v):
        return _gauss_jordan(a, v[..., None])[..., 0]


class _Diag:
    """The same operations on diagonal matrices stored as ``(..., S)``."""

    @staticmethod
    def mm(a, b):
        return a * b

    mv = mm

    @staticmethod
    def t(a):
        return a

    @staticmethod
    def eye_like(a):
        return jnp.ones_like(a)

    @staticmethod
    def solve(a, b):
        return b / a

    solve_v = solve


def _algebra(J, s0):
    return _Diag if J.ndim == s0.ndim + 1 else _Full


def affine_solve(J, b, s0):
    """States ``s_1..s_T (T, S)`` of ``s_t = J_t s_{t-1} + b_t`` from ``s_0`` (one prefix scan)."""
    al = _algebra(J, s0)
    b = b.at[0].add(al.mv(J[0], s0))

    def combine(left, right):
        J_l, b_l = left
        J_r, b_r = right
        return al.mm(J_r, J_l), al.mv(J_r, b_l) + b_r

    return jax.lax.associative_scan(combine, (J, b))[1]


def adjoint_solve(J, g):
    """``a_t = g_t + J_{t+1}^T a_{t+1}``, ``a_{T+1} = 0``, for ``t = T..1`` (a reverse scan).

    ``J`` holds ``J_1..J_T`` (the Jacobian of step t at ``s_{t-1}``); ``J_1`` is unused.
    """
    al = _algebra(J, g[0])
    JT = al.t(jnp.concatenate([J[1:], jnp.zeros_like(J[:1])]))  # J_{t+1}^T at row t

    def combine(later, earlier):  # reverse scan: `later` is the suffix already composed
        A_r, c_r = later
        A_l, c_l = earlier
        return al.mm(A_l, A_r), al.mv(A_l, c_r) + c_l

    return jax.lax.associative_scan(combine, (JT, g), reverse=True)[1]


def kalman_solve(J, b, s0, y, damping):
    """Posterior means ``E[s_{1:T} | y_{1:T}]`` of the model in the module docstring.

    ``J`` ``(T, S, S)`` or ``(T, S)``, ``b, y`` ``(T, S)``, ``s0`` ``(S,)``, ``damping`` the
    observation precision ``lambda > 0``: the Levenberg-Marquardt step
    ``argmin_s sum_t |s_t - J_t s_{t-1} - b_t|^2 + lambda |s_t - y_t|^2``.
    """
    al = _algebra(J, s0)
    T = b.shape[0]
    r = jnp.asarray(1.0 / damping, b.dtype)  # observation variance R = I / lambda
    eye = al.eye_like(J[0])
    # Filtering elements (H = I, Q = I, R = r I): S = Q + R = (1 + r) I, K = I / (1 + r).
    kgain = 1.0 / (1.0 + r)
    A = (1.0 - kgain) * J  # (I - K) F
    bb = b + kgain * (y - b)
    C = jnp.broadcast_to((1.0 - kgain) * eye, J.shape)
    eta = kgain * al.mv(al.t(J), y - b)  # F^T S^-1 (y - u)
    JJ = kgain * al.mm(al.t(J), J)  # F^T S^-1 F
    # The first step starts from the exact s0 (P0 = 0): its prior is N(J_1 s0 + b_1, I).
    m1 = al.mv(J[0], s0) + b[0]
    A = A.at[0].set(jnp.zeros_like(J[0]))
    bb = bb.at[0].set(m1 + kgain * (y[0] - m1))
    eta = eta.at[0].set(jnp.zeros_like(eta[0]))
    JJ = JJ.at[0].set(jnp.zeros_like(J[0]))

    def filt(left, right):
        A_i, b_i, C_i, e_i, J_i = left
        A_j, b_j, C_j, e_j, J_j = right
        I_ = al.eye_like(A_i)
        M = I_ + al.mm(C_i, J_j)  # (I + C_i J_j)
        A_jM = al.t(al.solve(al.t(M), al.t(A_j)))  # A_j M^{-1}
        A_ij = al.mm(A_jM, A_i)
        b_ij = al.mv(A_jM, b_i + al.mv(C_i, e_j)) + b_j
        C_ij = al.mm(al.mm(A_jM, C_i), al.t(A_j)) + C_j
        N = I_ + al.mm(J_j, C_i)  # (I + J_j C_i)
        AiN = al.t(al.solve(al.t(N), A_i))  # A_i^T N^{-1}
        e_ij = al.mv(AiN, e_j - al.mv(J_j, b_i)) + e_i
        J_ij = al.mm(al.mm(AiN, J_j), A_i) + J_i
        return A_ij, b_ij, C_ij, e_ij, J_ij

    _, m, P, _, _ = jax.lax.associative_scan(filt, (A, bb, C, eta, JJ))
    # Smoother elements: E_t = P_t F^T (F P_t F^T + I)^{-1}, F = J_{t+1}.
    F = jnp.concatenate([J[1:], jnp.zeros_like(J[:1])])
    G = al.mm(al.mm(F, P), al.t(F)) + al.eye_like(F)
    E = al.t(al.solve(G, al.mm(F, P)))  # P F^T G^{-1} (G, P symmetric)
    E = E.at[T - 1].set(jnp.zeros_like(E[0]))
    g = m - al.mv(E, al.mv(F, m) + jnp.concatenate([b[1:], jnp.zeros_like(b[:1])]))
    g = g.at[T - 1].set(m[T - 1])

    def smooth(later, earlier):
        E_j, g_j = later
        E_i, g_i = earlier
        return al.mm(E_i, E_j), al.mv(E_i, g_j) + g_i

    return jax.lax.associative_scan(smooth, (E, g), reverse=True)[1]
