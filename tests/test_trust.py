"""Numbers you can trust (issue 12) and one derivative at kinks (issue 16, item 4).

Each test here failed on the main branch it was written against (6bf4e12); the
numbers before and after are in the branch's report.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import jrnn
from jrnn import activations
from jrnn.diagnostics import (
    eigenvalues,
    lyapunov_spectrum,
    pascanu_bound,
    singular_values,
    step_jacobians,
    unit_health,
)

# ----------------------------------------------------------------------------- references

_C, _K = math.sqrt(2.0 / math.pi), 0.044715
_SELU_A, _SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _sech2(x):
    return 1.0 / np.cosh(x) ** 2  # float64: accurate for |x| < 350


def _gelu_tanh_ref(x):
    u = _C * (x + _K * x**3)
    du = _C * (1 + 3 * _K * x * x)
    return 0.5 * (1 + np.tanh(u)) + 0.5 * x * _sech2(u) * du if False else (
        special.expit(2 * u) + x * du * 2 * special.expit(2 * u) * special.expit(-2 * u)
    )


# Independent float64 derivatives (numpy / scipy), accurate over the grid below.
REFERENCE = {
    "identity": np.ones_like,
    "sigmoid": lambda x: special.expit(x) * special.expit(-x),
    "hard_sigmoid": lambda x: np.where(np.abs(x) < 3, 1 / 6, 0.0),
    "tanh": _sech2,
    "hard_tanh": lambda x: np.where(np.abs(x) < 1, 1.0, 0.0),
    "relu": lambda x: (x > 0).astype(float),
    "leaky_relu": lambda x: np.where(x > 0, 1.0, 0.01),
    "elu": lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))),
    "selu": lambda x: _SELU_S * np.where(x > 0, 1.0, _SELU_A * np.exp(np.minimum(x, 0))),
    "gelu": lambda x: special.ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi),
    "gelu(approximate=True)": _gelu_tanh_ref,
    "silu": lambda x: special.expit(x) * (1 + x * special.expit(-x)),
    "softplus": special.expit,
    "softsign": lambda x: 1 / (1 + np.abs(x)) ** 2,
    "mish": lambda x: np.tanh(np.logaddexp(0, x))
    + x * _sech2(np.logaddexp(0, x)) * special.expit(x),
    "sin": np.cos,
}
ACTS = [activations.get(n) for n in activations.BUILTINS] + [
    activations.get("gelu", approximate=True)
]
TINY32 = float(np.finfo(np.float32).tiny)


# ----------------------------------------------------------------------------- derivatives


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
def test_float32_derivative_keeps_relative_accuracy(act):
    """Every built-in f' in float32 vs an independent float64 form, tails included.

    Where the true value is a normal float32 (with a 2^20 margin: intermediates such as
    phi(x) may be subnormal below it) and |x| >= 3: relative error <= 8 eps (1 + |ln f'|),
    the rounding of an exponential's argument; near the origin (where some f' have roots,
    so relative error means nothing) absolute 2e-6. ``1 - tanh^2``, ``s (1 - s)`` or
    ``1 + erf`` forms give 0 or O(1) relative errors in the tails and fail.
    """
    x = np.concatenate([np.linspace(-90, 90, 3601), [-40.5, -9.5, 9.5, 17.5, 40.5]])
    x = x.astype(np.float32)
    got = np.asarray(act.derivative(jnp.asarray(x)), np.float64)
    ref = REFERENCE[act.name](x.astype(np.float64))
    ok = np.abs(ref) >= 2.0**20 * TINY32  # intermediates (phi, s) may be subnormal below
    err = np.abs(got - ref)
    eps = float(np.finfo(np.float32).eps)
    rel = 8 * eps * (1 + np.abs(np.log(np.maximum(np.abs(ref), 1e-300))))
    tol = np.where(np.abs(x) >= 3, rel * np.abs(ref), 2e-6)
    bad = ok & (err > tol)
    assert not bad.any(), (act.name, x[bad][:5], got[bad][:5], ref[bad][:5])


def _kinks(act):
    return {"relu": [0.0], "leaky_relu": [0.0], "elu": [0.0], "selu": [0.0],
            "hard_tanh": [-1.0, 1.0], "hard_sigmoid": [-3.0, 3.0]}.get(act.name.split("(")[0], [])  # fmt: skip


KINKED = [activations.get(n) for n in ("relu", "hard_tanh", "hard_sigmoid", "selu")] + [
    activations.get("leaky_relu", negative_slope=0.2),
    activations.get("elu", alpha=0.5),
]
EXPECTED_AT_KINKS = {  # the documented convention: the closed (x <= 0, |x| >= c) piece
    "relu": [0.0], "hard_tanh": [0.0, 0.0], "hard_sigmoid": [0.0, 0.0],
    "selu": [_SELU_S * _SELU_A], "leaky_relu(negative_slope=0.2)": [0.2],
    "elu(alpha=0.5)": [0.5],
}  # fmt: skip


@pytest.mark.parametrize("act", KINKED, ids=lambda a: a.name)
def test_every_path_agrees_at_kinks(act):
    """Registry == jax.grad(fn) == analytic Jacobian == grad through the scan == fused."""
    kinks = np.asarray(_kinks(act), np.float32)
    expected = np.asarray(EXPECTED_AT_KINKS[act.name], np.float32)
    np.testing.assert_array_equal(act.derivative(jnp.asarray(kinks)), expected)
    np.testing.assert_array_equal(jax.vmap(jax.grad(act.fn))(jnp.asarray(kinks)), expected)

    # One Elman step whose pre-activations sit exactly on the kinks: a_i = x_i.
    n = kinks.size
    cell = jrnn.cells.elman(n, act)
    p = cell.init(jax.random.key(0), n)
    eye = jnp.eye(n, dtype=jnp.float32)
    p = {"W_xh": eye, "W_hh": 0.5 * eye, "b_h": jnp.zeros(n, jnp.float32)}
    xs = jnp.asarray(kinks)[None]
    J = step_jacobians(cell, p, xs, method="analytic")[0]
    np.testing.assert_array_equal(jnp.diagonal(J), 0.5 * expected)
    np.testing.assert_array_equal(step_jacobians(cell, p, xs, method="jacfwd")[0], J)
    loss = lambda p, unroll: jnp.sum(unroll(cell, p, xs)[1])
    g_scan = jax.grad(loss)(p, jrnn.unroll)
    np.testing.assert_array_equal(jnp.diagonal(g_scan["W_xh"]), kinks * expected)
    np.testing.assert_array_equal(g_scan["b_h"], expected)
    g_fused = jax.grad(loss)(p, jrnn.fast.fused_unroll)
    np.testing.assert_array_equal(g_fused["b_h"], expected)
    # NaN in: NaN derivative on every path (never a plausible 0 or slope).
    nan = jnp.full((1, n), jnp.nan, jnp.float32)
    assert np.isnan(act.derivative(nan[0])).all()
    assert np.isnan(step_jacobians(cell, p, nan, method="analytic")).any(axis=-1).all()
    assert np.isnan(step_jacobians(cell, p, nan, method="jacfwd")).any(axis=-1).all()


# ----------------------------------------------------------------------------- gated Jacobians


def _saturated(name):
    """Cell and float32 params whose gate pre-activations sit in the float32 tails.

    Sigmoid gates at +18 (s rounds to 1 in float32: s (1 - s) == 0, true 1.5e-8), tanh
    arguments near 10 (1 - tanh^2 == 0, true 8e-9); all weights positive, so no entry is
    a cancelling sum and each can be compared relatively.
    """
    n, d = 3, 1
    pos = lambda k, shape: jax.random.uniform(jax.random.key(k), shape, jnp.float32, 0.1, 0.2)
    if name == "lstm":
        cell = jrnn.cells.lstm(n)
        b = jnp.concatenate([jnp.full(n, 18.0), jnp.full(n, 18.0), jnp.full(n, 10.0),
                             jnp.full(n, 18.0)]).astype(jnp.float32)  # fmt: skip
        p = {"W_xh": pos(0, (4 * n, d)), "W_hh": pos(1, (4 * n, n)), "b_h": b}
        carry = (jnp.full(n, 0.5, jnp.float32), jnp.full(n, 9.0, jnp.float32))
    elif name == "gru":
        cell = jrnn.cells.gru(n)
        b = jnp.concatenate([jnp.full(2 * n, 18.0), jnp.full(n, 10.0)]).astype(jnp.float32)
        p = {"W_xh": pos(0, (3 * n, d)), "W_hh": pos(1, (3 * n, n)), "b_xh": b,
             "b_hh": jnp.zeros(3 * n, jnp.float32)}  # fmt: skip
        carry = jnp.full(n, -0.5, jnp.float32)
    elif name == "min_gru":
        cell = jrnn.cells.min_gru(n)
        p = {"W_z": pos(0, (n, d)), "b_z": jnp.full(n, 20.0, jnp.float32),
             "W_h": pos(1, (n, d)), "b_h": jnp.zeros(n, jnp.float32)}  # fmt: skip
        carry = jnp.full(n, 0.5, jnp.float32)
    else:  # min_lstm: both gates underflow, f / (f + i) is 0 / 0; true f' = 1 / (1 + e^-3)
        cell = jrnn.cells.min_lstm(n)
        p = {"W_f": pos(0, (n, d)), "b_f": jnp.full(n, -95.0, jnp.float32),
             "W_i": pos(1, (n, d)), "b_i": jnp.full(n, -98.0, jnp.float32),
             "W_h": pos(2, (n, d)), "b_h": jnp.zeros(n, jnp.float32)}  # fmt: skip
        carry = jnp.full(n, 0.5, jnp.float32)
    return cell, p, carry, jnp.ones((1, d), jnp.float32)


def _reference64(cell, p, carry, xs):
    """float64 jax.jacfwd of the cell's own recurrence at the same (upcast) values."""
    up = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), t)
    p64, c64 = up(p), up(carry)
    if cell.name == "min_lstm":  # float64 sigmoids still underflow at -95: use log-space f'
        k_f = p64["W_f"] @ xs[0].astype(jnp.float64) + p64["b_f"]
        k_i = p64["W_i"] @ xs[0].astype(jnp.float64) + p64["b_i"]
        return jnp.diag(1 / (1 + jnp.exp(k_i - k_f)))
    step = jrnn.diagnostics.jacobians.state_step(cell, p64)
    s64 = jrnn.cells.flatten_carry(c64)
    return jax.jacfwd(step)(s64, cell.input_map(p64, xs[0].astype(jnp.float64)))


@pytest.mark.parametrize("name", ["lstm", "gru", "min_gru", "min_lstm"])
def test_gated_jacobians_keep_relative_accuracy_in_the_tails(name):
    cell, p, carry, xs = _saturated(name)
    J = np.asarray(step_jacobians(cell, p, xs, carry=carry, method="analytic")[0], np.float64)
    ref = np.asarray(_reference64(cell, p, carry, xs))
    assert np.all(np.isfinite(J))
    np.testing.assert_array_equal(J == 0, ref == 0)  # no entry lost to underflow
    np.testing.assert_allclose(J, ref, rtol=2e-5, atol=0)
