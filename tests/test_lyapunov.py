"""lyapunov_spectrum: closed forms, the determinant identity, blocking, QR variants, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.diagnostics import kaplan_yorke_dimension, lyapunov_spectrum, step_jacobians


def _linear(W, d=1, seed=0):
    n = W.shape[0]
    cell = jrnn.cells.elman(n, "identity", use_bias=False)
    W_xh = jax.random.normal(jax.random.key(seed), (n, d), jnp.float64)
    return cell, {"W_xh": W_xh, "W_hh": jnp.asarray(W, jnp.float64)}


def _tanh_cell(n=6, gain=1.3, seed=0, d=2):
    cell = jrnn.cells.elman(n, "tanh", recurrent_init=jrnn.initializers.scaled_normal(gain))
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(seed), d)
    )
    xs = 0.5 * jax.random.normal(jax.random.key(seed + 1), (60, d), jnp.float64)
    return cell, params, xs


@pytest.mark.parametrize("c", [0.5, 1.5])
def test_scaled_orthogonal_has_every_exponent_log_c(c):
    W = c * jrnn.initializers.orthogonal()(jax.random.key(0), (5, 5), jnp.float64)
    cell, params = _linear(W)
    spec = lyapunov_spectrum(cell, params, jnp.ones((40, 1)))
    np.testing.assert_allclose(spec.exponents, np.log(c), atol=1e-12)
    assert spec.local.shape == (40, 5)
    np.testing.assert_allclose(spec.local, np.log(c), atol=1e-10)


def test_normal_matrix_gives_log_abs_eigenvalues():
    """W = O blockdiag(r1 R(a), r2 R(b), s1, s2) O^T is normal, |eig| = (r1, r1, r2, r2, s1, s2)."""

    def rot(r, a):
        return r * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])

    B = np.zeros((6, 6))
    B[:2, :2], B[2:4, 2:4] = rot(1.3, 0.7), rot(0.6, 2.0)
    B[4, 4], B[5, 5] = -0.9, 0.2
    O = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 6)))[0]
    W = O @ B @ O.T
    cell, params = _linear(W)
    spec = lyapunov_spectrum(cell, params, jnp.zeros((400, 1)), warmup=100)
    expected = np.sort(np.log(np.abs(np.linalg.eigvals(W))))[::-1]
    np.testing.assert_allclose(spec.exponents, expected, atol=2e-3)


@pytest.mark.parametrize("name", ["elman", "lstm"])
def test_sum_of_exponents_is_mean_log_det(name):
    if name == "elman":
        cell, params, xs = _tanh_cell()
    else:
        cell = jrnn.cells.lstm(3)
        params = jax.tree_util.tree_map(
            lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 2)
        )
        xs = jax.random.normal(jax.random.key(1), (60, 2), jnp.float64)
    spec = lyapunov_spectrum(cell, params, xs)
    Js = np.asarray(step_jacobians(cell, params, xs))
    mean_log_det = np.mean(np.linalg.slogdet(Js)[1])
    np.testing.assert_allclose(np.sum(spec.exponents), mean_log_det, atol=1e-10)


def test_blocking_and_qr_variants_agree_where_stable():
    cell, params, xs = _tanh_cell(gain=1.1)
    ref = lyapunov_spectrum(cell, params, xs, qr="householder")
    for kwargs in (
        {},
        {"qr": "compact"},
        {"qr": "cholesky"},
        {"reorth_every": 2},
        {"reorth_every": 7},
        {"qr": "householder", "reorth_every": 3},
    ):
        spec = lyapunov_spectrum(cell, params, xs, **kwargs)
        np.testing.assert_allclose(spec.exponents, ref.exponents, atol=1e-9, err_msg=str(kwargs))
    assert lyapunov_spectrum(cell, params, xs, reorth_every=7).local.shape == (9, 6)


def test_cholesky_qr_falls_back_on_singular_jacobians():
    """A dead ReLU unit makes every J_t singular: with k = S, CholeskyQR's Gram matrix is
    singular (NaN Cholesky), the check fails and Householder takes over."""
    cell = jrnn.cells.elman(4, "relu")
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 1)
    )
    params["b_h"] = jnp.array([-50.0, 5.0, 5.0, 5.0])  # unit 0 dead, the rest always on
    params["W_hh"] = 0.3 * params["W_hh"]  # ||h|| stays below 5 / 0.3: active units stay on
    xs = 0.1 * jax.random.normal(jax.random.key(1), (30, 1), jnp.float64)
    fast = lyapunov_spectrum(cell, params, xs, qr="cholesky")
    ref = lyapunov_spectrum(cell, params, xs, qr="householder")
    assert np.all(np.isfinite(fast.exponents[:3])) and fast.exponents[3] < -20
    np.testing.assert_allclose(fast.exponents[:3], ref.exponents[:3], atol=1e-10)
    # On the active units the map is linear: exponents of W restricted to them.
    W_active = np.asarray(params["W_hh"])[1:, 1:]
    expected = np.sort(np.log(np.abs(np.linalg.eigvals(W_active))))[::-1]
    np.testing.assert_allclose(fast.exponents[:3], expected, atol=0.15)


def test_batch_warmup_and_k():
    cell, params, xs = _tanh_cell()
    xb = jnp.stack([xs, -xs])
    spec = lyapunov_spectrum(cell, params, xb, k=3, warmup=10)
    assert spec.exponents.shape == (2, 3) and spec.local.shape == (2, 50, 3)
    one = lyapunov_spectrum(cell, params, xb[1], k=3, warmup=10)
    np.testing.assert_allclose(spec.exponents[1], one.exponents, atol=1e-12)
    assert np.all(np.diff(spec.exponents, axis=-1) <= 0)
    full = lyapunov_spectrum(cell, params, xs, warmup=10)
    np.testing.assert_allclose(spec.exponents[0, 0], full.exponents[0], atol=1e-2)


def test_differentiable_matches_finite_differences():
    cell, params, xs = _tanh_cell(n=3, seed=2)
    xs = xs[:20]

    @jax.jit
    def top(W):
        return lyapunov_spectrum(cell, {**params, "W_hh": W}, xs).exponents[0]

    g = jax.grad(top)(params["W_hh"])
    assert np.all(np.isfinite(g))
    E = np.zeros((3, 3))
    E[1, 2] = 1e-6
    fd = (top(params["W_hh"] + E) - top(params["W_hh"] - E)) / 2e-6
    np.testing.assert_allclose(g[1, 2], fd, rtol=1e-5)


def test_kaplan_yorke_and_entropy():
    np.testing.assert_allclose(kaplan_yorke_dimension(jnp.array([0.5, -0.2, -1.0])), 2.3)
    np.testing.assert_allclose(kaplan_yorke_dimension(jnp.array([0.4, -1.0])), 1.4)
    assert kaplan_yorke_dimension(jnp.array([-0.1, -1.0])) == 0
    assert kaplan_yorke_dimension(jnp.array([0.3, 0.1])) == 2
    W = np.diag([1.5, 1.2, 0.5])
    cell, params = _linear(W)
    spec = lyapunov_spectrum(cell, params, jnp.zeros((10, 1)))
    np.testing.assert_allclose(spec.entropy_rate, np.log(1.5) + np.log(1.2), atol=1e-12)
    lam = np.log([1.5, 1.2, 0.5])
    np.testing.assert_allclose(spec.kaplan_yorke_dimension, 2 + lam[:2].sum() / abs(lam[2]))


def test_bad_arguments():
    cell, params, xs = _tanh_cell()
    with pytest.raises(ValueError, match="k must be at most"):
        lyapunov_spectrum(cell, params, xs, k=7)
    with pytest.raises(ValueError, match="warmup"):
        lyapunov_spectrum(cell, params, xs, warmup=60)
    with pytest.raises(ValueError, match="reorth_every"):
        lyapunov_spectrum(cell, params, xs, reorth_every=0)
    with pytest.raises(ValueError, match="qr must be one of"):
        lyapunov_spectrum(cell, params, xs, qr="givens")


@pytest.mark.parametrize("dead", [False, True])
def test_mixed_float32_matches_float64_householder(dead):
    """qr="mixed" on float32 inputs (float64 chain, float32 Cholesky factors, first-order
    re-orthogonalisation) equals float64 Householder on the same float32 Jacobians; a dead
    unit (singular J_t, NaN float32 Cholesky) takes the Householder fallback."""
    cell = jrnn.cells.elman(8, "relu" if dead else "tanh")
    params = cell.init(jax.random.key(3), 2)
    if dead:
        params["b_h"] = jnp.array([-50.0] + [5.0] * 7, jnp.float32)
        params["W_hh"] = 0.3 * params["W_hh"]
    xs = jax.random.normal(jax.random.key(4), (40, 2), jnp.float32)
    spec = lyapunov_spectrum(cell, params, xs, warmup=5, qr="mixed")
    assert spec.exponents.dtype == jnp.float32 and spec.local.dtype == jnp.float32
    Js = step_jacobians(cell, params, xs).astype(jnp.float64)
    Q = jnp.eye(8, dtype=jnp.float64)
    logs = []
    for t in range(40):
        Q, R = jnp.linalg.qr(Js[t] @ Q)
        logs.append(np.log(np.abs(np.diagonal(R))))
    ref = np.sort(np.mean(logs[5:], axis=0))[::-1]
    live = slice(0, 7) if dead else slice(None)
    np.testing.assert_allclose(spec.exponents[live], ref[live], atol=2e-6)
    if dead:
        assert spec.exponents[7] < -20


@pytest.mark.parametrize("k", [6, 4, 1])
def test_compact_chain_equals_explicit_householder(k):
    """The compact (geqrf + ormqr) chain is the explicit Householder chain without forming Q:
    same exponents and the same local exponents, for k = S and for thin Q (k < S)."""
    cell, params, xs = _tanh_cell(gain=1.5)
    kw = dict(k=k, warmup=7)
    fast = lyapunov_spectrum(cell, params, xs, qr="compact", **kw)
    ref = lyapunov_spectrum(cell, params, xs, qr="householder", **kw)
    np.testing.assert_allclose(fast.exponents, ref.exponents, atol=1e-12)
    np.testing.assert_allclose(fast.local, ref.local, atol=1e-11)
    assert fast.local.shape == (53, k)


def test_compact_chain_gradient_equals_explicit_chain():
    cell, params, xs = _tanh_cell(n=4, seed=5)
    xs = xs[:25]

    def loss(W, qr):
        spec = lyapunov_spectrum(cell, {**params, "W_hh": W}, xs, qr=qr, warmup=3)
        return jnp.sum(spec.exponents * jnp.arange(1.0, 5.0)) + jnp.sum(spec.local**2)

    g_fast = jax.jit(jax.grad(loss), static_argnums=1)(params["W_hh"], "compact")
    g_ref = jax.jit(jax.grad(loss), static_argnums=1)(params["W_hh"], "householder")
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-9, atol=1e-12)
    # forward mode through the custom JVP as well
    E = jax.random.normal(jax.random.key(9), (4, 4), jnp.float64)
    _, t_fast = jax.jvp(lambda W: loss(W, "compact"), (params["W_hh"],), (E,))
    _, t_ref = jax.jvp(lambda W: loss(W, "householder"), (params["W_hh"],), (E,))
    np.testing.assert_allclose(t_fast, t_ref, rtol=1e-9)


@pytest.mark.parametrize("qr", ["compact", "householder"])
def test_blocks_failing_the_error_check_are_redone_step_by_step(qr):
    """A wide spectrum (lambda_1 - lambda_S ~ 10 per step) in float32: blocks of 8 steps
    grow columns by ~e^80 relative to R_jj, far beyond the 1e-5 bound, so every block is
    redone one step at a time and the result equals the per-step chain. Without the check
    (tolerance inf) the blocked chain is wrong, so the check is what keeps it exact."""
    from jrnn.linalg import qr as L

    n = 6
    W = np.diag(np.exp(-np.arange(n) * 2.0))  # exponents 0, -2, ..., -10
    W = W @ np.asarray(jrnn.initializers.orthogonal()(jax.random.key(1), (n, n), jnp.float64))
    Js = jnp.asarray(np.broadcast_to(W, (64, n, n)), jnp.float32)
    chain = L.CompactQR(True) if qr == "compact" else L.ExplicitQR(L.householder)
    eye = jnp.eye(n, dtype=jnp.float32)
    state = chain.init(eye)
    _, step, _ = L.qr_chain(chain, state, Js, every=1, tol=1e-5)
    _, checked, _ = L.qr_chain(chain, state, Js, every=8, tol=1e-5)
    _, unchecked, _ = L.qr_chain(chain, state, Js, every=8, tol=np.inf)
    ref = np.sum(np.asarray(step), axis=0)
    np.testing.assert_allclose(np.sum(np.asarray(checked), axis=0), ref, rtol=1e-6)
    assert np.max(np.abs(np.sum(np.asarray(unchecked), axis=0) - ref)) > 1.0


def test_mixed_blocks_pass_the_check_and_match_float64():
    """qr="mixed" with reorth_every=4 on a float32 tanh network: the float64 blocks pass the
    check (narrow spectrum) and the exponents equal the per-step float64 chain."""
    cell = jrnn.cells.elman(16, "tanh", recurrent_init=jrnn.initializers.scaled_normal(1.2))
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (80, 3), jnp.float32)
    blocked = lyapunov_spectrum(cell, params, xs, qr="mixed", reorth_every=4)
    step = lyapunov_spectrum(cell, params, xs, qr="mixed")
    assert blocked.local.shape == (20, 16) and blocked.exponents.dtype == jnp.float32
    np.testing.assert_allclose(blocked.exponents, step.exponents, atol=1e-6)


def test_auto_chain_is_explicit_below_128_states_and_compact_from_128():
    """qr="auto": LAPACK's ormqr (the compact chain) only from S = 128, where geqrf / orgqr
    are blocked too; below, the explicit Householder chain (ormqr's BLAS threads stalled the
    compact chain 12-46x at S = 64 on shared cores). Read off the traced program."""
    from jrnn.diagnostics.lyapunov import COMPACT_MIN_STATE

    def primitives(n, **kw):
        cell = jrnn.cells.elman(n, "tanh")
        params = cell.init(jax.random.key(0), 1)
        xs = jnp.zeros((2, 1))
        jaxpr = jax.make_jaxpr(
            lambda p: lyapunov_spectrum(cell, p, xs, mode="stacked", **kw).exponents
        )(params)
        return str(jaxpr)

    assert COMPACT_MIN_STATE == 128
    assert "ormqr" not in primitives(64) and "ormqr" not in primitives(64, qr="mixed")
    assert "ormqr" in primitives(64, qr="compact")
    assert "ormqr" in primitives(128)
