"""The fused method (jrnn.Fused, jrnn.unrolling.fused) == jax.grad of the reference scan."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.unrolling import fused as fused_module
from jrnn.unrolling import fused_derivatives

B, T, D, N = 3, 7, 2, 4
VJP = jrnn.Fused(backward="custom_vjp")  # the hand-written custom VJP (reverse mode only)


def _cells():
    return {
        "elman-tanh": jrnn.cells.elman(N),
        "elman-relu": jrnn.cells.elman(N, "relu"),
        "elman-sigmoid-nobias": jrnn.cells.elman(N, "sigmoid", use_bias=False),
        "elman-gelu": jrnn.cells.elman(N, "gelu"),
        "irnn": jrnn.cells.irnn(N),
        "residual-softsign": jrnn.cells.residual(N, "softsign", alpha=0.5),
        "lstm": jrnn.cells.lstm(N),
        "gru": jrnn.cells.gru(N),
    }


CELLS = _cells()


def _setup(name, dtype=jnp.float64, batch=True):
    cell = CELLS[name]
    p = cell.init(jax.random.key(0), D)
    # Perturb every parameter so zero biases / identity weights do not hide errors.
    leaves, tree = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [(a + 0.3 * jax.random.normal(k, a.shape)).astype(dtype) for a, k in zip(leaves, keys)]
    p = jax.tree_util.tree_unflatten(tree, leaves)
    shape = (B, T, D) if batch else (T, D)
    xs = jax.random.normal(jax.random.key(2), shape, dtype)
    c_shape = (B,) if batch else ()
    c0 = jax.tree_util.tree_map(
        lambda c: 0.5 * jax.random.normal(jax.random.key(3), c_shape + c.shape, dtype),
        cell.initial_carry(p),
    )
    return cell, p, xs, c0


def _loss_and_grads(cell, p, xs, c0, fused, lengths=None, reverse=False, weight_grads=None):
    def loss(p, xs, c0):
        if fused:
            method = jrnn.Fused(backward="custom_vjp", weight_grads=weight_grads)
            c, hs = jrnn.unroll(
                cell, p, xs, carry=c0, lengths=lengths, reverse=reverse, method=method
            )
        else:
            c, hs = jrnn.unroll(cell, p, xs, carry=c0, lengths=lengths, reverse=reverse)
        leaves = jax.tree_util.tree_leaves(c)
        return jnp.sum(jnp.sin(hs) * jnp.cos(3 * hs)) + sum(jnp.sum(l**2) for l in leaves), hs

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(p, xs, c0)


def _assert_same(a, b, rtol, atol):
    (va, ha), ga = a
    (vb, hb), gb = b
    np.testing.assert_allclose(ha, hb, rtol=rtol, atol=atol)
    np.testing.assert_allclose(va, vb, rtol=rtol, atol=atol)
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), ga, gb
    )


@pytest.mark.parametrize(
    "name, weight_grads",
    [(name, "in_loop") for name in CELLS] + [(name, "after") for name in ("lstm", "gru")],
)
def test_fused_equals_reference_float64(name, weight_grads):
    cell, p, xs, c0 = _setup(name)
    ref = _loss_and_grads(cell, p, xs, c0, False)
    got = _loss_and_grads(cell, p, xs, c0, True, weight_grads=weight_grads)
    _assert_same(got, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "name, weight_grads",
    [
        ("elman-tanh", "in_loop"),
        ("residual-softsign", "after"),
        ("lstm", "in_loop"),
        ("lstm", "after"),
        ("gru", "in_loop"),
        ("gru", "after"),
    ],
)
def test_fused_lengths_and_reverse(name, weight_grads):
    cell, p, xs, c0 = _setup(name)
    lengths = jnp.array([7, 3, 0])
    ref = _loss_and_grads(cell, p, xs, c0, False, lengths=lengths, reverse=True)
    got = _loss_and_grads(cell, p, xs, c0, True, lengths, True, weight_grads)
    _assert_same(got, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(got[0][1][2], 0.0)  # length 0: all outputs zero


@pytest.mark.parametrize("name", ["elman-tanh", "lstm", "gru"])
def test_fused_float32_unbatched(name):
    cell, p, xs, c0 = _setup(name, jnp.float32, batch=False)
    ref = _loss_and_grads(cell, p, xs, c0, False)
    got = _loss_and_grads(cell, p, xs, c0, True)
    assert got[0][1].dtype == jnp.float32
    _assert_same(got, ref, rtol=1e-5, atol=1e-5)


def test_fused_through_unroll_default_carry_and_chunks():
    """unroll(method=VJP), the default zero carry, and T with no divisor <= 8 but 1 (T = 11)."""
    cell = jrnn.cells.lstm(N)
    p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), D))
    xs = jax.random.normal(jax.random.key(1), (2, 11, D), jnp.float64)

    def loss(p, method):
        (h, c), hs = jrnn.unroll(cell, p, xs, method=method)
        return jnp.sum(hs**2) + jnp.sum(h * c)

    g_ref = jax.jit(jax.grad(loss), static_argnums=1)(p, jrnn.Scan())
    g_fast = jax.jit(jax.grad(loss), static_argnums=1)(p, VJP)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10), g_fast, g_ref)


def test_fused_promotes_mixed_dtypes():
    """float32 params with float64 inputs: the carry is promoted as in the reference."""
    cell = jrnn.cells.gru(N)
    p = cell.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (2, 5, D), jnp.float64)
    h_ref = jrnn.unroll(cell, p, xs)[1]
    h_fast = jax.jit(lambda p, xs: jrnn.unroll(cell, p, xs, method=VJP)[1])(p, xs)
    assert h_fast.dtype == h_ref.dtype == jnp.float64
    np.testing.assert_allclose(h_fast, h_ref, rtol=1e-6, atol=1e-7)


def test_chunk_size():
    assert fused_module._chunk_size(256, 8) == 8
    assert fused_module._chunk_size(12, 8) == 6
    assert fused_module._chunk_size(11, 8) == 1
    assert fused_module._chunk_size(3, 8) == 3


def test_supports_and_errors():
    assert all(jrnn.Fused().supports(c) is None for c in CELLS.values())
    assert "fused capability" in jrnn.Fused().supports(jrnn.cells.indrnn(3))
    assert fused_module.default_weight_grads() in ("in_loop", "after")
    cell = jrnn.cells.min_gru(3)
    p = cell.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="fused"):
        jrnn.unroll(cell, p, jnp.ones((4, 2)), method=VJP)
    el = jrnn.cells.elman(3)
    pe = el.init(jax.random.key(0), 2)
    with pytest.raises(TypeError, match="remat"):  # remat with the fused method: not writable
        jrnn.Fused(remat=2)
    with pytest.raises(ValueError, match="weight_grads"):
        jrnn.unroll(el, pe, jnp.ones((4, 2)), method=VJP._replace(weight_grads="later"))


def _default_vs_reference(name, lengths=None, reverse=False, weight_grads=None):
    cell, p, xs, c0 = _setup(name)

    def f(p, xs, c0, ref):
        if ref:
            c, hs = jrnn.unroll(
                cell, p, xs, carry=c0, lengths=lengths, reverse=reverse, method=jrnn.Scan()
            )
        else:
            method = jrnn.Fused(weight_grads=weight_grads)
            c, hs = jrnn.unroll(
                cell, p, xs, carry=c0, lengths=lengths, reverse=reverse, method=method
            )
        return c, hs

    def loss(p, xs, c0, ref):
        c, hs = f(p, xs, c0, ref)
        leaves = jax.tree_util.tree_leaves(c)
        return jnp.sum(jnp.sin(hs) * jnp.cos(3 * hs)) + sum(jnp.sum(l**2) for l in leaves), hs

    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=3)
    _assert_same(vg(p, xs, c0, False), vg(p, xs, c0, True), rtol=1e-10, atol=1e-10)
    tangents = jax.tree_util.tree_map(
        lambda a: jax.random.normal(jax.random.key(7), a.shape, a.dtype), (p, xs, c0)
    )
    jv = jax.jit(
        lambda ref: jax.jvp(lambda *a: f(*a, ref), (p, xs, c0), tangents), static_argnums=0
    )
    chex.assert_trees_all_close(jv(False), jv(True), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "name", ["elman-tanh", "elman-sigmoid-nobias", "residual-softsign", "lstm", "gru"]
)
def test_default_equals_reference_float64(name):
    """Values, grad and jvp of the default batch-major path == the per-example scan."""
    _default_vs_reference(name)


@pytest.mark.parametrize(
    "name, weight_grads",
    [("elman-tanh", "in_loop"), ("residual-softsign", "after"), ("lstm", None), ("gru", "after")],
)
def test_default_lengths_and_reverse(name, weight_grads):
    _default_vs_reference(name, jnp.array([7, 3, 0]), True, weight_grads)


def test_unroll_default_uses_the_batched_path():
    cell, p, xs, _ = _setup("gru")
    jaxpr = str(jax.make_jaxpr(lambda p: jrnn.unroll(cell, p, xs))(p))
    assert "custom_jvp_call" in jaxpr
    assert "custom_jvp_call" not in str(
        jax.make_jaxpr(lambda p: jrnn.unroll(cell, p, xs, method=jrnn.Scan()))(p)
    )


@pytest.mark.parametrize("name", ["lstm"])
def test_default_jacfwd_vmap_hessian(name):
    cell, p, xs, _ = _setup(name)
    xs = xs[:2, :4]

    ref = jrnn.Scan()

    def out(xs, method):
        return jrnn.unroll(cell, p, xs, method=method)[1]

    np.testing.assert_allclose(
        jax.jacfwd(out)(xs, "auto"), jax.jacfwd(out)(xs, ref), rtol=1e-10, atol=1e-12
    )

    def loss(s, method):
        q = {**p, "W_hh": s * p["W_hh"]}
        return jnp.sum(jnp.tanh(jrnn.unroll(cell, q, xs, method=method)[1]))

    np.testing.assert_allclose(jax.hessian(loss)(1.0, "auto"), jax.hessian(loss)(1.0, ref), 1e-10)
    per_ex = lambda method: jax.vmap(jax.grad(lambda s, x: loss(s, method)), (None, 0))(1.0, xs)
    np.testing.assert_allclose(per_ex("auto"), per_ex(ref), rtol=1e-10)


@pytest.mark.parametrize("name", ["elman-tanh", "lstm", "gru"])
def test_default_grad_runs_the_hand_written_transpose(name, monkeypatch):
    """jax.grad of the default path transposes the tangent scan with the family's backward."""
    cell, p, xs, _ = _setup(name)
    calls = []
    orig = fused_derivatives.backward_scan

    def counting(*args, **kwargs):
        calls.append(1)
        return orig(*args, **kwargs)

    monkeypatch.setattr(fused_derivatives, "backward_scan", counting)
    g = jax.grad(lambda p: jnp.sum(jnp.sin(jrnn.unroll(cell, p, xs)[1])))(p)
    assert calls, "the default path's reverse mode did not use the hand-written backward"
    ref = jax.grad(lambda p: jnp.sum(jnp.sin(jrnn.unroll(cell, p, xs, method=jrnn.Scan())[1])))(p)
    chex.assert_trees_all_close(g, ref, rtol=1e-10, atol=1e-12)
    # The primitive is linear in its tangent operands: <ct, L t> == <L^T ct, t>.
    f = lambda p: jrnn.unroll(cell, p, xs)[1]
    _, lin = jax.linearize(f, p)
    lt = jax.linear_transpose(lin, p)
    t = jax.tree_util.tree_map(lambda a: jax.random.normal(jax.random.key(1), a.shape, a.dtype), p)
    ct = jax.random.normal(jax.random.key(2), f(p).shape, xs.dtype)
    (back,) = lt(ct)
    lhs = jnp.vdot(ct, lin(t))
    rhs = sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(back),
                                            jax.tree_util.tree_leaves(t)))  # fmt: skip
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


