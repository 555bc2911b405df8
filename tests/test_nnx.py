"""jrnn.nnx: NNX modules compute the pure path and train exactly like pure optax."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jrnn
import jrnn.nnx as jnnx


def _xs(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float64)


@pytest.mark.parametrize(
    "cell",
    [jrnn.cells.elman(5, "relu"), jrnn.stack([jrnn.cells.gru(4), jrnn.cells.lstm(3)])],
    ids=lambda c: c.name,
)
def test_rnn_equals_pure_unroll(cell):
    layer = jnnx.RNN(cell, 2, rngs=nnx.Rngs(0))
    params = layer.params()
    chex.assert_trees_all_equal_structs(
        params, jax.eval_shape(lambda k: cell.init(k, 2), jax.random.key(0))
    )
    xs = _xs((3, 6, 2))
    np.testing.assert_array_equal(layer(xs), jrnn.unroll(cell, params, xs)[1])
    if cell.name == "stack":
        lengths = jnp.array([6, 2, 4])
        np.testing.assert_array_equal(
            layer(xs, lengths), jrnn.unroll(cell, params, xs, lengths=lengths)[1]
        )
        carry, hs = layer.unroll(xs[0], reverse=True)
        ref_carry, ref_hs = jrnn.unroll(cell, params, xs[0], reverse=True)
        chex.assert_trees_all_equal((carry, hs), (ref_carry, ref_hs))
    # one nnx.Param per leaf of the pure pytree, in the same structure
    n_params = len(jax.tree.leaves(nnx.state(layer, nnx.Param)))
    assert n_params == len(jax.tree.leaves(params))


def test_rnn_model_equals_pure_model():
    cells = [jrnn.cells.elman(6), jrnn.cells.elman(4)]
    model = jnnx.RNNModel(cells, 1, 2, rngs=nnx.Rngs(3), output_activation="tanh")
    pure = jrnn.models.rnn(cells, 2, output_activation="tanh")
    params = model.params()
    chex.assert_trees_all_equal_structs(
        params, jax.eval_shape(lambda k: pure.init(k, 1), jax.random.key(0))
    )
    xs = _xs((4, 10, 1))
    np.testing.assert_array_equal(model(xs), pure.apply(params, xs))
    assert model.cell.name == "stack"


def test_wrap_existing_params_and_set_params():
    sd = {
        "weight_ih_l0": np.random.default_rng(0).normal(size=(9, 2)),
        "weight_hh_l0": np.random.default_rng(1).normal(size=(9, 3)),
        "bias_ih_l0": np.zeros(9),
        "bias_hh_l0": np.ones(9),
    }
    cell, params = jrnn.interop.from_torch_state_dict(sd, "gru")
    layer = jnnx.RNN(cell, 2, params=params)
    xs = _xs((5, 2))
    np.testing.assert_array_equal(layer(xs), jrnn.unroll(cell, params, xs)[1])
    new = jax.tree.map(lambda p: 0.5 * p, params)
    layer.set_params(new)
    chex.assert_trees_all_equal(layer.params(), new)
    with pytest.raises(ValueError, match=r"params\['W_xh'\] has shape \(9, 2\), expected \(9, 4\)"):
        jnnx.RNN(cell, 4, params=params)
    with pytest.raises(ValueError, match="params must have the structure"):
        layer.set_params({"W_xh": params["W_xh"]})
    with pytest.raises(TypeError, match="rngs must be an nnx.Rngs"):
        jnnx.RNN(cell, 2)
    with pytest.raises(TypeError, match="cell must be a jrnn Cell"):
        jnnx.RNN("gru", 2, rngs=nnx.Rngs(0))


def test_nnx_training_matches_pure_optax():
    """nnx.Optimizer + nnx.value_and_grad under nnx.jit == optax on the pure pytree."""
    cells = [jrnn.cells.lstm(4)]
    model = jnnx.RNNModel(cells, 2, 1, rngs=nnx.Rngs(0))
    pure = model.model
    params = model.params()
    xs, ys = _xs((8, 7, 2)), _xs((8, 1), seed=2)
    tx = optax.adam(3e-2)

    def pure_loss(p):
        return jnp.mean((pure.apply(p, xs) - ys) ** 2)

    @jax.jit
    def pure_step(params, opt_state):
        loss, g = jax.value_and_grad(pure_loss)(params)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = tx.init(params)
    pure_losses = []
    for _ in range(4):
        params, opt_state, loss = pure_step(params, opt_state)
        pure_losses.append(float(loss))

    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(xs) - ys) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    nnx_losses = [float(step(model, optimizer)) for _ in range(4)]
    np.testing.assert_allclose(nnx_losses, pure_losses, rtol=1e-5)
    assert nnx_losses[-1] < nnx_losses[0]
    chex.assert_trees_all_close(model.params(), params, rtol=1e-5, atol=1e-6)


def test_nnx_grad_equals_jax_grad():
    layer = jnnx.RNN(jrnn.cells.gru(3), 2, rngs=nnx.Rngs(1))
    xs = _xs((4, 2))

    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(xs) ** 2)))(layer)
    pure = jax.jit(jax.grad(lambda p: jnp.sum(jrnn.unroll(layer.cell, p, xs)[1] ** 2)))(
        layer.params()
    )
    got = jax.tree.map(lambda v: v.get_value(), grads.weights, is_leaf=jnnx._is_variable)
    chex.assert_trees_all_close(dict(got), pure, rtol=1e-6)
