"""Newton (DEER / quasi-DEER / ELK) evaluation against the sequential scan and the associative scan.

For each sequence length ``T`` it times, in one process and round-robin
(:func:`experiments.benchmarks._common.compare`), the forward pass of

* two tanh Elman nets (``W_hh = g N(0, 1/N)``, inputs ``0.5 N(0, 1)``, the nets of
  ``experiments/parallel_evaluation.py``): a contracting one (``g = 0.8``) and a
  near-critical one (``g = 1.2``, ``lambda_max`` just below 0): ``jrnn.Scan()`` against
  DEER (``jrnn.Newton()``), quasi-DEER (``jrnn.Newton("diagonal")``) and ELK
  (``jrnn.Newton(damping=...)``);
* the linear cell ``min_gru``: ``jrnn.Scan()``, ``jrnn.Associative()`` (one
  ``jax.lax.associative_scan``) and DEER (one Newton iteration: the same affine scan plus
  the Jacobians and a residual check);

and prints medians, the ratio to the sequential scan (same process, same round), the Newton
iterations (``(no)``: not converged within ``--max-iter``), the largest difference from the
scan's outputs, the compiled program's temporary memory
(``memory_analysis().temp_size_in_bytes``) and the peak resident memory of one call run
alone in a fresh subprocess: its ``VmHWM`` is reset after compilation
(``/proc/self/clear_refs``), so "run MiB" is what the call itself adds to the process
(buffers, outputs), not the compiler's. Each net's ``lambda_max``
(:func:`jrnn.diagnostics.lyapunov_spectrum`) and the iterations
:func:`jrnn.newton.iteration_rule` forecasts are printed above its rows.

On a CPU (here 2 cores shared with other jobs) the parallel depth buys nothing: Newton
does ``O(T S^3)`` work per iteration against the scan's ``O(T S^2)``, so it is slower, and
the ratio says by how much. ``--suite gpu`` runs the lengths where the depth should win
(``T`` up to ``1e6``) when a device is lent (there "peak MiB" is the device's
``peak_bytes_in_use``).

Usage::

    python -m experiments.benchmarks.newton                 # CPU: T = 300, 2000, n = 16
    python -m experiments.benchmarks.newton --suite gpu     # T = 1e3 .. 1e6, on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp

import jrnn
from experiments.benchmarks._common import block, compare, machine, table

SUITES = {"cpu": (300, 2000), "gpu": (1000, 10000, 100000, 1000000)}
#: The Elman nets: label -> gain ``g`` of ``W_hh = g N(0, 1/N)``.
ELMAN_GAINS = {"elman g=0.8": 0.8, "elman g=1.2": 1.2}
NETS = (*ELMAN_GAINS, "min_gru")
HEADERS = ["T", "net", "method", "ms", "/ scan", "iterations", "max |dh|", "temp MiB",
           "run MiB"]


def _elman(T: int, hidden: int, gain: float, seed: int = 0):
    """The nets of ``experiments.parallel_evaluation.elman_net`` (same seeds)."""
    cell = jrnn.cells.elman(hidden, "tanh")
    k_p, k_w, k_x = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k_p, 1)
    dtype = params["W_hh"].dtype
    W = gain * jax.random.normal(k_w, (hidden, hidden), dtype) / math.sqrt(hidden)
    xs = 0.5 * jax.random.normal(k_x, (T, 1), dtype)
    return cell, dict(params, W_hh=W), xs


def _min_gru(T: int, hidden: int, seed: int = 0):
    cell = jrnn.cells.min_gru(hidden)
    params = cell.init(jax.random.key(seed), 4)
    return cell, params, jax.random.normal(jax.random.key(seed + 1), (T, 4), params["W_h"].dtype)


def build(net: str, T: int, hidden: int):
    """``(cell, params, xs)`` of ``net`` (one of :data:`NETS`)."""
    if net == "min_gru":
        return _min_gru(T, hidden)
    return _elman(T, hidden, ELMAN_GAINS[net])


def methods(net: str, damping: float, max_iter: int) -> dict:
    """``{label: method record}`` timed for ``net``."""
    if net == "min_gru":
        return {"scan": jrnn.Scan(), "associative": jrnn.Associative(),
                "deer": jrnn.Newton(max_iter=max_iter)}
    return {"scan": jrnn.Scan(), "deer": jrnn.Newton(max_iter=max_iter),
            "quasi-deer": jrnn.Newton("diagonal", max_iter=max_iter),
            "elk": jrnn.Newton(damping=damping, max_iter=max_iter)}


def forward(cell, method):
    """``f(params, xs) -> (hs, iterations, converged)`` (-1 / True for the scans)."""
    if isinstance(method, jrnn.Newton):
        def f(p, x):
            r = jrnn.newton.unroll(cell, p, x, jacobian=method.jacobian,
                                   damping=method.damping, max_iter=method.max_iter,
                                   tol=method.tol)
            return r.hs, r.iterations, r.converged
    else:
        def f(p, x):
            hs = jrnn.unroll(cell, p, x, method=method)[1]
            return hs, jnp.asarray(-1, jnp.int32), jnp.asarray(True)
    return f


def _compiled(fn, *args):
    """``(compiled fn, temporary MiB, device peak MiB or None)``: one compilation, reused
    for the timing."""
    compiled = jax.jit(fn).lower(*args).compile()
    mem = compiled.memory_analysis()
    temp = math.nan if mem is None else mem.temp_size_in_bytes / 2**20
    block(compiled(*args))
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return compiled, temp, None if peak is None else peak / 2**20


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def child(net: str, method: str, T: int, hidden: int, damping: float, max_iter: int) -> dict:
    """One compiled call alone in this (fresh) process; prints one JSON line with the peak
    resident memory the call adds (``VmHWM`` reset after compilation)."""
    cell, params, xs = build(net, T, hidden)
    compiled = jax.jit(forward(cell, methods(net, damping, max_iter)[method])).lower(
        params, xs).compile()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        reset = True
    except OSError:
        reset = False
    base = _rss_mib("VmRSS")
    block(compiled(params, xs))
    peak = _rss_mib("VmHWM")
    out = {"net": net, "method": method, "T": T, "base_mib": base, "peak_mib": peak,
           "run_mib": peak - base if reset else math.nan, "reset": reset}
    print(json.dumps(out), flush=True)
    return out


def _spawn(net, method, T, hidden, damping, max_iter, x64) -> float:
    """``run MiB`` of one call in a fresh subprocess (NaN if it failed)."""
    cmd = [sys.executable, "-m", "experiments.benchmarks.newton", "--child", net, method,
           str(T), "--hidden", str(hidden), "--damping", str(damping), "--max-iter",
           str(max_iter)] + (["--x64"] if x64 else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        return math.nan
    return json.loads(lines[-1])["run_mib"]


def forecast(net: str, T: int, hidden: int) -> str:
    """``"lambda_max = ... +- ..., rule: K iterations"`` of ``net`` on ``T`` steps."""
    cell, params, xs = build(net, T, hidden)
    spec = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, k=1, warmup=min(100, T // 10))
    lam, err = float(spec.exponents[0]), float(spec.stderr[0])
    tol = jrnn.unrolling.newton.default_tol(xs.dtype)
    rule = jrnn.newton.iteration_rule(lam, T, tol).iterations if math.isfinite(lam) else "?"
    return f"lambda_max = {lam:+.3f} +- {err:.3f} nats/step, rule: {rule} DEER iterations"


def run(lengths, hidden=32, damping=0.1, max_iter=200, repeats=3, warmup=1, memory=(),
        x64=False, nets=NETS, only=None):
    """Rows ``(T, net, method, ms, ratio to scan, iterations, max |dh|, temp MiB, run MiB)``;
    ``run MiB`` is measured in a subprocess for the lengths in ``memory`` (else NaN), or is
    the device's ``peak_bytes_in_use`` where the backend reports it (GPU)."""
    rows = []
    for T in lengths:
        for net in nets:
            cell, params, xs = build(net, T, hidden)
            fns, outs, mem = {}, {}, {}
            for name, m in methods(net, damping, max_iter).items():
                if only is not None and name not in only and name != "scan":
                    continue
                compiled, temp, peak = _compiled(forward(cell, m), params, xs)
                fns[name] = lambda c=compiled, a=(params, xs): c(*a)
                outs[name] = jax.device_get(compiled(params, xs))
                if peak is None and T in memory:
                    peak = _spawn(net, name, T, hidden, damping, max_iter, x64)
                mem[name] = (temp, math.nan if peak is None else peak)
            times = compare(fns, repeats, warmup)
            ref = outs["scan"][0]
            for name in fns:
                hs, k, ok = outs[name]
                iters = "-" if int(k) < 0 else f"{int(k)}" + ("" if ok else " (no)")
                dh = float(jnp.max(jnp.abs(jnp.asarray(hs) - ref)))
                rows.append((T, net, name, 1e3 * times[name], times[name] / times["scan"],
                             iters, dh, *mem[name]))
    return rows


