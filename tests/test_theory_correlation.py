"""The correlation map in the chaotic phase (issue 28, point 2): c*, chi_c and xi_c of
``mean_field`` against nested adaptive ``scipy.integrate.quad`` with NumPy activations
written independently of jrnn's."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import jrnn

integrate = pytest.importorskip("scipy.integrate")
special = pytest.importorskip("scipy.special")

_SELU_A, _SELU_L = 1.6732632423543772, 1.0507009873554805
_sig = lambda x: 0.5 * (1.0 + math.tanh(0.5 * x))  # noqa: E731
_sp = lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x)))  # noqa: E731
_phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0))  # noqa: E731
_pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731

#: name -> (phi, phi', features in the pre-activation where the integrand bends)
NUMPY = {
    "tanh": (math.tanh, lambda x: 1.0 - math.tanh(x) ** 2, (0.0,)),
    "softsign": (lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2, (0.0,)),
    "hard_tanh": (lambda x: min(max(x, -1.0), 1.0), lambda x: float(abs(x) < 1), (-1.0, 1.0)),
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x)), (0.0,)),
    "hard_sigmoid": (lambda x: min(max(x + 3.0, 0.0), 6.0) / 6.0,
                     lambda x: float(abs(x) < 3) / 6.0, (-3.0, 3.0)),
    "sin": (math.sin, math.cos, (0.0,)),
    "identity": (lambda x: x, lambda x: 1.0, (0.0,)),
    "relu": (lambda x: max(x, 0.0), lambda x: float(x > 0), (0.0,)),
    "leaky_relu": (lambda x: x if x > 0 else 0.01 * x, lambda x: 1.0 if x > 0 else 0.01, (0.0,)),
    "elu": (lambda x: x if x > 0 else math.expm1(x), lambda x: 1.0 if x > 0 else math.exp(x),
            (0.0,)),
    "selu": (lambda x: _SELU_L * (x if x > 0 else _SELU_A * math.expm1(x)),
             lambda x: _SELU_L * (1.0 if x > 0 else _SELU_A * math.exp(x)), (0.0,)),
    "softplus": (_sp, _sig, (0.0,)),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x))), (0.0,)),
    "gelu": (lambda x: x * _phi(x), lambda x: _phi(x) + x * _pdf(x), (0.0,)),
    "mish": (lambda x: x * math.tanh(_sp(x)),
             lambda x: math.tanh(_sp(x)) + x * _sig(x) * (1 - math.tanh(_sp(x)) ** 2), (0.0,)),
}


def _pair(f, g, q, c, feats):
    """E[f(u1) g(u2)] by nested adaptive quad, split where the integrands bend."""
    s, r = math.sqrt(q), math.sqrt(1.0 - c * c)

    def inner(z1):
        pts = [p for p in ((k / s - c * z1) / r for k in feats) if -10 < p < 10]
        return integrate.quad(lambda z2: g(s * (c * z1 + r * z2)) * _pdf(z2), -10, 10,
                              points=pts or None, epsabs=1e-13, epsrel=1e-11, limit=200)[0]

    pts = [k / s for k in feats if -10 < k / s < 10]
    return integrate.quad(lambda z1: f(s * z1) * _pdf(z1) * inner(z1), -10, 10,
                          points=pts or None, epsabs=1e-12, epsrel=1e-10, limit=200)[0]


def _check(name, sw, sb):
    mf = jrnn.theory.mean_field(name, jnp.float64(sw), sb)
    if not np.isfinite(float(mf.q_star)):  # unbounded activation above its edge: no c*
        assert np.isnan(float(mf.c_star)) and np.isnan(float(mf.xi_c))
        return
    f, d, feats = NUMPY[name]
    q, c = float(mf.q_star), float(mf.c_star)
    if c >= 1.0:  # ordered phase
        assert float(mf.chi) <= 1.0
        return
    residual = (sw**2 * _pair(f, f, q, c, feats) + sb**2) / q - c
    chi_c = sw**2 * _pair(d, d, q, c, feats)
    # |c - c*_exact| = |residual| / (1 - chi_c) to first order
    assert abs(residual) / (1.0 - chi_c) < 1e-7, (name, sw, sb, residual)
    np.testing.assert_allclose(float(mf.chi_c), chi_c, rtol=1e-6)
    np.testing.assert_allclose(float(mf.xi_c), -1.0 / math.log(chi_c), rtol=1e-5)


def test_tanh_correlation_map_at_large_gain_matches_quad():
    """Issue 28: xi_c was 2.55 at tanh sigma_w = 4, sigma_b = 0.3 (48 x 48 Gauss-Hermite);
    adaptive quadrature gives 3.639."""
    _check("tanh", 4.0, 0.3)
    np.testing.assert_allclose(float(jrnn.theory.mean_field("tanh", 4.0, 0.3).xi_c), 3.6394,
                               atol=2e-4)


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_correlation_map_across_the_phase_diagram(name):
    for sw in (1.5, 3.0, 5.0):
        for sb in (0.05, 0.5):
            _check(name, sw, sb)
