"""Newton evaluation (DEER, quasi-DEER, ELK) against the sequential scan: values for every cell
family in float64, the linear solves against dense linear algebra, implicit gradients against
jax.grad of jrnn.unroll, lengths / reverse / batch, non-convergence on a chaotic net, the
iteration rule against measured counts, bad inputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import cells
from jrnn.unrolling._newton_solve import (
    _gauss_jordan,
    adjoint_solve,
    affine_solve,
    kalman_solve,
)

B, T, D, N = 3, 8, 2, 4

# The cell list of tests/test_unroll_methods.py.
CELLS = {
    "elman": lambda: cells.elman(N),
    "irnn": lambda: cells.irnn(N),
    "residual": lambda: cells.residual(N, "tanh", 0.5),
    "lstm": lambda: cells.lstm(N),
    "gru": lambda: cells.gru(N),
    "indrnn": lambda: cells.indrnn(N),
    "min_gru": lambda: cells.min_gru(N),
    "min_lstm": lambda: cells.min_lstm(N),
    "lru": lambda: cells.lru(N),
    "stack": lambda: jrnn.stack([cells.gru(N), cells.elman(3)]),
}
LINEAR = ("min_gru", "min_lstm", "lru")


def _f64(tree):
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _setup(name, batch=None, seed=0):
    cell = CELLS[name]()
    p = _f64(cell.init(jax.random.key(seed), D))
    shape = (T, D) if batch is None else (batch, T, D)
    xs = jax.random.normal(jax.random.key(seed + 1), shape, jnp.float64)
    return cell, p, xs


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("name", sorted(CELLS))
def test_deer_equals_the_sequential_scan_float64(name):
    cell, p, xs = _setup(name)
    c_ref, h_ref = jrnn.unroll(cell, p, xs, method=jrnn.Scan())
    res = jrnn.newton.unroll(cell, p, xs)
    assert bool(res.converged) and float(res.residual) <= 1e-11
    assert 1 <= int(res.iterations) <= T
    chex.assert_trees_all_close((res.final_carry, res.hs), (c_ref, h_ref), atol=1e-10, rtol=0)
    if name in LINEAR:  # a linear recurrence is solved exactly by one Newton step
        assert int(res.iterations) == 1


@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "min_gru", "stack"])
def test_quasi_deer_and_elk_reach_the_same_trajectory(name):
    cell, p, xs = _setup(name)
    _, h_ref = jrnn.unroll(cell, p, xs, method=jrnn.Scan())
    for kw in ({"jacobian": "diagonal"}, {"damping": 0.1, "max_iter": 200},
               {"jacobian": "diagonal", "damping": 0.1, "max_iter": 200}):
        res = jrnn.newton.unroll(cell, p, xs, **kw)
        assert bool(res.converged), kw
        np.testing.assert_allclose(res.hs, h_ref, atol=1e-10, rtol=0)
    if name in ("min_gru",):  # elementwise recurrence: its diagonal Jacobian is exact
        assert int(jrnn.newton.unroll(cell, p, xs, jacobian="diagonal").iterations) == 1


def test_at_most_T_iterations_and_the_prefix_is_exact():
    # Iteration i makes s_1..s_i exact whatever the Jacobian approximation.
    cell, p, xs = _setup("gru")
    _, h_ref = jrnn.unroll(cell, p, xs, method=jrnn.Scan())
    res = jrnn.newton.unroll(cell, p, xs, jacobian="diagonal", max_iter=3)
    np.testing.assert_allclose(res.hs[:3], h_ref[:3], atol=1e-14)


# ----------------------------------------------------------------------------- linear solves
def _dense(J, s0, T, S):
    A = np.eye(T * S)
    for t in range(1, T):
        A[t * S:(t + 1) * S, (t - 1) * S:t * S] = -np.asarray(J[t])
    return A


@pytest.mark.parametrize("diag", [False, True])
def test_parallel_solves_equal_dense_linear_algebra(diag):
    S, steps, lam = 3, 7, 0.7
    k = jax.random.split(jax.random.key(0), 5)
    Jd = 0.8 * jax.random.normal(k[0], (steps, S))
    J = Jd if diag else 0.6 * jax.random.normal(k[0], (steps, S, S))
    Jm = jax.vmap(jnp.diag)(Jd) if diag else J
    b, y, g = (jax.random.normal(kk, (steps, S)) for kk in k[1:4])
    s0 = jax.random.normal(k[4], (S,))
    A = _dense(Jm, s0, steps, S)
    c = np.array(b)
    c[0] += np.asarray(Jm[0]) @ np.asarray(s0)
    c = c.ravel()
    np.testing.assert_allclose(affine_solve(J, b, s0).ravel(), np.linalg.solve(A, c), atol=1e-12)
    np.testing.assert_allclose(adjoint_solve(J, g).ravel(), np.linalg.solve(A.T, g.ravel()),
                               atol=1e-12)
    # Levenberg-Marquardt: argmin |A s - c|^2 + lam |s - y|^2.
    want = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[0]), A.T @ c + lam * y.ravel())
    np.testing.assert_allclose(kalman_solve(J, b, s0, y, lam).ravel(), want, atol=1e-12)



def test_elk_solves_without_lapack_by_pivoted_elimination():
    # jaxlib 0.10's batched CPU LAPACK hung the ELK smoother (jrnn.host); its solves are
    # Gauss-Jordan with partial pivoting in XLA operations: equal to LAPACK's solve, pivoting
    # where a leading zero needs it, and no LAPACK custom call in the compiled smoother.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 6, 6)), rng.normal(size=(2, 3, 6, 2))
    np.testing.assert_allclose(_gauss_jordan(a, b), np.linalg.solve(a, b), rtol=1e-10,
                               atol=1e-12)
    perm = np.eye(4)[[2, 0, 3, 1]]  # zero pivots everywhere without row exchanges
    np.testing.assert_allclose(_gauss_jordan(perm, np.eye(4)), perm.T, atol=0)
    J = 0.6 * jax.random.normal(jax.random.key(0), (9, 4, 4))
    b, y = jnp.ones((9, 4)), jnp.zeros((9, 4))
    hlo = jax.jit(kalman_solve).lower(J, b, jnp.zeros(4), y, 0.5).as_text()
    assert "custom_call" not in hlo and "lapack" not in hlo.lower()


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name, kw", [
    ("gru", {}), ("lstm", {"jacobian": "diagonal"}), ("stack", {}), ("lru", {}),
    ("elman", {"damping": 0.1, "max_iter": 200}),
])
def test_implicit_gradient_equals_the_sequential_gradient(name, kw):
    cell, p, xs = _setup(name, batch=2)
    c0 = jax.tree_util.tree_map(
        lambda c: 0.3 * jax.random.normal(jax.random.key(3), (2,) + c.shape, jnp.float64),
        cell.initial_carry(p),
    )

    def loss(p, xs, c0, fn):
        c, hs = fn(p, xs, c0)
        return jnp.sum(jnp.sin(hs)) + sum(jnp.sum(l**2) for l in jax.tree_util.tree_leaves(c))

    newton = lambda p, xs, c0: tuple(jrnn.newton.unroll(cell, p, xs, carry=c0, **kw)[:2])
    seq = lambda p, xs, c0: jrnn.unroll(cell, p, xs, carry=c0, method=jrnn.Scan())
    got = jax.grad(loss, argnums=(0, 1, 2))(p, xs, c0, newton)
    want = jax.grad(loss, argnums=(0, 1, 2))(p, xs, c0, seq)
    chex.assert_trees_all_close(got, want, atol=1e-9, rtol=1e-9)


# ----------------------------------------------------------------------------- unroll method
@pytest.mark.parametrize("name", ["lstm", "min_gru"])
def test_the_newton_method_of_unroll_with_lengths_reverse_batch_and_grad(name):
    cell, p, xs = _setup(name, batch=B)
    lengths = jnp.array([T, 3, 0])

    def loss(p, xs, method, reverse):
        c, hs = jrnn.unroll(cell, p, xs, lengths=lengths, reverse=reverse, method=method)
        total = jnp.sum(jnp.sin(hs)) + sum(jnp.sum(l**2) for l in jax.tree_util.tree_leaves(c))
        return total, (c, hs)

    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), static_argnums=(2, 3))
    for reverse in (False, True):
        got = vg(p, xs, jrnn.Newton(), reverse)
        want = vg(p, xs, jrnn.Scan(), reverse)
        chex.assert_trees_all_close(got, want, rtol=1e-9, atol=1e-10)
        np.testing.assert_array_equal(got[0][1][1][2], 0.0)


def test_newton_result_is_per_sequence_and_a_model_can_use_it():
    cell, p, xs = _setup("gru", batch=B)
    res = jrnn.newton.unroll(cell, p, xs, lengths=jnp.array([T, 2, 5]))
    assert res.iterations.shape == res.converged.shape == res.residual.shape == (B,)
    assert bool(jnp.all(res.converged))
    model = jrnn.models.rnn(cells.gru(N), 1)
    mp = _f64(model.init(jax.random.key(0), D))
    np.testing.assert_allclose(
        model.apply(mp, xs, method=jrnn.Newton()), model.apply(mp, xs), atol=1e-10
    )


# ----------------------------------------------------------------------------- failure
def _chaotic(gain=3.0, n=16, steps=60):
    cell = cells.elman(n, "tanh")
    p = _f64(cell.init(jax.random.key(0), 1))
    W = jax.random.normal(jax.random.key(5), (n, n), jnp.float64) / np.sqrt(n)
    p = dict(p, W_hh=gain * W)
    xs = 0.5 * jax.random.normal(jax.random.key(1), (steps, 1), jnp.float64)
    return cell, p, xs


def test_non_convergence_is_reported_never_hidden():
    cell, p, xs = _chaotic()
    _, h_ref = jrnn.unroll(cell, p, xs, method=jrnn.Scan())
    for kw in ({}, {"jacobian": "diagonal"}, {"damping": 1.0}):
        res = jrnn.newton.unroll(cell, p, xs, max_iter=5, **kw)
        assert not bool(res.converged), kw
        assert int(res.iterations) <= 5
        assert bool(jnp.all(jnp.isfinite(res.hs)))  # the last finite iterate
        assert float(res.residual) > 1e-6 and np.isfinite(float(res.residual))
        assert float(jnp.max(jnp.abs(res.hs - h_ref))) > 1e-6  # and it is not the answer
    # Inside jrnn.unroll a sequence that did not converge is NaN, not a wrong trajectory.
    _, hs = jrnn.unroll(cell, p, xs, method=jrnn.Newton(max_iter=5))
    assert bool(jnp.all(jnp.isnan(hs)))


def _sweep_net(gain, n=32, steps=200):
    """The gain-sweep net of docs/reproductions.md (tanh Elman, W_hh = gain N(0, 1/N))."""
    cell = cells.elman(n, "tanh")
    p = _f64(cell.init(jax.random.key(0), 1))
    W = jax.random.normal(jax.random.key(3), (n, n), jnp.float64) / np.sqrt(n)
    xs = 0.5 * jax.random.normal(jax.random.key(1), (steps, 1), jnp.float64)
    return cell, dict(p, W_hh=gain * W), xs


def test_iteration_rule_follows_measured_counts_on_a_gain_sweep():
    for gain in (0.6, 1.0):
        cell, p, xs = _sweep_net(gain)
        forecast = jrnn.newton.predict_iterations(cell, p, xs, warmup=20)
        res = jrnn.newton.unroll(cell, p, xs)
        assert forecast.predictable and bool(res.converged)
        assert forecast.iterations / 2 <= int(res.iterations) <= 2 * forecast.iterations + 1
    cell, p, xs = _sweep_net(3.0)  # chaotic
    forecast = jrnn.newton.predict_iterations(cell, p, xs, warmup=20)
    assert not forecast.predictable and forecast.iterations == 200
    assert not bool(jrnn.newton.unroll(cell, p, xs, max_iter=50).converged)


def test_iteration_rule_closed_form():
    f = jrnn.newton.iteration_rule(-np.log(2.0), 10**6, tol=1e-12)
    assert f.amplification == pytest.approx(2.0)  # sum of 2^-tau
    assert f.iterations == 3 + 1  # K_0 = ceil(log2(27.6 / 4)) = 3, c A = 1
    assert jrnn.newton.iteration_rule(0.0, 50).iterations == 3 + 25  # A = T at lambda = 0
    assert jrnn.newton.iteration_rule(0.05, 50).iterations == 50  # capped at T


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, match", [
    ({"jacobian": "dense"}, "jacobian must be 'full'.*got 'dense'"),
    ({"damping": -1.0}, "damping must be in"),
    ({"damping": float("inf")}, "damping"),
    ({"damping": float("nan")}, "damping"),
    ({"max_iter": 0}, "max_iter"),
    ({"tol": 0.0}, "tol must be in"),
    ({"tol": -1e-3}, "tol"),
    ({"init": jnp.zeros((T, N + 1))}, r"init must have shape \(8, 4\).*got \(8, 5\)"),
])
def test_bad_inputs_name_the_argument(kw, match):
    cell, p, xs = _setup("elman")
    with pytest.raises(ValueError, match=match):
        jrnn.newton.unroll(cell, p, xs, **kw)


def test_bad_method_fields_raise_in_unroll_too():
    cell, p, xs = _setup("elman")
    with pytest.raises(ValueError, match="max_iter"):
        jrnn.unroll(cell, p, xs, method=jrnn.Newton(max_iter=0))
    assert jrnn.Newton().supports("elman") is not None
    assert jrnn.Newton().supports(cell) is None


def test_init_guess_at_the_solution_needs_no_iteration():
    cell, p, xs = _setup("lstm", batch=2)
    ref = jrnn.newton.unroll(cell, p, xs)
    res = jrnn.newton.unroll(cell, p, xs, init=_flat_states(cell, p, xs))
    assert bool(jnp.all(res.converged)) and bool(jnp.all(res.iterations == 0))
    np.testing.assert_allclose(res.hs, ref.hs, atol=1e-10)


def _flat_states(cell, p, xs):
    def one(x):
        def body(c, u):
            c, _ = cell.step(p, c, u)
            return c, jrnn.cells.flatten_carry(c)

        return jax.lax.scan(body, cell.initial_carry(p), x)[1]

    return jax.vmap(one)(xs)


# ----------------------------------------------------------------------------- study, benchmark
def test_parallel_evaluation_smoke(tmp_path):
    import json
    import os

    from experiments import parallel_evaluation

    out = str(tmp_path / "pe")
    m = parallel_evaluation.main(["--preset", "smoke", "--out", out])
    for f in ("report.md", "run_info.json", "metrics.json", "iterations_vs_lambda.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    text = open(os.path.join(out, "metrics.json")).read()
    assert "NaN" not in text and json.loads(text)["gain_sweep"]["T"] == 60
    rows = m["gain_sweep"]["rows"]
    assert rows[0]["lambda_max"] < 0 and rows[0]["deer"]["converged"]  # gain 0.5
    assert rows[-1]["lambda_max"] > 0 and not rows[-1]["deer"]["converged"]  # gain 3
    assert m["others"]["min_gru"]["deer"]["iterations"] == 1


def test_newton_benchmark_runs_and_reports_ratios():
    from experiments.benchmarks import newton as bench

    rows = bench.run((16,), hidden=4, repeats=1, warmup=0)
    methods = {(r[1], r[2]) for r in rows}
    assert ("min_gru", "associative") in methods and ("elman g=1.2", "elk") in methods
    for _, net, method, ms, ratio, iters, dh, temp, _ in rows:
        assert ms > 0 and ratio > 0 and temp >= 0
        if method in ("scan", "associative"):
            assert iters == "-"
        else:
            assert iters.split()[0].isdigit()
            if iters.isdigit():  # converged: the scan's outputs (float32 tolerance)
                assert dh < 1e-4
        if net == "min_gru" and method == "deer":
            assert iters == "1"
        if method == "scan":
            assert ratio == 1.0 and dh == 0.0
    # The subprocess's memory reading: one call alone, its resident-memory peak after
    # compilation (a positive number of MiB on Linux).
    out = bench.child("min_gru", "deer", 16, 4, 1e-3, 10)
    assert out["reset"] and out["run_mib"] >= 0
