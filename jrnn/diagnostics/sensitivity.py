"""Sensitivity of the hidden state to the parameters: the curse of memory, measured.

.. math::

   S_\\theta(t) = E\\,\\Big\\|\\frac{\\partial s_t}{\\partial \\theta}\\Big\\|_F^2, \\qquad
   \\tilde S_\\theta(t) = \\frac{S_\\theta(t)}{E\\,\\|s_t\\|^2}

for every parameter leaf ``theta`` (Zucchet & Orvieto, "Recurrent neural
networks: vanishing and exploding gradients are not the end of the story",
NeurIPS 2024). Vanishing and exploding gradients are about ``d s_T / d s_t``;
this is about ``d s_t / d theta``, which can blow up as the memory grows
(eigenvalues ``|lambda| -> 1``) even where no gradient through time explodes:
learning becomes ill-conditioned. The closed form for a scalar linear
recurrence is :func:`jrnn.theory.linear_memory`.

Computation: forward mode over time. The tangents ``ds_t / d theta . v`` obey
``ds_t v = J_t ds_{t-1} v + (d step / d theta) v``; one ``lax.scan`` carries the
state and the ``K`` parameter tangents (one ``jax.linearize`` of the cell's
``step`` per time step, vmapped over the tangents), so memory is
``O(K (S + P))``, independent of ``T``. A leaf with at most ``probes`` entries
is done exactly (all its basis tangents); a larger leaf with ``probes`` random
tangents ``v`` with ``E[v v^T] = I`` (Rademacher or Gaussian), an unbiased
estimate since ``E ||J v||^2 = tr(J E[v v^T] J^T) = ||J||_F^2`` (Hutchinson
1990), with its standard error.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jrnn import validation
from jrnn.cells.base import Cell, flatten_carry
from jrnn.diagnostics._trajectory import prepare
from jrnn.unrolling import match_carry_dtype

__all__ = ["PROBE_DISTRIBUTIONS", "Sensitivity", "parameter_sensitivity"]

#: Accepted ``distribution`` values of :func:`parameter_sensitivity`.
PROBE_DISTRIBUTIONS = ("rademacher", "gaussian")
_TARGETS = ("state", "output")


class Sensitivity(NamedTuple):
    """Result of :func:`parameter_sensitivity`; every dict maps a parameter's path
    (``"W_hh"``, ``"0/W_hh"`` in a stack) to a ``(T,)`` array, averaged over the batch.

    Fields:
      squared_norm: ``E ||d s_t / d theta||_F^2`` for ``t = 1..T``.
      normalized: ``squared_norm / E ||s_t||^2`` (NaN where ``E ||s_t||^2 = 0``):
        the paper's quantity, in units of ``1 / theta^2``.
      stderr: standard error of ``squared_norm``: over the sequences of the
        batch when ``B >= 2`` (it then includes the probes' noise), else over
        the probes (0 for a leaf done exactly: the number is exact for the
        one sequence given).
      normalized_stderr: the same for ``normalized`` (delta method over the
        batch; ``stderr / E||s_t||^2`` for one sequence).
      state_norm: ``(T,)`` ``E ||s_t||^2`` (``||h_t||^2`` with ``target="output"``).
      exact: ``name -> bool``, whether the leaf was done with all basis tangents.
    """

    squared_norm: dict
    normalized: dict
    stderr: dict
    normalized_stderr: dict
    state_norm: jax.Array
    exact: dict


def _key_name(entry) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def leaf_names(params) -> list[str]:
    """The path of every leaf of ``params`` as ``"a/b/0"`` (the names of :class:`Sensitivity`)."""
    paths = jax.tree_util.tree_leaves_with_path(params)
    return ["/".join(_key_name(e) for e in path) for path, _ in paths]


def _probe_columns(leaves, counts, exact, key, distribution):
    """Tangent leaves ``(K,) + leaf.shape``: leaf ``l`` holds its ``counts[l]`` columns
    (basis vectors or probes) at rows ``[off_l, off_l + counts[l])``, zeros elsewhere."""
    K = sum(counts)
    cols, off = [], 0
    keys = jax.random.split(key, len(leaves)) if key is not None else [None] * len(leaves)
    for leaf, k, ex, kk in zip(leaves, counts, exact, keys, strict=True):
        size = int(np.prod(leaf.shape))
        if ex:
            block = jnp.eye(size, dtype=leaf.dtype)
        elif distribution == "rademacher":
            block = jax.random.rademacher(kk, (k, size), dtype=leaf.dtype)
        else:
            block = jax.random.normal(kk, (k, size), dtype=leaf.dtype)
        block = block.reshape((k,) + leaf.shape)
        pad = [(off, K - off - k)] + [(0, 0)] * leaf.ndim
        cols.append(jnp.pad(block, pad))
        off += k
    return cols


def parameter_sensitivity(
    cell: Cell,
    params,
    xs: jax.Array,
    *,
    probes: int = 32,
    key: jax.Array | None = None,
    carry=None,
    distribution: str = "rademacher",
    target: str = "state",
) -> Sensitivity:
    """``E ||d s_t / d theta||_F^2`` for every parameter leaf and step, and its normalised form.

    .. math::

       S_\\theta(t) = \\frac{1}{B} \\sum_b \\Big\\|\\frac{\\partial s^{(b)}_t}{\\partial \\theta}
       \\Big\\|_F^2, \\qquad
       \\tilde S_\\theta(t) = \\frac{S_\\theta(t)}{\\frac{1}{B}\\sum_b \\|s^{(b)}_t\\|^2}

    ``s_t`` is the flattened carry (:func:`~jrnn.cells.flatten_carry`; ``[Re h; Im h]``
    for the LRU), or the cell's output ``h_t`` with ``target="output"``. The
    derivative is total: through the recurrence, the input map and every earlier
    step (forward mode, streamed over time, memory independent of ``T``; the
    cell's ``step`` is differentiated with :func:`jax.linearize`, so every cell
    works, built-in or not). For the scalar linear recurrence
    ``h_t = lam h_{t-1} + x_t`` the stationary values are
    :func:`jrnn.theory.linear_memory`'s ``var_dh`` and ``ratio`` (Zucchet &
    Orvieto, NeurIPS 2024).

    Exact or randomized, per leaf: a leaf with ``P_l <= probes`` entries uses
    its ``P_l`` basis tangents (exact); a larger one ``probes`` random tangents
    ``v`` (Rademacher ``+-1`` or Gaussian entries, fresh for every sequence),
    ``||J v||^2`` being an unbiased estimate of ``||J||_F^2`` (Hutchinson 1990),
    reported with its standard error. Cost per step: ``K`` Jacobian-vector
    products of one step, ``K = sum_l min(P_l, probes)``.

    Args:
      cell, params: the cell and its params (any pytree; only floating leaves
        are differentiated, the others are left out of the result).
      xs: ``(T, d)`` or ``(B, T, d)`` inputs.
      probes: ``>= 1``; leaves with more entries are estimated with this many
        probes, smaller ones done exactly.
      key: PRNG key for the probes; needed only when a leaf has more than
        ``probes`` entries.
      carry: initial carry (batched like ``xs``); None: the cell's zeros.
      distribution: ``"rademacher"`` (default, the lower variance) or ``"gaussian"``.
      target: ``"state"`` (the flattened carry) or ``"output"`` (``h_t``).

    Returns:
      :class:`Sensitivity`, each dict entry ``(T,)`` (batch-averaged).

    Raises:
      ValueError: ``probes < 1``, an unknown ``distribution`` / ``target``, a
        missing ``key`` when probes are needed, and what :func:`jrnn.unroll`
        raises for bad ``params`` / ``xs`` / ``carry``.
      TypeError: ``probes`` not an integer, ``key`` not a PRNG key.

    Example::

        >>> cell = jrnn.cells.elman(4, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> xs = jax.random.normal(jax.random.key(1), (8, 50, 1))
        >>> sens = jrnn.diagnostics.parameter_sensitivity(cell, params, xs)
        >>> sorted(sens.normalized), sens.normalized["W_hh"].shape, sens.exact["W_hh"]
        (['W_hh', 'W_xh', 'b_h'], (50,), True)
    """
    batch = prepare(cell, params, xs, carry)
    probes = validation.check_int(probes, "probes", low=1)
    if distribution not in PROBE_DISTRIBUTIONS:
        raise ValueError(
            f"distribution must be one of {PROBE_DISTRIBUTIONS}, got {distribution!r}."
        )
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {_TARGETS}, got {target!r}.")
    xs = validation.float_inputs(xs, params)

    all_leaves, treedef = jax.tree_util.tree_flatten(params)
    names_all = leaf_names(params)
    is_float = [validation.dtype_kind(getattr(a, "dtype", np.float32)) == "f" for a in all_leaves]
    idx = [i for i, f in enumerate(is_float) if f]
    leaves = [jnp.asarray(all_leaves[i]) for i in idx]
    names = [names_all[i] for i in idx]
    sizes = [int(np.prod(a.shape)) for a in leaves]
    exact = [s <= probes for s in sizes]
    counts = [s if e else probes for s, e in zip(sizes, exact, strict=True)]
    if not all(exact):
        if key is None:
            big = names[exact.index(False)]
            raise ValueError(
                f"key is needed: leaf {big!r} has {sizes[exact.index(False)]} entries, more "
                f"than probes={probes}, so it is estimated with random probes; pass "
                "key=jax.random.key(seed) (or raise probes to do it exactly)."
            )
        validation.check_key(key, "key")
    bounds = np.cumsum([0] + counts)

    def rebuild(float_leaves):
        full = list(all_leaves)
        for i, leaf in zip(idx, float_leaves, strict=True):
            full[i] = leaf
        return jax.tree_util.tree_unflatten(treedef, full)

    def one(xs_b, carry_b, key_b):
        c0 = cell.initial_carry(params) if carry_b is None else carry_b
        u_struct = jax.eval_shape(cell.input_map, params, xs_b[0] if xs_b.shape[0] else
                                  jnp.zeros(xs_b.shape[1:], xs_b.dtype))
        c0 = match_carry_dtype(cell, params, c0, u_struct)
        cols = _probe_columns(leaves, counts, exact, key_b, distribution)
        K = int(bounds[-1])
        dc0 = jax.tree_util.tree_map(lambda a: jnp.zeros((K,) + a.shape, a.dtype), c0)

        def body(state, x):
            c, dc = state

            def f(fl, cc):
                new_c, h = cell.step(rebuild(fl), cc, x)
                return new_c, h

            (new_c, h), lin = jax.linearize(f, leaves, c)
            d_new, d_h = jax.vmap(lin)(cols, dc)
            if target == "state":
                val, dval = flatten_carry(new_c), jax.vmap(flatten_carry)(d_new)
            else:
                val = jnp.ravel(h)
                dval = d_h.reshape((K, -1))
            sq = jnp.sum(jnp.abs(dval) ** 2, axis=1)  # (K,)
            means, varis = [], []
            for lo, hi, ex in zip(bounds[:-1], bounds[1:], exact, strict=True):
                block = sq[lo:hi]
                if ex:
                    means.append(jnp.sum(block))
                    varis.append(jnp.zeros((), block.dtype))
                else:
                    means.append(jnp.mean(block))
                    var = jnp.var(block, ddof=1) if hi - lo > 1 else jnp.full((), jnp.nan)
                    varis.append(var / (hi - lo))
            return (new_c, d_new), (jnp.stack(means), jnp.stack(varis), jnp.sum(val**2))

        _, out = lax.scan(body, (c0, dc0), xs_b)
        return out  # (T, L), (T, L), (T,)

    if batch is None:
        m, v, n = one(xs, carry, key)
        stderr = jnp.sqrt(v)
        nstd = stderr / n[:, None]
        mean_m, mean_n = m, n
    else:
        keys = jax.random.split(key, batch) if key is not None else None
        in_axes = (0, None if carry is None else 0, None if keys is None else 0)
        M, V, N = jax.vmap(one, in_axes=in_axes)(xs, carry, keys)  # (B, T, L), (B, T)
        mean_m, mean_n = jnp.mean(M, axis=0), jnp.mean(N, axis=0)
        if batch >= 2:
            stderr = jnp.std(M, axis=0, ddof=1) / np.sqrt(batch)
            R = mean_m / mean_n[:, None]
            resid = M - R[None] * N[:, :, None]
            nstd = jnp.std(resid, axis=0, ddof=1) / np.sqrt(batch) / mean_n[:, None]
        elif batch == 1:
            stderr = jnp.sqrt(V[0])
            nstd = stderr / mean_n[:, None]
        else:  # B = 0: no sequence to average over, every number is undefined
            mean_m, mean_n = jnp.full(M.shape[1:], jnp.nan, M.dtype), jnp.full(N.shape[1:],
                                                                               jnp.nan, N.dtype)
            stderr = nstd = mean_m
    safe = mean_n > 0
    norm = jnp.where(safe[:, None], mean_m / jnp.where(safe, mean_n, 1.0)[:, None], jnp.nan)
    nstd = jnp.where(safe[:, None], nstd, jnp.nan)
    pick = lambda a: {name: a[:, i] for i, name in enumerate(names)}  # noqa: E731
    return Sensitivity(
        squared_norm=pick(mean_m),
        normalized=pick(norm),
        stderr=pick(stderr),
        normalized_stderr=pick(nstd),
        state_norm=mean_n,
        exact=dict(zip(names, exact, strict=True)),
    )
