"""singular_values / eigenvalues against float64 numpy, including ill-conditioned stacks;
singular_value_stats (streamed along a trajectory) against the stack reduced afterwards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jrnn
from jrnn.diagnostics import eigenvalues, singular_value_stats, singular_values, step_jacobians

KEY = jax.random.key(0)


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


# ------------------------------------------------------------- streamed along a trajectory
SV_CELLS = {
    "elman": lambda: jrnn.cells.elman(5, "tanh"),
    "lstm": lambda: jrnn.cells.lstm(3),
    "gru": lambda: jrnn.cells.gru(4),
}
LEVELS = (0.0, 0.25, 0.5, 0.9, 1.0)


def _stack_and_spectra(cell, params, xs, carry, transient):
    J = step_jacobians(cell, params, xs, carry=carry)[:, transient:]
    return J, singular_values(J)


def _reduced_stack(cell, params, xs, carry, transient):
    """The definition: singular_values of the full (B, T, S, S) stack, reduced afterwards."""
    J, sv = jax.jit(lambda p, x: _stack_and_spectra(cell, p, x, carry, transient))(params, xs)
    J, sv = np.asarray(J), np.asarray(sv)
    logs = np.log(sv)
    T = sv.shape[1]
    M = min(20, T)
    L = T // M
    means = logs[:, T - M * L :].reshape((-1, M, L, sv.shape[-1])).mean(axis=2)
    stderr = means.std(axis=1, ddof=1) / np.sqrt(M)
    q = np.moveaxis(np.quantile(sv, LEVELS, axis=-1), 0, -1)
    return logs.mean(axis=1), stderr, sv[..., 0], sv[..., -1], q, J


@pytest.mark.parametrize("name", list(SV_CELLS))
def test_singular_value_stats_equal_the_stack_reduced(name):
    """Chunks of 5 over T' = 21 steps (not a multiple), a batch of 2 with a given carry,
    float64: every field equals the stacked computation to rounding."""
    cell = SV_CELLS[name]()
    params = jax.tree_util.tree_map(lambda a: 1.5 * a.astype(jnp.float64), cell.init(KEY, 2))
    xs = jax.random.normal(jax.random.key(1), (2, 23, 2), jnp.float64)
    flat, unravel = ravel_pytree(cell.initial_carry(params))
    carry = jax.vmap(unravel)(0.5 * jax.random.normal(jax.random.key(2), (2, flat.size)))
    run = jax.jit(
        lambda p, x, c: singular_value_stats(
            cell, p, x, carry=c, quantiles=LEVELS, transient=2, chunk=5, mode="chunked"
        )
    )
    st = run(params, xs, carry)
    mean, stderr, smax, smin, q, J = _reduced_stack(cell, params, xs, carry, transient=2)
    S = cell.state_size
    assert st.mean_log.shape == st.stderr.shape == (2, S)
    assert st.sigma_max.shape == st.sigma_min.shape == (2, 21) and st.quantiles.shape == (2, 21, 5)
    np.testing.assert_allclose(st.mean_log, mean, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(st.stderr, stderr, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(st.sigma_max, smax, rtol=1e-12)
    np.testing.assert_allclose(st.sigma_min, smin, rtol=1e-10)
    np.testing.assert_allclose(st.quantiles, q, rtol=1e-10)
    assert np.all(np.asarray(st.stderr) > 0)
    # sum_i mean log sigma_i = mean log |det J_t| (the sum of all Lyapunov exponents).
    logdet = np.linalg.slogdet(J)[1].mean(axis=1)
    np.testing.assert_allclose(np.sum(st.mean_log, axis=-1), logdet, rtol=1e-10)


def test_singular_value_stats_linear_cell_closed_form():
    """identity activation: J_t = W_hh = U diag(s) V^T at every step, so the spectrum is s."""
    s = np.array([2.0, 1.0, 0.5, 0.25])
    U = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))[0]
    V = np.linalg.qr(np.random.default_rng(1).standard_normal((4, 4)))[0]
    cell = jrnn.cells.elman(4, "identity", use_bias=False)
    params = {"W_xh": jnp.ones((4, 1), jnp.float64), "W_hh": jnp.asarray((U * s) @ V.T)}
    xs = jnp.linspace(-1.0, 1.0, 30, dtype=jnp.float64)[:, None]
    run = lambda p, x: singular_value_stats(
        cell, p, x, quantiles=(0.0, 0.5, 1.0), chunk=7, mode="chunked"
    )
    st = jax.jit(run)(params, xs)
    np.testing.assert_allclose(st.mean_log, np.log(s), atol=1e-13)
    np.testing.assert_allclose(st.stderr, 0.0, atol=1e-13)
    np.testing.assert_allclose(st.sigma_max, 2.0, rtol=1e-13)
    np.testing.assert_allclose(st.sigma_min, 0.25, rtol=1e-13)
    np.testing.assert_allclose(st.quantiles, np.tile([0.25, 0.75, 2.0], (30, 1)), rtol=1e-13)
    # No quantiles asked for: an empty (T, 0) field in both modes (a zero-size chunk reshape
    # used to divide by zero).
    for mode in ("chunked", "stacked"):
        none = singular_value_stats(cell, params, xs, quantiles=(), chunk=7, mode=mode)
        assert none.quantiles.shape == (30, 0)
        np.testing.assert_allclose(none.sigma_max, 2.0, rtol=1e-13)
    # One chunk of all steps, the summary alone.
    run = lambda p, x: singular_value_stats(cell, p, x, mode="stacked", per_step=False)
    one = jax.jit(run)(params, xs)
    assert one.sigma_max is None and one.sigma_min is None and one.quantiles is None
    np.testing.assert_allclose(one.mean_log, np.log(s), atol=1e-13)


def test_singular_value_stats_float32_without_x64_and_a_zero_singular_value():
    """x64 disabled: float32 sums with compensation; log 0 = -inf stays -inf (not NaN)."""
    with jax.enable_x64(False):
        cell = jrnn.cells.elman(4, "identity", use_bias=False)
        params = {"W_xh": jnp.ones((4, 1)), "W_hh": jnp.diag(jnp.array([0.0, 2.0, 0.5, 1.0]))}
        run = lambda p, x: singular_value_stats(
            cell, p, x, quantiles=(0.5,), chunk=3, mode="chunked"
        )
        st = jax.jit(run)(params, jnp.ones((10, 1)))
        assert st.mean_log.dtype == jnp.float32
        np.testing.assert_allclose(st.mean_log[:3], np.log([2.0, 1.0, 0.5]), rtol=1e-6)
        assert st.mean_log[3] == -np.inf and np.isnan(st.stderr[3])
        np.testing.assert_allclose(st.stderr[:3], 0.0, atol=1e-6)
        np.testing.assert_allclose(st.quantiles[:, 0], 0.75, rtol=1e-6)
        np.testing.assert_array_equal(st.sigma_min, 0.0)


def test_singular_value_stats_memory_does_not_grow_with_T():
    """Compiled temporaries of the chunked summary are the same at T = 64 and T = 640; the
    stacked path's grow with T (so the comparison can fail)."""
    cell = jrnn.cells.elman(6, "tanh")
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(KEY, 3))

    def temp(T, mode):
        f = jax.jit(
            lambda p, x: singular_value_stats(cell, p, x, mode=mode, chunk=8, per_step=False)
        )
        analysis = f.lower(params, jnp.ones((T, 3))).compile().memory_analysis()
        if analysis is None:
            pytest.skip("no memory analysis on this backend")
        return analysis.temp_size_in_bytes

    short, long = temp(64, "chunked"), temp(640, "chunked")
    assert long <= short + 1024, (short, long)
    assert temp(640, "stacked") > 10 * long


