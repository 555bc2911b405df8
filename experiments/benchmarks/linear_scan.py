"""Associative vs sequential scan for linear-recurrence cells.

For each sequence length ``T`` it times, in one process, a bare diagonal
linear recurrence ``h_t = a_t * h_{t-1} + b_t`` (``jax.lax.scan`` against
``jax.lax.associative_scan``) and the cells ``min_gru``, ``min_lstm`` and
``lru`` through :func:`jrnn.unroll` with ``method=jrnn.Scan()`` / ``jrnn.Associative()``. It
prints medians, the speed-up ``sequential / associative`` of each, and the
fraction of the bare recurrence's speed-up each cell keeps
(``cell speed-up / bare speed-up``). ``--mode train`` (default) times forward +
backward of ``sum(outputs)``, ``--mode forward`` the forward pass alone.

Usage::

    python -m experiments.benchmarks.linear_scan                       # CPU defaults
    python -m experiments.benchmarks.linear_scan --lengths 4096 65536  # GPU
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import jrnn
from experiments.benchmarks._common import compare, machine, table

CELLS = ("min_gru", "min_lstm", "lru")


def _bare(parallel: bool):
    def run(a, b):
        if parallel:
            comb = lambda l, r: (r[0] * l[0], r[0] * l[1] + r[1])
            return jax.lax.associative_scan(comb, (a, b), axis=1)[1]
        step = lambda h, ab: (ab[0] * h + ab[1], ab[0] * h + ab[1])
        hs = jax.lax.scan(
            step, jnp.zeros_like(a[:, 0]), (jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1))
        )
        return jnp.swapaxes(hs[1], 0, 1)

    return run


def _jit(fn, mode):
    if mode == "forward":
        return jax.jit(fn)
    return jax.jit(jax.grad(lambda *args: jnp.sum(fn(*args)), argnums=tuple(range(2))))


def run(lengths, batch=4, hidden=64, input_size=16, mode="train", repeats=5, warmup=1):
    """Rows ``(T, model, seq ms, assoc ms, speed-up, fraction of bare)``."""
    key = jax.random.key(0)
    rows = []
    for T in lengths:
        ka, kb, kx, kp = jax.random.split(jax.random.fold_in(key, T), 4)
        a = jax.random.uniform(ka, (batch, T, hidden), minval=0.5, maxval=1.0)
        b = jax.random.normal(kb, (batch, T, hidden))
        xs = jax.random.normal(kx, (batch, T, input_size))
        fns = {
            ("bare", False): (_jit(_bare(False), mode), (a, b)),
            ("bare", True): (_jit(_bare(True), mode), (a, b)),
        }
        for name in CELLS:
            cell = getattr(jrnn.cells, name)(hidden)
            params = cell.init(kp, input_size)
            for par in (False, True):
                method = jrnn.Associative() if par else jrnn.Scan()
                f = lambda p, x, cell=cell, m=method: jrnn.unroll(cell, p, x, method=m)[1]
                fns[(name, par)] = (_jit(f, mode), (params, xs))
        times = compare(
            {k: (lambda f=f, args=args: f(*args)) for k, (f, args) in fns.items()},
            repeats,
            warmup,
        )
        bare = times[("bare", False)] / times[("bare", True)]
        for name in ("bare",) + CELLS:
            seq, par = times[(name, False)], times[(name, True)]
            rows.append((T, name, 1e3 * seq, 1e3 * par, seq / par, (seq / par) / bare))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384, 65536])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--mode", choices=("train", "forward"), default="train")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    print(
        f"# linear recurrences, {args.mode}: B={args.batch}, n={args.hidden}, "
        f"d={args.input_size}; {machine()}; medians of {args.repeats}"
    )
    rows = run(
        args.lengths, args.batch, args.hidden, args.input_size, args.mode, args.repeats, args.warmup
    )
    print(
        table(
            ["T", "model", "sequential ms", "associative ms", "speed-up", "of bare speed-up"],
            [
                (T, m, f"{s:.2f}", f"{p:.2f}", f"{r:.2f}x", f"{100 * fr:.0f}%")
                for T, m, s, p, r, fr in rows
            ],
        )
    )
    return rows


if __name__ == "__main__":
    main()
