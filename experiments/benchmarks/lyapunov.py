"""Lyapunov spectra: ``jrnn.diagnostics.lyapunov_spectrum`` vs a plain Householder-QR scan.

Baselines, measured in the same process on the same float32 tanh network:
  * ``scan(J_t + QR)``: one ``lax.scan`` computing ``J_t`` and
    ``jnp.linalg.qr(J_t Q)`` per step (the textbook implementation);
  * ``scan(QR) on stack``: the same QR chain over precomputed Jacobians.
Errors are max ``|lambda_i - lambda_i^ref|`` against a float64 Householder run.
``reorth_every=4`` rows show checked blocking: with ``qr="mixed"`` (float64 chain) the
blocks pass their error check at this spectrum width; in float32 (``auto``) they fail it
and are redone step by step (slower, same accuracy).

Run: ``python -m experiments.benchmarks.lyapunov [--T 512 --n 128 --repeats 5]``.
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)  # float64 reference

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jrnn  # noqa: E402
from experiments.benchmarks._common import compare, machine, table  # noqa: E402

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


def main(argv=None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=T)
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--gain", type=float, default=GAIN)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    main()