def test_default_no_retracing():
    cell, p, xs, _ = _setup("lstm")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def g(p, xs):
        return jax.grad(lambda p: jnp.sum(jrnn.unroll(cell, p, xs)[1] ** 2))(p)

    for s in (1.0, 0.5, 2.0):
        g(jax.tree_util.tree_map(lambda a: s * a, p), xs * s)


@pytest.mark.parametrize("name", ["elman-tanh", "lstm", "gru"])
def test_rule_tangent_and_backward_are_transposes(name):
    """<dnew', tangent(dprev, du, dhh)> == <backward(dnew'), (dprev, du, dhh)> on random data."""
    rule = CELLS[name].fused
    k = iter(jax.random.split(jax.random.key(4), 16))
    rnd = lambda shape: jax.random.normal(next(k), shape, jnp.float64)
    G = rule.gates * N
    n_carry = 2 if name == "lstm" else 1
    carry = tuple(rnd((B, N)) for _ in range(n_carry))
    _, res = rule.forward(carry, rnd((B, G)), rnd((B, G)), True)
    dprev, du, dhh = tuple(rnd((B, N)) for _ in range(n_carry)), rnd((B, G)), rnd((B, G))
    ct = tuple(rnd((B, N)) for _ in range(n_carry))
    out = rule.tangent(res, dprev, du, dhh)
    direct, ct_du, ct_dhh = rule.backward(res, ct)
    lhs = sum(jnp.vdot(a, b) for a, b in zip(ct, out))
    rhs = sum(jnp.vdot(a, b) for a, b in zip(direct, dprev))
    rhs = rhs + jnp.vdot(ct_du, du) + jnp.vdot(ct_dhh, dhh)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("method", ["auto", VJP])
