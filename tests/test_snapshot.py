"""jrnn.diagnostics.snapshot: each scalar against the full diagnostic it summarises (float64)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.diagnostics import snapshot

T = 30


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), tree)


def _setup(cell, B=3, seed=0, scale=1.0):
    params = _f64(cell.init(jax.random.key(seed), 2))
    xs = scale * jax.random.normal(jax.random.key(seed + 1), (B, T, 2), jnp.float64)
    return params, xs


def _pooled(values, stderr):
    B = values.shape[0]
    between = np.var(values, axis=0, ddof=1)
    within = np.mean(np.asarray(stderr) ** 2, axis=0)
    return np.mean(values, axis=0), np.sqrt(np.maximum(between, within) / B)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_elman_matches_full_diagnostics(activation):
    cell = jrnn.cells.elman(5, activation)
    params, xs = _setup(cell, scale=2.0 if activation == "tanh" else 1.0)
    params = dict(params, b_h=params["b_h"] + (0.0 if activation == "tanh" else 3.0))
    loss = lambda hs: jnp.sum(jnp.sin(hs[:, -3:]))
    out = snapshot(cell, params, xs, k=3, loss_fn=loss, lags=(0, 7), sv_steps=None)
    assert set(out) == set(jrnn.diagnostics.snapshot_names(3, (0, 7)))

    spec = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, k=3, mode="stacked")
    lam, se = _pooled(np.asarray(spec.exponents), spec.stderr)
    for i in range(3):
        np.testing.assert_allclose(out[f"lyap_{i + 1}"], lam[i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out[f"lyap_{i + 1}_stderr"], se[i], rtol=1e-8)

    prop = jrnn.diagnostics.propagation(cell, params, xs, mode="stacked")
    np.testing.assert_allclose(out["propagation_rate"], np.mean(prop.rate), rtol=1e-10)
    np.testing.assert_allclose(
        out["log_jacobian_norm"], np.mean(prop.log_spectral_norm[:, 0]), rtol=1e-10
    )

    J = jrnn.diagnostics.step_jacobians(cell, params, xs)  # (B, T, S, S)
    s1 = np.linalg.svd(np.asarray(J), compute_uv=False)[..., 0]
    # Rayleigh quotient after 2^10-fold powering: rounding unless sigma_1 ~ sigma_2
    np.testing.assert_allclose(out["sv_mean"], s1.mean(), rtol=1e-7)
    np.testing.assert_allclose(out["sv_max"], s1.max(), rtol=1e-7)

    # propagation_rate_stderr: 20 batch means of the forward increments, pooled (numpy loop)
    rates, ses = [], []
    for b in range(J.shape[0]):
        P = np.eye(5) / np.sqrt(5)
        incr = []
        for t in range(T):
            A = np.asarray(J[b, t]) @ P
            incr.append(np.log(np.linalg.norm(A)))
            P = A / np.linalg.norm(A)
        incr = np.array(incr)
        means = incr[T - 20 * (T // 20):].reshape(20, -1).mean(axis=1)
        rates.append(incr.mean())
        ses.append(means.std(ddof=1) / np.sqrt(20))
    r, rse = _pooled(np.array(rates), np.array(ses))
    assert np.isfinite(r) and np.isfinite(rse)
    np.testing.assert_allclose(out["propagation_rate"], r, rtol=1e-10)
    np.testing.assert_allclose(out["propagation_rate_stderr"], rse, rtol=1e-8)

    health = jrnn.diagnostics.unit_health(cell, params, xs)
    if activation == "relu":
        np.testing.assert_allclose(out["dead_fraction"], health.dead_fraction)
        assert np.isnan(out["saturated_fraction"])
    else:
        np.testing.assert_allclose(out["saturated_fraction"], health.saturated_fraction)
        assert 0 < float(out["saturated_fraction"]) < 1  # the comparison is not vacuous
        assert np.isnan(out["dead_fraction"])
    W = np.asarray(params["W_hh"])
    np.testing.assert_allclose(out["recurrent_norm"], np.linalg.norm(W, 2), rtol=1e-7)

    g = jrnn.diagnostics.gradient_norms(loss, cell, params, xs, mode="stacked").hidden
    for lag in (0, 7):
        ref = np.sqrt(np.sum(np.asarray(g[:, T - 1 - lag]) ** 2))
        np.testing.assert_allclose(out[f"grad_norm_lag{lag}"], ref, rtol=1e-10)


def test_sampled_singular_values():
    cell = jrnn.cells.elman(4, "tanh")
    params, xs = _setup(cell, B=2)
    out = snapshot(cell, params, xs, k=1, sv_steps=7)  # every ceil(30 / 7) = 5th step
    J = jrnn.diagnostics.step_jacobians(cell, params, xs)
    s1 = np.linalg.svd(np.asarray(J), compute_uv=False)[:, ::5, 0]
    # Rayleigh quotient after 2^10-fold powering: rounding unless sigma_1 ~ sigma_2
    np.testing.assert_allclose(out["sv_mean"], s1.mean(), rtol=1e-7)
    np.testing.assert_allclose(out["sv_max"], s1.max(), rtol=1e-7)
    full = snapshot(cell, params, xs, k=1, sv_steps=None)
    assert float(full["sv_mean"]) != float(out["sv_mean"])
    np.testing.assert_allclose(full["lyap_1"], out["lyap_1"], rtol=1e-12)


def test_dead_units_counted():
    cell = jrnn.cells.elman(6, "relu")
    params, xs = _setup(cell, B=2)
    params = dict(params, b_h=params["b_h"].at[:2].set(-50.0))  # two units never fire
    out = snapshot(cell, params, xs, k=2)
    health = jrnn.diagnostics.unit_health(cell, params, xs)
    assert float(health.dead_fraction) >= 2 / 6
    np.testing.assert_allclose(out["dead_fraction"], health.dead_fraction)


def test_lstm_one_sequence_and_not_applicable():
    cell = jrnn.cells.lstm(3)
    params, xs = _setup(cell, B=1)
    x = xs[0]
    out = snapshot(cell, params, x, k=6, probes=None)  # k = S = 2n; the exact full frame
    spec = jrnn.diagnostics.lyapunov_spectrum(cell, params, x, mode="stacked")
    np.testing.assert_allclose([out[f"lyap_{i}"] for i in range(1, 7)], spec.exponents,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose([out[f"lyap_{i}_stderr"] for i in range(1, 7)], spec.stderr,
                               rtol=1e-8)
    prop = jrnn.diagnostics.propagation(cell, params, x)
    np.testing.assert_allclose(out["propagation_rate"], prop.rate, rtol=1e-10)
    np.testing.assert_allclose(out["log_jacobian_norm"], prop.log_spectral_norm[0], rtol=1e-10)
    for name in ("dead_fraction", "saturated_fraction", "recurrent_norm"):
        assert np.isnan(out[name])


def test_nonfinite_params_give_nan():
    cell = jrnn.cells.elman(4, "tanh")
    params, xs = _setup(cell, B=2)
    params = dict(params, W_hh=params["W_hh"].at[0, 0].set(jnp.nan))
    out = snapshot(cell, params, xs, k=2)
    for name in ("lyap_1", "propagation_rate", "saturated_fraction", "sv_mean"):
        assert np.isnan(out[name]), name


def test_jit_compiles_once_and_vmap_over_seeds_equals_loop():
    cell = jrnn.cells.gru(4)
    _, xs = _setup(cell, B=2)
    traces = []

    def counted(params, xs):
        traces.append(1)
        return snapshot(cell, params, xs, k=2)

    snap = jax.jit(counted)
    keys = jax.random.split(jax.random.key(3), 3)
    seeds = jax.vmap(lambda k: _f64(cell.init(k, 2)))(keys)
    one = [snap(jax.tree_util.tree_map(lambda a: a[i], seeds), xs) for i in range(3)]
    assert len(traces) == 1
    batched = jax.jit(jax.vmap(counted, in_axes=(0, None)))(seeds, xs)
    for name, v in batched.items():
        assert v.shape == (3,)
        np.testing.assert_allclose(v, [o[name] for o in one], rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    # the user's two lines
    snap2 = jax.jit(functools.partial(snapshot, cell, k=2))
    np.testing.assert_allclose(snap2(jax.tree_util.tree_map(lambda a: a[0], seeds), xs)["lyap_1"],
                               one[0]["lyap_1"], rtol=1e-12)


def test_bad_inputs():
    cell = jrnn.cells.elman(4, "tanh")
    params, xs = _setup(cell, B=2)
    with pytest.raises(ValueError, match="k"):
        snapshot(cell, params, xs, k=5)
    with pytest.raises(ValueError, match="k"):
        snapshot(cell, params, xs, k=0)
    with pytest.raises(TypeError, match="k"):
        snapshot(cell, params, xs, k=1.5)
    with pytest.raises(ValueError, match="lags"):
        snapshot(cell, params, xs, lags=(T,))
    with pytest.raises(ValueError, match="lags"):
        snapshot(cell, params, xs, lags=(1, 1))
    with pytest.raises(TypeError, match="loss_fn"):
        snapshot(cell, params, xs, loss_fn=3)
    with pytest.raises(ValueError, match="sv_steps"):
        snapshot(cell, params, xs, sv_steps=0)
    with pytest.raises(ValueError, match="probes"):
        snapshot(cell, params, xs, probes=0)
    with pytest.raises(ValueError, match="warmup"):
        snapshot(cell, params, xs, warmup=T)
    with pytest.raises(TypeError, match="model.cell"):
        snapshot(jrnn.models.rnn(cell, 1), params, xs)
    with pytest.raises(ValueError, match="xs"):
        snapshot(cell, params, xs[:, :, :1])


def test_top_singular_value_against_svd():
    from jrnn.diagnostics.snapshot import _SQUARINGS, _top_singular_value

    rng = np.random.default_rng(0)
    for shape in [(5, 7, 7), (3, 9, 4), (3, 4, 9)]:
        A = rng.normal(size=shape)
        np.testing.assert_allclose(_top_singular_value(jnp.asarray(A)),
                                   np.linalg.svd(A, compute_uv=False)[:, 0], rtol=1e-12)
    Q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    np.testing.assert_allclose(_top_singular_value(jnp.asarray(3.0 * Q)), 3.0, rtol=1e-12)
    # sigma_1 ~ sigma_2: the certified bracket, relative ln(r) / 2^(q+1) at most
    U, V = (np.linalg.qr(rng.normal(size=(8, 8)))[0] for _ in range(2))
    s = np.array([1.0, 1.0 - 1e-4, 1.0 - 2e-4, 0.5, 0.4, 0.3, 0.2, 0.1])
    got = float(_top_singular_value(jnp.asarray(U @ np.diag(s) @ V.T)))
    assert 1.0 - np.log(8) / 2 ** (_SQUARINGS + 1) <= got <= 1.0 + 1e-12
    zero_nan = jnp.stack([jnp.zeros((3, 3)), jnp.full((3, 3), jnp.nan)])
    out = np.asarray(_top_singular_value(zero_nan))
    assert out[0] == 0.0 and np.isnan(out[1])


@pytest.mark.parametrize("dtype,scales", [(np.float32, (1e-20, 1e20)),
                                          (np.float64, (1e-200, 1e200))])
def test_top_singular_value_far_from_one(dtype, scales):
    """sigma_1 of matrices whose squared entries under- or overflow: the SVD's value, not
    0 or NaN (the Gram matrix was formed unscaled: 0 at 1e-20 and NaN at 1e20 in float32)."""
    from jrnn.diagnostics.snapshot import _top_singular_value

    A = np.random.default_rng(3).normal(size=(6, 6))
    for scale in scales:
        B = (A * scale).astype(dtype)
        want = np.linalg.svd(B.astype(np.float64), compute_uv=False)[0]
        got = float(_top_singular_value(jnp.asarray(B)))
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
    inf = jnp.eye(3).at[0, 1].set(jnp.inf)
    assert np.isnan(float(_top_singular_value(inf)))


@pytest.mark.parametrize("rank_one", [True, False])
def test_probe_error_monte_carlo(rank_one):
    """The stated error of the probe estimate of log ||P||_F against Monte Carlo draws."""
    from jrnn.diagnostics.snapshot import _probe_error

    S, p, N = 12, 3, 40000
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=S), rng.normal(size=S)
    P = np.outer(u, v) if rank_one else rng.normal(size=(S, S)) @ np.diag(0.7 ** np.arange(S))
    G = rng.normal(size=(N, S, p))
    ratio = np.sum((P @ G) ** 2, axis=(1, 2)) / np.sum(G**2, axis=(1, 2))
    err = 0.5 * np.log(ratio * S / np.sum(P**2))
    bias, spread = _probe_error(S, p)
    mc = 4 * err.std() / np.sqrt(N)
    if rank_one:
        np.testing.assert_allclose(err.mean(), bias, atol=mc)
        np.testing.assert_allclose(err.std(), spread, rtol=0.02)
    else:  # between the rank-one bias and 0
        assert bias - mc <= err.mean() <= mc and abs(err.mean() - bias) > 10 * mc
        assert err.std() < spread


def test_probes_within_stated_error():
    from jrnn.diagnostics.snapshot import _probe_error

    S, B, p = 12, 24, 2
    cell = jrnn.cells.elman(S, "tanh")
    params, xs = _setup(cell, B=B, scale=1.0)
    prop = jrnn.diagnostics.propagation(cell, params, xs, mode="stacked")
    exact = {"propagation_rate": np.mean(prop.rate),
             "log_jacobian_norm": np.mean(prop.log_spectral_norm[:, 0])}
    est = snapshot(cell, params, xs, k=1, probes=p)
    bias, spread = _probe_error(S, p)
    diff = float(est["propagation_rate"] - exact["propagation_rate"])
    assert diff != 0.0  # an estimate, not the exact value
    assert abs(diff) <= (abs(bias) + 4 * spread / np.sqrt(B)) / T
    # the probes' error is part of the reported standard error
    assert float(est["propagation_rate_stderr"]) >= spread / T / np.sqrt(B)
    # log ||P_T||_2: 1/2 log(chi2_p / p) for a product dominated by one direction
    lg = float(est["log_jacobian_norm"] - exact["log_jacobian_norm"])
    assert lg != 0.0 and abs(lg) <= abs(bias) + 4 * spread / np.sqrt(B) + np.log(1 + 1 / p)


def test_probe_bias_does_not_average_over_the_batch():
    """The probes' bias (rank-one case) is shared by the sequences: the pooled standard error
    keeps it, however large B. Was: it was divided by sqrt(B) with the spread, and on a
    near-rank-one product (g = 1.5 tanh, S = 16, p = 1, B = 256, T = 32) the estimate sat
    3.4 reported standard errors below propagation()'s exact rate at every seed."""
    from jrnn.diagnostics.snapshot import _probe_error

    S, B, p, T_ = 16, 128, 1, 32
    cell = jrnn.cells.elman(S, "tanh", recurrent_init=jrnn.initializers.scaled_normal(1.5))
    params = cell.init(jax.random.key(0), 1)
    xs = jax.random.normal(jax.random.key(1), (B, T_, 1))
    exact = float(np.mean(jrnn.diagnostics.propagation(cell, params, xs).rate))
    bias, _ = _probe_error(S, p)
    snap = jax.jit(lambda key: snapshot(cell, params, xs, k=1, probes=p, key=key, sv_steps=1))
    zs = []
    for seed in range(2):
        est = snap(jax.random.key(seed))
        se = float(est["propagation_rate_stderr"])
        assert se >= abs(bias) / T_
        zs.append((float(est["propagation_rate"]) - exact) / se)
    assert max(abs(z) for z in zs) < 2.0, zs
