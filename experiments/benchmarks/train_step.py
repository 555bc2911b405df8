"""Training-step benchmark: forward + backward of an MSE loss on the last output.

For each cell (elman tanh, lstm, gru) it times, in one process and on the same
data, the gradient of ``mean((W_o h_T + b_o - y)^2)`` with respect to all
parameters for:

* ``flax``: ``flax.linen.RNN`` with ``SimpleCell`` / ``OptimizedLSTMCell`` / ``GRUCell``;
* ``plain scan``: a hand-written batch-major ``jax.lax.scan``;
* ``jrnn default``: ``jax.grad`` over :func:`jrnn.unroll` as a user calls it (``method="auto"``,
  here ``jrnn.Fused()``: batch-major, custom JVP whose linear tangent scan is transposed by the
  hand-written backward);
* ``jrnn reference``: ``method=jrnn.Scan()``, the readable per-example scan (vmapped cell);
* ``jrnn fused (in_loop|after)``: ``method=jrnn.Fused(backward="custom_vjp", weight_grads=...)``
  (hand-written custom VJP) with both weight-gradient schedules (the default one first);
* ``torch``: ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (cuDNN on a GPU), only if ``import torch``
  works.

Configurations: ``small`` B=64, T=256, d=1, n=128 (CPU and GPU) and
``large`` B=256, T=1024, d=32, n=512 (GPU). Prints medians (ms) and the
speed-up of every entry over flax.

Usage::

    python -m experiments.benchmarks.train_step                  # small, all cells
    python -m experiments.benchmarks.train_step --config large   # on a GPU
    python -m experiments.benchmarks.train_step --cells lstm --repeats 20
    python -m experiments.benchmarks.train_step --keep-host-buffers        # glibc reuse, all peers
    python -m experiments.benchmarks.train_step --host-devices 2           # both CPU cores
    python -m experiments.benchmarks.train_step --config large --impls "jrnn default" torch

``--host-devices N`` starts XLA with N host devices and runs every JAX peer
(flax, plain scan, jrnn) data-parallel over them, the batch split (shard_map);
PyTorch keeps its own threads. XLA:CPU runs each step's small product on one
core, so this is how a single JAX process uses a multi-core CPU for an RNN.
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp

import jrnn
from experiments.benchmarks._common import compare, machine, table
from jrnn.unrolling.fused import default_weight_grads

CONFIGS = {
    "small": dict(B=64, T=256, d=1, n=128),
    "large": dict(B=256, T=1024, d=32, n=512),
    "tiny": dict(B=4, T=8, d=2, n=8),  # smoke test
}
CELLS = ("elman", "lstm", "gru")


def _loss(out, y):
    return jnp.mean((out - y) ** 2)


# ----------------------------------------------------------------------------- flax


class _FlaxModel(nn.Module):
    kind: str
    features: int

    @nn.compact
    def __call__(self, xs):
        cell_cls = {"elman": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}
        hs = nn.RNN(cell_cls[self.kind](features=self.features))(xs)
        return nn.Dense(1)(hs[:, -1])


def flax_step(kind, n, key, xs):
    model = _FlaxModel(kind, n)
    params = model.init(key, xs)

    def loss(p, xs, y):
        return _loss(model.apply(p, xs), y)

    return jax.jit(jax.grad(loss)), params


# ----------------------------------------------------------------------------- plain


def plain_step(kind, n, key, xs):
    """A direct batch-major ``lax.scan`` (input projection inside the step)."""
    d = xs.shape[-1]
    G = {"elman": 1, "lstm": 4, "gru": 3}[kind] * n
    k1, k2, k3 = jax.random.split(key, 3)
    params = {
        "W_xh": jax.random.normal(k1, (G, d)) / jnp.sqrt(d),
        "W_hh": jax.random.normal(k2, (G, n)) / jnp.sqrt(n),
        "b_xh": jnp.zeros((G,)),
        "b_hh": jnp.zeros((G,)),
        "W_o": jax.random.normal(k3, (1, n)) / jnp.sqrt(n),
        "b_o": jnp.zeros((1,)),
    }

    def step(p, carry, x):
        gx = x @ p["W_xh"].T + p["b_xh"]
        h = carry[0] if kind == "lstm" else carry
        gh = h @ p["W_hh"].T + p["b_hh"]
        if kind == "elman":
            h = jnp.tanh(gx + gh)
            return h, h
        if kind == "lstm":
            i, f, g, o = jnp.split(gx + gh, 4, axis=-1)
            c = jax.nn.sigmoid(f) * carry[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h
        r = jax.nn.sigmoid(gx[:, :n] + gh[:, :n])
        z = jax.nn.sigmoid(gx[:, n : 2 * n] + gh[:, n : 2 * n])
        cand = jnp.tanh(gx[:, 2 * n :] + r * gh[:, 2 * n :])
        h = (1 - z) * cand + z * h
        return h, h

    def loss(p, xs, y):
        h0 = jnp.zeros((xs.shape[0], n))
        carry = (h0, h0) if kind == "lstm" else h0
        carry, _ = jax.lax.scan(lambda c, x: step(p, c, x), carry, jnp.swapaxes(xs, 0, 1))
        h = carry[0] if kind == "lstm" else carry
        return _loss(h @ p["W_o"].T + p["b_o"], y)

    return jax.jit(jax.grad(loss)), params


# ----------------------------------------------------------------------------- jrnn


def jrnn_step(kind, n, key, xs, *, method):
    """``jax.grad`` of the loss through ``jrnn.unroll(..., method=method)``."""
    cell = {"elman": jrnn.cells.elman, "lstm": jrnn.cells.lstm, "gru": jrnn.cells.gru}[kind](n)
    k1, k2 = jax.random.split(key)
    params = {
        "cell": cell.init(k1, xs.shape[-1]),
        "W_o": jax.random.normal(k2, (1, n)) / jnp.sqrt(n),
        "b_o": jnp.zeros((1,)),
    }

    def loss(p, xs, y):
        _, hs = jrnn.unroll(cell, p["cell"], xs, method=method)
        return _loss(hs[:, -1] @ p["W_o"].T + p["b_o"], y)

    return jax.jit(jax.grad(loss)), params


# ----------------------------------------------------------------------------- torch


def torch_fn(kind, cfg, threads=None):
    """A callable running one fwd+bwd of ``torch.nn.{RNN,LSTM,GRU}``, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    if threads:
        torch.set_num_threads(threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cls = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    rnn = cls(cfg["d"], cfg["n"], batch_first=True).to(dev)
    head = torch.nn.Linear(cfg["n"], 1).to(dev)
    xs = torch.randn(cfg["B"], cfg["T"], cfg["d"], device=dev)
    y = torch.randn(cfg["B"], 1, device=dev)

    def run():
        rnn.zero_grad()
        head.zero_grad()
        hs, _ = rnn(xs)
        loss = ((head(hs[:, -1]) - y) ** 2).mean()
        loss.backward()
        if dev == "cuda":
            torch.cuda.synchronize()

    return run


# ----------------------------------------------------------------------------- main


def _data_parallel(grad_fn):
    """``grad_fn(params, xs, y)`` data-parallel over all devices: ``jax.shard_map`` with the
    batch split, each device's gradient of its local mean loss averaged with ``pmean`` (the
    global mean gradient). GSPMD (``jax.jit`` with shardings) was slower here for every peer."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(jax.devices(), ("data",))
    local = lambda p, xs, y: jax.lax.pmean(grad_fn(p, xs, y), "data")
    return jax.jit(
        jax.shard_map(
            local, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P(),
            check_vma=False,
        )
    )  # fmt: skip


def _makers(kind, n, kp, xs, unroll):
    """Builders (name -> () -> (jitted grad, params)) of every implementation but torch."""
    default = default_weight_grads()
    other = "after" if default == "in_loop" else "in_loop"
    vjp = lambda **kw: jrnn.Fused(backward="custom_vjp", **kw)
    makers = {
        "flax": lambda: flax_step(kind, n, kp, xs),
        "plain scan": lambda: plain_step(kind, n, kp, xs),
        "jrnn default": lambda: jrnn_step(kind, n, kp, xs, method="auto"),
        "jrnn reference": lambda: jrnn_step(kind, n, kp, xs, method=jrnn.Scan()),
        f"jrnn fused ({default})": lambda: jrnn_step(kind, n, kp, xs, method=vjp()),
        f"jrnn fused ({other})": lambda: jrnn_step(kind, n, kp, xs, method=vjp(weight_grads=other)),
    }
    if unroll != 1:
        makers[f"jrnn fused unroll={unroll}"] = lambda: jrnn_step(
            kind, n, kp, xs, method=vjp(unroll=unroll)
        )
    return makers


def run(
    config="small",
    cells=CELLS,
    repeats=10,
    warmup=2,
    unroll=1,
    seed=0,
    torch_threads=None,
    impls=None,
):
    """Times every implementation; rows ``(cell, impl, ms, speed-up vs flax, vs torch)``.

    ``impls``: names to keep (``flax`` is always timed: the ratios are against it).
    """
    cfg = CONFIGS[config]
    key = jax.random.key(seed)
    kx, ky, kp = jax.random.split(key, 3)
    xs = jax.random.normal(kx, (cfg["B"], cfg["T"], cfg["d"]))
    y = jax.random.normal(ky, (cfg["B"], 1))
    rows = []
    for kind in cells:
        makers = _makers(kind, cfg["n"], kp, xs, unroll)
        keep = lambda name: impls is None or name == "flax" or name.split(" (")[0] in impls
        entries = {name: make() for name, make in makers.items() if keep(name)}
        if jax.device_count() > 1:  # --host-devices: every JAX peer data-parallel alike
            entries = {name: (_data_parallel(f), p) for name, (f, p) in entries.items()}
        fns = {name: (lambda f=f, p=p: f(p, xs, y)) for name, (f, p) in entries.items()}
        t_fn = torch_fn(kind, cfg, torch_threads) if keep("torch") else None
        if t_fn is not None:
            fns["torch"] = t_fn  # timed round-robin with the others, in the same process
        times = compare(fns, repeats, warmup)
        for name, t in times.items():
            vs_torch = times["torch"] / t if "torch" in times else float("nan")
            rows.append((kind, name, 1e3 * t, times["flax"] / t, vs_torch))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--unroll", type=int, default=1, help="also time fused with this unroll")
    parser.add_argument(
        "--impls",
        nargs="+",
        default=None,
        help="only these (e.g. 'jrnn default' torch); flax is always timed",
    )
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    parser.add_argument(
        "--keep-host-buffers",
        action="store_true",
        help="jrnn.host.keep_host_buffers() first (glibc heap reuse; applies to every peer)",
    )
    parser.add_argument(
        "--host-devices",
        type=int,
        default=None,
        help="split the CPU into this many XLA host devices and run every JAX peer "
        "data-parallel over them (batch split; sets XLA_FLAGS before JAX starts)",
    )
    args = parser.parse_args(argv)
    known = ("flax", "plain scan", "jrnn default", "jrnn reference", "jrnn fused", "torch")
    for name in args.impls or ():
        if name not in known:
            parser.error(f"--impls: unknown implementation {name!r}; expected some of {known}.")
    B = CONFIGS[args.config]["B"]
    if args.host_devices is not None and (args.host_devices < 1 or B % args.host_devices):
        parser.error(
            f"--host-devices must be a positive divisor of the batch size {B} of config "
            f"{args.config!r}, got {args.host_devices}."
        )
    if args.host_devices:
        import os

        flag = f"--xla_force_host_platform_device_count={args.host_devices}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    if args.keep_host_buffers:
        from jrnn.host import keep_host_buffers

        print(f"# keep_host_buffers() applied: {keep_host_buffers()}")
    cfg = CONFIGS[args.config]
    print(f"# train step (fwd+bwd, MSE on last output), config {args.config}: {cfg}")
    print(f"# {machine()}; medians of {args.repeats} after {args.warmup} warmup")
    if jax.device_count() > 1:
        print(f"# JAX peers data-parallel over {jax.device_count()} devices (batch split)")
    rows = run(
        args.config,
        args.cells,
        args.repeats,
        args.warmup,
        args.unroll,
        torch_threads=args.torch_threads,
        impls=args.impls,
    )
    print(
        table(
            ["cell", "implementation", "median ms", "speed-up vs flax", "vs torch"],
            [(c, i, f"{ms:.2f}", f"{r:.2f}x", f"{rt:.2f}x") for c, i, ms, r, rt in rows],
        )
    )
    return rows


if __name__ == "__main__":
    main()