def _format(rows):
    return [(T, n, m, f"{ms:.2f}", f"{r:.2f}x", it, f"{dh:.1e}", f"{tm:.1f}",
             "n/a" if math.isnan(pk) else f"{pk:.1f}")
            for T, n, m, ms, r, it, dh, tm, pk in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=tuple(SUITES), default="cpu")
    parser.add_argument("--lengths", type=int, nargs="+", default=None)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--damping", type=float, default=1e-3)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--memory", choices=("last", "all", "none"), default="last",
                        help="lengths whose run memory is measured in subprocesses (CPU)")
    parser.add_argument("--x64", action="store_true", help="float64 (default float32)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="only these (deer quasi-deer elk associative; scan always)")
    parser.add_argument("--child", nargs=3, metavar=("NET", "METHOD", "T"), default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    if args.child:
        net, method, T = args.child
        return child(net, method, int(T), args.hidden, args.damping, args.max_iter)
    lengths = args.lengths or SUITES[args.suite]
    memory = {"last": lengths[-1:], "all": lengths, "none": ()}[args.memory]
    print(f"# Newton evaluation, forward, one sequence: n={args.hidden}, "
          f"{jnp.zeros(()).dtype}, max_iter={args.max_iter}, ELK damping={args.damping}; "
          f"{machine()}; medians of {args.repeats}, round-robin", flush=True)
    for net in NETS:
        print(f"# {net} at T={lengths[-1]}: {forecast(net, lengths[-1], args.hidden)}",
              flush=True)
    rows = []
    for T in lengths:  # one table per length, printed as soon as it is measured
        part = run([T], args.hidden, args.damping, args.max_iter, args.repeats, args.warmup,
                   memory, args.x64, only=args.methods)
        rows += part
        print(table(HEADERS, _format(part)), flush=True)
    return rows


if __name__ == "__main__":
    main()