def test_saturated_derivatives_do_not_underflow_float32(method):
    """a = 12: tanh'(a) = 1.5e-10 is representable in float32, 1 - tanh(a)^2 rounds to 0."""
    cell = jrnn.cells.elman(1)
    p = {"W_xh": jnp.ones((1, 1)), "W_hh": jnp.zeros((1, 1)), "b_h": jnp.zeros((1,))}
    xs = jnp.full((1, 1, 1), 12.0, jnp.float32)
    g = jax.grad(lambda p: jrnn.unroll(cell, p, xs, method=method)[1].sum())(p)
    expected = 4 * np.exp(-24.0) / (1 + np.exp(-24.0)) ** 2
    np.testing.assert_allclose(g["b_h"], [expected], rtol=1e-5)


PADDING_CELLS = {
    "gru": lambda: jrnn.cells.gru(N),
    "lstm": lambda: jrnn.cells.lstm(N),
    "elman": lambda: jrnn.cells.elman(N),
    "min_gru": lambda: jrnn.cells.min_gru(N),
}


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("elman", {}),
        ("lstm", {"method": VJP}),
        ("gru", {"method": jrnn.Scan()}),
        ("gru", {"method": jrnn.Scan(remat=2)}),
        ("lstm", {"reverse": True}),
        ("min_gru", {"method": jrnn.Associative()}),
    ],
)
def test_padding_never_leaks_into_values_or_gradients(name, kwargs):
    """NaN / inf in padded steps: finite gradients equal to those of clean padding (issue 16)."""
    cell = PADDING_CELLS[name]()
    p = cell.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (3, T, D))
    lengths = jnp.array([T, 3, 0])
    bad = xs.at[1, 3:].set(jnp.nan).at[2, :].set(jnp.inf).at[0, 0, 0].set(xs[0, 0, 0])
    clean = xs.at[1, 3:].set(0.0).at[2, :].set(0.0)

    def loss(p, xs):
        c, hs = jrnn.unroll(cell, p, xs, lengths=lengths, **kwargs)
        return jnp.sum(hs**2) + sum(jnp.sum(l) for l in jax.tree_util.tree_leaves(c))

    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    got, want = vg(p, bad), vg(p, clean)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(got))
    chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(got[1][1][1][3:]).max()) == 0.0  # no gradient reaches the padding


