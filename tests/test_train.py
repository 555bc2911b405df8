"""Trainer: the step equals a hand-written optax update, clipping and the
recorded gradient norm follow Pascanu et al., the NaN guard stops at the right
step and keeps the last good state, fit is deterministic and resumes exactly."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn import tasks, train

T, D = 6, 2
MODEL = jrnn.models.rnn(jrnn.cells.elman(4), 1)


def batch_fn(key, t):
    return tasks.adding(key, 4, T, dtype=jnp.float64)


def setup(opt=None, **kw):
    opt = opt or optax.adam(1e-2)
    step = train.make_train_step(MODEL.apply, tasks.mse, opt, **kw)
    state = train.init_state(init64(jax.random.key(0)), opt, jax.random.key(1))
    return step, state, opt


def init64(key):
    """float64 params (tests run with x64), so cross-checks can be tight."""
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), _init(key, D))


_init = jax.jit(MODEL.init, static_argnums=1)


def test_step_matches_handwritten_optax_update_with_clipping():
    clip = 0.05
    step, state, opt = setup(clip_norm=clip)
    batch = batch_fn(jax.random.key(2), 0)
    new, metrics = step(state, batch)

    @jax.jit
    def reference(params):  # the textbook update: chain(clip, adam)
        loss_fn = lambda p: tasks.mse(MODEL.apply(p, batch[0]), batch[1])
        value, grads = jax.value_and_grad(loss_fn)(params)
        ref_opt = optax.chain(optax.clip_by_global_norm(clip), opt)
        updates, _ = ref_opt.update(grads, ref_opt.init(params), params)
        return value, grads, optax.apply_updates(params, updates)

    value, grads, ref_params = reference(state.params)
    chex.assert_trees_all_close(new.params, ref_params, rtol=1e-10)
    np.testing.assert_allclose(metrics["loss"], value, rtol=1e-10)
    # grad_norm is the norm before clipping, and it really was clipped.
    gn = np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in jax.tree_util.tree_leaves(grads)))
    np.testing.assert_allclose(metrics["grad_norm"], gn, rtol=1e-10)
    assert gn > clip
    assert int(new.step) == 1 and bool(metrics["finite"])
    chex.assert_trees_all_equal(new.rng, state.rng)


def test_unclipped_step_differs_from_clipped():
    step_c, state, _ = setup(clip_norm=1e-3)
    step_u, _, _ = setup()
    batch = batch_fn(jax.random.key(2), 0)
    opt = optax.sgd(1.0)
    s = train.init_state(state.params, opt, state.rng)
    a, _ = train.make_train_step(MODEL.apply, tasks.mse, opt, clip_norm=1e-3)(s, batch)
    b, m = train.make_train_step(MODEL.apply, tasks.mse, opt)(s, batch)
    # SGD with lr 1: the clipped update has norm exactly clip_norm.
    diff = jax.tree_util.tree_map(lambda x, y: x - y, a.params, s.params)
    np.testing.assert_allclose(optax.tree.norm(diff), 1e-3, rtol=1e-10)
    diff_u = jax.tree_util.tree_map(lambda x, y: x - y, b.params, s.params)
    np.testing.assert_allclose(optax.tree.norm(diff_u), m["grad_norm"], rtol=1e-10)


def test_loss_must_be_scalar():
    step = train.make_train_step(MODEL.apply, lambda p, y: (p - y) ** 2, optax.sgd(0.1))
    _, state, _ = setup(optax.sgd(0.1))
    with pytest.raises(ValueError, match="loss must return a scalar"):
        step(state, batch_fn(jax.random.key(0), 0))
    with pytest.raises(ValueError, match="clip_norm"):
        train.make_train_step(MODEL.apply, tasks.mse, optax.sgd(0.1), clip_norm=0.0)


def test_skip_nonfinite_keeps_params_and_advances_step():
    step, state, _ = setup(skip_nonfinite=True)
    x, y = batch_fn(jax.random.key(2), 0)
    new, m = step(state, (x.at[0, 0, 0].set(jnp.nan), y))
    assert not bool(m["finite"])
    chex.assert_trees_all_equal(new.params, state.params)
    chex.assert_trees_all_equal(new.opt_state, state.opt_state)
    assert int(new.step) == 1


def test_nan_guard_stops_naming_step_and_keeps_last_good_state():
    step, state, _ = setup()

    def poisoned(key, t):
        x, y = batch_fn(key, t)
        return (x * jnp.nan if t == 3 else x), y  # the 4th update (step 4) is bad

    with pytest.warns(RuntimeWarning, match="step 4"):
        res = train.fit(step, state, poisoned, steps=10)
    assert res.diverged and "step 4" in res.reason and "step 3" in res.reason
    assert int(res.state.step) == 3 and res.history["step"] == [1, 2, 3]
    clean = train.fit(step, state, batch_fn, steps=3)
    chex.assert_trees_all_equal(res.state.params, clean.state.params)
    chex.assert_tree_all_finite(res.state.params)


def test_fit_deterministic_with_eval_and_callback():
    step, state, _ = setup()
    seen = []
    eval_batch = batch_fn(jax.random.key(9), 0)
    eval_fn = lambda p: {"mse": tasks.mse(MODEL.apply(p, eval_batch[0]), eval_batch[1])}
    a = train.fit(
        step,
        state,
        batch_fn,
        steps=7,
        eval_fn=eval_fn,
        eval_every=3,
        callback=lambda s, m: seen.append((s, sorted(m))),
    )
    b = train.fit(step, state, batch_fn, steps=7, eval_fn=eval_fn, eval_every=3)
    assert a.history == b.history and a.eval_history == b.eval_history
    chex.assert_trees_all_equal(a.state, b.state)
    assert a.eval_history["step"] == [3, 6, 7]
    assert [s for s, _ in seen] == list(range(1, 8))
    assert "time" in seen[0][1] and "eval_mse" in seen[2][1] and "eval_mse" not in seen[0][1]
    assert len(a.step_times) == 7 and "time" not in a.history
    # fit really trains: the loss history is the step's loss on fold_in(rng, t).
    _, m0 = step(state, batch_fn(jax.random.fold_in(state.rng, 0), 0))
    assert a.history["loss"][0] == float(m0["loss"])


def test_fit_resumes_exactly_from_checkpoint(tmp_path):
    step, state, _ = setup()
    full = train.fit(step, state, batch_fn, steps=8)
    d = tmp_path / "ckpt"
    part = train.fit(step, state, batch_fn, steps=5, checkpoint_dir=d, checkpoint_every=2)
    assert jrnn.checkpoint.all_steps(d) == [4, 5]
    rest = train.fit(step, state, batch_fn, steps=8, checkpoint_dir=d, checkpoint_every=2)
    assert part.resumed_from is None and rest.resumed_from == 5
    chex.assert_trees_all_equal(rest.state, full.state)
    assert rest.history == full.history
    again = train.fit(step, state, batch_fn, steps=8, checkpoint_dir=d)  # already done
    assert again.resumed_from == 8 and again.history == full.history


def test_fit_over_a_dataset_visits_every_example_once_per_epoch():
    N, bs = 10, 3
    x = jnp.arange(N, dtype=jnp.float64)[:, None, None] * jnp.ones((1, T, D))
    y = jnp.arange(N, dtype=jnp.float64)[:, None]
    step, state, _ = setup()
    batch_of, total = train._data_source((x, y), state, None, 2, bs)
    assert total == 2 * (N // bs)
    for epoch in range(2):
        ids = np.concatenate(
            [np.asarray(batch_of(state.rng, epoch * 3 + i)[1])[:, 0] for i in range(3)]
        )
        assert len(set(ids.tolist())) == 9  # distinct examples, the remainder dropped
    res = train.fit(step, state, (x, y), epochs=2, batch_size=bs)
    assert res.history["step"][-1] == 6


def test_fit_vmapped_over_seeds():
    step, _, opt = setup(skip_nonfinite=True)
    keys = jax.random.split(jax.random.key(0), 3)
    states = jax.vmap(lambda k: train.init_state(init64(k), opt, k))(keys)
    vstep = jax.jit(jax.vmap(step))
    vbatch = jax.jit(jax.vmap(lambda k: batch_fn(k, 0)))
    res = train.fit(vstep, states, lambda k, t: vbatch(k), steps=3, nan_guard=False)
    assert np.shape(res.history["loss"]) == (3, 3)
    single = train.fit(step, jax.tree_util.tree_map(lambda a: a[1], states), batch_fn, steps=3)
    np.testing.assert_allclose(
        np.asarray(res.history["loss"])[:, 1], single.history["loss"], rtol=1e-10
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(data=batch_fn), "steps"),
        (dict(data=batch_fn, steps=3, epochs=1), "epochs"),
        (dict(data=(jnp.zeros((5, T, D)), jnp.zeros((5, 1))), epochs=1), "batch_size"),
        (
            dict(data=(jnp.zeros((5, T, D)), jnp.zeros((5, 1))), epochs=1, batch_size=6),
            "batch_size",
        ),
        (dict(data=(jnp.zeros((5, T, D)), jnp.zeros((4, 1))), epochs=1, batch_size=2), "data"),
        (dict(data=batch_fn, steps=-1), "steps"),
        (dict(data=batch_fn, steps=2, eval_every=-1), "eval_every"),
    ],
)
def test_fit_bad_arguments(kwargs, name):
    step, state, _ = setup()
    data = kwargs.pop("data")
    with pytest.raises(ValueError, match=name):
        train.fit(step, state, data, **kwargs)
