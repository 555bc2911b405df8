"""The remedy cells: NumPy references of their papers' equations, exact derivatives
through jrnn.testing.check_cell, continuous-time limits, manifold constraints, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

import jrnn
from jrnn import cells
from jrnn.testing import check_cell

N, D, T = 4, 3, 6
XS = np.random.default_rng(1).normal(size=(T, D))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _random_params(cell, key, d=D, scale=0.6):
    """Every leaf random (biases too), float64, so no term of the equations hides."""
    params = cell.init(key, d)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    leaves = [scale * jax.random.normal(k, a.shape, jnp.float64) for k, a in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(tree, leaves)


def _np(params):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)


# ----------------------------------------------------------------- NumPy references
def np_leaky(p, xs, dt):
    h, out = np.zeros(p["W_hh"].shape[0]), []
    for x in xs:
        h = (1 - dt) * h + dt * np.tanh(p["W_hh"] @ h + p["W_xh"] @ x + p["b_h"])
        out.append(h)
    return np.stack(out)


def np_mgu(p, xs):
    """Zhou et al. 2016, eqs. (8)-(10), with [W_f | U_f] and [W_h | U_h] split by columns."""
    n = p["W_hh"].shape[1]
    Wf, Wh = p["W_hh"][:n], p["W_hh"][n:]
    Uf, Uh = p["W_xh"][:n], p["W_xh"][n:]
    bf, bh = p["b_h"][:n], p["b_h"][n:]
    h, out = np.zeros(n), []
    for x in xs:
        f = _sigmoid(Wf @ h + Uf @ x + bf)
        cand = np.tanh(Wh @ (f * h) + Uh @ x + bh)
        h = (1 - f) * h + f * cand
        out.append(h)
    return np.stack(out)


def np_antisymmetric(p, xs, eps, gamma):
    n = p["W_h"].shape[0]
    M = p["W_h"] - p["W_h"].T - gamma * np.eye(n)
    h, out = np.zeros(n), []
    for x in xs:
        h = h + eps * np.tanh(M @ h + p["V_h"] @ x + p["b_h"])
        out.append(h)
    return np.stack(out)


def np_cornn(p, xs, dt, gamma, epsilon):
    """The authors' coRNNCell.forward (z first, then y with the new z)."""
    n = p["W"].shape[0]
    hy, hz, out = np.zeros(n), np.zeros(n), []
    for x in xs:
        hz = hz + dt * (
            np.tanh(p["V"] @ x + p["b"] + p["W"] @ hy + p["W_z"] @ hz) - gamma * hy - epsilon * hz
        )
        hy = hy + dt * hz
        out.append(hy)
    return np.stack(out), (hy, hz)


def np_lem(p, xs, dt):
    """Rusch et al. 2022, eq. (3)."""
    n = p["W_y"].shape[0]
    y, z, out = np.zeros(n), np.zeros(n), []
    for x in xs:
        lin = lambda b, v: p[f"W_{b}"] @ v + p[f"V_{b}"] @ x + p[f"b_{b}"]
        dt1 = dt * _sigmoid(lin("1", y))
        dt2 = dt * _sigmoid(lin("2", y))
        z = (1 - dt1) * z + dt1 * np.tanh(lin("z", y))
        y = (1 - dt2) * y + dt2 * np.tanh(lin("y", z))
        out.append(y)
    return np.stack(out), (y, z)


def np_orthogonal(p, xs, parametrization):
    S = 0.5 * (p["A"] - p["A"].T)
    n = S.shape[0]
    if parametrization == "expm":
        W = scipy.linalg.expm(S)
    else:
        W = np.linalg.inv(np.eye(n) + S) @ (np.eye(n) - S)
    h, out = np.zeros(n), []
    for x in xs:
        h = np.tanh(W @ h + p["W_xh"] @ x + p["b_h"])
        out.append(h)
    return np.stack(out)


