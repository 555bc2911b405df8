"""Bad input to the remedy cells, activations.get, gru and the flossing penalties: clear errors."""

import fractions

import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import cells, penalties
from jrnn import flossing as fl


@pytest.mark.parametrize("bias", [float("nan"), float("inf"), "abc", None, True])
def test_mgu_forget_bias_checked(bias):
    with pytest.raises(ValueError, match="forget_bias"):
        cells.mgu(4, forget_bias=bias)


@pytest.mark.parametrize("act", [None, 3])
def test_activation_not_a_name_is_a_type_error(act):
    with pytest.raises(TypeError, match="activation must be"):
        cells.leaky(4, act)


@pytest.mark.parametrize("flag", ["no", None, 1])
def test_gru_reset_after_must_be_bool(flag):
    with pytest.raises(TypeError, match="reset_after"):
        cells.gru(4, reset_after=flag)


def test_orthogonal_init_without_real_generator_raises():
    # -I is in SO(4), but scipy's principal logm is complex: before, W_hh silently became I.
    with pytest.raises(ValueError, match="init"):
        cells.orthogonal(4, parametrization="expm", init=-np.eye(4))


def test_orthogonal_init_matrix_is_reproduced():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    Q[:, 0] *= np.sign(np.linalg.det(Q))
    cell = cells.orthogonal(4, init=Q)
    import jax

    W = np.asarray(cell.pointwise.recurrent_matrix(cell.init(jax.random.key(0), 2)))
    np.testing.assert_allclose(W, Q, atol=1e-5)


@pytest.mark.parametrize("value", ["abc", None, True])
def test_flossing_numbers_named(value):
    cell = cells.elman(4)
    pen = penalties.spectral_norm_penalty(cell)
    with pytest.raises(ValueError, match="weight"):
        penalties.regularize(lambda p, x: x, lambda o, y: o, pen, value)
    with pytest.raises(ValueError, match="target"):
        penalties.spectral_norm_penalty(cell, value)
    with pytest.raises(ValueError, match="target"):
        penalties.jacobian_norm_penalty(cell, value)
    with pytest.raises(ValueError, match="target"):
        penalties.lyapunov_penalty(cell, 2, value)


def test_flossing_xs_checked():
    cell = cells.elman(4)
    import jax

    params = cell.init(jax.random.key(0), 1)
    pen = penalties.lyapunov_penalty(cell, 2)
    with pytest.raises(ValueError, match="empty"):
        pen.fn(params, jnp.ones((0, 5, 1)))
    with pytest.raises(TypeError, match="xs"):
        pen.fn(params, None)
    assert jrnn.cells.mgu(2, forget_bias=1).config == (("forget_bias", 1.0),)


def test_check_cell_rejects_non_cells_and_empty_dtype():
    from jrnn.testing import check_cell

    cell = cells.elman(2)
    with pytest.raises(TypeError, match="model.cell"):
        check_cell(jrnn.models.rnn(cell, 1), 2)
    with pytest.raises(ValueError, match="dtype"):  # before: {} returned, nothing checked
        check_cell(cell, 2, dtype=[])
    with pytest.raises(ValueError, match="perturb"):
        check_cell(cell, 2, perturb=float("nan"))


@pytest.mark.parametrize(
    "kw", [dict(rtol=-1.0), dict(atol="x"), dict(kinks=None), dict(kinks=["a"])]
)
def test_check_activation_tolerances_checked(kw):
    from jrnn.testing import check_activation

    with pytest.raises(ValueError, match=next(iter(kw))):  # rtol=-1 used to pass tanh
        check_activation("tanh", **kw)


def test_health_checks_cell_and_empty_xs():
    import jax

    cell = cells.elman(2)
    params = cell.init(jax.random.key(0), 1)
    with pytest.raises(TypeError, match="cell must be"):
        jrnn.diagnostics.pascanu_bound(None, params)
    with pytest.raises(ValueError, match="at least one step"):  # before: dead_fraction 0.0
        jrnn.diagnostics.unit_health(cell, params, jnp.ones((0, 1)))


def test_flossing_optimizer_and_phase_checked():
    pen = penalties.spectral_norm_penalty(cells.elman(3))
    with pytest.raises(TypeError, match="optimizer"):  # before: failed only when called
        fl.make_penalty_step(pen, None)
    sched = fl.flossing_schedule("before", pre_steps=1)
    with pytest.raises(ValueError, match="t must be"):  # before: 'floss'
        sched.phase(-1)


def test_one_scalar_check_for_remedy_and_classic_cells():
    """mgu (a remedy cell) and lstm check forget_bias with the same function
    (jrnn.validation.check_number): same exception type, same message."""
    from jrnn import validation

    assert issubclass(validation.NumberTypeError, TypeError)
    assert issubclass(validation.NumberTypeError, ValueError)
    for make in (lambda v: cells.mgu(4, forget_bias=v), lambda v: cells.lstm(4, forget_bias=v)):
        with pytest.raises(
            validation.NumberTypeError,
            match=r"forget_bias must be a real number, got '1' \(str\)\.",
        ):
            make("1")
        with pytest.raises(ValueError, match="forget_bias must be a finite real number, got nan"):
            make(float("nan"))
    with pytest.raises(ValueError, match=r"dt must be in \(0, 1\], got 1.5\."):
        validation.check_number(np.float32(1.5), "dt", low=0.0, high=1.0, low_open=True)
    with pytest.raises(ValueError, match=r"gain must be in \[0, inf\), got -1\."):
        validation.check_number(-1, "gain", low=0.0)
    # An int beyond the float range is a ValueError naming the argument, not an OverflowError.
    with pytest.raises(ValueError, match=r"dt must be a finite real number in \(0, 1\]"):
        jrnn.cells.leaky(4, dt=10**400)
    # beyond str()'s 4300-digit limit, negative, and a Fraction: still named, sign kept
    with pytest.raises(ValueError, match=r"target must be .*got an integer of about 10\*\*5000"):
        validation.check_number(10**5000, "target", low=0.0)
    with pytest.raises(ValueError, match=r"w must be .*got an integer of about -10\*\*400"):
        validation.check_number(-(10**400), "w")
    with pytest.raises(ValueError, match=r"w must be .*got a Fraction beyond the float range"):
        validation.check_number(fractions.Fraction(10**400, 3), "w")
    assert not hasattr(jrnn.cells._core_fields, "check_real")
