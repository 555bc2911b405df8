"""Monitored training: fit(..., monitor=, monitor_every=) rows at 0, N, 2N, ... equal the
snapshot of the parameters at those steps, are compiled once, survive a crash and resume
without loss or duplication, work for vmapped seeds, and reach TensorBoard."""

import glob
import json
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn import tasks, train
from jrnn.diagnostics import snapshot

T, D = 6, 2
MODEL = jrnn.models.rnn(jrnn.cells.elman(4), 1)
HELD_OUT = jax.random.normal(jax.random.key(7), (3, T, D), jnp.float64)


def batch_fn(key, t):
    return tasks.adding(key, 4, T, dtype=jnp.float64)


def init64(key):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), MODEL.init(key, D))


def setup():
    opt = optax.adam(1e-2)
    step = train.make_train_step(MODEL.apply, tasks.mse, opt)
    return step, train.init_state(init64(jax.random.key(0)), opt, jax.random.key(1)), opt


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_rows_at_0_N_2N_equal_snapshots(tmp_path):
    step, state, _ = setup()
    mon = train.Monitor(HELD_OUT, k=2)
    res = train.fit(step, state, batch_fn, steps=5, monitor=mon, monitor_every=2,
                    checkpoint_dir=tmp_path / "ck")
    assert res.monitor_history["step"] == [0, 2, 4]
    rows = read_jsonl(tmp_path / "ck" / "monitor.jsonl")
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert set(rows[0]) == {"step", *jrnn.diagnostics.snapshot_names(2)}
    ref0 = snapshot(MODEL.cell, state.params["cell"], HELD_OUT, k=2)
    for name, v in ref0.items():
        np.testing.assert_allclose(rows[0][name], float(v), rtol=1e-12, equal_nan=True)
    # the row at step 4 is the snapshot of the params after 4 updates
    four = train.fit(step, state, batch_fn, steps=4)
    ref4 = snapshot(MODEL.cell, four.state.params["cell"], HELD_OUT, k=2)
    np.testing.assert_allclose(rows[2]["lyap_1"], float(ref4["lyap_1"]), rtol=1e-12)
    assert rows[2]["lyap_1"] != rows[0]["lyap_1"]  # training moved the spectrum
    assert res.monitor_history["lyap_1"] == [r["lyap_1"] for r in rows]


def test_compiled_once_and_callback_sees_rows():
    step, state, _ = setup()
    traces, seen = [], []

    def mon(params):
        traces.append(1)
        return snapshot(MODEL.cell, params["cell"], HELD_OUT, k=1)

    res = train.fit(step, state, batch_fn, steps=6, monitor=mon, monitor_every=2,
                    callback=lambda s, info: seen.append((s, "monitor_lyap_1" in info)))
    assert res.monitor_history["step"] == [0, 2, 4, 6]
    assert len(traces) <= 2  # an eager shape check and one compilation, not one per row
    assert seen == [(s, s % 2 == 0) for s in range(1, 7)]


def test_crash_and_resume_no_lost_or_duplicate_rows(tmp_path):
    step, state, _ = setup()
    mon = train.Monitor(HELD_OUT, k=2, tensorboard=tmp_path / "tb")
    kw = dict(steps=8, monitor=mon, monitor_every=2, checkpoint_every=4,
              checkpoint_dir=tmp_path / "ck")

    def crash(s, info):
        if s == 6:  # the row at 6 is written, the checkpoint is still at 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(step, state, batch_fn, callback=crash, **kw)
    assert [r["step"] for r in read_jsonl(tmp_path / "ck" / "monitor.jsonl")] == [0, 2, 4, 6]
    res = train.fit(step, state, batch_fn, **kw)
    assert res.resumed_from == 4
    rows = read_jsonl(tmp_path / "ck" / "monitor.jsonl")
    assert [r["step"] for r in rows] == [0, 2, 4, 6, 8]
    whole = train.fit(step, state, batch_fn, steps=8, monitor=train.Monitor(HELD_OUT, k=2),
                      monitor_every=2)
    for name in ("lyap_1", "propagation_rate", "sv_max"):
        np.testing.assert_allclose([r[name] for r in rows], whole.monitor_history[name],
                                   rtol=1e-12)
    # TensorBoard: the steps written, the resumed file purging what followed the checkpoint
    events = _read_events(tmp_path / "tb")
    lyap = [(s, v) for s, tag, v in events if tag == "monitor/lyap_1"]
    assert [s for s, _ in lyap] == [0, 2, 4, 6, 6, 8]
    np.testing.assert_allclose(lyap[-1][1], rows[-1]["lyap_1"], rtol=1e-6)


def _read_events(directory):
    """(step, tag, value) of every scalar in the TFRecord event files (no TensorFlow)."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        data = open(path, "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            ev = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.append((ev.step, v.tag, v.simple_value))
    return out


def test_vmapped_seeds_on_one_dataset():
    step, _, opt = setup()
    keys = jax.random.split(jax.random.key(0), 2)
    states = jax.vmap(lambda k: train.init_state(init64(k), opt, k))(keys)
    vstep = jax.jit(jax.vmap(step, in_axes=(0, None)))  # every seed sees the same batch
    data_key = jax.random.key(11)
    shared = lambda k, t: batch_fn(jax.random.fold_in(data_key, t), t)
    mon = train.Monitor(HELD_OUT, k=2, cell=MODEL.cell)
    res = train.fit(vstep, states, shared, steps=2, monitor=mon, monitor_every=1,
                    nan_guard=False)
    assert np.shape(res.monitor_history["lyap_1"]) == (3, 2)
    one = jax.tree_util.tree_map(lambda a: a[1], states)
    single = train.fit(step, one, shared, steps=2, monitor=mon, monitor_every=1)
    np.testing.assert_allclose(np.asarray(res.monitor_history["lyap_1"])[:, 1],
                               single.monitor_history["lyap_1"], rtol=1e-10)
    res2 = train.fit(vstep, states, shared, steps=1, monitor=train.Monitor(HELD_OUT, k=2),
                     nan_guard=False)  # jax.jit(jax.vmap(step)) keeps step's jrnn_cell
    assert res2.monitor_history["lyap_1"][0] == res.monitor_history["lyap_1"][0]
    anonymous = jax.jit(jax.vmap(lambda st, b: step(st, b), in_axes=(0, None)))
    with pytest.raises(ValueError, match="cell"):
        train.fit(anonymous, states, shared, steps=1, monitor=train.Monitor(HELD_OUT))


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(monitor=train.Monitor(HELD_OUT), monitor_every=0), ValueError, "monitor_every"),
        (dict(monitor=3), TypeError, "monitor"),
        (dict(monitor=train.Monitor(HELD_OUT, k=9)), ValueError, "k must"),
        (dict(monitor=train.Monitor(HELD_OUT[..., :1])), ValueError, "xs"),
    ],
)
def test_bad_monitor_arguments(kwargs, exc, name):
    step, state, _ = setup()
    calls = []
    with pytest.raises(exc, match=name):
        train.fit(step, state, lambda k, t: calls.append(t) or batch_fn(k, t), steps=2,
                  **kwargs)
    assert calls == []  # raised before the first step


def test_readme_snippet_runs():
    """README "Diagnostics during training": a wrapped Flax GRU in an optax loop (2 steps)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("### Diagnostics during training", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "range(201)" in code
    code = code.replace("range(201)", "range(2)").replace("t % 100 == 0", "t % 1 == 0")
    with jax.numpy_rank_promotion("allow"):
        exec(compile(code, "README.md (Diagnostics during training)", "exec"), {})
