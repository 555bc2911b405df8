"""Fused training path for the elman family, the LSTM and the GRU.

The reference path (:func:`jrnn.unroll` with ``fused=False``) scans the cell's
readable one-example ``recur`` and vmaps it over the batch; ``jax.grad`` then
differentiates the scan step by step. This module computes the same function
with batch-major matmuls (``H_{t-1} W_hh^T`` on ``(B, n)`` blocks, the gates
of all units in one product) and a hand-written backward pass
(``jax.custom_vjp``) whose reverse scan carries only the state cotangent
(``dh``, and ``dc`` for the LSTM). With ``delta_t`` the cotangent of the
pre-activations ``a_t = W_xh x_t + W_hh h_{t-1} + b`` (Elman:
``delta_t = (dh_t + g_t) * f'(a_t)``, ``dh_{t-1} = delta_t W_hh``):

.. math::

   \\frac{\\partial L}{\\partial W_{hh}} = \\sum_t \\delta_t^\\top h_{t-1}, \\quad
   \\frac{\\partial L}{\\partial W_{xh}} = \\sum_t \\delta_t^\\top x_t, \\quad
   \\frac{\\partial L}{\\partial b} = \\sum_t \\delta_t .

Two schedules compute these sums (``weight_grads``):

* ``"after"``: the backward scan emits ``delta`` for every step and the sums
  are single large matmuls over all ``T * B`` rows afterwards; the input
  projection ``X W_xh^T`` is hoisted out of the forward scan. Best where
  large matmuls are cheap and per-step kernels are not (GPU, TPU).
* ``"in_loop"``: the sums are accumulated inside the backward scan, every
  ``k`` steps (one ``(n, kB) x (kB, G)`` product of the chunk's ``h_{t-1}`` and
  ``delta``, still in cache; ``k`` keeps the chunk near 2 MiB), and
  ``x_t W_xh^T`` is formed inside the forward step, so no ``(T, B, G)``
  array of pre-activations or of ``delta`` is ever written. On a CPU, where
  this workload is bound by memory traffic as much as by flops, this was
  1.2-1.7x faster than ``"after"`` (see ``BENCHMARKS.md``). The default on CPU.

Outputs and gradients equal ``jax.grad`` of the reference scan to float
rounding (``tests/test_fast.py``). The fused path supports reverse-mode
autodiff (``jax.grad``, ``jax.vjp``) and ``vmap``; forward-mode (``jax.jvp``,
``jax.jacfwd``) is not available through a ``custom_vjp``, which is why
:func:`jrnn.unroll` uses it only when asked (``fused=True``).

Example::

    >>> import jax, jax.numpy as jnp, jrnn
    >>> cell = jrnn.cells.lstm(8)
    >>> params = cell.init(jax.random.key(0), 2)
    >>> xs = jnp.ones((4, 10, 2))
    >>> _, hs = jrnn.unroll(cell, params, xs, fused=True)
    >>> _, ref = jrnn.unroll(cell, params, xs)
    >>> bool(jnp.allclose(hs, ref, atol=1e-6))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn.cells.base import Cell

__all__ = [
    "FUSED_CELLS",
    "default_weight_grads",
    "fused_unroll",
    "keep_host_buffers",
    "supports",
]

#: Cell families (``Cell.name``) with a fused implementation.
FUSED_CELLS = ("elman", "irnn", "residual", "lstm", "gru")

# Activations whose derivative is a function of the output y = f(a), so the
# forward pass need not save the pre-activation.
_DERIV_FROM_OUTPUT = {
    "tanh": lambda y: 1.0 - y * y,
    "sigmoid": lambda y: y * (1.0 - y),
    "relu": lambda y: (y > 0).astype(y.dtype),
    "identity": lambda y: jnp.ones_like(y),
}


def keep_host_buffers(threshold_bytes: int = 1 << 30) -> bool:
    """Serves large host allocations from glibc's heap and keeps freed memory for reuse.

    XLA:CPU packs an executable's temporaries into one buffer that it allocates
    on every call (LSTM training step at B=64, T=256, n=128: 59 MiB for jrnn's
    fused path, 112 MiB for ``flax.linen.RNN``). Above glibc's largest dynamic
    mmap threshold (32 MiB) such a buffer is a fresh ``mmap`` each call, and
    every one of its pages faults on first touch: 10-14 ms of a ~120 ms step in
    the profile. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` lets
    the heap serve and keep it (the memory is not returned to the OS).

    Process-wide and opt-in; it speeds up every JAX program on the host, not
    only jrnn's (``experiments.benchmarks.train_step --keep-host-buffers``
    applies it to all peers alike). Returns ``False`` where glibc's
    ``mallopt`` is unavailable (macOS, musl, Windows), else ``True``.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    threshold = int(threshold_bytes)
    ok = mallopt(m_mmap_threshold, threshold) == 1
    return ok and mallopt(m_trim_threshold, 2 * threshold) == 1


def supports(cell: Cell) -> bool:
    """True when ``cell`` has a fused implementation (see :data:`FUSED_CELLS`)."""
    if cell.name in ("elman", "irnn", "residual"):
        return cell.activation is not None
    return cell.name in ("lstm", "gru")


def default_weight_grads() -> str:
    """``"in_loop"`` on CPU, ``"after"`` on accelerators (see the module docstring)."""
    return "in_loop" if jax.default_backend() == "cpu" else "after"


# --------------------------------------------------------------------------- cell rules
#
# A rule describes one cell family on batch-major blocks:
#   forward(carry, u, hh) -> (new_carry, saved)       u = x W_xh^T + b_x, hh = h W_hh^T (+ b_hh)
#   backward(dnew, saved, prev, new) -> (dprev_direct, du, dhh)
# where dnew is the cotangent of the new carry (output cotangent included),
# dprev_direct the part of the previous carry's cotangent that does not pass
# through W_hh, du / dhh the cotangents of u and hh. ``new`` and ``prev`` are
# the (masked) carries after and before the step. The output is carry[0].


class _Rule(NamedTuple):
    forward: Callable
    backward: Callable
    gates: int  # G / n
    hh_bias: bool  # hh includes b_hh (GRU)


def _elman_rule(act, alpha) -> _Rule:
    f = act.fn
    from_output = _DERIV_FROM_OUTPUT.get(act.name)
    # What the backward needs: nothing (derivative from h_t itself), y_t, or a_t.
    if from_output is not None and alpha is None:
        save = "none"
    elif from_output is not None:
        save = "y"
    else:
        save = "a"

    def forward(carry, u, hh):
        (h,) = carry
        a = u + hh
        y = f(a)
        h_new = y if alpha is None else h + alpha * y
        saved = {"none": (), "y": (y,), "a": (a,)}[save]
        return (h_new,), saved

    def backward(dnew, saved, prev, new):
        (dh,) = dnew
        if save == "none":
            fp = from_output(new[0])
        elif save == "y":
            fp = from_output(saved[0])
        else:
            fp = act.derivative(saved[0])
        if alpha is None:
            delta = dh * fp
            return (jnp.zeros_like(dh),), delta, delta
        delta = alpha * dh * fp
        return (dh,), delta, delta

    return _Rule(forward, backward, 1, False)


def _lstm_rule(n) -> _Rule:
    # Per-column constants of act(a) = alpha tanh(alpha a) + beta: sigmoid(a) = 0.5 tanh(a / 2)
    # + 0.5 for the i, f, o gates and tanh for g, so all gates are one vectorised tanh.
    is_g = np.zeros(4 * n, bool)
    is_g[2 * n : 3 * n] = True
    alpha_np, beta_np = np.where(is_g, 1.0, 0.5), np.where(is_g, 0.0, 0.5)

    def forward(carry, u, hh):
        h, c = carry
        a = u + hh
        alpha = jnp.asarray(alpha_np, a.dtype)[None, :]
        beta = jnp.asarray(beta_np, a.dtype)[None, :]
        acts = alpha * jnp.tanh(alpha * a) + beta  # sigmoid(i, f, o), tanh(g)
        i, f, g, o = (acts[:, k * n : (k + 1) * n] for k in range(4))
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        return (h_new, c_new), (acts[:, : 2 * n], acts[:, 2 * n :])  # see _split_saved

    def backward(dnew, saved, prev, new):
        dh, dc = dnew
        i, f, g, o = (saved[k // 2][:, (k % 2) * n : (k % 2 + 1) * n] for k in range(4))
        c_prev = prev[1]
        c_new = f * c_prev + i * g  # == new[1] on valid steps; recomputed for masked ones
        tc = jnp.tanh(c_new)
        dc_tot = dc + dh * o * (1.0 - tc * tc)
        da = jnp.concatenate(
            [
                dc_tot * g * i * (1.0 - i),
                dc_tot * c_prev * f * (1.0 - f),
                dc_tot * i * (1.0 - g * g),
                dh * tc * o * (1.0 - o),
            ],
            axis=-1,
        )
        return (jnp.zeros_like(dh), dc_tot * f), da, da

    return _Rule(forward, backward, 4, False)


def _gru_rule(n) -> _Rule:
    def forward(carry, u, hh):
        (h,) = carry
        rz = 0.5 * jnp.tanh(0.5 * (u[:, : 2 * n] + hh[:, : 2 * n])) + 0.5  # sigmoid, via tanh
        r, z = rz[:, :n], rz[:, n:]
        hn = hh[:, 2 * n :]
        cand = jnp.tanh(u[:, 2 * n :] + r * hn)
        h_new = (1.0 - z) * cand + z * h
        return (h_new,), (rz, jnp.concatenate([cand, hn], axis=-1))  # see _split_saved

    def backward(dnew, saved, prev, new):
        (dh,) = dnew
        r, z, cand, hn = (saved[k // 2][:, (k % 2) * n : (k % 2 + 1) * n] for k in range(4))
        dan = dh * (1.0 - z) * (1.0 - cand * cand)
        dar = dan * hn * r * (1.0 - r)
        daz = dh * (prev[0] - cand) * z * (1.0 - z)
        du = jnp.concatenate([dar, daz, dan], axis=-1)
        dhh = jnp.concatenate([dar, daz, dan * r], axis=-1)
        return (dh * z,), du, dhh

    return _Rule(forward, backward, 3, True)


# _split_saved: the LSTM and GRU save their four (B, n) gate blocks as two (T, B, 2n) stacks,
# each slice of the forward's single tanh output going straight to its stack.

# --------------------------------------------------------------------------- driver


def _index_prev(stack, t, first):
    """``stack[t - 1]`` (``first`` at ``t = 0``) for a time-major stack."""
    return jnp.where(t > 0, stack[jnp.maximum(t - 1, 0)], first)


def _chunk_size(T: int, target: int) -> int:
    """The largest divisor of ``T`` that is at most ``target``."""
    return max(k for k in range(1, max(1, min(target, T)) + 1) if T % k == 0)


# Bytes of delta and h_{t-1} one in-loop chunk keeps for its weight-gradient product: about
# an L2 cache. On the 2-core benchmark machine this picked 32 steps for the Elman cell
# (1.89x flax vs 1.71x at 8), 16 for the GRU and 8 for the LSTM (the measured optima).
_CHUNK_BYTES = 2 << 20


def _recurrence(rule: _Rule, mode: str, unroll: int, chunk: int | None = None):
    """Custom-VJP map ``(W_xh, b_x, W_hh, b_hh, X, carry0, mask) -> (carry_T, hs)``.

    Time-major ``X (T, B, d)``; ``carry0`` a tuple of ``(B, n)``; ``mask``
    ``(T, B, 1)`` or None; ``b_hh`` None unless ``rule.hh_bias``.
    """

    def forward(W_xh, b_x, W_hh, b_hh, X, carry0, mask):
        # Transposes are taken once, outside the loop.
        W_xh_t, W_hh_t = W_xh.T, W_hh.T
        if mode == "after":
            U = X @ W_xh_t + b_x[None, None, :]

        def body(carry, inp):
            xu, m = inp
            u = xu if mode == "after" else xu @ W_xh_t + b_x[None, :]
            hh = carry[0] @ W_hh_t
            hh = hh if b_hh is None else hh + b_hh[None, :]
            new, saved = rule.forward(carry, u, hh)
            if m is not None:
                new = tuple(jnp.where(m > 0, a, b) for a, b in zip(new, carry))
            return new, (new, saved)

        final, (stacks, saved) = jax.lax.scan(
            body, carry0, (U if mode == "after" else X, mask), unroll=unroll
        )
        hs = stacks[0] if mask is None else stacks[0] * mask
        # Returned batch-major: the backward then reads its cotangent d_hs[:, t] in place
        # instead of transposing the whole (B, T, n) cotangent (8 MiB at the benchmark size,
        # 8% of the Elman step).
        hs = jnp.swapaxes(hs, 0, 1)
        res = (W_xh, W_hh, X, carry0, stacks, saved, mask)
        return (final, hs), res

    @jax.custom_vjp
    def run(W_xh, b_x, W_hh, b_hh, X, carry0, mask):
        return forward(W_xh, b_x, W_hh, b_hh, X, carry0, mask)[0]

    def backward(res, cts):
        W_xh, W_hh, X, carry0, stacks, saved, mask = res
        d_final, d_hs = cts  # d_hs (B, T, n); masked steps are dropped in step()
        T = X.shape[0]

        def step(dcarry, t, m, sv):
            g = jax.lax.dynamic_index_in_dim(d_hs, t, axis=1, keepdims=False)
            new = tuple(s[t] for s in stacks)
            prev = tuple(_index_prev(s, t, c0) for s, c0 in zip(stacks, carry0))
            dnew = (dcarry[0] + g,) + tuple(dcarry[1:])
            if m is not None:
                dnew = tuple(d * m for d in dnew)
            if sv:
                # Materialise this step's slices of the saved stacks before the gate
                # arithmetic: fused into it, the dynamic slices made the LSTM step ~8% slower.
                sv, prev, new = jax.lax.optimization_barrier((sv, prev, new))
            direct, du, dhh = rule.backward(dnew, sv, prev, new)
            dprev = (direct[0] + dhh @ W_hh,) + tuple(direct[1:])
            if m is not None:
                dprev = tuple(a + (1.0 - m) * d for a, d in zip(dprev, dcarry))
            return dprev, du, dhh, prev[0]

        ts = jnp.arange(T)
        if mode == "in_loop":
            # Chunks of k steps: an inner scan emits delta and h_{t-1} for k steps
            # (a few hundred KiB, still in cache), then one (n, k B) x (k B, G)
            # product per chunk adds them to the transposed accumulators
            # dW^T += h^T delta. h^T is materialised (optimization_barrier stops
            # XLA folding the transpose back into the dot): on CPU this product
            # ran 1.7x faster than delta^T h, which contracts the leading axis
            # of both operands.
            G, n, d = W_hh.shape[0], W_hh.shape[1], X.shape[-1]
            if chunk is None:
                row = X.shape[1] * (G + n) * jnp.dtype(X.dtype).itemsize
                k = _chunk_size(T, max(1, _CHUNK_BYTES // row))
            else:
                k = _chunk_size(T, chunk)
            same = not rule.hh_bias  # du == dhh for elman and lstm
            ob = jax.lax.optimization_barrier

            def inner(dcarry, inp):
                t, m, sv = inp
                dprev, du, dhh, h_prev = step(dcarry, t, m, sv)
                return dprev, (du, None if same else dhh, h_prev)

            def outer(carry, inp):
                dcarry, acc = carry
                ins, x = inp
                dcarry, (du, dhh, hp) = jax.lax.scan(
                    inner, dcarry, ins, reverse=True, unroll=unroll
                )
                du = du.reshape(-1, G)
                dhh = du if same else dhh.reshape(-1, G)
                hp, x = hp.reshape(-1, n), x.reshape(-1, d)
                acc = (
                    acc[0] + ob(x.T) @ du,
                    acc[1] + du.sum(0),
                    acc[2] + ob(hp.T) @ dhh,
                    acc[3] + dhh.sum(0) if rule.hh_bias else acc[3],
                )
                return (dcarry, acc), (du @ W_xh).reshape(k, -1, d)

            split = lambda a: None if a is None else a.reshape((T // k, k) + a.shape[1:])
            ins = jax.tree_util.tree_map(split, (ts, mask, saved))  # None stays None
            z = jnp.zeros_like
            acc0 = (z(W_xh.T), z(W_xh[:, 0]), z(W_hh.T), z(W_hh[:, 0]))
            (dcarry0, acc), dX = jax.lax.scan(outer, (d_final, acc0), (ins, split(X)), reverse=True)
            dX = dX.reshape(X.shape)
            dW_xh, db_x, dW_hh, db_hh = acc[0].T, acc[1], acc[2].T, acc[3]
        else:
            same = rule.hh_bias is False  # du == dhh for elman and lstm

            def body(dcarry, inp):
                t, m, sv = inp
                dprev, du, dhh, _ = step(dcarry, t, m, sv)
                return dprev, (du, None if same else dhh)

            dcarry0, (du, dhh) = jax.lax.scan(
                body, d_final, (ts, mask, saved), reverse=True, unroll=unroll
            )
            dhh = du if same else dhh
            G, n, d = W_hh.shape[0], W_hh.shape[1], X.shape[-1]
            du2, dhh2 = du.reshape(-1, G), dhh.reshape(-1, G)
            dW_xh = du2.T @ X.reshape(-1, d)
            db_x = du2.sum(0)
            # sum_t dhh_t^T h_{t-1}: rows t >= 1 against hs[:-1], plus t = 0 against h0.
            h_stack = stacks[0]
            dW_hh = dhh[1:].reshape(-1, G).T @ h_stack[:-1].reshape(-1, n) + dhh[0].T @ carry0[0]
            db_hh = dhh2.sum(0)
            dX = du @ W_xh
        d_mask = None if mask is None else jnp.zeros_like(mask)
        return dW_xh, db_x, dW_hh, db_hh if rule.hh_bias else None, dX, dcarry0, d_mask

    run.defvjp(forward, backward)
    return run


def fused_unroll(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    *,
    carry: Any = None,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    unroll: int = 1,
    weight_grads: str | None = None,
) -> tuple[Any, jax.Array]:
    """:func:`jrnn.unroll` for elman / irnn / residual / lstm / gru with a fused backward pass.

    Same arguments and results as :func:`jrnn.unroll` (``remat`` excluded;
    inputs are validated there). ``xs`` is ``(T, d)`` or ``(B, T, d)``.

    Args:
      weight_grads: ``"in_loop"`` or ``"after"`` (see the module docstring);
        ``None`` picks :func:`default_weight_grads`.

    Raises:
      ValueError: if ``cell`` has no fused implementation or ``weight_grads``
        is unknown.
    """
    if not supports(cell):
        raise ValueError(
            f"cell must be one of the fused families {FUSED_CELLS}, got {cell.name!r}; "
            "use fused=False for other cells."
        )
    mode = default_weight_grads() if weight_grads is None else weight_grads
    if mode not in ("in_loop", "after"):
        raise ValueError(f"weight_grads must be 'in_loop', 'after' or None, got {mode!r}.")
    n = cell.hidden_size
    name = cell.name
    if name == "gru":
        rule = _gru_rule(n)
    elif name == "lstm":
        rule = _lstm_rule(n)
    else:
        alpha = dict(cell.config).get("alpha") if name == "residual" else None
        rule = _elman_rule(cell.activation, alpha)

    xs = jnp.asarray(xs)
    single = xs.ndim == 2
    if single:
        xs = xs[None]
        carry = None if carry is None else jax.tree_util.tree_map(lambda c: c[None], carry)
        lengths = None if lengths is None else jnp.reshape(lengths, (1,))
    B, T, _ = xs.shape
    if carry is None:
        c1 = cell.initial_carry(params)
        carry = jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (B,) + c.shape), c1)
    carry0 = tuple(carry) if name == "lstm" else (carry,)

    X = jnp.swapaxes(xs, 0, 1)  # (T, B, d)
    mask = None
    if lengths is not None:
        valid = jnp.arange(T)[:, None] < jnp.asarray(lengths)[None, :]
        mask = valid.astype(X.dtype)[:, :, None]  # (T, B, 1)
    if reverse:
        X = X[::-1]
        mask = None if mask is None else mask[::-1]

    W_xh, W_hh = params["W_xh"], params["W_hh"]
    if name == "gru":
        b_x, b_hh = params["b_xh"], params["b_hh"]
    else:
        b_x = params.get("b_h", jnp.zeros(W_xh.shape[0], W_xh.dtype))
        b_hh = None
    # The carry takes the dtype the step produces (e.g. float32 zeros, float64 inputs).
    # Everything is promoted to one dtype up front (e.g. float32 params, float64 inputs).
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params), X, *carry0)
    carry0 = tuple(c.astype(dtype) for c in carry0)
    W_xh, W_hh, b_x, X = (a.astype(dtype) for a in (W_xh, W_hh, b_x, X))
    b_hh = None if b_hh is None else b_hh.astype(dtype)
    final, hs = _recurrence(rule, mode, unroll)(W_xh, b_x, W_hh, b_hh, X, carry0, mask)

    if reverse:
        hs = hs[:, ::-1]
    final = final if name == "lstm" else final[0]
    if single:
        hs = hs[0]
        final = jax.tree_util.tree_map(lambda c: c[0], final)
    return final, hs
