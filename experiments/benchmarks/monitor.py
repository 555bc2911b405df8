"""Monitoring overhead: training with a snapshot every 100 steps against training without.

The model is the train-step benchmark's small configuration (a tanh Elman cell,
n = 128, batch 64, T = 256, the adding task's d = 2), trained with Adam by
:func:`jrnn.train.fit`. The monitor is ``jrnn.train.Monitor(xs, k=4)`` on a held-out
batch of 16 sequences of the same length, with its defaults (``probes=8``,
``sv_steps=4``): top-4 Lyapunov exponents, the propagation rate and
``log ||d s_T / d s_0||`` from an ``(S, 8)`` probe frame, ``sigma_1(J_t)`` at 4 steps
per sequence and unit health (:func:`jrnn.diagnostics.snapshot`). Measured 2026-12-07
on a shared 2-core CPU: 2.9% of training time at one snapshot per 100 steps (379%
before the snapshot stopped calling LAPACK inside its scan; BENCHMARKS.md).

Two figures, both measured in one process, round-robin (robust to load that changes
while it runs):

* **steady state**: median time of one compiled train step ``t_step`` and of one
  compiled snapshot ``t_snap``; the overhead of monitoring every ``N`` steps is
  ``t_snap / (N t_step)``;
* **end to end**: ``fit(steps=S)`` with and without ``monitor=`` (the monitored run
  evaluates at ``0, N, 2N, ...``, so ``S / N + 1`` snapshots, and compiles the
  snapshot once per process and cell: the first monitored fit pays it, reported apart).

Usage::

    python -m experiments.benchmarks.monitor                 # defaults above
    python -m experiments.benchmarks.monitor --every 100 --steps 300 --repeats 3
    python -m experiments.benchmarks.monitor --config tiny   # smoke test
"""

from __future__ import annotations

import argparse
import time

import jax
import optax

import jrnn
from experiments.benchmarks._common import block, compare, machine, table

CONFIGS = {
    "small": dict(B=64, T=256, n=128, held_out=16, k=4),
    "tiny": dict(B=4, T=8, n=8, held_out=2, k=2),  # smoke test
}


def setup(B: int, T: int, n: int, held_out: int, k: int, seed: int = 0):
    """The train step, its initial state, the batch function and the monitor."""
    model = jrnn.models.rnn(jrnn.cells.elman(n, "tanh"), 1)
    opt = optax.adam(1e-3)
    step = jrnn.train.make_train_step(model.apply, jrnn.tasks.mse, opt, clip_norm=1.0)
    state = jrnn.train.init_state(model.init(jax.random.key(seed), 2), opt,
                                  jax.random.key(seed + 1))
    batch = jax.jit(lambda key: jrnn.tasks.adding(key, B, T))
    xs = jrnn.tasks.adding(jax.random.key(seed + 2), held_out, T)[0]
    return model, step, state, (lambda key, t: batch(key)), jrnn.train.Monitor(xs, k=k)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=tuple(CONFIGS), default="small")
    p.add_argument("--every", type=int, default=100, help="steps between snapshots")
    p.add_argument("--steps", type=int, default=300, help="steps of each end-to-end fit")
    p.add_argument("--repeats", type=int, default=3, help="end-to-end fits per variant")
    p.add_argument("--step-repeats", type=int, default=21, help="timed steps / snapshots")
    a = p.parse_args(argv)
    cfg = CONFIGS[a.config]
    model, step, state, batch_fn, monitor = setup(**cfg)
    snap = jax.jit(monitor.build(step))
    x, y = batch_fn(jax.random.key(5), 0)
    params = state.params
    times = compare({"train step": lambda: step(state, (x, y)),
                     "snapshot": lambda: snap(params)}, repeats=a.step_repeats, warmup=2)
    steady = times["snapshot"] / (a.every * times["train step"])
    print(f"train step {1e3 * times['train step']:.2f} ms, snapshot {1e3 * times['snapshot']:.1f} "
          f"ms: steady-state overhead every {a.every} steps {100 * steady:.1f}%", flush=True)

    def fit(with_monitor: bool):
        kw = dict(monitor=monitor, monitor_every=a.every) if with_monitor else {}
        t0 = time.perf_counter()
        block(jrnn.train.fit(step, state, batch_fn, steps=a.steps, **kw).state)
        return time.perf_counter() - t0

    fit(False)  # compiles the train step
    compile_s = fit(True) - fit(False)  # the first monitored fit compiles the snapshot
    plain, monitored = [], []
    for _ in range(a.repeats):  # round-robin
        plain.append(fit(False))
        monitored.append(fit(True))
    e2e = min(monitored) / min(plain) - 1
    rows = [
        ["train step (ms)", f"{1e3 * times['train step']:.2f}"],
        ["snapshot (ms)", f"{1e3 * times['snapshot']:.1f}"],
        [f"steady-state overhead, every {a.every} steps", f"{100 * steady:.1f}%"],
        [f"fit {a.steps} steps, no monitor (s, best of {a.repeats})", f"{min(plain):.2f}"],
        [f"fit {a.steps} steps, monitor every {a.every} (s)", f"{min(monitored):.2f}"],
        ["end-to-end overhead", f"{100 * e2e:.1f}%"],
        ["snapshot compilation, once per process (s)", f"{compile_s:.1f}"],
    ]
    print(f"monitor overhead, {a.config} config {cfg}; {machine()}")
    print(table(["quantity", "value"], rows))
    return {"train_step_s": times["train step"], "snapshot_s": times["snapshot"],
            "steady_overhead": steady, "end_to_end_overhead": e2e,
            "fit_plain_s": min(plain), "fit_monitored_s": min(monitored),
            "compile_s": compile_s}


if __name__ == "__main__":
    main()
