"""Unroll methods as records: supports() reasons, the "auto" rule, bad method values, and every
method == the reference jrnn.Scan() in float64 (values, gradients, lengths, reverse, carry)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import cells
from jrnn.unrolling import auto_method

B, T, D, N = 3, 6, 2, 4

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
FUSED = ("elman", "irnn", "residual", "lstm", "gru")
LINEAR = ("min_gru", "min_lstm", "lru")


# ----------------------------------------------------------------------------- supports
@pytest.mark.parametrize("name", sorted(CELLS))
def test_supports_says_why_not(name):
    cell = CELLS[name]()
    assert jrnn.Scan().supports(cell) is None
    assert jrnn.Scan(unroll=2, remat=True).supports(cell) is None
    fused, assoc = jrnn.Fused().supports(cell), jrnn.Associative().supports(cell)
    if name in FUSED:
        assert fused is None
    else:
        assert "Fused() needs a cell with a fused capability" in fused
        assert cell.describe() in fused and "jrnn.Scan()" in fused
    if name in LINEAR:
        assert assoc is None
    else:
        assert "Associative() needs a cell with an affine capability" in assoc
        assert cell.describe() in assoc and "jrnn.Scan()" in assoc
    # A method record's capability does not depend on its other fields.
    assert jrnn.Fused(backward="custom_vjp", weight_grads="after").supports(cell) == fused


def test_supports_rejects_what_is_not_a_cell():
    for method in (jrnn.Scan(), jrnn.Associative(), jrnn.Fused()):
        reason = method.supports("elman")
        assert reason is not None and "jrnn Cell" in reason and "str" in reason


# ----------------------------------------------------------------------------- auto
@pytest.mark.parametrize("name", sorted(CELLS))
def test_auto_rule(name, monkeypatch):
    cell = CELLS[name]()
    on_cpu = auto_method(cell)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    on_gpu = auto_method(cell)
    same = lambda a, b: type(a) is type(b) and a == b  # records are tuples: compare types too
    if name in FUSED:
        assert same(on_cpu, jrnn.Fused()) and same(on_gpu, jrnn.Fused())
    elif name in LINEAR:
        assert same(on_cpu, jrnn.Scan()) and same(on_gpu, jrnn.Associative())
    else:
        assert same(on_cpu, jrnn.Scan()) and same(on_gpu, jrnn.Scan())


@pytest.mark.parametrize("name", ["elman", "gru", "min_gru", "indrnn"])
def test_auto_runs_the_method_it_names(name):
    """method="auto" gives bit for bit what the method auto_method names gives."""
    cell = CELLS[name]()
    p = cell.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    lengths = jnp.array([T, 2, 0])
    chosen = auto_method(cell)
    assert jax.default_backend() != "cpu" or chosen != jrnn.Associative()
    got = jrnn.unroll(cell, p, xs, lengths=lengths, reverse=True)
    want = jrnn.unroll(cell, p, xs, lengths=lengths, reverse=True, method=chosen)
    chex.assert_trees_all_equal(got, want)


def test_auto_default_is_the_batched_fused_path():
    cell = CELLS["lstm"]()
    p = cell.init(jax.random.key(0), D)
    xs = jnp.ones((B, T, D))
    jaxpr = str(jax.make_jaxpr(lambda p: jrnn.unroll(cell, p, xs))(p))
    assert "custom_jvp_call" in jaxpr
    for method in (jrnn.Scan(), jrnn.Fused(backward="custom_vjp")):
        jaxpr = str(jax.make_jaxpr(lambda p, m=method: jrnn.unroll(cell, p, xs, method=m))(p))
        assert "custom_jvp_call" not in jaxpr


# ----------------------------------------------------------------------------- bad values
def _run(method, name="elman", T=T, **kw):
    cell = CELLS[name]()
    p = cell.init(jax.random.key(0), D)
    return jrnn.unroll(cell, p, jnp.ones((B, T, D)), method=method, **kw)


@pytest.mark.parametrize(
    "method, error, fragments",
    [
        ("scan", ValueError, ["method must be", '"auto"', "jrnn.Scan(...)", "'scan'"]),
        ("", ValueError, ["method must be", "''"]),
        (None, TypeError, ["method must be", "None", "NoneType"]),
        (True, TypeError, ["method must be", "True (bool)"]),
        (jrnn.Scan, TypeError, ["method must be", "did you mean jrnn.Scan()?"]),
        (jrnn.Fused, TypeError, ["did you mean jrnn.Fused()?"]),
        (("transpose", None, 1), TypeError, ["method must be", "tuple"]),
        (jrnn.Scan(unroll=0), ValueError, ["Scan.unroll", ">= 1", "got 0"]),
        (jrnn.Scan(unroll=1.5), TypeError, ["Scan.unroll", "integer", "1.5"]),
        (jrnn.Scan(remat=0), ValueError, ["Scan.remat", ">= 1", "got 0"]),
        (jrnn.Scan(remat="yes"), TypeError, ["Scan.remat", "'yes'"]),
        (jrnn.Fused(backward="hand"), ValueError, ["Fused.backward", "'transpose'", "'hand'"]),
        (jrnn.Fused(weight_grads="later"), ValueError, ["Fused.weight_grads", "'later'"]),
        (jrnn.Fused(unroll=0), ValueError, ["Fused.unroll", "got 0"]),
    ],
)
def test_bad_method_values(method, error, fragments):
    with pytest.raises(error) as info:
        _run(method)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.parametrize(
    "name, method, fragment",
    [
        ("min_gru", jrnn.Fused(), "fused capability"),
        ("indrnn", jrnn.Fused(backward="custom_vjp"), "fused capability"),
        ("lstm", jrnn.Associative(), "affine capability"),
    ],
)
@pytest.mark.parametrize("steps", [T, 0])
def test_unsupported_method_raises_its_reason(name, method, fragment, steps):
    """Also for T = 0 (nothing to run, but the call is still wrong)."""
    with pytest.raises(ValueError, match=f"cannot run this cell: .*{fragment}"):
        _run(method, name, T=steps)


def test_reverse_must_be_a_bool():
    with pytest.raises(TypeError, match="reverse must be True or False"):
        _run("auto", reverse="yes")
    with pytest.raises(TypeError, match="reverse must be True or False"):
        _run(jrnn.Scan(), reverse=1)


def test_bad_method_raised_before_tracing():
    cell = CELLS["elman"]()
    traced = []

    def recur(p, c, u):
        traced.append(1)
        return cell.recur(p, c, u)

    spy = cell._replace(recur=recur)
    p = cell.init(jax.random.key(0), D)
    with pytest.raises(ValueError):
        jrnn.unroll(spy, p, jnp.ones((B, T, D)), method=jrnn.Scan(remat=0))
    assert not traced


# ----------------------------------------------------------------------------- same values
METHODS = {
    "scan-unroll3": jrnn.Scan(unroll=3),
    "scan-remat": jrnn.Scan(remat=True),
    "scan-remat4": jrnn.Scan(remat=4),
    "associative": jrnn.Associative(),
    "fused": jrnn.Fused(),
    "fused-after-unroll2": jrnn.Fused(weight_grads="after", unroll=2),
    "fused-vjp-in_loop": jrnn.Fused(backward="custom_vjp", weight_grads="in_loop"),
}
PAIRS = [
    (cell, method)
    for cell in ("elman", "lstm", "gru", "min_gru", "lru", "stack")
    for method in METHODS
    if METHODS[method].supports(CELLS[cell]()) is None
    and (cell in ("lstm", "min_gru") or method in ("scan-remat4", "associative", "fused"))
]


@pytest.mark.parametrize("name, method", PAIRS)
def test_every_method_equals_the_reference_scan_float64(name, method):
    cell = CELLS[name]()
    p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), D))
    leaves, tree = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    p = jax.tree_util.tree_unflatten(
        tree, [a + 0.2 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)]
    )
    xs = jax.random.normal(jax.random.key(2), (B, T, D), jnp.float64)
    c0 = jax.tree_util.tree_map(
        lambda c: 0.3 * jax.random.normal(jax.random.key(3), (B,) + c.shape, jnp.float64),
        cell.initial_carry(p),
    )
    lengths = jnp.array([T, 3, 0])

    def loss(p, xs, c0, method, reverse):
        c, hs = jrnn.unroll(cell, p, xs, carry=c0, lengths=lengths, reverse=reverse, method=method)
        total = jnp.sum(jnp.sin(hs)) + sum(jnp.sum(l**2) for l in jax.tree_util.tree_leaves(c))
        return total, (c, hs)

    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=(3, 4))
    for reverse in (False, True):
        got = vg(p, xs, c0, METHODS[method], reverse)
        want = vg(p, xs, c0, jrnn.Scan(), reverse)
        chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(got[0][1][1][2], 0.0)  # length 0: all outputs zero


@pytest.mark.parametrize("shape", [(0, 2), (3, 0, 2)])
def test_empty_sequence_dtypes_match_one_step(shape):
    # T = 0 returns the carry unchanged, but in the dtype a step would give it: float32 params
    # with float64 inputs give a float64 carry at T >= 1, and did not at T = 0.
    for cell in (jrnn.cells.elman(3), jrnn.cells.lstm(3)):
        params = cell.init(jax.random.key(0), 2)  # float32
        c0, h0 = jrnn.unroll(cell, params, jnp.zeros(shape, jnp.float64))
        c1, h1 = jrnn.unroll(cell, params, jnp.zeros(shape[:-2] + (1, 2), jnp.float64))
        spec = lambda t: jax.tree_util.tree_map(lambda a: (a.dtype, a.shape), t)
        assert spec(c0) == spec(c1)
        assert h0.dtype == h1.dtype == jnp.float64 and h0.shape[-2] == 0
