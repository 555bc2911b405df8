"""Newton (DEER / quasi-DEER / ELK) evaluation against the sequential scan and the associative scan.

For each sequence length ``T`` it times, in one process and round-robin
(:func:`experiments.benchmarks._common.compare`), the forward pass of

* a contracting tanh Elman net (``W_hh = 0.8 N(0, 1/N)``, inputs ``0.5 N(0, 1)``):
  ``jrnn.Scan()`` against ``jrnn.Newton()`` (DEER), ``jrnn.Newton("diagonal")``
  (quasi-DEER) and ``jrnn.Newton(damping=...)`` (ELK);
* the linear cell ``min_gru``: ``jrnn.Scan()``, ``jrnn.Associative()`` (one
  ``jax.lax.associative_scan``) and ``jrnn.Newton()`` (one Newton iteration, the same
  scan plus a Jacobian and a residual check);

and prints medians, the ratio to the sequential scan, the Newton iterations, and the
compiled program's temporary memory (``memory_analysis().temp_size_in_bytes``, on every
backend) with the device's ``peak_bytes_in_use`` where the backend reports it (GPU).

On a CPU (here 2 cores shared with other jobs) the parallel depth buys nothing: Newton
does ``O(T S^3)`` work per iteration against the scan's ``O(T S^2)``, so it is slower, and
the ratio says by how much. ``--suite gpu`` runs the lengths where the depth should win
(``T`` up to ``1e6``) when a device is lent.

Usage::

    python -m experiments.benchmarks.newton                 # CPU: T = 1e2 .. 1e4
    python -m experiments.benchmarks.newton --suite gpu     # T = 1e3 .. 1e6, on a GPU
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp

import jrnn
from experiments.benchmarks._common import compare, machine, table

SUITES = {"cpu": (100, 1000, 10000), "gpu": (1000, 10000, 100000, 1000000)}


def _compiled(fn, *args):
    """``(compiled fn, temporary MiB, device peak MiB or None)``: one compilation, reused
    for the timing."""
    compiled = jax.jit(fn).lower(*args).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
    jax.block_until_ready(compiled(*args))
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return compiled, temp, None if peak is None else peak / 2**20


def _elman(T: int, hidden: int, seed: int = 0):
    cell = jrnn.cells.elman(hidden, "tanh")
    k_p, k_w, k_x = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k_p, 1)
    W = 0.8 * jax.random.normal(k_w, (hidden, hidden)) / math.sqrt(hidden)
    xs = 0.5 * jax.random.normal(k_x, (T, 1))
    return cell, dict(params, W_hh=W), xs


def _min_gru(T: int, hidden: int, seed: int = 0):
    cell = jrnn.cells.min_gru(hidden)
    params = cell.init(jax.random.key(seed), 4)
    return cell, params, jax.random.normal(jax.random.key(seed + 1), (T, 4))


def run(lengths, hidden=32, damping=0.1, max_iter=200, repeats=3, warmup=1):
    """Rows ``(T, net, method, ms, ratio to scan, iterations, temp MiB, peak MiB)``."""
    rows = []
    for T in lengths:
        for net, build, methods in (
            ("elman g=0.8", _elman, {
                "scan": jrnn.Scan(),
                "deer": jrnn.Newton(max_iter=max_iter),
                "quasi-deer": jrnn.Newton("diagonal", max_iter=max_iter),
                "elk": jrnn.Newton(damping=damping, max_iter=max_iter),
            }),
            ("min_gru", _min_gru, {
                "scan": jrnn.Scan(),
                "associative": jrnn.Associative(),
                "deer": jrnn.Newton(max_iter=max_iter),
            }),
        ):
            cell, params, xs = build(T, hidden)
            fns, iters, mem = {}, {}, {}
            for name, m in methods.items():
                f = lambda p, x, m=m, cell=cell: jrnn.unroll(cell, p, x, method=m)[1]
                compiled, *mem[name] = _compiled(f, params, xs)
                fns[name] = (compiled, (params, xs))
                if isinstance(m, jrnn.Newton):
                    res = jrnn.newton.unroll(cell, params, xs, jacobian=m.jacobian,
                                             damping=m.damping, max_iter=m.max_iter)
                    iters[name] = f"{int(res.iterations)}" + ("" if res.converged else " (no)")
                else:
                    iters[name] = "-"
            times = compare({k: (lambda f=f, a=a: f(*a)) for k, (f, a) in fns.items()},
                            repeats, warmup)
            for name in methods:
                rows.append((T, net, name, 1e3 * times[name], times[name] / times["scan"],
                             iters[name], *mem[name]))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=tuple(SUITES), default="cpu")
    parser.add_argument("--lengths", type=int, nargs="+", default=None)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--damping", type=float, default=0.1)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--x64", action="store_true", help="float64 (default float32)")
    args = parser.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    lengths = args.lengths or SUITES[args.suite]
    print(f"# Newton evaluation, forward: n={args.hidden}, {jnp.zeros(()).dtype}; "
          f"{machine()}; medians of {args.repeats}, round-robin")
    rows = []
    for T in lengths:  # one table per length, printed as soon as it is measured
        part = run([T], args.hidden, args.damping, args.max_iter, args.repeats, args.warmup)
        rows += part
        print(table(
            ["T", "net", "method", "ms", "/ scan", "iterations", "temp MiB", "peak MiB"],
            [(T, n, m, f"{ms:.2f}", f"{r:.2f}x", it, f"{tm:.1f}",
              "n/a" if pk is None else f"{pk:.1f}") for T, n, m, ms, r, it, tm, pk in part],
        ), flush=True)
    return rows


if __name__ == "__main__":
    main()
