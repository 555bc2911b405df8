"""Finite-time Lyapunov exponents: the Benettin growth rates over consecutive windows.

.. math::

   \\lambda_i^{(w)} = \\frac{1}{W} \\sum_{t \\in \\text{window } w} \\log |(R_t)_{ii}|

The local exponents of :func:`jrnn.diagnostics.lyapunov_spectrum` (one QR per
step), averaged over windows of ``W`` steps: how gradient growth fluctuates
along a trajectory.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jrnn import validation
from jrnn.cells.base import Cell
from jrnn.diagnostics._trajectory import check_phases, prepare
from jrnn.diagnostics.lyapunov import lyapunov_spectrum

__all__ = ["FiniteTimeExponents", "finite_time_exponents"]


class FiniteTimeExponents(NamedTuple):
    """Result of :func:`finite_time_exponents` (one sequence; a batch adds ``B``).

    Fields:
      exponents: ``(num_windows, k)`` local growth rates, nats per step, in
        Benettin column order (column ``i`` follows the ``i``-th exponent).
      mean: ``(k,)`` the mean over windows (= the Lyapunov exponents of the
        covered steps, in column order).
      std: ``(k,)`` spread (standard deviation) over windows.
      stderr: ``(k,)`` ``std / sqrt(num_windows)`` (windows treated as
        independent; valid when ``window`` exceeds the correlation time).
    """

    exponents: jax.Array  # (num_windows, k)
    mean: jax.Array  # (k,)
    std: jax.Array  # (k,)
    stderr: jax.Array  # (k,)


def finite_time_exponents(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    window: int,
    k: int | None = None,
    carry=None,
    transient: int = 0,
    warmup: int = 0,
    Q0: jax.Array | None = None,
    key: jax.Array | None = None,
    method: str = "auto",
    qr: str = "auto",
    mode: str = "auto",
    memory_budget: int | None = None,
) -> FiniteTimeExponents:
    """Finite-time Lyapunov exponents over consecutive windows of ``window`` steps.

    .. math::

       \\lambda_i^{(w)} = \\frac{1}{W} \\sum_{t \\in \\text{window } w} \\log |(R_t)_{ii}|

    with ``R_t`` from the same streamed QR chain as :func:`lyapunov_spectrum`
    (one QR per step; the frame is carried across windows, so every window
    starts aligned). They show how gradient growth fluctuates along a trajectory
    (e.g. Engelken, Wolf & Abbott 2023; Vulpiani et al., "Chaos: from simple
    models to complex systems", ch. 5). The ``(T - transient - warmup) // window``
    full windows are reported; a shorter remainder at the end is dropped.

    Args:
      cell, params, xs, carry, k, transient, warmup, Q0, key, method, qr, mode,
        memory_budget: as in :func:`lyapunov_spectrum`.
      window: steps per window, ``1 <= window <= T - transient - warmup``.

    Returns:
      :class:`FiniteTimeExponents`.

    Raises:
      ValueError: ``window`` out of range, and everything
        :func:`lyapunov_spectrum` raises. TypeError: ``window`` not an integer.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (100, 1))
        >>> ftle = jrnn.diagnostics.finite_time_exponents(cell, params, xs, window=10, k=2)
        >>> ftle.exponents.shape
        (10, 2)
    """
    prepare(cell, params, xs, carry)
    T = jnp.shape(xs)[-2]
    window = validation.check_int(window, "window")
    transient, warmup = check_phases(T, transient=transient, warmup=warmup)
    avail = T - transient - warmup
    if not 1 <= window <= avail:
        raise ValueError(
            f"window must be in [1, T - transient - warmup] = [1, {avail}], got {window}."
        )
    spec = lyapunov_spectrum(
        cell,
        params,
        xs,
        carry=carry,
        k=k,
        reorth_every=1,  # one local exponent per step
        transient=transient,
        warmup=warmup,
        Q0=Q0,
        key=key,
        method=method,
        qr=qr,
        mode=mode,
        memory_budget=memory_budget,
    )
    local = spec.local  # (..., T', k), one block per step
    nw = local.shape[-2] // window
    w = local[..., : nw * window, :].reshape(local.shape[:-2] + (nw, window, local.shape[-1]))
    ex = jnp.mean(w, axis=-2)
    std = (
        jnp.std(ex, axis=-2, ddof=1)
        if nw > 1
        else jnp.full(ex.shape[:-2] + ex.shape[-1:], jnp.nan, ex.dtype)
    )
    return FiniteTimeExponents(ex, jnp.mean(ex, axis=-2), std, std / jnp.sqrt(nw))