def np_lipschitz(p, xs, eps, beta, gA, gW):
    n = p["M_A"].shape[0]
    mix = lambda M, g: (1 - beta) * (M + M.T) + beta * (M - M.T) - g * np.eye(n)
    A, W = mix(p["M_A"], gA), mix(p["M_W"], gW)
    h, out = np.zeros(n), []
    for x in xs:
        h = h + eps * A @ h + eps * np.tanh(W @ h + p["U"] @ x + p["b"])
        out.append(h)
    return np.stack(out)


CASES = {
    "leaky": (lambda: cells.leaky(N, "tanh", dt=0.3), lambda p: np_leaky(p, XS, 0.3)),
    "mgu": (lambda: cells.mgu(N), lambda p: np_mgu(p, XS)),
    "antisymmetric": (
        lambda: cells.antisymmetric(N, eps=0.2, gamma=0.05),
        lambda p: np_antisymmetric(p, XS, 0.2, 0.05),
    ),
    "cornn": (
        lambda: cells.cornn(N, dt=0.1, gamma=2.7, epsilon=4.7),
        lambda p: np_cornn(p, XS, 0.1, 2.7, 4.7)[0],
    ),
    "lem": (lambda: cells.lem(N, dt=0.6), lambda p: np_lem(p, XS, 0.6)[0]),
    "orthogonal": (lambda: cells.orthogonal(N), lambda p: np_orthogonal(p, XS, "expm")),
    "cayley": (
        lambda: cells.orthogonal(N, parametrization="cayley", init="cayley"),
        lambda p: np_orthogonal(p, XS, "cayley"),
    ),
    "lipschitz": (
        lambda: cells.lipschitz(N, eps=0.2, beta=0.7, gamma_A=0.01, gamma_W=0.02),
        lambda p: np_lipschitz(p, XS, 0.2, 0.7, 0.01, 0.02),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_reference(name):
    make, ref = CASES[name]
    cell = make()
    p = _random_params(cell, jax.random.key(3))
    _, hs = jrnn.unroll(cell, p, XS)
    np.testing.assert_allclose(hs, ref(_np(p)), rtol=1e-10, atol=1e-12)


def test_second_order_carries_match_reference():
    for make, ref, kw in [
        (lambda: cells.cornn(N, dt=0.1), np_cornn, (0.1, 2.7, 4.7)),
        (lambda: cells.lem(N, dt=0.6), np_lem, (0.6,)),
    ]:
        cell = make()
        p = _random_params(cell, jax.random.key(4))
        (y, z), _ = jrnn.unroll(cell, p, XS)
        _, (ry, rz) = ref(_np(p), XS, *kw)
        np.testing.assert_allclose(y, ry, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(z, rz, rtol=1e-10, atol=1e-12)


# ------------------------------------------ exact derivatives (the kit, float64, full)
@pytest.mark.parametrize("name", sorted(CASES))
def test_check_cell_float64(name):
    """Contract; analytic jacobian and tangent == jacfwd == jacrev == finite differences."""
    report = check_cell(CASES[name][0](), 2, dtype="float64", steps=2)["float64"]
    for prop in ("jacobian == jacfwd", "tangent == jacfwd @ V", "finite differences == jacfwd"):
        assert prop in report


def test_check_cell_float32_leaky():
    report = check_cell(cells.leaky(3, "tanh", dt=0.5), 2, dtype="float32", steps=2)
    assert report["float32"]["jacobian == jacfwd"] < 2e-4


# ----------------------------------------------------------- leaky: continuous time
def test_leaky_dt_one_is_elman():
    leaky, elman = cells.leaky(N, "tanh", dt=1.0), cells.elman(N, "tanh")
    p = _random_params(elman, jax.random.key(5))
    np.testing.assert_allclose(jrnn.unroll(leaky, p, XS)[1], jrnn.unroll(elman, p, XS)[1])


@pytest.mark.parametrize("activation,dt", [("tanh", 0.3), ("relu", 0.7), ("sigmoid", 1.0)])
def test_leaky_fused_path_equals_reference_scan(activation, dt):
    """leaky's fused rule (the pointwise builder's) == the readable scan of recur: values and
    gradients in float64, through the default custom-JVP path and the hand-written reverse."""
    cell = cells.leaky(N, activation, dt=dt)
    assert isinstance(cell.fused, cells.FusedRule)
    p = _random_params(cell, jax.random.key(11))
    xs = jnp.stack([jnp.asarray(XS), jnp.asarray(XS[::-1])])

    def loss(q, method):
        carry, hs = jrnn.unroll(cell, q, xs, method=method)
        return jnp.sum(jnp.sin(hs)) + jnp.sum(carry**2)

    assert jrnn.unrolling.auto_method(cell) == jrnn.Fused()
    ref = jrnn.unroll(cell, p, xs, method=jrnn.Scan())
    g_ref = jax.grad(loss)(p, jrnn.Scan())
    for method in (jrnn.Fused(), jrnn.Fused(backward="custom_vjp")):
        got = jrnn.unroll(cell, p, xs, method=method)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
            assert a.dtype == jnp.float64
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
        g = jax.grad(loss)(p, method)
        for k in g_ref:
            np.testing.assert_allclose(g[k], g_ref[k], rtol=0, atol=1e-10, err_msg=k)


def test_leaky_linear_exponents_per_unit_time_closed_form():
    """Linear rate network: J = (1 - dt) I + dt W, exponents per step log|1 + dt (mu - 1)|,
    per unit time -> Re(mu) - 1 as dt -> 0 (the ODE dh/dt = -h + W h)."""
    n = 5
    W = np.asarray(jax.random.normal(jax.random.key(0), (n, n), jnp.float64)) / np.sqrt(n)
    mu = np.linalg.eigvals(W)
    ode = np.sort(mu.real - 1.0)[::-1]
    errors = []
    for dt in (0.2, 0.1, 0.05):
        cell = cells.leaky(n, "identity", dt=dt)
        p = {"W_xh": jnp.zeros((n, 1)), "W_hh": jnp.asarray(W), "b_h": jnp.zeros(n)}
        lam = jrnn.diagnostics.lyapunov_spectrum(cell, p, jnp.zeros((400, 1))).exponents
        exact = np.sort(np.log(np.abs(1.0 + dt * (mu - 1.0))))[::-1]
        np.testing.assert_allclose(lam, exact, atol=2e-2)  # finite-time Benettin estimate
        errors.append(np.max(np.abs(np.asarray(lam) / dt - ode)))
    assert errors[2] < errors[1] < errors[0]


def test_leaky_tanh_exponent_per_unit_time_converges_as_dt_shrinks():
    """Driven tanh rate network, input x(t) = sin(t) sampled at t = k dt over the same 60 time
    units: the top exponent per unit time (lambda / dt) converges at the Euler rate O(dt)."""
    n, duration = 8, 60.0
    cell0 = cells.leaky(n, "tanh", dt=1.0, gain=1.5)
    p = cell0.init(jax.random.key(2), 1)
    p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p)
    rates = []
    for dt in (0.2, 0.1, 0.05):
        cell = cells.leaky(n, "tanh", dt=dt)
        t = jnp.arange(int(round(duration / dt))) * dt
        xs = jnp.sin(t)[:, None]
        lam = jrnn.diagnostics.lyapunov_spectrum(cell, p, xs, k=1).exponents[0]
        rates.append(float(lam) / dt)
    d1, d2 = abs(rates[0] - rates[1]), abs(rates[1] - rates[2])
    assert d2 < 0.75 * d1, rates  # halving dt roughly halves the change (first order)


# -------------------------------------------------------------- orthogonal: manifold
def test_orthogonal_stays_orthogonal_after_gradient_steps():
    cell = cells.exprnn(6, "tanh")
    p0 = cell.init(jax.random.key(0), 2)  # float32
    x, h0 = jnp.ones(2, jnp.float32), jnp.full(6, 0.5, jnp.float32)
    loss = lambda p: jnp.sum(cell.step(p, h0, x)[1] ** 2)
    opt = optax.adam(0.1)

    @jax.jit
    def update(p, state):
        updates, state = opt.update(jax.grad(loss)(p), state)
        return optax.apply_updates(p, updates), state

    p, state = p0, opt.init(p0)
    for _ in range(3):
        p, state = update(p, state)
    W = jax.jit(cell.pointwise.recurrent_matrix)(p)
    assert p["A"].dtype == jnp.float32
    assert float(jnp.max(jnp.abs(W.T @ W - jnp.eye(6)))) < 1e-6
    assert float(jnp.max(jnp.abs(p["A"] - p0["A"]))) > 1e-2  # the steps moved W_hh


def test_orthogonal_init_matrix_is_reproduced():
    W0 = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    if np.linalg.det(W0) < 0:
        W0[:, 0] *= -1
    for par in ("expm", "cayley"):
        cell = cells.orthogonal(5, parametrization=par, init=W0)
        p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 2))
        np.testing.assert_allclose(cell.pointwise.recurrent_matrix(p), W0, atol=1e-6)
    henaff = cells.exprnn(5).pointwise.recurrent_matrix(cells.exprnn(5).init(jax.random.key(0), 2))
    np.testing.assert_allclose(henaff.T @ henaff, np.eye(5), atol=1e-6)


