"""Checkpoints: bit-exact round trips, fingerprints that refuse another model
without touching its files, and a run killed with SIGKILL that, started again,
ends exactly like an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn import checkpoint, tasks, train


def make_state(hidden=3, cell=None, seed=0):
    model = jrnn.models.rnn(cell or jrnn.cells.lstm(hidden), 1)
    opt = optax.adam(1e-2)

    @jax.jit
    def build(key):
        params = model.init(key, 2)
        state = train.init_state(params, opt, jax.random.key(seed + 1))
        # Non-trivial optimizer state (Adam moments, count) and step.
        grads = jax.tree_util.tree_map(jnp.ones_like, params)
        updates, opt_state = opt.update(grads, state.opt_state, params)
        return state._replace(
            params=optax.apply_updates(params, updates), opt_state=opt_state, step=state.step + 1
        )

    return build(jax.random.key(seed))


def _tree_snapshot(path):
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, path)] = open(p, "rb").read()
    return out


def test_round_trip_is_bit_exact_including_key_and_optimizer_state(tmp_path):
    state = make_state()
    checkpoint.save(tmp_path, state, extra={"history": {"loss": [0.1, float("nan")]}})
    assert checkpoint.latest_step(tmp_path) == 1
    template = make_state(seed=7)  # same structure, other values
    restored, extra = checkpoint.restore(tmp_path, template)
    chex.assert_trees_all_equal(restored.params, state.params)
    chex.assert_trees_all_equal(restored.opt_state, state.opt_state)
    assert int(restored.step) == 1
    assert jax.dtypes.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(state.rng))
    assert extra["history"]["loss"][0] == 0.1 and np.isnan(extra["history"]["loss"][1])
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)


def test_max_to_keep_latest_and_resume(tmp_path):
    state = make_state()
    assert checkpoint.latest_step(tmp_path / "none") is None
    assert checkpoint.resume(tmp_path / "none", state) is None
    for s in (2, 4, 6):
        checkpoint.save(tmp_path, state, step=s, max_to_keep=2)
    assert checkpoint.all_steps(tmp_path) == [4, 6]
    restored, _ = checkpoint.resume(tmp_path, state)
    chex.assert_trees_all_equal(restored.params, state.params)
    with pytest.raises(ValueError, match="already exists"):
        checkpoint.save(tmp_path, state, step=6)
    with pytest.raises(ValueError, match="step must be one of"):
        checkpoint.restore(tmp_path, state, step=2)


def test_different_model_is_refused_and_nothing_is_overwritten(tmp_path):
    state = make_state(hidden=3)
    checkpoint.save(tmp_path, state, config={"task": "adding", "T": 6})
    before = _tree_snapshot(tmp_path)
    other = make_state(hidden=4)
    with pytest.raises(ValueError, match="different model"):
        checkpoint.save(tmp_path, other, step=2, config={"task": "adding", "T": 6})
    with pytest.raises(ValueError, match="different model"):
        checkpoint.restore(tmp_path, other, config={"task": "adding", "T": 6})
    with pytest.raises(ValueError, match="config differs"):
        checkpoint.save(tmp_path, state, step=2, config={"task": "adding", "T": 7})
    gru = make_state(cell=jrnn.cells.gru(3))
    with pytest.raises(ValueError, match="different model"):
        checkpoint.resume(tmp_path, gru, config={"task": "adding", "T": 6})
    assert _tree_snapshot(tmp_path) == before
    # fit refuses too, before training a step.
    model = jrnn.models.rnn(jrnn.cells.lstm(4), 1)
    step = train.make_train_step(model.apply, tasks.mse, optax.adam(1e-2))
    with pytest.raises(ValueError, match="different model"):
        train.fit(
            step,
            other,
            lambda k, t: tasks.adding(k, 4, 6),
            steps=3,
            checkpoint_dir=tmp_path,
            config={"task": "adding", "T": 6},
        )
    assert _tree_snapshot(tmp_path) == before


def test_fingerprint_contents():
    tree = {"w": jnp.zeros((2, 3), jnp.float32), "k": jax.random.key(0)}
    fp = checkpoint.fingerprint(tree, {"a": (1, 2)})
    assert fp["config"] == {"a": [1, 2]}
    assert ["['w']", [2, 3], "float32"] in fp["leaves"]
    with pytest.raises(ValueError, match="config"):
        checkpoint.fingerprint({}, {"f": object()})


CHILD = textwrap.dedent(
    """
    # Trains a small GRU into the checkpoint directory argv[1] (resuming from it),
    # then once more from scratch, uninterrupted, into argv[1] + "_ref"; saves both.
    import json, sys, time
    import jax, numpy as np, optax
    import jrnn
    ckpt, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    model = jrnn.models.rnn(jrnn.cells.gru(4), 1)
    opt = optax.adam(1e-2)
    step = jrnn.train.make_train_step(model.apply, jrnn.tasks.mse, opt, clip_norm=1.0)
    state = jrnn.train.init_state(model.init(jax.random.key(0), 2), opt, jax.random.key(1))
    gen = jax.jit(lambda k: jrnn.tasks.adding(k, 8, 8))
    ex, ey = jrnn.tasks.adding(jax.random.key(2), 16, 8)
    ev = jax.jit(lambda p: jrnn.tasks.mse(model.apply(p, ex), ey))
    for name, d in (("resumed", ckpt), ("reference", ckpt + "_ref")):
        res = jrnn.train.fit(step, state, lambda k, t: gen(k), steps=30,
                             eval_fn=lambda p: {"mse": ev(p)}, eval_every=5,
                             callback=lambda s, m: time.sleep(delay),
                             checkpoint_dir=d, checkpoint_every=3, config={"run": "kill"})
        leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(res.state.params)]
        np.savez(f"{out}_{name}.npz", *leaves)
        json.dump({"history": res.history, "eval": res.eval_history,
                   "resumed_from": res.resumed_from, "step": int(res.state.step)},
                  open(f"{out}_{name}.json", "w"))
    """
)


def _committed_steps(path):
    return [n for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []


def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ckpt = tmp_path / "ckpt"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = lambda delay: [sys.executable, str(script), str(ckpt), str(tmp_path / "out"), str(delay)]
    victim = subprocess.Popen(cmd(0.1), env=env)  # slowed down so it is killed mid-training
    try:
        deadline = time.time() + 90
        while not _committed_steps(ckpt):
            assert victim.poll() is None, "the child finished before it could be killed"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    killed_at = checkpoint.latest_step(ckpt)
    assert 0 < killed_at < 30 and not os.path.exists(str(ckpt) + "_ref")
    # The same command again: resumes from the newest committed checkpoint, then
    # runs the uninterrupted reference in a fresh directory.
    subprocess.run(cmd(0.0), env=env, check=True, timeout=180)

    got = json.load(open(tmp_path / "out_resumed.json"))
    want = json.load(open(tmp_path / "out_reference.json"))
    assert want["resumed_from"] is None
    assert got["resumed_from"] is not None and got["resumed_from"] >= killed_at
    assert got["step"] == want["step"] == 30
    assert got["history"] == want["history"]  # loss, grad_norm, finite: exactly
    assert got["eval"] == want["eval"]
    a, b = np.load(tmp_path / "out_resumed.npz"), np.load(tmp_path / "out_reference.npz")
    assert a.files == b.files
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


# ----------------------------------------------------------------- reliability (issue 16)


def _fit(model, tmp_path, steps, seed=0, **kw):
    opt = optax.sgd(0.05)
    step = train.make_train_step(model.apply, tasks.mse, opt)
    state = train.init_state(model.init(jax.random.key(seed), 2), opt, jax.random.key(seed + 1))
    data = lambda k, t: tasks.adding(k, 4, 5)
    return train.fit(step, state, data, steps=steps, checkpoint_dir=tmp_path, **kw)


def test_model_description_is_part_of_the_fingerprint(tmp_path):
    tanh = jrnn.models.rnn(jrnn.cells.elman(3, "tanh"), 1)
    relu = jrnn.models.rnn(jrnn.cells.elman(3, "relu"), 1)
    assert train.make_train_step(tanh.apply, tasks.mse, optax.sgd(0.1)).jrnn_model == (
        "Model(cell=elman(hidden_size=3, activation=tanh), output_size=1, "
        "output_activation=identity, return_sequences=False)"
    )
    _fit(tanh, tmp_path, 2, checkpoint_every=1, max_to_keep=None)
    before = _tree_snapshot(tmp_path)
    with pytest.raises(ValueError, match="model differs.*activation=tanh.*activation=relu"):
        _fit(relu, tmp_path, 4)
    assert _tree_snapshot(tmp_path) == before
    # The same model resumes.
    assert _fit(tanh, tmp_path, 3).resumed_from == 2


@pytest.mark.parametrize("damage", ["truncated_array", "broken_json", "no_fingerprint"])
def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, damage):
    import shutil

    model = jrnn.models.rnn(jrnn.cells.elman(3), 1)
    _fit(model, tmp_path, 2, checkpoint_every=1)
    newest = tmp_path / "2"
    if damage == "truncated_array":
        for root, _, files in os.walk(newest / "state"):
            for f in files:
                if os.path.basename(root) == "d":
                    open(os.path.join(root, f), "r+b").truncate(5)
    elif damage == "broken_json":
        (newest / "meta" / "metadata").write_text("{broken")
    else:
        shutil.rmtree(newest / "fingerprint")
    with pytest.warns(RuntimeWarning, match="step 2 .* damaged"):
        res = _fit(model, tmp_path, 3)
    assert res.resumed_from == 1 and int(res.state.step) == 3
    assert (tmp_path / "2.corrupt").is_dir() and checkpoint.latest_step(tmp_path) == 3
    # A resumed run equals an uninterrupted one: the damaged step is redone exactly.
    ref = _fit(model, tmp_path / "ref", 3)
    assert res.history == ref.history
    chex.assert_trees_all_equal(res.state.params, ref.state.params)


def test_only_damaged_checkpoints_raise_clearly(tmp_path):
    state = make_state()
    checkpoint.save(tmp_path, state, step=1)
    (tmp_path / "1" / "meta" / "metadata").write_text("{broken")
    with pytest.raises(ValueError, match="no intact checkpoint.*step 1"):
        checkpoint.restore(tmp_path, state)


def test_max_to_keep_zero_is_rejected_and_deletes_nothing(tmp_path):
    state = make_state()
    checkpoint.save(tmp_path, state, step=1)
    with pytest.raises(ValueError, match="max_to_keep"):
        checkpoint.save(tmp_path, state, step=2, max_to_keep=0)
    assert checkpoint.all_steps(tmp_path) == [1]


def test_directory_past_the_requested_steps_raises(tmp_path):
    model = jrnn.models.rnn(jrnn.cells.elman(3), 1)
    _fit(model, tmp_path, 3)
    with pytest.raises(ValueError, match="already at step 3, past steps=2"):
        _fit(model, tmp_path, 2)
    assert _fit(model, tmp_path, 3).resumed_from == 3  # asking for as many steps is fine


def test_unwritable_directory_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    calls = []
    model = jrnn.models.rnn(jrnn.cells.elman(3), 1)
    with pytest.raises(ValueError, match="checkpoint_dir .* is not writable"):
        _fit(model, blocker / "ckpt", 2, callback=lambda s, m: calls.append(s))
    assert calls == []
    if os.geteuid() != 0:  # root writes through read-only permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(ValueError, match="not writable"):
            _fit(model, ro, 2, callback=lambda s, m: calls.append(s))
        assert calls == []


def test_save_leaves_a_foreign_directory_untouched_temporaries_included(tmp_path):
    state = make_state(hidden=3)
    checkpoint.save(tmp_path, state, step=1)
    leftover = tmp_path / "2.orbax-checkpoint-tmp-1234"
    leftover.mkdir()
    (leftover / "partial").write_text("someone's half-written save")
    before = _tree_snapshot(tmp_path)
    with pytest.raises(ValueError, match="different model"):
        checkpoint.save(tmp_path, make_state(hidden=4), step=3)
    assert _tree_snapshot(tmp_path) == before and leftover.is_dir()
