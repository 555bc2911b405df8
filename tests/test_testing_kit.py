"""jrnn.testing: check_cell passes every built-in cell and catches broken ones (a wrong
Jacobian, a wrong tangent, a retracing cell); check_activation catches wrong derivatives and
metadata; the hypothesis strategies draw working cells and sequences."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jrnn
from jrnn import cells
from jrnn.testing import check_activation, check_cell
from jrnn.testing import strategies as jst

BUILTIN = {
    "elman": lambda: cells.elman(3, "tanh"),
    "irnn": lambda: cells.irnn(3),
    "residual": lambda: cells.residual(3, "relu", 0.5),
    "indrnn": lambda: cells.indrnn(3, "tanh"),
    "lstm": lambda: cells.lstm(2),
    "gru": lambda: cells.gru(2),
    "min_gru": lambda: cells.min_gru(3),
    "min_lstm": lambda: cells.min_lstm(3),
    "lru": lambda: cells.lru(2),
    "stack": lambda: jrnn.stack([cells.elman(2), cells.lstm(2)]),
}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_cell_passes_check_cell(name):
    report = check_cell(BUILTIN[name](), 2, dtype="float64", steps=2, quick=True)["float64"]
    assert report["step == recur(input_map)"] <= 1e-12
    assert report["unroll == loop of step"] <= 1e-12


def test_full_check_both_dtypes():
    report = check_cell(cells.elman(3, "tanh"), 2, steps=2)
    assert set(report) == {"float32", "float64"}
    assert report["float64"]["finite differences == jacfwd"] < 1e-6
    assert report["float64"]["jacrev == jacfwd"] < 1e-12
    assert report["float32"]["jacobian == jacfwd"] < 2e-4


def test_float64_check_restores_x64_state():
    before = jax.config.jax_enable_x64
    with jax.enable_x64(False):
        check_cell(cells.leaky(2, dt=0.5), 1, dtype="float64", steps=2, quick=True)
        assert jax.config.jax_enable_x64 is False
    assert jax.config.jax_enable_x64 == before


def _elman_with(**fields):
    cell = cells.elman(3, "tanh")
    linear = {k: fields.pop(k) for k in ("jacobian", "tangent") if k in fields}
    return cell._replace(linear=cell.linear._replace(**linear), **fields)


def test_catches_a_wrong_jacobian():
    # W_hh transposed: right shape, right values on the diagonal, wrong matrix
    bad = _elman_with(
        jacobian=lambda p, h, u: (
            jrnn.activations.tanh_prime(p["W_hh"] @ h + u)[:, None] * p["W_hh"].T
        )
    )
    with pytest.raises(AssertionError) as err:
        check_cell(bad, 2, dtype="float64", steps=2, quick=True)
    msg = str(err.value)
    assert "'jacobian == jacfwd'" in msg and "step t=0" in msg and "largest difference" in msg
    assert "dtype=float64" in msg


def test_catches_a_wrong_tangent():
    bad = _elman_with(tangent=lambda p, h, u, V: p["W_hh"] @ V)  # forgot diag(f')
    with pytest.raises(AssertionError, match=r"'tangent == jacfwd @ V' fails at step t=0"):
        check_cell(bad, 2, dtype="float64", steps=2, quick=True)


def test_catches_a_retracing_cell():
    good = cells.elman(3, "tanh")

    def recur(p, h, u):  # the carry silently drops to float32: every step retraces
        h_new = jnp.tanh(p["W_hh"] @ h + u).astype(jnp.float32)
        return h_new, h_new

    with pytest.raises(AssertionError, match=r"'no retracing' fails at step t=1: step traced 2"):
        check_cell(good._replace(recur=recur), 2, dtype="float64", steps=3, quick=True)


def test_catches_wrong_initial_carry_and_param_spec():
    bad = _elman_with(initial_carry=lambda p: jnp.zeros((4,), p["W_hh"].dtype))
    with pytest.raises(AssertionError, match="'initial_carry' fails.*flattened shape"):
        check_cell(bad, 2, dtype="float64", quick=True)
    bad = _elman_with(param_spec=lambda d: {"W_xh": ((3, d), "f"), "W_hh": ((3, 3), "f")})
    with pytest.raises(AssertionError, match="'param_spec' fails"):
        check_cell(bad, 2, dtype="float64", quick=True)


def test_check_cell_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dtype must be 'float32', 'float64' or both, got 'f16'"):
        check_cell(cells.elman(2), 1, dtype="f16")
    with pytest.raises(ValueError, match="steps must be an integer >= 2, got 1"):
        check_cell(cells.elman(2), 1, steps=1)


# ------------------------------------------------------------------ activations
TANH = jrnn.activations.get("tanh")


@pytest.mark.parametrize(
    "broken, prop",
    [
        (dataclasses.replace(TANH, derivative=lambda x: 1 - 0.9 * jnp.tanh(x) ** 2), "derivative"),
        (dataclasses.replace(TANH, grad_bound=0.5), "grad_bound"),
        (dataclasses.replace(TANH, grad_bound=2.0), "grad_bound"),
        (dataclasses.replace(TANH, output_range=(-0.5, 1.0)), "output_range"),
        (dataclasses.replace(TANH, saturating=False, saturation_threshold=None), "saturating"),
        (dataclasses.replace(TANH, saturation_threshold=1.0), "saturation_threshold"),
        (dataclasses.replace(jrnn.activations.get("relu"), dead_below=-1.0), "dead_below"),
    ],
)
def test_check_activation_catches(broken, prop):
    with pytest.raises(AssertionError, match=rf"property '{prop}' fails at "):
        check_activation(broken)


# ------------------------------------------------------------------ strategies
@settings(max_examples=4)
@given(jst.cells(hidden_sizes=st.integers(1, 3)), jst.sequences(jst.shapes(max_time=4)))
def test_strategies_draw_working_cells(cell, xs):
    params = cell.init(jst.KEY, xs.shape[-1])
    _, hs = jrnn.unroll(cell, params, jnp.asarray(xs, jnp.float32))
    assert hs.shape == xs.shape[:-1] + (cell.hidden_size,)
    assert np.all(np.isfinite(np.asarray(hs)))


def test_strategies_reject_unknown_family():
    with pytest.raises(ValueError, match="families must be among"):
        jst.cells(families=["elmann"])