def test_model_apply_padding_is_inert():
    model = jrnn.models.rnn(jrnn.cells.lstm(N), 1)
    p = model.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (2, T, D)).at[1, 4:].set(jnp.nan)
    lengths = jnp.array([T, 4])
    g = jax.grad(lambda p: jnp.sum(model.apply(p, xs, lengths=lengths) ** 2))(p)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(g))


def test_unroll_inside_shard_map_all_paths():
    """jrnn.unroll inside jax.shard_map (check_vma on, 2 host devices, batch split): values and
    gradients of the default, fused and reference paths equal the unsharded ones. The initial
    carry built from replicated params is made to vary like the inputs (it used to be a scan
    carry type error)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, jrnn
        from jax.sharding import Mesh, PartitionSpec as P
        jax.config.update("jax_enable_x64", True)
        mesh = Mesh(np.array(jax.devices()), ("b",))
        xs = jax.random.normal(jax.random.key(1), (4, 7, 3))
        worst = 0.0
        paths = ("auto", jrnn.Fused(backward="custom_vjp"), jrnn.Scan())
        for kind, paths in (("elman", paths[:1]), ("lstm", paths), ("gru", paths[:1])):
            cell = getattr(jrnn.cells, kind)(5)
            p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                                       cell.init(jax.random.key(0), 3))
            for method in paths:
                out = lambda p, xs: jrnn.unroll(cell, p, xs, method=method)[1]
                loss = lambda p, xs: jnp.sum(jnp.sin(out(p, xs)))
                g = jax.jit(jax.shard_map(
                    lambda p, xs: jax.grad(lambda p: jax.lax.psum(loss(p, xs), "b"))(p),
                    mesh=mesh, in_specs=(P(), P("b")), out_specs=P()))
                h = jax.jit(jax.shard_map(out, mesh=mesh, in_specs=(P(), P("b")),
                                          out_specs=P("b")))
                a, b = g(p, xs), jax.grad(loss)(p, xs)
                worst = max(worst, float(jnp.max(jnp.abs(h(p, xs) - out(p, xs)))),
                            *(float(jnp.max(jnp.abs(a[k] - b[k]))) for k in a))
        print(jax.device_count(), worst)
        """
    )
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_dev, worst = proc.stdout.split()
    assert n_dev == "2"
    assert float(worst) < 1e-12