# ------------------------------------------------------------------ diagnostics etc.
def test_diagnostics_work_unchanged_on_a_stack_of_remedies():
    """A deep stack of remedies (a tuple carry, an expm inside): Lyapunov sum rule
    (sum of exponents = mean log|det J_t|) and finite propagation norms."""
    deep = jrnn.stack([cells.cornn(3, dt=0.3), cells.orthogonal(3)])
    p = _random_params(deep, jax.random.key(6), scale=0.4)
    xs = jnp.asarray(XS)
    J = jrnn.diagnostics.step_jacobians(deep, p, xs)
    assert J.shape == (T, deep.state_size, deep.state_size) and deep.state_size == 9
    spec = jrnn.diagnostics.lyapunov_spectrum(deep, p, xs)
    logdet = np.mean(np.linalg.slogdet(np.asarray(J))[1])
    np.testing.assert_allclose(np.sum(spec.exponents), logdet, rtol=1e-8, atol=1e-10)
    prop = jrnn.diagnostics.propagation(deep, p, xs)
    assert np.all(np.isfinite(np.asarray(prop.log_spectral_norm)))


def test_nnx_adapter_takes_a_remedy_cell():
    from flax import nnx

    layer = jrnn.nnx.RNN(cells.cornn(N), D, rngs=nnx.Rngs(0))
    assert layer(jnp.ones((2, T, D))).shape == (2, T, N)


