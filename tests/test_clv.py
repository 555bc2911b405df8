"""Covariant Lyapunov vectors: eigenvectors of non-normal linear maps, covariance on a 2-D map."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.diagnostics import covariant_lyapunov_vectors, step_jacobians


def _linear(A):
    n = A.shape[0]
    cell = jrnn.cells.elman(n, "identity", use_bias=False)
    return cell, {"W_xh": jnp.ones((n, 1)), "W_hh": jnp.asarray(A, jnp.float64)}


def test_clvs_of_a_non_normal_matrix_are_its_eigenvectors():
    """A = P diag(2, 1, 0.4) P^-1 with non-orthogonal P: the CLVs are P's columns (QR
    vectors are not), ordered by |eigenvalue|, at every step of the window."""
    P = np.array([[1.0, 0.8, 0.3], [0.0, 1.0, 0.6], [0.5, 0.0, 1.0]])
    A = P @ np.diag([2.0, 1.0, 0.4]) @ np.linalg.inv(P)
    cell, params = _linear(A)
    clv = covariant_lyapunov_vectors(cell, params, jnp.zeros((90, 1)), warmup=30, backward=40)
    E = P / np.linalg.norm(P, axis=0)
    cos = np.abs(np.einsum("si,tsi->ti", E, np.asarray(clv.vectors)))
    np.testing.assert_allclose(cos, 1.0, atol=1e-9)
    np.testing.assert_allclose(clv.exponents, np.log([2.0, 1.0, 0.4]), atol=1e-9)
    # The Benettin vectors differ: Q's second column is orthogonal to the first CLV.
    assert np.min(np.abs(E[:, 0] @ E[:, 1])) > 0.3


def test_known_tangency_angle_of_a_2d_map():
    """2-D map with eigenvectors (1, 0) and (cos a, sin a): the CLV angle is a at every step."""
    a = 0.15
    P = np.array([[1.0, np.cos(a)], [0.0, np.sin(a)]])
    A = P @ np.diag([1.5, 0.7]) @ np.linalg.inv(P)
    cell, params = _linear(A)
    clv = covariant_lyapunov_vectors(cell, params, jnp.zeros((60, 1)), warmup=10, backward=30)
    np.testing.assert_allclose(clv.angles, a, atol=1e-9)


def test_clvs_are_covariant_on_a_chaotic_2d_map():
    """Nonlinear driven 2-D tanh map: J_t v_{t-1} is parallel to v_t for each CLV, and the
    mean log stretch along v_i equals lambda_i."""
    cell = jrnn.cells.elman(2, "tanh")
    params = {
        "W_xh": jnp.array([[1.0], [0.5]]),
        "W_hh": jnp.array([[2.5, -1.8], [1.9, 0.4]]),
        "b_h": jnp.zeros(2),
    }
    xs = jax.random.normal(jax.random.key(0), (160, 1), jnp.float64)
    tr, wu, bw = 10, 40, 50
    clv = covariant_lyapunov_vectors(cell, params, xs, transient=tr, warmup=wu, backward=bw)
    V = np.asarray(clv.vectors)  # (W, 2, 2)
    Js = np.asarray(step_jacobians(cell, params, xs))[tr + wu : tr + wu + V.shape[0]]
    img = np.einsum("tij,tjk->tik", Js[1:], V[:-1])
    stretch = np.linalg.norm(img, axis=1)
    cos = np.abs(np.sum(img * V[1:], axis=1)) / stretch
    np.testing.assert_allclose(cos, 1.0, atol=1e-8)
    np.testing.assert_allclose(np.mean(np.log(stretch), axis=0), clv.exponents, atol=0.1)
    assert np.all((clv.angles >= 0) & (clv.angles <= np.pi / 2))


def test_bad_arguments():
    cell, params = _linear(np.eye(2))
    xs = jnp.zeros((10, 1))
    for kw, msg in (
        (dict(k=3), "k must be"),
        (dict(backward=10), "backward"),
        (dict(warmup=-1), "warmup"),
    ):
        with pytest.raises(ValueError, match=msg):
            covariant_lyapunov_vectors(cell, params, xs, **kw)
