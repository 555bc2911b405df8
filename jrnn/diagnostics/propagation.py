"""How gradients travel back through time: ``||d s_T / d s_t||`` and ``||dL/dh_t||``.

.. math::

   \\frac{\\partial s_T}{\\partial s_t} = J_T J_{T-1} \\cdots J_{t+1}

is the factor backpropagation through time multiplies every error signal by
(Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013). Its norm
decays or grows geometrically, so :func:`propagation` never forms it: it
carries a Frobenius-normalised product and the log of the scale.
:func:`gradient_norms` measures the actual ``||dL/dh_t||`` and
``||dL/dx_t||`` of a loss, all ``t`` from one backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jrnn.cells.base import Cell
from jrnn.diagnostics import jacobians as _jac
from jrnn.diagnostics.spectra import singular_values

__all__ = ["GradientNorms", "Propagation", "gradient_norms", "propagation"]


class Propagation(NamedTuple):
    """``log ||d s_T / d s_t||`` for ``t = 0..T`` (``t = 0``: the initial carry).

    Fields (shapes for one sequence; a batch adds a leading ``B``):
      log_spectral_norm: ``(T+1,)`` natural log of the largest singular value;
        entry ``T`` is 0 (the identity).
      log_frobenius_norm: ``(T+1,)``; entry ``T`` is ``0.5 log S``.
    """

    log_spectral_norm: jax.Array  # (T+1,) or (B, T+1)
    log_frobenius_norm: jax.Array  # (T+1,) or (B, T+1)


def _normalised_products(Js: jax.Array):
    """Backward products ``P_t = J_T ... J_{t+1} = exp(ell_t) M_t``, ``||M_t||_F = 1``.

    ``Js (T, S, S)`` -> ``M (T+1, S, S)``, ``ell (T+1,)``; never under/overflows.
    """
    S = Js.shape[-1]
    eye = jnp.eye(S, dtype=Js.dtype)
    M_T = eye / jnp.sqrt(jnp.asarray(S, Js.dtype))
    ell_T = 0.5 * jnp.log(jnp.asarray(S, Js.dtype))

    def body(state, J):
        M, ell = state
        A = M @ J
        norm = jnp.linalg.norm(A)
        safe = jnp.where(norm > 0, norm, 1.0)
        new = (A / safe, ell + jnp.log(norm))
        return new, new

    _, (Ms, ells) = jax.lax.scan(body, (M_T, ell_T), Js, reverse=True)
    Ms = jnp.concatenate([Ms, M_T[None]], axis=0)
    ells = jnp.concatenate([ells, ell_T[None]], axis=0)
    return Ms, ells


def propagation(
    cell: Cell, params, xs: jax.Array, *, carry=None, method: str = "auto"
) -> Propagation:
    """``log ||d s_T / d s_t||`` (spectral and Frobenius) for every ``t``, stably.

    .. math::

       P_T = I, \\qquad P_{t-1} = P_t J_t = \\frac{\\partial s_T}{\\partial s_{t-1}},

    computed backwards as ``P_t = exp(ell_t) M_t`` with ``M_t`` renormalised
    to unit Frobenius norm at every step, ``ell_{t-1} = ell_t + log ||M_t J_t||_F``,
    so ``T`` in the thousands works in float32 whatever the growth rate.
    ``log ||P_t||_F = ell_t`` and ``log ||P_t||_2 = ell_t + log sigma_max(M_t)``.
    A product that is exactly zero gives ``-inf``.

    Args:
      cell, params, xs, carry: as in :func:`step_jacobians`; ``xs`` is
        ``(T, d)`` or ``(B, T, d)``.
      method: Jacobian method passed to :func:`step_jacobians`.

    Returns:
      :class:`Propagation` with ``(T+1,)`` (or ``(B, T+1)``) fields; entry
      ``t = 0`` refers to the initial carry ``s_0``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> p = jrnn.diagnostics.propagation(cell, params, jnp.ones((100, 1)))
        >>> p.log_spectral_norm.shape, float(p.log_spectral_norm[-1])
        ((101,), 0.0)
    """
    batch = _jac.prepare(cell, params, xs, carry)

    def one(x, c):
        Js = _jac.sequence_jacobians(cell, params, x, c, method)[0]
        Ms, ells = _normalised_products(Js)
        top = singular_values(Ms[:-1])[..., 0]  # M_T = I / sqrt(S): exactly 0 below
        log_spectral = jnp.concatenate([ells[:-1] + jnp.log(top), jnp.zeros((1,), ells.dtype)])
        return Propagation(log_spectral, ells)

    return _jac.map_sequences(one, batch, jnp.asarray(xs), carry)


class GradientNorms(NamedTuple):
    """Per-step gradient norms of a loss (one sequence; a batch adds ``B``).

    Fields:
      loss: the scalar loss.
      hidden: ``(T,)`` ``||dL/dh_t||``, the total derivative with respect to
        the output node ``h_t`` (BPTT's ``delta_t``: the direct term plus
        everything that flows back through later steps).
      state: ``(T,)`` ``||dL/ds_t||`` with respect to the carry ``s_t`` as it
        enters step ``t+1`` (all carry leaves, e.g. LSTM ``h`` and ``c``), i.e.
        only the part that flows back through the recurrence; 0 at ``t = T``.
      input: ``(T,)`` ``||dL/dx_t||``.
    """

    loss: jax.Array  # ()
    hidden: jax.Array  # (T,) or (B, T)
    state: jax.Array  # (T,) or (B, T)
    input: jax.Array  # (T,) or (B, T)


def gradient_norms(
    loss_fn: Callable[[jax.Array], jax.Array],
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    carry=None,
) -> GradientNorms:
    """``||dL/dh_t||``, ``||dL/ds_t||`` and ``||dL/dx_t||`` for all ``t``, one backward pass.

    .. math::

       \\delta_t = \\frac{\\partial L}{\\partial h_t}
       = \\frac{\\partial \\ell}{\\partial h_t} + J_{t+1}^\\top \\delta_{t+1}

    Zero perturbations ``p_t`` (output, size ``n``) and ``e_t`` (state, size
    ``S``) are added inside the scan, ``h_t + p_t`` and ``s_t + e_t``, and a
    single ``jax.grad`` with respect to ``(xs, p, e)`` gives every ``t`` at once
    (Pascanu et al. 2013 plot exactly these norms). Where the cell's carry
    holds the output array itself (Elman, GRU, IndRNN; the LSTM's ``h``; the
    top of a non-residual stack), ``p_t`` perturbs that carry leaf too, so
    ``hidden`` is the full BPTT derivative.

    Args:
      loss_fn: ``hs -> scalar`` where ``hs`` is exactly what
        ``jrnn.unroll(cell, params, xs)`` returns: ``(T, n)`` for one
        sequence, ``(B, T, n)`` for a batch (so the loss may mix sequences,
        e.g. a batch mean). Parameters of a readout should be closed over.
      cell, params, xs, carry: as in :func:`step_jacobians`.

    Returns:
      :class:`GradientNorms`.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8)
        >>> params = cell.init(jax.random.key(0), 1)
        >>> g = jrnn.diagnostics.gradient_norms(lambda hs: jnp.sum(hs[-1]), cell,
        ...                                     params, jnp.ones((20, 1)))
        >>> g.hidden.shape
        (20,)
    """
    batch = _jac.prepare(cell, params, xs, carry)
    xs = jnp.asarray(xs)
    template = jax.eval_shape(cell.initial_carry, params)
    flat_template, unravel = ravel_pytree(
        jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), template)
    )
    T = xs.shape[-2]
    n = cell.hidden_size

    def run(x, c, p, e):
        c = cell.initial_carry(params) if c is None else c

        def body(carry_, inp):
            u_t, p_t, e_t = inp
            new_c, h = cell.recur(params, carry_, u_t)
            leaves, treedef = jax.tree_util.tree_flatten(new_c)
            hit = [leaf is h for leaf in leaves]
            h = h + p_t
            leaves = [h if is_h else leaf for leaf, is_h in zip(leaves, hit)]
            new_c = jax.tree_util.tree_unflatten(treedef, leaves)
            new_c = jax.tree_util.tree_map(jnp.add, new_c, unravel(e_t))
            return new_c, h

        us = jax.vmap(lambda xt: cell.input_map(params, xt))(x)
        _, hs = jax.lax.scan(body, c, (us, p, e))
        return hs

    dtype = flat_template.dtype
    lead = () if batch is None else (batch,)
    p0 = jnp.zeros(lead + (T, n), dtype)
    e0 = jnp.zeros(lead + (T, flat_template.size), dtype)

    def loss(x, p, e):
        if batch is None:
            hs = run(x, carry, p, e)
        else:
            hs = jax.vmap(run, in_axes=(0, None if carry is None else 0, 0, 0))(x, carry, p, e)
        return loss_fn(hs)

    value, (gx, gp, ge) = jax.value_and_grad(loss, argnums=(0, 1, 2))(xs, p0, e0)
    norm = lambda g: jnp.linalg.norm(g, axis=-1)
    return GradientNorms(value, norm(gp), norm(ge), norm(gx))
