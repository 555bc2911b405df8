"""singular_values / eigenvalues against float64 numpy, including ill-conditioned stacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jrnn.diagnostics import eigenvalues, singular_values


def _conditioned(seed, batch, m, k, log10_cond):
    """float32 matrices U diag(s) V^T with singular values log-spaced over 10^log10_cond."""
    rng = np.random.default_rng(seed)
    r = min(m, k)
    out = []
    for _ in range(batch):
        U = np.linalg.qr(rng.standard_normal((m, r)))[0]
        V = np.linalg.qr(rng.standard_normal((k, r)))[0]
        s = np.logspace(0, -log10_cond, r) * rng.uniform(0.5, 2.0)
        out.append((U * s) @ V.T)
    return np.asarray(out, np.float32)


def _relative_error_on_significant(sv, J32):
    """max relative error over singular values >= 1e-3 sigma_max, vs float64 SVD of J32."""
    ref = np.linalg.svd(J32.astype(np.float64), compute_uv=False)
    mask = ref >= 1e-3 * ref[..., :1]
    return np.max(np.abs(np.asarray(sv, np.float64) - ref)[mask] / ref[mask])


@pytest.mark.parametrize(
    "method, log10_cond", [("sturm", 3), ("sturm", 6), ("gram", 3), ("gram", 6), ("auto", 6)]
)
def test_float32_relative_accuracy_1e5(method, log10_cond):
    J = _conditioned(0, 6, 12, 12, log10_cond)
    sv = singular_values(jnp.asarray(J), method=method)
    assert sv.dtype == jnp.float32 and sv.shape == (6, 12)
    assert _relative_error_on_significant(sv, J) <= 1e-5


def test_float32_svd_and_augmented_are_backward_stable():
    """The float32 baselines: absolute error ~ eps32 * sigma_max (not relative)."""
    J = _conditioned(1, 4, 10, 10, 3)
    ref = np.linalg.svd(J.astype(np.float64), compute_uv=False)
    for method in ("svd", "augmented"):
        sv = np.asarray(singular_values(jnp.asarray(J), method=method), np.float64)
        assert np.max(np.abs(sv - ref) / ref[..., :1]) < 1e-5, method


@pytest.mark.parametrize("shape", [(3, 9, 5), (2, 2, 5, 9)])
def test_rectangular_batched_float64(shape):
    J = jax.random.normal(jax.random.key(0), shape, jnp.float64)
    ref = np.linalg.svd(np.asarray(J), compute_uv=False)
    for method in ("auto", "sturm", "gram", "svd", "augmented"):
        sv = singular_values(J, method=method)
        assert sv.shape == ref.shape, method
        np.testing.assert_allclose(sv, ref, rtol=1e-9, atol=1e-12, err_msg=method)


def test_rank_deficient_and_zero():
    J = np.zeros((2, 6, 6), np.float32)
    J[1, :3, :3] = np.diag([3.0, 2.0, 1.0])
    sv = np.asarray(singular_values(jnp.asarray(J), method="sturm"))
    np.testing.assert_array_equal(sv[0], 0.0)
    np.testing.assert_allclose(sv[1], [3, 2, 1, 0, 0, 0], rtol=1e-6, atol=1e-7)


def test_descending_jit_and_gradient():
    J = jax.random.normal(jax.random.key(1), (4, 6, 6), jnp.float64)
    sv = jax.jit(lambda a: singular_values(a, method="sturm"))(J)
    assert np.all(np.diff(np.asarray(sv), axis=-1) <= 0)
    g = jax.grad(lambda a: jnp.sum(singular_values(a, method="sturm") ** 1.5))(J)
    g_ref = jax.grad(lambda a: jnp.sum(jnp.linalg.svd(a, compute_uv=False) ** 1.5))(J)
    np.testing.assert_allclose(g, g_ref, atol=1e-10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        singular_values(jnp.eye(3), method="lanczos")
    with pytest.raises(ValueError, match=r"J must be a matrix.*rank 1"):
        singular_values(jnp.ones(3))
    with pytest.raises(ValueError, match="square"):
        eigenvalues(jnp.ones((3, 4)))


def test_eigenvalues_sorted_by_modulus_against_numpy():
    J = np.asarray(jax.random.normal(jax.random.key(2), (5, 6, 6), jnp.float64))
    mu = np.asarray(eigenvalues(jnp.asarray(J)))
    assert mu.shape == (5, 6) and np.iscomplexobj(mu)
    assert np.all(np.diff(np.abs(mu), axis=-1) <= 1e-12)
    for b in range(5):
        ref = np.linalg.eigvals(J[b])
        # Same multiset: match each reference eigenvalue to its nearest.
        assert np.max(np.min(np.abs(mu[b][:, None] - ref[None, :]), axis=1)) < 1e-10
    np.testing.assert_allclose(eigenvalues(jnp.diag(jnp.array([0.5, -2.0, 1.0]))), [-2, 1, 0.5])
