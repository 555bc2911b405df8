"""Issue 33 (reliability, round 3): the kinds whose right answer is a value, not an error.

The kinds that must raise are rows of the table in tests/test_bad_inputs.py; here are the
ones where the fix is the right number (or a documented NaN).
"""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn import theory


def test_critical_gain_sigmoid_with_bias_is_a_true_crossing():
    # chi of sigmoid grows like sigma_w, so sigma_b = 5 has a critical gain (12.04):
    # the value is right, and NaN comes only when the bracket misses the crossing.
    g = theory.critical_gain("sigmoid", 5.0)
    assert abs(float(theory.mean_field("sigmoid", g, 5.0).chi) - 1.0) < 1e-6
    assert np.isnan(float(theory.critical_gain("sigmoid", 5.0, upper=10.0)))


def test_mean_field_odd_num_points_agrees_with_even():
    odd = float(theory.mean_field("tanh", 1.5, num_points=7).q_star)
    even = float(theory.mean_field("tanh", 1.5, num_points=16).q_star)
    assert abs(odd - even) < 1e-5 * even


def test_kaplan_yorke_sorts_the_spectrum_and_returns_floats():
    ky = jrnn.diagnostics.kaplan_yorke_dimension
    assert float(ky(jnp.array([-1.0, -0.2, 0.5]))) == float(ky(jnp.array([0.5, -0.2, -1.0])))
    assert abs(float(ky(jnp.array([0.5, -0.2, -1.0]))) - 2.3) < 1e-6
    out = ky(jnp.array([1, -2]))
    assert jnp.issubdtype(out.dtype, jnp.floating) and abs(float(out) - 1.5) < 1e-12


def test_accuracy_under_jit_gives_nan_for_labels_out_of_range():
    acc = jax.jit(jrnn.tasks.accuracy)
    assert np.isnan(float(acc(jnp.zeros((2, 3)), jnp.array([0, 7]))))
    assert float(acc(jnp.eye(3)[:2], jnp.array([0, 1]))) == 1.0


def test_penalty_is_called_like_the_loss_it_is():
    cell = jrnn.cells.elman(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jnp.ones((5, 3))
    pen = jrnn.penalties.jacobian_norm_penalty(cell)
    assert float(pen(params, xs)) == float(pen.fn(params, xs))


def test_lstm_forget_bias_none_or_zero_leaves_the_bias_to_bias_init():
    key = jax.random.key(0)
    uniform = jrnn.initializers.uniform(-1.0, 1.0)
    plain = jrnn.cells.lstm(2, forget_bias=None, bias_init=uniform).init(key, 3)["b_h"]
    zero = jrnn.cells.lstm(2, forget_bias=0, bias_init=uniform).init(key, 3)["b_h"]
    raw = uniform(jax.random.split(key, 3)[2], (8,))
    np.testing.assert_array_equal(plain, raw)
    np.testing.assert_array_equal(zero, raw)
    one = jrnn.cells.lstm(2, bias_init=uniform).init(key, 3)["b_h"]
    np.testing.assert_array_equal(one[2:4], 1.0)


def test_a_kill_mid_delete_leaves_no_half_deleted_step(tmp_path, monkeypatch):
    from jrnn import checkpoint

    state = {"a": jnp.arange(3.0)}
    checkpoint.save(tmp_path, state, step=1, max_to_keep=1)

    class Killed(Exception):
        pass

    def killed(path, ignore_errors=False):  # the process dies inside rmtree
        os.remove(os.path.join(path, "_CHECKPOINT_METADATA"))
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(checkpoint.shutil, "rmtree", killed)
        with pytest.raises(Killed):
            checkpoint.save(tmp_path, state, step=2, max_to_keep=1)
    assert checkpoint.all_steps(tmp_path) == [2]
    checkpoint.save(tmp_path, state, step=3, max_to_keep=1)  # finishes the deletion
    assert sorted(os.listdir(tmp_path)) == ["3"]


def test_checkpoint_python_scalar_leaves_round_trip(tmp_path):
    from jrnn import checkpoint

    state = {"lr": 0.5, "count": 3, "flag": True, "w": jnp.arange(3.0)}
    checkpoint.save(tmp_path, state, step=1)
    template = {"lr": 0.0, "count": 0, "flag": False, "w": jnp.zeros(3)}
    restored, _ = checkpoint.restore(tmp_path, template)
    assert restored["lr"] == 0.5 and type(restored["lr"]) is float
    assert restored["count"] == 3 and type(restored["count"]) is int
    assert restored["flag"] is True
    np.testing.assert_array_equal(restored["w"], state["w"])


@pytest.mark.parametrize("method", ["auto", jrnn.Scan(), jrnn.Fused()])
def test_bfloat16_inputs_run_as_their_float32_values(method):
    cell = jrnn.cells.elman(4)
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float32), cell.init(jax.random.key(0), 2))
    xs = jax.random.normal(jax.random.key(1), (3, 5, 2)).astype(jnp.bfloat16)
    carry, hs = jrnn.unroll(cell, params, xs, method=method)
    _, ref = jrnn.unroll(cell, params, xs.astype(jnp.float32), method=method)
    assert hs.dtype == jnp.float32
    np.testing.assert_array_equal(hs, ref)  # bfloat16 -> float32 is exact
    loss = lambda p, x: jrnn.unroll(cell, p, x, method=method)[1].sum()
    g = jax.grad(loss)(params, xs)
    g_ref = jax.grad(loss)(params, xs.astype(jnp.float32))
    chex.assert_trees_all_close(g, g_ref, rtol=1e-6)


def test_fit_vmapped_seeds_skip_nonfinite_trains_the_others_on():
    from jrnn import tasks, train

    model = jrnn.models.rnn(jrnn.cells.elman(4), 1)
    opt = optax.adam(1e-2)
    step = train.make_train_step(model.apply, tasks.mse, opt, skip_nonfinite=True)
    vstep = jax.jit(jax.vmap(step))
    keys = jax.random.split(jax.random.key(0), 3)
    init = lambda k: jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), model.init(k, 2))
    states = jax.vmap(lambda k: train.init_state(init(k), opt, k))(keys)
    poison = jnp.asarray([0.0, jnp.nan, 0.0])  # seed 1 sees NaN inputs at step 2

    def batch(key, t):
        x, y = jax.vmap(lambda k: tasks.adding(k, 4, 6, dtype=jnp.float64))(key)
        bad = poison if t == 1 else jnp.zeros(3)
        return x + bad[:, None, None, None], y

    with pytest.warns(RuntimeWarning, match=r"step 2: seed\(s\) \[1\].*skipped"):
        res = train.fit(vstep, states, batch, steps=4)
    assert not res.diverged and res.history["step"] == [1, 2, 3, 4]
    assert res.history["skipped"][1] == [False, True, False]
    assert sum(map(sum, res.history["skipped"])) == 1
    # the other seeds trained exactly as they would alone; seed 1 skipped one update
    clean = train.fit(vstep, states, lambda k, t: batch(k, 0), steps=4)
    for s in (0, 2):
        np.testing.assert_allclose(np.asarray(res.history["loss"])[:, s],
                                   np.asarray(clean.history["loss"])[:, s], rtol=1e-12)
    assert all(bool(jnp.all(jnp.isfinite(leaf)))
               for leaf in jax.tree_util.tree_leaves(res.state.params))
