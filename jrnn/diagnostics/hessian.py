"""The top of the loss Hessian's spectrum by Lanczos on Hessian-vector products.

.. math::

   H = \\nabla^2_\\theta L(\\theta), \\qquad H v = \\frac{d}{d\\epsilon}
   \\nabla L(\\theta + \\epsilon v)\\Big|_{\\epsilon = 0}

``H v`` is one forward-over-reverse product (``jax.jvp`` of ``jax.grad``), so
the ``P x P`` Hessian is never formed. Zucchet & Orvieto (NeurIPS 2024,
section 4) show that a diagonal or complex-diagonal recurrence concentrates
the top Hessian eigenvectors on few coordinates (the recurrent eigenvalues),
where an adaptive optimiser (Adam) can rescale them, while a dense recurrence
spreads them over many; :class:`HessianSpectrum` carries the measures of that
concentration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jrnn import validation
from jrnn.diagnostics.sensitivity import leaf_names

__all__ = ["HessianSpectrum", "hessian_spectrum"]


class HessianSpectrum(NamedTuple):
    """Result of :func:`hessian_spectrum`.

    Fields:
      eigenvalues: ``(k,)`` Ritz values, descending by magnitude (units of the
        loss per parameter squared).
      eigenvectors: ``(k, P)`` unit Ritz vectors in ``ravel_pytree(params)``
        order (``jax.flatten_util.ravel_pytree(params)[1]`` unravels one into a
        params pytree).
      residuals: ``(k,)`` ``||H v - theta v||`` of each Ritz pair (Lanczos:
        ``|beta_m y_{m,i}|``); for a symmetric ``H`` some eigenvalue lies
        within this distance of each Ritz value.
      participation: ``(k,)`` participation ratio ``1 / (P sum_i v_i^4)`` of
        each eigenvector, in ``[1/P, 1]``: the fraction of the coordinates it
        effectively uses (``1/P``: one coordinate; 1: spread evenly).
      top_mass: ``(k,)`` fraction of ``||v||^2`` on its ``top`` largest coordinates.
      leaf_mass: ``name -> (k,)`` fraction of ``||v||^2`` on each parameter leaf.
      iterations: Lanczos steps taken.
    """

    eigenvalues: jax.Array
    eigenvectors: jax.Array
    residuals: jax.Array
    participation: jax.Array
    top_mass: jax.Array
    leaf_mass: dict
    iterations: int


def _lanczos(hvp, P: int, m: int, v0, dtype, key):
    """``m`` Lanczos steps with full reorthogonalisation (twice, Gram-Schmidt): ``(alpha (m,),
    beta (m,), V (m+1, P))``; an invariant subspace found early restarts with a random vector
    orthogonal to the basis (``beta = 0`` there)."""
    eps = float(jnp.finfo(dtype).eps)
    V = jnp.zeros((m + 1, P), dtype).at[0].set(v0)
    alpha = jnp.zeros(m, dtype)
    beta = jnp.zeros(m, dtype)

    def orth(V, w):
        w = w - V.T @ (V @ w)
        return w - V.T @ (V @ w)

    def body(j, state):
        V, alpha, beta, scale = state
        v = V[j]
        w = hvp(v)
        a = jnp.vdot(v, w)
        w = orth(V, w)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(a) + b)
        r = orth(V, jax.random.normal(jax.random.fold_in(key, j), (P,), dtype))
        nr = jnp.linalg.norm(r)
        ok = b > 100 * eps * scale
        nxt = jnp.where(ok, w / jnp.where(ok, b, 1.0), r / jnp.where(nr > 0, nr, 1.0))
        V = V.at[j + 1].set(nxt)
        return V, alpha.at[j].set(a), beta.at[j].set(jnp.where(ok, b, 0.0)), scale

    V, alpha, beta, _ = jax.lax.fori_loop(0, m, body, (V, alpha, beta, jnp.zeros((), dtype)))
    return alpha, beta, V


def hessian_spectrum(
    loss_fn: Callable[[Any, Any], jax.Array],
    params,
    batch=None,
    *,
    k: int = 6,
    key: jax.Array | None = None,
    iterations: int | None = None,
    top: int | None = None,
) -> HessianSpectrum:
    """Top-``k`` eigenpairs of ``H = d^2 loss_fn(params, batch) / d params^2`` by Lanczos.

    .. math::

       H V_m = V_m T_m + \\beta_m v_{m+1} e_m^\\top, \\qquad
       T_m = \\mathrm{tridiag}(\\beta, \\alpha, \\beta), \\qquad
       (\\theta_i, V_m y_i) \\text{ Ritz pairs of } T_m y_i = \\theta_i y_i

    ``m = iterations`` Hessian-vector products (``jax.jvp`` of ``jax.grad``, no
    dense Hessian), full reorthogonalisation of the Lanczos basis (so no ghost
    eigenvalues), from a random start vector. The extreme eigenvalues converge
    first; with ``m = P`` the result is exact to rounding. The ``k`` Ritz pairs
    largest in magnitude are returned with their residual bounds and the
    concentration measures of Zucchet & Orvieto (NeurIPS 2024): the
    participation ratio, the mass on the top coordinates and on each leaf.

    Args:
      loss_fn: ``(params, batch) -> ()`` a scalar loss.
      params: a pytree of floating arrays (``P`` entries in all).
      batch: passed to ``loss_fn`` unchanged.
      k: eigenpairs wanted, ``1 <= k <= P``.
      key: PRNG key of the start vector (default ``jax.random.key(0)``).
      iterations: Lanczos steps ``m``, ``k <= m <= P`` (default
        ``min(P, max(4 k, 40))``).
      top: coordinates counted by ``top_mass`` (default ``max(1, P // 100)``).

    Returns:
      :class:`HessianSpectrum`.

    Raises:
      ValueError: ``k`` or ``iterations`` out of range (naming ``P``), ``top``
        out of ``[1, P]``, a ``loss_fn`` whose value is not a scalar.
      TypeError: a ``loss_fn`` whose value is not real floating (complex,
        integer), ``k`` / ``iterations`` / ``top`` not integers, ``key`` not a
        key, ``params`` with non-floating leaves.

    Example::

        >>> A = jnp.diag(jnp.array([3.0, -5.0, 1.0, 0.5]))
        >>> loss = lambda p, batch: 0.5 * p["w"] @ A @ p["w"]
        >>> spec = jrnn.diagnostics.hessian_spectrum(loss, {"w": jnp.ones(4)}, k=2)
        >>> [round(float(e), 4) for e in spec.eigenvalues]
        [-5.0, 3.0]
    """
    validation.check_real_dtype(params, "params")
    flat, unravel = ravel_pytree(params)
    P = int(flat.shape[0])
    if P == 0:
        raise ValueError("params must have at least one entry, got an empty pytree.")
    k = validation.check_int(k, f"k (at most the parameter count P = {P})", low=1, high=P)
    m = min(P, max(4 * k, 40)) if iterations is None else validation.check_int(
        iterations, f"iterations (k = {k} <= iterations <= P = {P})", low=k, high=P)
    top = max(1, P // 100) if top is None else validation.check_int(
        top, f"top (at most P = {P})", low=1, high=P)
    key = jax.random.key(0) if key is None else validation.check_key(key, "key")

    out = jax.eval_shape(loss_fn, params, batch)
    if not hasattr(out, "shape") or tuple(out.shape) != ():
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"loss_fn must return a scalar loss, got a value of shape {got}; "
                         "reduce it (e.g. jnp.mean) before asking for its Hessian.")
    if validation.dtype_kind(out.dtype) != "f":
        raise TypeError(f"loss_fn must return a real floating scalar, got dtype {out.dtype}; "
                        "a Hessian needs a real, differentiable loss.")

    # Lanczos in at least float32: bfloat16 / float16 have no eigensolver (the loss
    # still sees its own dtypes: ravel_pytree's unravel casts back to each leaf's).
    dtype = jnp.promote_types(flat.dtype, jnp.float32)
    flat = flat.astype(dtype)
    loss_flat = lambda x: loss_fn(unravel(x), batch)  # noqa: E731
    grad = jax.grad(loss_flat)

    def hvp(v):
        return jax.jvp(grad, (flat,), (v,))[1]

    v0 = jax.random.normal(key, (P,), dtype)
    v0 = v0 / jnp.linalg.norm(v0)
    alpha, beta, V = _lanczos(hvp, P, m, v0, dtype, jax.random.fold_in(key, 1))
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    finite = jnp.all(jnp.isfinite(alpha)) & jnp.all(jnp.isfinite(beta))
    theta, Y = jnp.linalg.eigh(jnp.where(finite, T, 0.0))
    order = jnp.argsort(-jnp.abs(theta))[:k]
    theta, Y = theta[order], Y[:, order]
    vecs = Y.T @ V[:m]  # (k, P)
    vecs = vecs / jnp.linalg.norm(vecs, axis=1, keepdims=True)
    resid = jnp.abs(beta[m - 1] * Y[m - 1])
    nan = jnp.asarray(jnp.nan, dtype)
    theta, resid = jnp.where(finite, theta, nan), jnp.where(finite, resid, nan)
    vecs = jnp.where(finite, vecs, nan)

    sq = vecs**2
    participation = 1.0 / (P * jnp.sum(sq**2, axis=1))
    top_mass = jnp.sum(jax.lax.top_k(sq, top)[0], axis=1)
    sizes = [int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(params)]
    bounds = np.cumsum([0] + sizes)
    leaf_mass = {
        name: jnp.sum(sq[:, lo:hi], axis=1)
        for name, lo, hi in zip(leaf_names(params), bounds[:-1], bounds[1:], strict=True)
    }
    return HessianSpectrum(theta, vecs, resid, participation, top_mass, leaf_mass, m)