# -------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: cells.leaky(3, dt=0.0), r"dt must be in \(0, 1\], got 0.0"),
        (lambda: cells.leaky(3, dt=1.5), r"dt must be in \(0, 1\], got 1.5"),
        (lambda: cells.lem(3, dt=-1), r"dt must be in \(0, 1\], got -1"),
        (lambda: cells.antisymmetric(3, eps=0.0), r"eps must be in \(0, inf\), got 0.0"),
        (lambda: cells.antisymmetric(3, gamma=-0.1), r"gamma must be in \[0, inf\), got -0.1"),
        (lambda: cells.cornn(3, gamma=-1.0), r"gamma must be in \[0, inf\), got -1.0"),
        (lambda: cells.cornn(3, dt=float("nan")), "dt must be a finite real number"),
        (lambda: cells.lipschitz(3, beta=2.0), r"beta must be in \[0, 1\], got 2.0"),
        (lambda: cells.orthogonal(3, init=np.ones((3, 2))), r"square \(3, 3\).*got shape \(3, 2\)"),
        (lambda: cells.orthogonal(3, init=2 * np.eye(3)), r"init must be orthogonal.*got max"),
        (lambda: cells.orthogonal(3, init=np.diag([1.0, 1, -1])), "determinant \\+1.*got det"),
        (lambda: cells.orthogonal(3, init="glorot"), "init must be one of"),
        (lambda: cells.orthogonal(3, parametrization="qr"), "parametrization must be one of"),
        (lambda: cells.mgu(0), "hidden_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_long_sequence_offers_every_remedy():
    from experiments import long_sequence

    for name in long_sequence.REMEDY_CELLS:
        cell = long_sequence.make_cell(name, 3)
        assert name in long_sequence.CELLS and cell.hidden_size == 3