def test_singular_value_stats_bad_input_names_the_argument():
    cell = jrnn.cells.elman(3)
    params = cell.init(KEY, 2)
    xs = jnp.ones((10, 2))
    cases = [
        (dict(chunk=0), r"chunk must be an integer >= 1, got 0"),
        (dict(quantiles=(0.5, 1.5)), r"quantiles\[1\] must be in \[0, 1\], got 1.5"),
        (dict(quantiles=(-0.1,)), r"quantiles\[0\] must be in \[0, 1\], got -0.1"),
        (dict(quantiles=0.5), r"quantiles must be a sequence of levels in \[0, 1\].*got 0.5"),
        (dict(quantiles=("a",)), r"quantiles\[0\] must be a real number"),
        (dict(transient=10), r"transient must be in \[0, T\) = \[0, 10\).*got 10"),
        (dict(mode="tangent"), r"mode must be one of \('auto', 'stacked', 'chunked'\)"),
        (dict(sv_method="qr"), "sv_method must be one of"),
        (dict(method="numeric"), "method must be one of"),
        (dict(memory_budget=0), "memory_budget must be an integer >= 1, got 0"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            singular_value_stats(cell, params, xs, **kwargs)
    with pytest.raises(ValueError, match=r"xs must have feature size 2.*got shape \(10, 3\)"):
        singular_value_stats(cell, params, jnp.ones((10, 3)))
    with pytest.raises(ValueError, match=r"xs must hold at least one step, got shape \(0, 2\)"):
        singular_value_stats(cell, params, jnp.ones((0, 2)))
    with pytest.raises(TypeError, match="per_step must be True or False"):
        singular_value_stats(cell, params, xs, per_step="no")
