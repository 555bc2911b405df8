"""unit_health (dead / saturated units) and pascanu_bound."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.diagnostics import pascanu_bound, unit_health


def _preactivations(cell, params, xs):
    """Independent reference: Python loop over steps."""
    h, out = cell.initial_carry(params), []
    for x in xs:
        out.append(np.asarray(cell.pointwise.preactivation(params, h, cell.input_map(params, x))))
        h = cell.step(params, h, x)[0]
    return np.stack(out)


def test_dead_relu_units_pooled_over_batch():
    cell = jrnn.cells.elman(5, "relu")
    params = cell.init(jax.random.key(0), 2)
    params["b_h"] = jnp.array([-100.0, -100.0, 0.0, 0.0, 3.0], jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (3, 20, 2), jnp.float32)
    health = unit_health(cell, params, xs)
    a = np.concatenate([_preactivations(cell, params, x) for x in xs])
    np.testing.assert_array_equal(health.dead, np.all(a <= 0, axis=0))
    assert health.dead[:2].all() and not health.dead[4]
    np.testing.assert_allclose(health.dead_fraction, np.mean(np.all(a <= 0, axis=0)))
    assert bool(health.dead_applicable) and not bool(health.saturation_applicable)
    assert float(health.saturated_fraction) == 0.0
    # A unit dead in one sequence but alive in another is not dead.
    xs2 = xs.at[0].set(100.0 * jnp.abs(xs[0]))
    params2 = {**params, "W_xh": params["W_xh"].at[0].set(1.0)}
    assert not bool(unit_health(cell, params2, xs2).dead[0])


def test_saturation_matches_threshold_count():
    cell = jrnn.cells.elman(4, "tanh")
    params = cell.init(jax.random.key(2), 1)
    params["W_xh"] = jnp.array([[8.0], [0.1], [3.0], [0.0]], jnp.float32)
    xs = jax.random.normal(jax.random.key(3), (30, 1), jnp.float32)
    health = jax.jit(lambda p, x: unit_health(cell, p, x))(params, xs)
    a = _preactivations(cell, params, xs)
    thr = jrnn.activations.get("tanh").saturation_threshold
    np.testing.assert_allclose(health.saturated, np.mean(np.abs(a) > thr, axis=0), atol=1e-7)
    np.testing.assert_allclose(health.saturated_fraction, np.mean(np.abs(a) > thr), atol=1e-7)
    assert health.saturated[0] > 0.5 and health.saturated[3] == 0
    assert not bool(health.dead_applicable) and health.dead_fraction == 0


def test_unit_health_rejects_gated_cells():
    cell = jrnn.cells.lstm(3)
    with pytest.raises(ValueError, match="lstm"):
        unit_health(cell, cell.init(jax.random.key(0), 2), jnp.ones((4, 2)))


def test_pascanu_bound_verdicts():
    cell = jrnn.cells.elman(6, "sigmoid")  # orthogonal W_hh: 0.25 * 1
    pb = pascanu_bound(cell, cell.init(jax.random.key(0), 1))
    np.testing.assert_allclose(pb.bound, 0.25, rtol=1e-5)
    assert pb.verdict == "must vanish" and bool(pb.must_vanish)

    cell = jrnn.cells.elman(6, "tanh")
    params = cell.init(jax.random.key(0), 1)
    params["W_hh"] = 2.0 * params["W_hh"]
    pb = pascanu_bound(cell, params)
    np.testing.assert_allclose(pb.bound, 2.0, rtol=1e-5)
    assert pb.verdict == "may explode or vanish"
    # The bound really bounds every step Jacobian.
    Js = jrnn.diagnostics.step_jacobians(cell, params, jnp.ones((10, 1), jnp.float32))
    assert np.all(np.linalg.norm(np.asarray(Js), 2, axis=(-2, -1)) <= float(pb.bound) + 1e-5)

    res = jrnn.cells.residual(6, "tanh", alpha=0.1)
    pb = pascanu_bound(res, res.init(jax.random.key(0), 1))
    np.testing.assert_allclose(pb.branch_bound, 0.1, rtol=1e-5)
    np.testing.assert_allclose(pb.bound, 1.1, rtol=1e-5)
    assert pb.verdict == "may explode or vanish"

    ind = jrnn.cells.indrnn(4, "relu")
    params = ind.init(jax.random.key(0), 1)
    np.testing.assert_allclose(
        pascanu_bound(ind, params).sigma_max, np.max(np.abs(params["w_hh"])), rtol=1e-6
    )
    with pytest.raises(ValueError, match="gru"):
        pascanu_bound(jrnn.cells.gru(3), jrnn.cells.gru(3).init(jax.random.key(0), 1))


def test_pascanu_bound_comes_from_the_cell_not_its_name():
    """leaky: (1 - dt) + dt g sigma bounds every step; the bound is the cell's own
    (cell.pointwise.step_bound), so renaming a cell or emptying its config changes nothing."""
    cell = jrnn.cells.leaky(6, "tanh", dt=0.25, gain=2.0)
    params = cell.init(jax.random.key(3), 2)
    sigma = np.linalg.svd(np.asarray(params["W_hh"], np.float64), compute_uv=False)[0]
    pb = pascanu_bound(cell, params)
    np.testing.assert_allclose(pb.bound, 0.75 + 0.25 * sigma, rtol=1e-5)
    np.testing.assert_allclose(pb.branch_bound, 0.25 * sigma, rtol=1e-5)
    xs = jax.random.normal(jax.random.key(4), (20, 2))
    Js = jrnn.diagnostics.step_jacobians(cell, params, xs)
    assert np.all(np.linalg.norm(np.asarray(Js), 2, axis=(-2, -1)) <= float(pb.bound) + 1e-5)
    res = jrnn.cells.residual(4, "tanh", alpha=-0.5)
    p = res.init(jax.random.key(0), 1)
    anonymous = pascanu_bound(res._replace(name="mystery", config=()), p)
    for a, b in zip(anonymous, pascanu_bound(res, p)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(anonymous.bound, 1.5, rtol=1e-5)  # 1 + |alpha| * 1 * 1


def test_missing_capability_is_named():
    lstm = jrnn.cells.lstm(3)
    with pytest.raises(ValueError, match=r"lacks the pointwise capability \(cell.pointwise is"):
        pascanu_bound(lstm, lstm.init(jax.random.key(0), 1))
    anti = jrnn.cells.antisymmetric(3)
    with pytest.raises(ValueError, match=r"lacks pointwise.recurrent_matrix, pointwise.step_bound"):
        pascanu_bound(anti, anti.init(jax.random.key(0), 1))
    # unit_health needs only the activation and the pre-activation
    h = unit_health(anti, anti.init(jax.random.key(0), 1), jnp.ones((3, 1)))
    assert h.dead.shape == (3,)
