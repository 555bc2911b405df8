"""jrnn.diagnostics.hessian_spectrum: Lanczos on Hessian-vector products vs dense jax.hessian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jrnn


def _problem(seed=0):
    """A small RNN regression loss: elman(3, tanh) + linear readout, P = 3 + 9 + 3 + 3 + 1."""
    cell = jrnn.cells.elman(3, "tanh")
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    params = {"cell": cell.init(k1, 1), "w": jax.random.normal(k2, (3,)), "c": jnp.zeros(())}
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    xs = jax.random.normal(k3, (4, 8, 1))
    ys = jax.random.normal(k4, (4,))

    def loss(p, batch):
        xs, ys = batch
        h, _ = jrnn.unroll(cell, p["cell"], xs)
        return jnp.mean((h @ p["w"] + p["c"] - ys) ** 2)

    return loss, params, (xs, ys)


def _dense(loss, params, batch):
    flat, unravel = ravel_pytree(params)
    H = jax.hessian(lambda x: loss(unravel(x), batch))(flat)
    w, U = np.linalg.eigh(np.asarray(H))
    order = np.argsort(-np.abs(w))
    return w[order], U[:, order]


def test_full_lanczos_equals_the_dense_hessian():
    loss, params, batch = _problem()
    w, U = _dense(loss, params, batch)
    P = w.size
    spec = jrnn.diagnostics.hessian_spectrum(loss, params, batch, k=P, iterations=P)
    np.testing.assert_allclose(spec.eigenvalues, w, rtol=1e-8, atol=1e-10 * abs(w[0]))
    for i in range(3):  # well separated: the eigenvectors agree up to sign
        assert abs(float(spec.eigenvectors[i] @ U[:, i])) > 1 - 1e-8
    np.testing.assert_allclose(jnp.sum(spec.eigenvectors**2, axis=1), 1.0, rtol=1e-12)
    total = sum(spec.leaf_mass[n] for n in spec.leaf_mass)
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)
    assert set(spec.leaf_mass) == {"c", "cell/W_hh", "cell/W_xh", "cell/b_h", "w"}


def test_partial_lanczos_top_eigenvalues_within_their_residuals():
    loss, params, batch = _problem(1)
    w, _ = _dense(loss, params, batch)
    spec = jrnn.diagnostics.hessian_spectrum(loss, params, batch, k=2, iterations=12,
                                             key=jax.random.key(3))
    assert spec.iterations == 12
    for theta, r in zip(np.asarray(spec.eigenvalues), np.asarray(spec.residuals), strict=True):
        assert np.min(np.abs(w - theta)) <= r + 1e-10
    np.testing.assert_allclose(spec.eigenvalues[0], w[0], rtol=1e-6)


def test_concentration_measures_on_a_known_hessian():
    d = jnp.array([10.0, 1.0, 0.5, 0.2] + [0.1] * 96)
    loss = lambda p, _: 0.5 * jnp.sum(d * p["a"] ** 2)  # noqa: E731
    spec = jrnn.diagnostics.hessian_spectrum(loss, {"a": jnp.ones(100)}, k=1, top=1)
    np.testing.assert_allclose(spec.eigenvalues, [10.0], rtol=1e-10)
    np.testing.assert_allclose(spec.participation, [0.01], rtol=1e-6)  # one coordinate of 100
    np.testing.assert_allclose(spec.top_mass, [1.0], rtol=1e-6)
    M = jnp.full((100, 100), 1.0 / 100)  # top eigenvector spread evenly
    spread = jrnn.diagnostics.hessian_spectrum(
        lambda p, _: 0.5 * p["a"] @ M @ p["a"], {"a": jnp.ones(100)}, k=1, top=1)
    np.testing.assert_allclose(spread.participation, [1.0], rtol=1e-6)
    np.testing.assert_allclose(spread.top_mass, [0.01], rtol=1e-6)


def test_bad_arguments_and_nan():
    loss, params, batch = _problem()
    with pytest.raises(ValueError, match=r"k \(at most the parameter count P = 19\).*got 20"):
        jrnn.diagnostics.hessian_spectrum(loss, params, batch, k=20)
    with pytest.raises(ValueError, match="iterations"):
        jrnn.diagnostics.hessian_spectrum(loss, params, batch, k=4, iterations=2)
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar loss, got .*\(4,\)"):
        jrnn.diagnostics.hessian_spectrum(lambda p, b: jnp.ones(4) * p["c"], params, batch)
    with pytest.raises(TypeError, match="key"):
        jrnn.diagnostics.hessian_spectrum(loss, params, batch, key=0)
    bad = dict(params, c=jnp.asarray(jnp.nan))
    spec = jrnn.diagnostics.hessian_spectrum(loss, bad, batch, k=2)
    assert np.all(np.isnan(spec.eigenvalues)) and np.all(np.isnan(spec.participation))


def test_lanczos_equals_the_dense_hessian_of_a_small_nonlinear_loss():
    A = jax.random.normal(jax.random.key(5), (7, 6), jnp.float64)

    def loss(p, batch):
        z = jnp.tanh(A @ p["w"] + p["b"]) - batch
        return jnp.sum(z**2) + 0.1 * jnp.sum(p["w"] ** 4)

    params = {"w": jax.random.normal(jax.random.key(6), (6,), jnp.float64),
              "b": jnp.ones(7, jnp.float64) * 0.3}
    batch = jnp.linspace(-1.0, 1.0, 7)
    w, U = _dense(loss, params, batch)
    spec = jrnn.diagnostics.hessian_spectrum(loss, params, batch, k=13, iterations=13)
    np.testing.assert_allclose(spec.eigenvalues, w, rtol=1e-9, atol=1e-11 * abs(w[0]))
    assert abs(float(spec.eigenvectors[0] @ U[:, 0])) > 1 - 1e-9
    part = jrnn.diagnostics.hessian_spectrum(loss, params, batch, k=1, iterations=8)
    assert abs(float(part.eigenvalues[0]) - w[0]) <= float(part.residuals[0]) + 1e-9
