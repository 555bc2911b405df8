"""jrnn.parallel: sweeps equal a Python loop, are spread over devices, and the
data-parallel step equals the single-device step.

Multi-device checks run in a subprocess with 4 forced CPU devices (the device
count is fixed when JAX starts); the script reports numbers as JSON and the
assertions live here.
"""

import json
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn import parallel

# --------------------------------------------------------------------------- helpers


def _norm_fn(gain, seed):
    w = gain * jax.random.normal(jax.random.key(seed), (5, 5), dtype=jnp.float64)
    return {"norm": jnp.linalg.norm(w), "row": w[0]}


def _loop(fn, **axes):
    """Reference: a plain Python double loop, stacked."""
    (n1, a1), (n2, a2) = axes.items()
    fn = jax.jit(fn)
    rows = [[fn(**{n1: x, n2: y}) for y in a2] for x in a1]
    return jax.tree.map(
        lambda *leaves: np.stack(leaves),
        *[jax.tree.map(lambda *ls: np.stack(ls), *row) for row in rows],
    )


# --------------------------------------------------------------------------- multi-device

_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import jax.numpy as jnp, numpy as np, optax
    import jrnn
    from jrnn import parallel

    out = {"n_devices": jax.device_count()}

    def f(gain, seed):
        w = gain * jax.random.normal(jax.random.key(seed), (5, 5), dtype=jnp.float64)
        return {"norm": jnp.linalg.norm(w), "row": w[0]}

    def loop(gains, seeds):
        f1 = jax.jit(f)
        pts = [[f1(g, s) for s in seeds] for g in gains]
        return (np.array([[p["norm"] for p in row] for row in pts]),
                np.array([[p["row"] for p in row] for row in pts]))

    def shards(a):
        return {"devices": sorted({s.device.id for s in a.addressable_shards}),
                "shapes": sorted({tuple(s.data.shape) for s in a.addressable_shards}),
                "spec": str(a.sharding.spec)}

    # 4 x 3 grid: 12 points, no padding; first axis divisible by 4 -> sharded.
    g, s = jnp.linspace(0.5, 2.0, 4), jnp.arange(3)
    res = parallel.sweep(f, gain=g, seed=s)
    n, r = loop(g, s)
    out["even"] = {"err": float(max(np.abs(res["norm"] - n).max(), np.abs(res["row"] - r).max())),
                   "shape": list(res["row"].shape), **shards(res["norm"])}

    # 3 x 5 grid: 15 points padded to 16; no axis divisible by 4.
    g3, s5 = jnp.array([0.3, 1.0, 1.7]), jnp.arange(10, 15)
    res = parallel.sweep(f, gain=g3, seed=s5)
    n, r = loop(g3, s5)
    out["padded"] = {"err": float(max(np.abs(res["norm"] - n).max(),
                                      np.abs(res["row"] - r).max())),
                     "shape": list(res["row"].shape)}
    # chunked: 16 padded points, 4 per device, lax.map over 2 chunks of 2 per device
    res_c = parallel.sweep(f, gain=g3, seed=s5, chunk_size=8)
    out["padded_chunked_err"] = float(max(np.abs(res_c["norm"] - n).max(),
                                          np.abs(res_c["row"] - r).max()))

    # 1-D grid of 6 on a 2-device sub-mesh: padded to 6 (no pad), sharded in 2 blocks.
    mesh2 = parallel.make_mesh("grid", jax.devices()[:2])
    res = parallel.sweep(lambda x: jnp.sin(x) * x, mesh=mesh2, x=jnp.arange(6.0))
    out["submesh"] = {"err": float(np.abs(res - np.sin(np.arange(6.0)) * np.arange(6.0)).max()),
                      **shards(res)}

    # Data-parallel training of a small Elman model == single-device training.
    model = jrnn.models.rnn(jrnn.cells.elman(6), 1)
    params = model.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (8, 7, 2))
    ys = jax.random.normal(jax.random.key(2), (8, 1))
    opt = optax.adam(1e-2)

    def step(state, batch):
        p, o = state
        x, y = batch
        loss, grads = jax.value_and_grad(
            lambda q: jnp.mean((model.apply(q, x) - y) ** 2))(p)
        updates, o = opt.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), {"loss": loss}

    single = jax.jit(step)
    dp = parallel.shard_step(step)
    s1 = s2 = (params, opt.init(params))
    losses1, losses2 = [], []
    for _ in range(3):
        s1, m1 = single(s1, (xs, ys))
        s2, m2 = dp(s2, (xs, ys))
        losses1.append(float(m1["loss"]))
        losses2.append(float(m2["loss"]))
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), s1[0], s2[0]))
    hlo = dp.jitted.lower(s2, (xs, ys)).compile().as_text()
    leaf = jax.tree.leaves(s2[0])[0]
    out["dp"] = {"param_err": max(diffs), "loss_err": float(np.abs(
        np.array(losses1) - np.array(losses2)).max()), "losses": losses2,
        "all_reduce": "all-reduce" in hlo,
        "param_devices": len(leaf.sharding.device_set),
        "param_replicated": bool(leaf.sharding.is_fully_replicated)}
    try:
        dp(s2, (xs[:6], ys[:6]))
        out["dp_bad_batch"] = None
    except ValueError as e:
        out["dp_bad_batch"] = str(e)
    print("JSON" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")][-1]
    return json.loads(line[4:])


def test_subprocess_has_four_devices(four_devices):
    assert four_devices["n_devices"] == 4


def test_sweep_equals_loop_and_is_spread_over_devices(four_devices):
    r = four_devices["even"]
    assert r["err"] < 1e-12
    assert r["shape"] == [4, 3, 5]
    assert r["devices"] == [0, 1, 2, 3]
    assert r["shapes"] == [[1, 3]]  # one row of the 4 x 3 grid per device
    assert r["spec"] in ("P('grid',)", "PartitionSpec('grid',)")


def test_sweep_pads_grid_not_multiple_of_device_count(four_devices):
    r = four_devices["padded"]
    assert r["err"] < 1e-12
    assert r["shape"] == [3, 5, 5]
    assert four_devices["padded_chunked_err"] < 1e-12


def test_sweep_on_sub_mesh(four_devices):
    r = four_devices["submesh"]
    assert r["err"] < 1e-12
    assert r["devices"] == [0, 1]
    assert r["shapes"] == [[3]]


def test_data_parallel_step_equals_single_device_step(four_devices):
    r = four_devices["dp"]
    assert r["param_err"] < 1e-6
    assert r["loss_err"] < 1e-6
    assert r["losses"][-1] < r["losses"][0]  # it trains
    assert r["all_reduce"]  # the batch really is split: gradients are all-reduced
    assert r["param_devices"] == 4 and r["param_replicated"]
    msg = four_devices["dp_bad_batch"]
    assert msg is not None and "batch size 6" in msg and "4 devices" in msg


# --------------------------------------------------------------------------- in-process


def test_sweep_single_device_equals_loop():
    g, s = jnp.array([0.5, 1.0, 2.0]), jnp.arange(4)
    res = parallel.sweep(_norm_fn, gain=g, seed=s)
    ref = _loop(_norm_fn, gain=g, seed=s)
    chex.assert_trees_all_close(res, ref, rtol=1e-12, atol=1e-12)
    chex.assert_shape(res["row"], (3, 4, 5))


def test_sweep_chunked_equals_unchunked_and_one_axis():
    def fn(x):
        return jnp.stack([jnp.tanh(x), x**2])

    x = jnp.linspace(-2.0, 2.0, 7)
    full = parallel.sweep(fn, x=x)
    chunked = parallel.sweep(fn, x=x, chunk_size=3)
    chex.assert_trees_all_close(full, chunked)
    np.testing.assert_allclose(full, np.stack([np.tanh(x), x**2], axis=1), rtol=1e-14)


def test_sweep_runs_a_jrnn_diagnostic_grid():
    """A realistic grid: largest singular value of W_hh over gain x seed."""

    def top_sv(gain, seed):
        w = jrnn.initializers.scaled_normal(gain)(jax.random.key(seed), (8, 8), jnp.float64)
        return jnp.linalg.svd(w, compute_uv=False)[0]

    res = parallel.sweep(top_sv, gain=jnp.array([0.5, 1.5]), seed=jnp.arange(3))
    ref = _loop(top_sv, gain=jnp.array([0.5, 1.5]), seed=jnp.arange(3))
    np.testing.assert_allclose(res, ref, rtol=1e-10)
    np.testing.assert_allclose(res[1] / res[0], 3.0, rtol=1e-10)  # linear in gain


def test_sweep_compiles_once_for_same_fn_and_shapes():
    traces = []

    def fn(a):
        traces.append(1)
        return a * 2.0

    parallel.sweep(fn, a=jnp.arange(3.0))
    out = parallel.sweep(fn, a=jnp.arange(3.0) + 1.0)
    np.testing.assert_allclose(out, 2.0 * (np.arange(3.0) + 1.0))
    assert len(traces) == 1


@pytest.mark.parametrize(
    "axes, match",
    [
        ({}, "at least one grid axis"),
        ({"gain": jnp.ones((2, 3))}, r"'gain' must be 1-D.*\(2, 3\)"),
        ({"gain": jnp.array(1.0)}, r"'gain' must be 1-D.*\(\)"),
        ({"seed": jnp.zeros((0,))}, "'seed' is empty"),
        ({"act": np.array(["tanh", "relu"])}, "'act' must be numeric.*functools.partial"),
    ],
)
def test_sweep_bad_axes(axes, match):
    with pytest.raises(ValueError, match=match):
        parallel.sweep(lambda **kw: 0.0, **axes)


def test_sweep_bad_options():
    with pytest.raises(ValueError, match="chunk_size"):
        parallel.sweep(lambda x: x, x=jnp.ones(3), chunk_size=0)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        parallel.sweep(lambda x: x, x=jnp.ones(3), mesh="cpu")
    with pytest.raises(TypeError, match="fn must be callable"):
        parallel.sweep(3, x=jnp.ones(3))


def test_shard_step_single_device_equals_jit():
    opt = optax.sgd(0.1)

    def step(state, batch):
        w, o = state
        x, y = batch
        loss, g = jax.value_and_grad(lambda v: jnp.mean((x @ v - y) ** 2))(w)
        u, o = opt.update(g, o)
        return (optax.apply_updates(w, u), o), {"loss": loss}

    x = jax.random.normal(jax.random.key(0), (6, 3), jnp.float64)
    y = x @ jnp.array([1.0, -2.0, 0.5])
    w = jnp.zeros((3,))
    s1 = s2 = (w, opt.init(w))
    dp = parallel.shard_step(step)
    for _ in range(3):
        s1, m1 = jax.jit(step)(s1, (x, y))
        s2, m2 = dp(s2, (x, y))
    chex.assert_trees_all_close(s1, s2, rtol=1e-12)
    with pytest.raises(ValueError, match="batch dimension at axis 2"):
        parallel.shard_step(step, batch_axis=2)(s1, (x, y))
    with pytest.raises(ValueError, match="batch_axis"):
        parallel.shard_step(step, batch_axis=-1)


def test_distributed_helpers():
    assert parallel.initialize_distributed() is False  # single process: no-op
    with pytest.raises(ValueError, match="num_processes"):
        parallel.initialize_distributed("localhost:1234", 0, 0)
    with pytest.raises(ValueError, match=r"process_id must lie in \[0, num_processes\)"):
        parallel.initialize_distributed("localhost:1234", 2, 2)
    mesh = parallel.make_mesh("data")
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    assert parallel.local_devices_mesh().size == jax.local_device_count()
    with pytest.raises(ValueError, match="axis_name"):
        parallel.make_mesh("")
