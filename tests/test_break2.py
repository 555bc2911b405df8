"""Defects a fresh user found in jrnn.wrap, jrnn.newton / jrnn.Newton, snapshot and Monitor
(helper break2), each with its regression test against an independent reference."""

import jax.numpy as jnp
import numpy as np

import jrnn


def _tanh_ref(W, U, xs, h0):
    """Lyapunov exponents of h' = tanh(W h + U x) from a NumPy QR loop (nats per step)."""
    h, Q, s = h0.copy(), np.eye(len(h0)), np.zeros(len(h0))
    for x in xs:
        h = np.tanh(W @ h + U @ x)
        Q, R = np.linalg.qr(((1 - h**2)[:, None] * W) @ Q)
        s += np.log(np.abs(np.diag(R)))
    return s / len(xs)


def test_wrap_python_scalar_param_leaf_against_numpy_qr():
    # a params leaf that is a Python float crashed lyapunov_spectrum with AttributeError
    def step(p, h, x):
        h = jnp.tanh(p["a"] * p["W"] @ h + p["U"] @ x)
        return h, h

    rng = np.random.default_rng(0)
    W, U = rng.normal(size=(3, 3)), rng.normal(size=(3, 2))
    xs, h0 = rng.normal(size=(12, 2)), 0.3 * rng.normal(size=3)
    cell, p = jrnn.wrap(step, params={"a": 0.8, "W": jnp.asarray(W), "U": jnp.asarray(U)},
                        carry=jnp.zeros(3), input_size=2)  # fmt: skip
    ref = _tanh_ref(0.8 * W, U, xs, h0)
    lam = jrnn.diagnostics.lyapunov_spectrum(cell, p, jnp.asarray(xs), carry=jnp.asarray(h0),
                                             k=3, mode="tangent")  # fmt: skip
    np.testing.assert_allclose(lam.exponents, ref, rtol=1e-9, atol=1e-12)
