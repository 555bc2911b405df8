"""Lyapunov spectra: ``jrnn.diagnostics.lyapunov_spectrum`` vs a plain Householder-QR scan.

Baselines, measured in the same process on the same float32 tanh network:
  * ``scan(J_t + QR)``: one ``lax.scan`` computing ``J_t`` and
    ``jnp.linalg.qr(J_t Q)`` per step (the textbook implementation);
  * ``scan(QR) on stack``: the same QR chain over precomputed Jacobians.
Errors are max ``|lambda_i - lambda_i^ref|`` against a float64 Householder run.
``reorth_every=4`` rows show checked blocking: with ``qr="mixed"`` (float64 chain) the
blocks pass their error check at this spectrum width; in float32 (``auto``) they fail it
and are redone step by step (slower, same accuracy).

Suites (``--suite``):
  * ``qr`` (the above): ``python -m experiments.benchmarks.lyapunov --suite qr``;
  * ``peer`` (issue 11): a PyTorch loop in the style of research code (carry ``h`` and
    ``Q``, ``Q, R = qr(diag(f') (W Q))``) against jrnn's default call, on a random tanh
    net (g = 2), full spectrum. Speed: both timed round-robin in this process (with
    jrnn's QR chain alone on precomputed Jacobians, its LAPACK floor), ms per step, ratio
    per round; memory: torch, jrnn stacked and jrnn streaming each alone in a fresh
    subprocess reporting its peak RSS (``VmHWM``);
  * ``scale``: N=512 full spectrum float64 T=1500 (streamed) and N=4096, k=64, T=1000
    float32 (tangent mode), one run each, time including compilation;
  * ``gpu``: full spectrum N=4096 float64 per-step time on the default device (the best
    published figure is ~47 ms/step on an H100 PCIe). Never run in CI;
  * ``adaptive`` (issue 31): rows N=512 full (float32, float64), N=2048 full float64,
    N=4096 k=64 (float32, float64); per row, round-robin in this process: a NumPy/LAPACK
    loop as research code writes it (``numpy.linalg.qr`` every step; PyTorch is not
    installed here), jrnn's every-step chain (``reorth_every=1``) and its adaptive
    interval (``reorth_every="adaptive"``); ms per step (median), ratios, the interval
    used, compile time (first call minus second), the time of ``W Q`` alone and the
    matmul floor: the step's arithmetic ``2 N^2 k + 4 N k^2`` at this CPU's measured rate
    for a square product (:func:`matmul_rate`, same process). ``--memory`` adds peak RSS
    of the loop and of both jrnn settings, each alone in a subprocess, at each
    ``--memory-T`` (memory flat in ``T``: the same peak at two ``T``).

Run: ``python -m experiments.benchmarks.lyapunov --suite peer [--T 1000 --n 512]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)  # float64 reference

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jrnn  # noqa: E402
from experiments.benchmarks._common import block, compare, machine, table  # noqa: E402
from jrnn.linalg import CompactQR, qr_chain  # noqa: E402

T, N, GAIN, REPEATS = 512, 128, 1.2, 5


def _householder_scan(W, b, us, dtype):
    """Reference: h_t = tanh(W h + u_t); Q, R = qr(J_t Q) per step."""
    n = W.shape[0]

    def body(carry, u):
        h, Q = carry
        h = jnp.tanh(W @ h + u + b)
        J = (1.0 - h * h)[:, None] * W
        Q, R = jnp.linalg.qr(J @ Q)
        return (h, Q), jnp.log(jnp.abs(jnp.diagonal(R)))

    init = (jnp.zeros(n, dtype), jnp.eye(n, dtype=dtype))
    _, logs = jax.lax.scan(body, init, us)
    return -jnp.sort(-jnp.mean(logs, axis=0))


def _qr_chain(Js):
    def body(Q, J):
        Q, R = jnp.linalg.qr(J @ Q)
        return Q, jnp.log(jnp.abs(jnp.diagonal(R)))

    _, logs = jax.lax.scan(body, jnp.eye(Js.shape[-1], dtype=Js.dtype), Js)
    return -jnp.sort(-jnp.mean(logs, axis=0))


def qr_suite(args) -> dict[str, float]:

    cell = jrnn.cells.elman(
        args.n, "tanh", recurrent_init=jrnn.initializers.scaled_normal(args.gain)
    )
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (args.T, 4), jnp.float32)
    us = xs @ params["W_xh"].T

    base = jax.jit(lambda p, u: _householder_scan(p["W_hh"], p["b_h"], u, jnp.float32))
    Js = jax.jit(lambda p, x: jrnn.diagnostics.step_jacobians(cell, p, x))(params, xs)
    chain = jax.jit(_qr_chain)
    configs = {
        "auto": {},
        "householder": {"qr": "householder"},
        "cholesky": {"qr": "cholesky"},
        "mixed": {"qr": "mixed"},
        "mixed, reorth_every=2": {"qr": "mixed", "reorth_every": 2},
        "mixed, reorth_every=4": {"qr": "mixed", "reorth_every": 4},
        "auto, reorth_every=4": {"reorth_every": 4},
    }
    fns = {
        "scan(J_t + QR) (baseline)": lambda: base(params, us),
        "scan(QR) on Jacobian stack": lambda: chain(Js),
    }
    for name, kw in configs.items():
        f = jax.jit(lambda p, x, kw=kw: jrnn.diagnostics.lyapunov_spectrum(cell, p, x, **kw))
        fns[f"lyapunov_spectrum({name})"] = lambda f=f: f(params, xs).exponents
    times = compare(fns, args.repeats, args.warmup)

    p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    ref = np.asarray(
        _householder_scan(p64["W_hh"], p64["b_h"], us.astype(jnp.float64), jnp.float64)
    )
    errors = {k: float(np.max(np.abs(np.asarray(f(), np.float64) - ref))) for k, f in fns.items()}

    b = times["scan(J_t + QR) (baseline)"]
    rows = [[k, f"{1e3 * t:.1f}", f"{b / t:.2f}x", f"{errors[k]:.1e}"] for k, t in times.items()]
    print(f"# Lyapunov spectrum, elman(tanh, gain {args.gain}) T={args.T}, n={args.n}, float32")
    print(
        f"# {machine()}; median of {args.repeats}; lambda_1 = {ref[0]:.4f}, "
        f"lambda_n = {ref[-1]:.4f}; error: max |d lambda| vs float64 Householder"
    )
    print(table(["method", "median ms", "speed vs baseline", "max |err|"], rows))
    return times


def _peak_mb() -> float:
    """This process's peak resident set in MB: ``VmHWM`` of its own address space.

    (``ru_maxrss`` is kept across ``fork``/``exec`` on Linux, so a child spawned by a
    large parent would report the parent's size; ``VmHWM`` starts afresh at ``exec``.)
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _net(n, gain, dtype, seed=0):
    rng = np.random.default_rng(seed)
    W = (gain / np.sqrt(n) * rng.standard_normal((n, n))).astype(dtype)
    us = (0.1 * rng.standard_normal((1, n))).astype(dtype)
    return W, us


def child(impl: str, dtype: str, n: int, k: int, T: int, gain: float, repeat: int) -> dict:
    """One measurement in this (fresh) process; prints one JSON line."""
    W, u = _net(n, gain, dtype)
    base = _peak_mb()
    if impl == "torch":
        run = _torch_loop(W, u[0], k, T)
    elif impl == "numpy":
        run = _numpy_loop(W, u[0], k, T)

    else:
        mode = {"stacked": "stacked", "streaming": "chunked", "tangent": "tangent",
                "default": "auto", "every": "auto", "adaptive": "auto"}[impl]  # fmt: skip
        reorth = {"every": {"reorth_every": 1}, "adaptive": {"reorth_every": "adaptive"}}
        kw = reorth.get(impl, {})
        cell = jrnn.cells.elman(n, "tanh")  # the same constant drive as b_h
        params = {
            "W_xh": jnp.zeros((n, 1), dtype),
            "W_hh": jnp.asarray(W),
            "b_h": jnp.asarray(u[0]),
        }
        xs = jnp.zeros((T, 1), dtype)
        f = jax.jit(
            lambda p, x: jrnn.diagnostics.lyapunov_spectrum(
                cell, p, x, k=k, mode=mode, **kw
            ).exponents
        )

        def run():
            return np.asarray(f(params, xs))

    t0 = time.perf_counter()
    ex = run()
    first = time.perf_counter() - t0
    secs = first
    if repeat:
        t0 = time.perf_counter()
        ex = run()
        secs = time.perf_counter() - t0
    out = {
        "impl": impl, "dtype": dtype, "n": n, "k": k, "T": T,
        "ms_per_step": 1e3 * secs / T, "first_call_s": first,
        "peak_rss_mb": _peak_mb(), "baseline_rss_mb": base,
        "lambda_1": float(np.max(ex)), "lambda_k": float(np.min(ex)),
    }  # fmt: skip
    print(json.dumps(out))
    return out


def _spawn(*args) -> dict:
    cmd = [sys.executable, "-m", "experiments.benchmarks.lyapunov", "--child", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        return {"error": (res.stderr or res.stdout)[-400:]}
    return json.loads(lines[-1])


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _report(rows, title):
    print(title)
    print(f"# {machine()}")
    body = []
    for r in rows:
        if "error" in r:
            body.append([r.get("label", "?"), "error", "", "", r["error"][-80:]])
            continue
        body.append(
            [r["label"], f"{r['ms_per_step']:.1f}", f"{r['peak_rss_mb']:.0f}",
             f"{r['first_call_s']:.1f}", f"{r['lambda_1']:.4f} / {r['lambda_k']:.4f}"]
        )  # fmt: skip
    print(table(["run", "ms/step", "peak RSS MB", "first call s", "lambda_1 / lambda_k"], body))


def _torch_loop(W, u, k, T):
    """The peer: a PyTorch loop as research code writes it (carry ``h`` and ``Q``)."""
    import torch

    Wt, ut = torch.from_numpy(W), torch.from_numpy(u)
    n = W.shape[0]

    def run():
        h = torch.zeros(n, dtype=Wt.dtype)
        Q = torch.eye(n, k, dtype=Wt.dtype)
        logs = torch.zeros(k, dtype=Wt.dtype)
        for _ in range(T):
            h = torch.tanh(Wt @ h + ut)
            Q, R = torch.linalg.qr((1 - h * h)[:, None] * (Wt @ Q))
            logs += torch.log(torch.abs(torch.diagonal(R)))
        return np.sort((logs / T).numpy())[::-1]

    return run


def _numpy_loop(W, u, k, T):
    """The peer without torch: the same loop with NumPy (LAPACK ``geqrf`` + ``orgqr`` per step)."""
    n = W.shape[0]

    def run():
        h = np.zeros(n, W.dtype)
        Q = np.eye(n, k, dtype=W.dtype)
        logs = np.zeros(k)
        for _ in range(T):
            h = np.tanh(W @ h + u)
            Q, R = np.linalg.qr((1 - h * h)[:, None] * (W @ Q))
            logs += np.log(np.abs(np.diagonal(R)))
        return np.sort(logs / T)[::-1]

    return run


ADAPTIVE_ROWS = ((512, 512, "float32"), (512, 512, "float64"), (2048, 2048, "float64"),
                 (4096, 64, "float32"), (4096, 64, "float64"))  # fmt: skip


def matmul_rate(n: int, dtype: str, repeats: int = 3) -> float:
    """This CPU's measured matrix-product rate, GFLOP/s: the best of ``repeats`` square
    ``(n, n) @ (n, n)`` products in XLA (the same dot the tangent map runs)."""
    A = jnp.asarray(np.random.default_rng(2).standard_normal((n, n)), dtype)
    mm = jax.jit(lambda a: a @ a)
    block(mm(A))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(mm(A))
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def adaptive_row(n, k, dtype, T, gain, repeats):
    """One row of the ``adaptive`` suite: per-step times of the NumPy loop, jrnn's
    every-step chain and its adaptive interval (round-robin), compile times, the interval
    used, ``W Q`` alone and the step's arithmetic at this CPU's matmul rate (the floor)."""
    W, u = _net(n, gain, dtype)
    cell = jrnn.cells.elman(n, "tanh")  # the constant drive enters as b_h
    params = {"W_xh": jnp.zeros((n, 1), dtype), "W_hh": jnp.asarray(W), "b_h": jnp.asarray(u[0])}
    xs = jnp.zeros((T, 1), dtype)
    Q0 = jnp.eye(n, k, dtype=dtype)  # the loops' start frame: every peer runs the same chain
    spec = {
        "jrnn every step": jax.jit(
            lambda p, x: jrnn.diagnostics.lyapunov_spectrum(cell, p, x, Q0=Q0, reorth_every=1)
        ),
        "jrnn adaptive": jax.jit(
            lambda p, x: jrnn.diagnostics.lyapunov_spectrum(
                cell, p, x, Q0=Q0, reorth_every="adaptive"
            )
        ),
    }
    fns = {"numpy loop": _numpy_loop(W, u[0], k, T)}
    if _have_torch():
        fns["torch loop"] = _torch_loop(W, u[0], k, T)
    compile_s, out = {}, {}
    for name, f in spec.items():
        t0 = time.perf_counter()
        block(f(params, xs))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        out[name] = block(f(params, xs))
        compile_s[name] = first - (time.perf_counter() - t0)
        fns[name] = lambda f=f: f(params, xs).exponents
    Wj = jnp.asarray(W)
    Q = jnp.asarray(np.linalg.qr(np.random.default_rng(1).standard_normal((n, k)))[0], dtype)
    wq = jax.jit(lambda W, Q: jnp.tanh(W @ Q))
    fns["W Q alone"] = lambda: wq(Wj, Q)
    block(fns["W Q alone"]())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            block(fn())
            steps = 1 if name == "W Q alone" else T
            times[name].append(1e3 * (time.perf_counter() - t0) / steps)
    ex_np = fns["numpy loop"]()
    ex_t = fns["torch loop"]() if "torch loop" in fns else None
    ex_a, ex_e = (np.asarray(out[m].exponents) for m in ("jrnn adaptive", "jrnn every step"))
    return {
        "n": n, "k": k, "dtype": dtype, "T": T, "times": times, "compile_s": compile_s,
        "interval": float(out["jrnn adaptive"].reorth_interval),
        "max_abs_diff_adaptive_vs_every": float(np.max(np.abs(ex_a - ex_e))),
        "lambda_1": float(ex_np[0]), "lambda_k": float(ex_np[-1]),
        "max_abs_diff_torch_vs_every": (
            float(np.max(np.abs(ex_t - ex_e))) if ex_t is not None else float("nan")
        ),
        "matmul_gflops": matmul_rate(min(n, 2048), dtype),
    }  # fmt: skip


def adaptive_suite(args):
    T_of = {512: args.T, 2048: max(2, args.T // 5), 4096: args.T}
    print(f"# Lyapunov spectra, tanh g={args.gain}: jrnn's every-step chain and adaptive")
    print("# interval vs the NumPy/LAPACK loop, round-robin in one process")
    print(f"# {machine()}; median of {args.repeats} rounds, ms per step")
    body, rows = [], []
    for n, k, dtype in ADAPTIVE_ROWS:
        if (args.n_max and n > args.n_max) or (args.n_min and n < args.n_min):
            continue
        if args.dtype and dtype != args.dtype:
            continue
        r = adaptive_row(n, k, dtype, T_of[n], args.gain, args.repeats)
        med = {name: float(np.median(v)) for name, v in r["times"].items()}
        r["median_ms"] = med
        best = min(med["jrnn every step"], med["jrnn adaptive"])
        torch_ratio = med["torch loop"] / best if "torch loop" in med else float("nan")
        r["torch_over_best_jrnn"] = torch_ratio
        flops = 2 * n * n * k + 4 * n * k * k  # W Q and the QR of the (n, k) frame per step
        r["gflops_best"] = flops / best / 1e6
        r["gflops_wq"] = 2 * n * n * k / med["W Q alone"] / 1e6
        r["floor_ms"] = flops / (r["matmul_gflops"] * 1e6)  # the arithmetic at the matmul rate
        r["floor_ratio"] = best / r["floor_ms"]
        print(json.dumps(r), flush=True)
        if args.memory:
            for impl in ("numpy", "every", "adaptive") + (("torch",) if _have_torch() else ()):
                for T_m in args.memory_T or (T_of[n],):
                    m = _spawn(impl, dtype, n, k, T_m, args.gain, 0)
                    r[f"peak_rss_mb_{impl}_T{T_m}"] = m.get("peak_rss_mb", float("nan"))
                    print(json.dumps({"memory": f"{impl} T={T_m}", **m}), flush=True)
        rows.append(r)
        body.append([
            f"N={n} k={k} {dtype} T={r['T']}", f"{med['numpy loop']:.1f}",
            f"{med['jrnn every step']:.1f}", f"{med['jrnn adaptive']:.1f}",
            f"{med['numpy loop'] / best:.2f}x",
            f"{med.get('torch loop', float('nan')):.1f}", f"{torch_ratio:.2f}x",
            f"{med['jrnn every step'] / med['jrnn adaptive']:.2f}x", f"{r['interval']:.2f}",
            f"{r['compile_s']['jrnn adaptive']:.1f} / {r['compile_s']['jrnn every step']:.1f}",
            f"{r['floor_ratio']:.1f}x ({r['gflops_best']:.1f} of {r['matmul_gflops']:.0f} GF/s)",
            f"{r['max_abs_diff_adaptive_vs_every']:.1e}",
        ])  # fmt: skip
    print(table(["row", "numpy ms", "every-step ms", "adaptive ms", "numpy / best jrnn",
                 "torch ms", "torch / best jrnn", "every / adaptive", "interval",
                 "compile s (adaptive / every)",
                 "best jrnn / matmul floor", "max |d lambda|"], body))  # fmt: skip
    return rows


def _lapack_floor(Js):
    """jrnn's default chain alone (``ormqr`` + ``geqrf`` per step) on precomputed Jacobians:
    ``sum_t log |diag R_t|``."""
    chain = CompactQR(square=True)
    state = chain.init(jnp.eye(Js.shape[-1], dtype=Js.dtype))
    _, logs, _ = qr_chain(chain, state, Js)
    return jnp.sum(logs, axis=0)


def peer_speed(dtype: str, n: int, T: int, gain: float, repeats: int, warmup: int) -> dict:
    """Per-step times of the torch loop, jrnn's default call and its LAPACK floor, round-robin
    in this process (so the VM's drift hits every peer alike); returns per-round times."""
    W, u = _net(n, gain, dtype)
    cell = jrnn.cells.elman(n, "tanh")  # the constant drive enters as b_h
    params = {"W_xh": jnp.zeros((n, 1), dtype), "W_hh": jnp.asarray(W), "b_h": jnp.asarray(u[0])}
    xs = jnp.zeros((T, 1), dtype)
    spec = jax.jit(lambda p, x: jrnn.diagnostics.lyapunov_spectrum(cell, p, x).exponents)
    T_floor = min(T, 100)
    Js = jax.jit(lambda p, x: jrnn.diagnostics.step_jacobians(cell, p, x))(params, xs[:T_floor])
    floor = jax.jit(_lapack_floor)
    fns = {}
    if _have_torch():
        fns["torch loop"] = _torch_loop(W, u[0], n, T)
    fns["jrnn lyapunov_spectrum"] = lambda: spec(params, xs)
    fns["LAPACK chain alone"] = lambda: floor(Js)
    steps = {"LAPACK chain alone": T_floor}
    for fn in fns.values():
        for _ in range(warmup):
            block(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            block(fn())
            times[name].append(1e3 * (time.perf_counter() - t0) / steps.get(name, T))
    out = {"times": times}
    if "torch loop" in fns:
        ex_t, ex_j = fns["torch loop"](), np.asarray(spec(params, xs))
        out["max_abs_diff"] = float(np.max(np.abs(ex_t - ex_j)))
        out["lambda_1"], out["lambda_k"] = float(ex_j[0]), float(ex_j[-1])
    return out


def peer_suite(args):
    threads = os.environ.get("JRNN_BENCH_LAPACK_THREADS", "OpenBLAS default")
    print(f"# Lyapunov peer: tanh g={args.gain}, N={args.n}, k=N, T={args.T}")
    print(f"# jrnn's LAPACK threads: {threads}")
    print(f"# {machine()}")
    print(
        f"# speed: ms per step, {args.repeats} rounds round-robin in this process "
        "(median [min, max]); ratio = torch / jrnn per round"
    )
    body = []
    for dtype in ("float32", "float64"):
        r = peer_speed(dtype, args.n, args.T, args.gain, args.repeats, args.warmup)
        ts = r["times"]
        for name, v in ts.items():
            body.append([f"{name} {dtype}", f"{np.median(v):.2f} [{min(v):.2f}, {max(v):.2f}]", ""])
        if "torch loop" in ts:
            ratio = np.asarray(ts["torch loop"]) / np.asarray(ts["jrnn lyapunov_spectrum"])
            body[-2][2] = f"{np.median(ratio):.2f}x [{ratio.min():.2f}, {ratio.max():.2f}]"
            diff = f"max |lambda_torch - lambda_jrnn| = {r['max_abs_diff']:.1e}"
            ends = f"lambda_1 {r['lambda_1']:.4f}, lambda_k {r['lambda_k']:.4f}"
            body.append([f"  agreement {dtype}", diff, ends])
    print(table(["run", "ms/step", "jrnn vs torch"], body), flush=True)
    if not _have_torch():
        print("# torch is not installed: no peer, so no ratio (pip install torch)")

    rows = []
    for dtype in ("float32", "float64"):
        impls = (["torch"] if _have_torch() else []) + ["stacked", "streaming"]
        for impl in impls:
            r = _spawn(impl, dtype, args.n, args.n, args.T, args.gain, 0)
            r["label"] = f"{impl} {dtype}"
            rows.append(r)
    _report(
        rows,
        "# memory: each run alone in a fresh subprocess (peak RSS = VmHWM; "
        "ms/step of the first call, compilation included)",
    )
    by = {r["label"]: r for r in rows if "error" not in r}
    for dtype in ("float32", "float64"):
        t, s = by.get(f"torch {dtype}"), by.get(f"streaming {dtype}")
        if t and s:
            ratio = s["peak_rss_mb"] / t["peak_rss_mb"]
            print(f"# {dtype}: streaming peak memory {ratio:.2f}x torch's")
    return rows


def scale_suite(args):
    rows = []
    for impl, dtype, n, k, T_ in (
        ("streaming", "float64", 512, 512, args.T_mid),
        ("tangent", "float32", 4096, 64, args.T_large),
    ):
        r = _spawn(impl, dtype, n, k, T_, args.gain, 0)
        r["label"] = f"{impl} {dtype} N={n} k={k} T={T_}"
        rows.append(r)
        print(json.dumps(r), flush=True)
    _report(rows, "# Lyapunov scale rows (one run each; time includes compilation)")
    return rows


def gpu_suite(args):
    n = args.n if args.n != N else 4096
    r = _spawn("streaming", "float64", n, n, args.T, args.gain, 1)
    r["label"] = f"streaming float64 N={n} k=N T={args.T} on {jax.devices()[0].device_kind}"
    _report([r], "# Lyapunov full spectrum on the default device (published: ~47 ms/step, H100)")
    return [r]


def _positive(kind):
    name = {"int": "an int", "float": "a float"}[kind.__name__]

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
        if not value > 0:  # also rejects nan
            raise argparse.ArgumentTypeError(f"expected {name} > 0, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


def main(argv=None):
    pos_int, pos_float = _positive(int), _positive(float)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--suite", choices=("qr", "peer", "scale", "gpu", "adaptive"), default="peer"
    )
    ap.add_argument("--n-max", type=pos_int, default=None, help="adaptive: skip larger rows")
    ap.add_argument("--n-min", type=pos_int, default=None, help="adaptive: skip smaller rows")
    ap.add_argument("--memory", action="store_true", help="adaptive: peak RSS in subprocesses")
    ap.add_argument("--memory-T", type=pos_int, nargs="+", default=None,
                    help="adaptive --memory: the T values of the memory children")
    ap.add_argument("--dtype", choices=("float32", "float64"), default=None,
                    help="adaptive: only rows of this precision")
    ap.add_argument("--T", type=pos_int, default=None)
    ap.add_argument("--n", type=pos_int, default=None)
    ap.add_argument("--gain", type=pos_float, default=None)
    ap.add_argument("--repeats", type=pos_int, default=REPEATS)
    ap.add_argument("--warmup", type=_nonnegative_int, default=1)
    ap.add_argument("--T-mid", type=pos_int, default=1500, help="scale: T of the N=512 row")
    ap.add_argument("--T-large", type=pos_int, default=1000, help="scale: T of the N=4096 row")
    ap.add_argument(
        "--lapack-threads", type=pos_int, default=None,
        help="BLAS threads per LAPACK call (jrnn.host.lapack_threads; default: OpenBLAS's)",
    )  # fmt: skip
    ap.add_argument("--child", nargs=7, default=None)
    args = ap.parse_args(argv)
    env = os.environ.get("JRNN_BENCH_LAPACK_THREADS")
    if args.lapack_threads is not None:
        try:
            jrnn.host.lapack_threads(args.lapack_threads)  # here and (via env) in the children
        except ValueError as err:
            ap.error(f"--lapack-threads: {err}")
        os.environ["JRNN_BENCH_LAPACK_THREADS"] = str(args.lapack_threads)
    elif env:
        try:
            jrnn.host.lapack_threads(int(env))
        except ValueError as err:
            ap.error(f"JRNN_BENCH_LAPACK_THREADS={env!r}: {err}")
    if args.child:
        impl, dtype, n, k, T_, gain, rep = args.child
        return child(impl, dtype, int(n), int(k), int(T_), float(gain), int(rep))
    defaults = {"qr": (T, N, GAIN), "peer": (1000, 512, 2.0), "scale": (1000, 512, 2.0),
                "gpu": (200, 4096, 2.0), "adaptive": (40, 512, 2.0)}[args.suite]  # fmt: skip
    args.T = defaults[0] if args.T is None else args.T
    args.n = defaults[1] if args.n is None else args.n
    args.gain = defaults[2] if args.gain is None else args.gain
    suite = {"qr": qr_suite, "peer": peer_suite, "scale": scale_suite, "gpu": gpu_suite,
             "adaptive": adaptive_suite}  # fmt: skip
    return suite[args.suite](args)


if __name__ == "__main__":
    main()
