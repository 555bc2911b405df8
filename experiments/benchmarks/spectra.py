"""Per-step spectra: ``jrnn.diagnostics.singular_values`` vs ``jnp.linalg.svd``.

Times ``singular_values`` (each method) against ``jnp.linalg.svd(compute_uv=False)``
on the same float32 batch in the same process, reports the max relative error on
singular values ``>= 1e-3 sigma_max`` against float64 ``numpy.linalg.svd``, and
times the Jacobian stack itself (``step_jacobians``, T x n x n).

Run: ``python -m experiments.benchmarks.spectra [--batch 512 --n 128 --repeats 5]``.
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)  # float64 Gram for float32 input

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jrnn  # noqa: E402
from experiments.benchmarks._common import compare, machine, table  # noqa: E402

BATCH, N, T_JAC, N_JAC, REPEATS = 512, 128, 512, 128, 5


def _matrices(batch: int, n: int, seed: int = 0) -> jax.Array:
    """Jacobian-like float32 matrices: diag(tanh'(a)) W with gain 1.2 (condition ~1e3)."""
    k_w, k_a = jax.random.split(jax.random.key(seed))
    W = 1.2 * jax.random.normal(k_w, (batch, n, n), jnp.float32) / np.sqrt(n)
    d = 1.0 - jnp.tanh(2.0 * jax.random.normal(k_a, (batch, n, 1), jnp.float32)) ** 2
    return (d * W).astype(jnp.float32)


def _max_relative_error(sv, J) -> float:
    ref = np.linalg.svd(np.asarray(J, np.float64), compute_uv=False)
    mask = ref >= 1e-3 * ref[..., :1]
    return float(np.max(np.abs(np.asarray(sv, np.float64) - ref)[mask] / ref[mask]))


def main(argv=None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--T", type=int, default=T_JAC, help="steps for the Jacobian stack")
    ap.add_argument("--n-jac", type=int, default=N_JAC, help="hidden size for the stack")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args(argv)

    J = _matrices(args.batch, args.n)
    fns = {"jnp.linalg.svd (baseline)": jax.jit(lambda a: jnp.linalg.svd(a, compute_uv=False))}
    for method in ("auto", "sturm", "gram", "augmented"):
        fns[f"singular_values({method})"] = jax.jit(
            lambda a, m=method: jrnn.diagnostics.singular_values(a, method=m)
        )
    fns["eigvalsh(J^T J) float32"] = jax.jit(
        lambda a: jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(jnp.swapaxes(a, -1, -2) @ a), 0))[
            ..., ::-1
        ]
    )
    times = compare({k: (lambda f=f: f(J)) for k, f in fns.items()}, args.repeats, args.warmup)
    errors = {k: _max_relative_error(f(J), J) for k, f in fns.items()}

    cell = jrnn.cells.elman(args.n_jac, "tanh")
    params = cell.init(jax.random.key(1), 8)
    xs = jax.random.normal(jax.random.key(2), (args.T, 8), jnp.float32)
    jac = jax.jit(lambda p, x: jrnn.diagnostics.step_jacobians(cell, p, x))
    jac_fwd = jax.jit(lambda p, x: jrnn.diagnostics.step_jacobians(cell, p, x, method="jacfwd"))
    jt = compare(
        {"analytic": lambda: jac(params, xs), "jacfwd": lambda: jac_fwd(params, xs)},
        args.repeats,
        args.warmup,
    )

    base = times["jnp.linalg.svd (baseline)"]
    rows = [[k, f"{1e3 * t:.1f}", f"{base / t:.2f}x", f"{errors[k]:.1e}"] for k, t in times.items()]
    print(f"# singular values: {args.batch} float32 matrices {args.n}x{args.n}; {machine()}")
    print(f"# median of {args.repeats}; error: max rel. on sigma >= 1e-3 sigma_max vs float64")
    print(table(["method", "median ms", "speed vs svd", "max rel err"], rows))
    print(f"\n# step_jacobians, elman(tanh) T={args.T}, n={args.n_jac}, float32")
    print(
        table(
            ["method", "median ms", "fraction of svd time"],
            [[k, f"{1e3 * t:.1f}", f"{t / base:.3f}"] for k, t in jt.items()],
        )
    )
    return {**times, **{f"jacobians_{k}": t for k, t in jt.items()}}


if __name__ == "__main__":
    main()
