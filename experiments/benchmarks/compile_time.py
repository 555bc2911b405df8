"""Compile time of the diagnostics: first call minus second call, per diagnostic and cell.

Each diagnostic is wrapped in a fresh ``jax.jit`` and called twice on the same inputs; the
difference is (almost all) tracing plus XLA compilation. Cells at small default sizes
(elman 64, lstm 32, gru 32), ``T = 200``, float32. Run:
``python -m experiments.benchmarks.compile_time [--only lyapunov]``. Timings on a shared
machine are noisy; the table says so.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import jrnn
from experiments.benchmarks._common import block, machine, table

D = jrnn.diagnostics

DIAGNOSTICS = {
    "lyapunov_spectrum (default)": lambda c, p, x: D.lyapunov_spectrum(c, p, x),
    "lyapunov_spectrum (every step)": lambda c, p, x: D.lyapunov_spectrum(c, p, x, reorth_every=1),
    "lyapunov_spectrum (k=4)": lambda c, p, x: D.lyapunov_spectrum(c, p, x, k=4),
    "lyapunov_spectrum (adaptive)": lambda c, p, x: D.lyapunov_spectrum(
        c, p, x, reorth_every="adaptive"
    ),
    "finite_time_exponents": lambda c, p, x: D.finite_time_exponents(c, p, x, window=20),
    "covariant_lyapunov_vectors": lambda c, p, x: D.covariant_lyapunov_vectors(c, p, x),
    "propagation": lambda c, p, x: D.propagation(c, p, x),
    "step_jacobians": lambda c, p, x: D.step_jacobians(c, p, x),
    "singular_value_stats": lambda c, p, x: D.singular_value_stats(c, p, x),
    "unit_health": lambda c, p, x: D.unit_health(c, p, x),
    "gradient_norms": lambda c, p, x: D.gradient_norms(lambda h: jnp.sum(h**2), c, p, x),
    "parameter_sensitivity": lambda c, p, x: D.parameter_sensitivity(
        c, p, x, probes=8, key=jax.random.key(0)
    ),
    "snapshot (Monitor's)": lambda c, p, x: D.snapshot(c, p, x[None]),
}

CELLS = {
    "elman(64)": lambda: jrnn.cells.elman(64, "tanh"),
    "lstm(32)": lambda: jrnn.cells.lstm(32),
    "gru(32)": lambda: jrnn.cells.gru(32),
}


def measure(cell_name: str, diag: str, T: int) -> tuple[float, float]:
    cell = CELLS[cell_name]()
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (T, 2), jnp.float32)
    f = jax.jit(lambda p, x: DIAGNOSTICS[diag](cell, p, x))
    t0 = time.perf_counter()
    block(f(params, xs))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    block(f(params, xs))
    second = time.perf_counter() - t0
    return first - second, second


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="substring of the diagnostics to measure")
    ap.add_argument("--cells", default="", help="substring of the cells to measure")
    ap.add_argument("--T", type=int, default=200)
    args = ap.parse_args(argv)
    rows = []
    for cname in CELLS:
        if args.cells not in cname:
            continue
        for diag in DIAGNOSTICS:
            if args.only not in diag:
                continue
            try:
                comp, run = measure(cname, diag, args.T)
                rows.append([cname, diag, f"{comp:.1f}", f"{1e3 * run:.0f}"])
            except Exception as err:  # a diagnostic a cell does not support
                rows.append([cname, diag, "n/a", f"{type(err).__name__}: {str(err)[:40]}"])
            print(rows[-1], flush=True)
    print(f"# compile time = first call - second call; {machine()}, T={args.T}, float32")
    print(table(["cell", "diagnostic", "compile s", "second call ms"], rows))
    return rows


if __name__ == "__main__":
    main()
