"""Peak memory of a training step with and without ``remat`` (checkpointing every k steps).

The training step is the gradient of ``mean((W_o h_T - y)^2)`` through
:func:`jrnn.unroll` at T=16384, B=16, n=256 (d=1). ``h_T``, the last output,
is read from the final carry (``--loss carry``, default), so the program
need not keep the ``(B, T, n)`` outputs and their cotangent, which no
checkpointing can remove; ``--loss outputs`` reads ``hs[:, -1]`` instead. For ``remat`` in
``False`` (the default ``method="auto"``, ``jrnn.Fused()`` for these cells), ``True``
(``method=jrnn.Scan(remat=True)``, ``k = round(sqrt(T))``) and chunk lengths ``k``
(``jrnn.Scan(remat=k)``) it reports

* the compiled program's temporary buffer size,
  ``jax.jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes``
  (what the backward pass keeps alive: on every backend);
* the device's ``peak_bytes_in_use`` from ``jax.devices()[0].memory_stats()``
  after the step, where the backend reports it (GPU/TPU; ``n/a`` on CPU);
* the ratio to ``remat=False`` and the largest gradient difference from it.

Usage::

    python -m experiments.benchmarks.memory               # T=16384, B=16, n=256, elman
    python -m experiments.benchmarks.memory --cell lstm --remat 64 128
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import jrnn
from experiments.benchmarks._common import machine, median_time, table


def _remat_arg(text: str):
    return (
        {"false": False, "true": True}.get(text.lower(), None) if not text.isdigit() else int(text)
    )


def _peak_bytes():
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def run(
    T=16384, B=16, n=256, cell="elman", remats=(False, True), time_it=False, repeats=3, loss="carry"
):
    """Rows ``(remat, temp MiB, peak MiB or None, ratio, max |grad diff|, ms or None)``."""
    c = {"elman": jrnn.cells.elman, "lstm": jrnn.cells.lstm, "gru": jrnn.cells.gru}[cell](n)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"cell": c.init(k1, 1), "W_o": jax.random.normal(k2, (1, n)) / n**0.5}
    xs = jax.random.normal(k3, (B, T, 1))
    y = jnp.ones((B, 1))

    results = []
    for remat in remats:

        def loss_fn(p, xs, y, remat=remat):
            # remat=False: the default method ("auto"); otherwise the checkpointed scan.
            method = "auto" if remat is False else jrnn.Scan(remat=remat)
            carry, hs = jrnn.unroll(c, p["cell"], xs, method=method)
            h_T = hs[:, -1] if loss == "outputs" else (carry[0] if cell == "lstm" else carry)
            return jnp.mean((h_T @ p["W_o"].T - y) ** 2)

        step = jax.jit(jax.grad(loss_fn))
        compiled = step.lower(params, xs, y).compile()
        mem = compiled.memory_analysis()
        temp = None if mem is None else mem.temp_size_in_bytes
        grads = compiled(params, xs, y)
        jax.block_until_ready(grads)
        peak = _peak_bytes()
        ms = 1e3 * median_time(lambda f=compiled: f(params, xs, y), repeats, 0) if time_it else None
        results.append((remat, temp, peak, grads, ms))

    ref_temp, ref_grads = results[0][1], results[0][3]
    rows = []
    for remat, temp, peak, grads, ms in results:
        diff = max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads))
        )
        ratio = None if not temp or ref_temp is None else ref_temp / temp
        rows.append((remat, temp, peak, ratio, diff, ms))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=int, default=16384)
    parser.add_argument("--B", type=int, default=16)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--cell", choices=("elman", "lstm", "gru"), default="elman")
    parser.add_argument(
        "--remat", nargs="+", default=["false", "true"], help="false, true or chunk lengths"
    )
    parser.add_argument("--loss", choices=("carry", "outputs"), default="carry")
    parser.add_argument("--time", action="store_true", help="also time each step")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    remats = [_remat_arg(r) for r in args.remat]
    if any(r is None for r in remats) or remats[0] is not False:
        remats = [False] + [r for r in remats if r not in (None, False)]
    print(
        f"# training-step memory, {args.cell}, loss on {args.loss}: T={args.T}, B={args.B}, "
        f"n={args.n}; {machine()}"
    )
    rows = run(args.T, args.B, args.n, args.cell, remats, args.time, args.repeats, args.loss)
    mib = lambda b: "n/a" if b is None else f"{b / 2**20:.1f}"
    print(
        table(
            ["remat", "temp MiB (compiled)", "peak MiB (device)", "reduction", "max |dgrad|", "ms"],
            [
                (
                    str(r),
                    mib(t),
                    mib(p),
                    "n/a" if q is None else f"{q:.1f}x",
                    f"{d:.1e}",
                    "-" if ms is None else f"{ms:.0f}",
                )
                for r, t, p, q, d, ms in rows
            ],
        )
    )
    return rows


if __name__ == "__main__":
    main()
