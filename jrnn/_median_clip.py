"""Per-sequence median clipping of a batch penalty's gradient (``lyapunov_penalty(clip="median")``).

Split out of :mod:`jrnn.penalties` (library files stay under 600 lines); private.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _median_clipped(fn, window):
    """``fn`` (a mean over sequences) whose gradient is the mean of the sequences' gradients,
    each clipped to the batch's median norm: ``(1/B) sum_b min(1, m / |g_b|) g_b``,
    ``g_b = grad fn(params, xs[b])``, ``m = median_b |g_b|`` (norm over all parameters).
    Inputs get the same weights. A non-finite ``g_b`` makes the gradient NaN (never dropped
    silently: a flossing step then skips the update and warns)."""

    @jax.custom_vjp
    def clipped(params, xs):
        return fn(params, xs)

    def fwd(params, xs):
        # integer inputs (e.g. +-1 bits) have no derivative, as with gradient="full"
        argnums = (0, 1) if jnp.issubdtype(xs.dtype, jnp.inexact) else (0,)
        if xs.ndim == 2:  # one sequence: nothing to clip against
            value, grads = jax.value_and_grad(fn, argnums=argnums)(params, xs)
            return value, (grads + (None,))[:2]
        values, grads = jax.vmap(jax.value_and_grad(fn, argnums=argnums),
                                 in_axes=(None, 0))(params, xs)
        gp, gx = (grads + (None,))[:2]
        norm = _norms(jax.tree_util.tree_leaves(gp), xs.shape[0])
        m = jnp.median(norm)
        scale = jnp.where(norm > m, m / norm, 1.0) / norm.shape[0]
        # one non-finite sequence makes every entry NaN (not only its own non-finite ones)
        scale = jnp.where(jnp.all(jnp.isfinite(norm)), scale, jnp.nan)
        weigh = lambda g: jnp.tensordot(scale.astype(g.dtype), g, axes=1)
        if gx is not None:
            gx = gx * scale.astype(gx.dtype).reshape((-1,) + (1,) * (gx.ndim - 1))
        return jnp.mean(values), (jax.tree_util.tree_map(weigh, gp), gx)

    def bwd(grads, cotangent):  # in each input's dtype (float64 inputs, float32 params)
        gp, gx = grads
        scale = lambda g: (cotangent * g).astype(g.dtype)
        return (jax.tree_util.tree_map(scale, gp), None if gx is None else scale(gx))

    clipped.defvjp(fwd, bwd)
    return lambda params, xs: clipped(params, window(xs))


def _norms(leaves, B):
    """``(B,)`` norms over all leaves of each row, scaled by the row's largest entry so that
    neither the squares' overflow (a finite norm over ~1e19 in float32 read as inf, its
    sequence then dropped or left unclipped) nor their underflow (norms below ~1e-19 read as
    0) changes the clipping; a non-finite row keeps a non-finite norm."""
    rows = [g.reshape(B, -1) for g in leaves]
    a = jnp.max(jnp.stack([jnp.max(jnp.abs(g), axis=1) for g in rows]), axis=0)
    safe = jnp.where(jnp.isfinite(a) & (a > 0), a, 1.0).astype(a.dtype)
    norm = safe * jnp.sqrt(sum(jnp.sum(jnp.square(g / safe[:, None]), axis=1) for g in rows))
    return jnp.where(jnp.isfinite(a), norm, a)
