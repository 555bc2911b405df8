"""step_jacobians: analytic == jacfwd == jacrev == central finite differences (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jrnn
from jrnn.diagnostics import step_jacobians

T, D = 5, 2

CELLS = {
    "elman_tanh": lambda: jrnn.cells.elman(4, "tanh"),
    "elman_sigmoid": lambda: jrnn.cells.elman(4, "sigmoid"),
    "elman_relu": lambda: jrnn.cells.elman(4, "relu"),
    "elman_gelu": lambda: jrnn.cells.elman(4, "gelu"),
    "elman_sin": lambda: jrnn.cells.elman(4, "sin"),
    "residual": lambda: jrnn.cells.residual(4, "tanh", alpha=0.5),
    "irnn": lambda: jrnn.cells.irnn(4),
    "indrnn": lambda: jrnn.cells.indrnn(4, "relu"),
    "lstm": lambda: jrnn.cells.lstm(3),
    "gru": lambda: jrnn.cells.gru(3),
    "stack": lambda: jrnn.stack([jrnn.cells.elman(3, "tanh"), jrnn.cells.lstm(2)]),
    "stack_residual": lambda: jrnn.stack(
        [jrnn.cells.gru(3), jrnn.cells.elman(3, "softplus")], residual=True
    ),
}


def _setup(name, batch=None, seed=0):
    cell = CELLS[name]()
    k_p, k_x, k_b = jax.random.split(jax.random.key(seed), 3)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(k_p, D))
    # Random biases so ReLU units sit away from their kink and gates are not symmetric.
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(k_b, len(leaves))
    leaves = [l + 0.3 * jax.random.normal(k, l.shape, l.dtype) for l, k in zip(leaves, keys)]
    params = jax.tree_util.tree_unflatten(treedef, leaves)
    shape = (T, D) if batch is None else (batch, T, D)
    xs = jax.random.normal(k_x, shape, jnp.float64)
    return cell, params, xs


def _finite_difference_jacobians(cell, params, xs, h=1e-6):
    """Independent reference: central differences of cell.step, one step at a time."""
    carry = cell.initial_carry(params)
    _, unravel = ravel_pytree(carry)

    @jax.jit
    def fd_step(s, x):
        f = lambda v: ravel_pytree(cell.step(params, unravel(v), x)[0])[0]
        E = h * jnp.eye(s.size, dtype=s.dtype)
        plus, minus = jax.vmap(f)(s[None, :] + E), jax.vmap(f)(s[None, :] - E)
        return ((plus - minus) / (2 * h)).T, f(s)

    out, s = [], ravel_pytree(carry)[0]
    for t in range(xs.shape[0]):
        J, s = fd_step(s, xs[t])
        out.append(np.asarray(J))
    return np.stack(out)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_all_methods_agree_with_finite_differences(name):
    cell, params, xs = _setup(name)
    fd = _finite_difference_jacobians(cell, params, xs)
    analytic = cell.linear is not None and cell.linear.jacobian is not None
    methods = ["auto", "jacfwd", "jacrev"] + (["analytic"] if analytic else [])
    all_methods = jax.jit(lambda p, x: {m: step_jacobians(cell, p, x, method=m) for m in methods})
    results = {m: np.asarray(J) for m, J in all_methods(params, xs).items()}
    S = cell.state_size
    for m, J in results.items():
        assert J.shape == (T, S, S), m
        np.testing.assert_allclose(J, results["jacfwd"], atol=1e-12, err_msg=m)
        np.testing.assert_allclose(J, fd, atol=1e-7, err_msg=m)
    assert np.max(np.abs(fd)) > 1e-2  # a nontrivial Jacobian


def test_batch_and_carry_match_per_sequence():
    cell, params, xs = _setup("lstm", batch=3)
    k = jax.random.split(jax.random.key(5), 2)
    carry = (
        jax.random.normal(k[0], (3, 3), jnp.float64),
        jax.random.normal(k[1], (3, 3), jnp.float64),
    )
    J = step_jacobians(cell, params, xs, carry=carry)
    assert J.shape == (3, T, 6, 6)
    for b in range(3):
        one = step_jacobians(cell, params, xs[b], carry=(carry[0][b], carry[1][b]))
        np.testing.assert_allclose(J[b], one, atol=1e-14)
    # The carry really is used: a different start gives a different first Jacobian.
    zero_start = step_jacobians(cell, params, xs[0])
    assert np.max(np.abs(zero_start[0] - J[0, 0])) > 1e-3


def test_jit_gives_same_result():
    cell, params, xs = _setup("gru")
    jitted = jax.jit(lambda p, x: step_jacobians(cell, p, x))
    np.testing.assert_allclose(jitted(params, xs), step_jacobians(cell, params, xs), atol=1e-14)


def test_bad_arguments_raise():
    cell, params, xs = _setup("stack")
    with pytest.raises(ValueError, match="analytic.*stack"):
        step_jacobians(cell, params, xs, method="analytic")
    with pytest.raises(ValueError, match="method must be one of"):
        step_jacobians(cell, params, xs, method="numeric")
    with pytest.raises(ValueError, match="xs must have feature size"):
        step_jacobians(cell, params, jnp.ones((T, D + 1)))
    with pytest.raises(ValueError, match="carry"):
        step_jacobians(
            jrnn.cells.elman(4),
            jrnn.cells.elman(4).init(jax.random.key(0), D),
            jnp.ones((T, D)),
            carry=jnp.zeros(5),
        )
