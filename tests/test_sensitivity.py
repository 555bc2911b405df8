"""jrnn.diagnostics.parameter_sensitivity: exact mode vs jax.jacfwd of the unrolled states,
the randomized estimator within its error bar, and the 1-unit linear cell vs theory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.cells import flatten_carry
from jrnn.diagnostics.sensitivity import leaf_names


def _states(cell, params, xs, target="state"):
    """(T, S) flattened carries (or outputs) of one sequence, by a plain scan of ``step``."""

    def body(c, x):
        c, h = cell.step(params, c, x)
        return c, (flatten_carry(c) if target == "state" else jnp.ravel(h))

    return jax.lax.scan(body, cell.initial_carry(params), xs)[1]


def _reference(cell, params, xs, target="state"):
    """name -> (T,) batch mean of ||d s_t / d theta||_F^2 from jax.jacfwd, and E||s_t||^2."""
    jac = jax.vmap(lambda x: jax.jacfwd(lambda p: _states(cell, p, x, target))(params))(xs)
    out = {}
    for name, leaf in zip(leaf_names(params), jax.tree_util.tree_leaves(jac), strict=True):
        axes = tuple(range(2, leaf.ndim))
        out[name] = jnp.mean(jnp.sum(leaf**2, axis=axes), axis=0)
    s = jax.vmap(lambda x: _states(cell, params, x, target))(xs)
    return out, jnp.mean(jnp.sum(s**2, axis=-1), axis=0)


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _check_exact(cell, d=2, B=2, T=6, target="state"):
    params = _f64(cell.init(jax.random.key(0), d))
    xs = jax.random.normal(jax.random.key(1), (B, T, d))
    sens = jrnn.diagnostics.parameter_sensitivity(cell, params, xs, probes=10_000,
                                                  target=target)
    ref, norm = _reference(cell, params, xs, target)
    assert set(sens.squared_norm) == set(ref)
    np.testing.assert_allclose(sens.state_norm, norm, rtol=1e-10)
    for name in ref:
        assert sens.exact[name]
        np.testing.assert_allclose(sens.squared_norm[name], ref[name], rtol=1e-9, atol=1e-12,
                                   err_msg=f"{cell.describe()} {name}")
        want = np.where(norm > 0, ref[name] / np.where(norm > 0, norm, 1), np.nan)
        np.testing.assert_allclose(sens.normalized[name], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: jrnn.cells.elman(3, "tanh"), lambda: jrnn.cells.lstm(2),
                                  lambda: jrnn.cells.lru(2, r_min=0.5, r_max=0.9)])
def test_exact_mode_matches_jacfwd_of_the_unrolled_states(make):
    _check_exact(make())


def test_output_target_matches_jacfwd_of_the_outputs():
    _check_exact(jrnn.cells.lru(2, r_min=0.5, r_max=0.9), target="output")


BUILT_INS = {
    "elman": lambda: jrnn.cells.elman(2, "relu"), "irnn": lambda: jrnn.cells.irnn(2),
    "residual": lambda: jrnn.cells.residual(2), "indrnn": lambda: jrnn.cells.indrnn(2),
    "gru": lambda: jrnn.cells.gru(2), "mgu": lambda: jrnn.cells.mgu(2),
    "leaky": lambda: jrnn.cells.leaky(2, dt=0.5), "min_gru": lambda: jrnn.cells.min_gru(2),
    "min_lstm": lambda: jrnn.cells.min_lstm(2), "cornn": lambda: jrnn.cells.cornn(2),
    "lem": lambda: jrnn.cells.lem(2), "orthogonal": lambda: jrnn.cells.orthogonal(2),
    "antisymmetric": lambda: jrnn.cells.antisymmetric(2),
    "lipschitz": lambda: jrnn.cells.lipschitz(2),
    "stack": lambda: jrnn.stack([jrnn.cells.elman(2), jrnn.cells.gru(2)]),
}


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_every_built_in_cell_matches_jacfwd(name):
    _check_exact(BUILT_INS[name](), B=1, T=4)


def test_randomized_estimator_is_unbiased_within_its_error_bar():
    cell = jrnn.cells.elman(6, "tanh")
    params = _f64(cell.init(jax.random.key(0), 1))
    xs = jax.random.normal(jax.random.key(1), (30, 1))
    exact = jrnn.diagnostics.parameter_sensitivity(cell, params, xs, probes=64)
    assert exact.exact["W_hh"] and float(jnp.max(exact.stderr["W_hh"])) == 0.0
    z_all = []
    for dist in ("rademacher", "gaussian"):
        run = jax.jit(lambda key, dist=dist: jrnn.diagnostics.parameter_sensitivity(
            cell, params, xs, probes=8, key=key, distribution=dist))
        for seed in range(4):
            est = run(jax.random.key(seed))
            se = est.stderr["W_hh"][5:]
            assert np.all(se > 0)
            z_all.append((est.squared_norm["W_hh"][5:] - exact.squared_norm["W_hh"][5:]) / se)
            np.testing.assert_allclose(est.squared_norm["b_h"], exact.squared_norm["b_h"])
    assert not est.exact["W_hh"] and est.exact["b_h"]
    z = np.concatenate(z_all)
    assert np.mean(np.abs(z) < 2.5) > 0.85, z  # honest error bars
    assert abs(np.mean(z)) < 0.5  # no bias beyond the noise
    assert np.mean(np.abs(z) > 0.3) > 0.3  # the probes are really random (not exact)


def test_one_unit_linear_cell_matches_the_closed_form():
    lam, rho, B, T = 0.8, 0.5, 400, 120
    cell = jrnn.cells.elman(1, "identity")
    params = {"W_xh": jnp.ones((1, 1)), "W_hh": jnp.full((1, 1), lam), "b_h": jnp.zeros(1)}
    rng = np.random.default_rng(0)
    x = np.empty((B, T))
    x[:, 0] = rng.standard_normal(B)
    for t in range(1, T):
        x[:, t] = rho * x[:, t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(B)
    sens = jrnn.diagnostics.parameter_sensitivity(cell, params, jnp.asarray(x)[..., None])
    m = jrnn.theory.linear_memory(lam, rho)
    S, se = sens.squared_norm["W_hh"][-1], sens.stderr["W_hh"][-1]
    assert abs(float(S - m.var_dh)) < 4 * float(se), (S, se, m.var_dh)
    R, rse = sens.normalized["W_hh"][-1], sens.normalized_stderr["W_hh"][-1]
    assert abs(float(R - m.ratio)) < 4 * float(rse), (R, rse, m.ratio)
    assert float(rse) < 0.1 * float(m.ratio)


def test_bad_arguments_and_nan():
    cell = jrnn.cells.elman(6)
    params = cell.init(jax.random.key(0), 1)
    xs = jnp.ones((5, 1))
    with pytest.raises(ValueError, match="probes must be an integer >= 1, got 0"):
        jrnn.diagnostics.parameter_sensitivity(cell, params, xs, probes=0)
    with pytest.raises(ValueError, match="key is needed: leaf 'W_hh' has 36 entries"):
        jrnn.diagnostics.parameter_sensitivity(cell, params, xs, probes=8)
    with pytest.raises(ValueError, match="distribution must be one of"):
        jrnn.diagnostics.parameter_sensitivity(cell, params, xs, distribution="uniform")
    with pytest.raises(ValueError, match="target must be one of"):
        jrnn.diagnostics.parameter_sensitivity(cell, params, xs, target="loss")
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        jrnn.diagnostics.parameter_sensitivity(cell, params, xs, probes=8, key=3)
    sens = jrnn.diagnostics.parameter_sensitivity(cell, params, xs.at[2, 0].set(jnp.nan),
                                                  probes=64)
    assert np.all(np.isfinite(sens.normalized["W_hh"][:2]))
    assert np.all(np.isnan(sens.normalized["W_hh"][2:]))
    zero = jrnn.diagnostics.parameter_sensitivity(cell, params, jnp.zeros((3, 1)), probes=64)
    assert np.all(np.isnan(zero.normalized["W_hh"]))  # E||s||^2 = 0: undefined, not 0 or inf


def test_a_wrapped_step_function_works():
    if not hasattr(jrnn, "wrap"):
        pytest.skip("jrnn.wrap (branch h-wrap) is not merged into this branch yet")

    def step(p, h, x):
        h = jnp.tanh(p["W_hh"] @ h + p["W_xh"] @ x + p["b_h"])
        return h, h

    built = jrnn.cells.elman(3, "tanh")
    params = _f64(built.init(jax.random.key(0), 2))
    cell, wparams = jrnn.wrap(step, params=params, carry=jnp.zeros(3, jnp.float64),
                              input_size=2)
    xs = jax.random.normal(jax.random.key(1), (2, 6, 2))
    got = jrnn.diagnostics.parameter_sensitivity(cell, wparams, xs, probes=64)
    want = jrnn.diagnostics.parameter_sensitivity(built, params, xs, probes=64)
    ref, _ = _reference(built, params, xs)
    for name in ref:
        wname = [k for k in got.squared_norm if k.endswith(name)]
        assert len(wname) == 1, (name, list(got.squared_norm))
        np.testing.assert_allclose(got.squared_norm[wname[0]], ref[name], rtol=1e-9)
        np.testing.assert_allclose(got.normalized[wname[0]], want.normalized[name], rtol=1e-9)
