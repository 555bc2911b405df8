"""jrnn.wrap: a user's Flax linen / NNX / Equinox cell or step function is a Cell.

References: the built-in jrnn cell with the same weights (mapped here by hand with jnp ops,
so gradients flow through the map; the linen maps are checked against
jrnn.interop.from_flax_linen), jax.jacfwd of a hand-flattened step, the Lyapunov sum rule
(sum of exponents = mean log|det J_t|) and the frameworks' own forward passes.
"""

import functools
import re
from pathlib import Path

import chex
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jrnn
from jrnn.testing import check_cell

F64 = jnp.float64
KEY = jax.random.key(0)
D, N, T, B = 3, 4, 12, 2
XS = 0.5 * jax.random.normal(jax.random.key(1), (B, T, D), F64)
TOL = 1e-10


def _close(a, b, tol=TOL):
    chex.assert_trees_all_close(a, b, atol=tol, rtol=tol)


# --------------------------------------------------------------------------- the models


def _cat(*arrays):
    return jnp.concatenate(arrays, axis=0)


def _linen_gru_map(v):
    p = v["params"]
    z = jnp.zeros(N, F64)
    return {"W_xh": _cat(p["ir"]["kernel"].T, p["iz"]["kernel"].T, p["in"]["kernel"].T),
            "W_hh": _cat(p["hr"]["kernel"].T, p["hz"]["kernel"].T, p["hn"]["kernel"].T),
            "b_xh": _cat(p["ir"]["bias"], p["iz"]["bias"], p["in"]["bias"]),
            "b_hh": _cat(z, z, p["hn"]["bias"])}


def _linen_lstm_map(v):
    p = v["params"]
    g = ("i", "f", "g", "o")
    return {"W_xh": _cat(*[p["i" + k]["kernel"].T for k in g]),
            "W_hh": _cat(*[p["h" + k]["kernel"].T for k in g]),
            "b_h": _cat(*[p["h" + k]["bias"] for k in g])}


def _linen_simple_map(v):
    p = v["params"]
    return {"W_xh": p["i"]["kernel"].T, "W_hh": p["h"]["kernel"].T, "b_h": p["i"]["bias"]}


def _nnx_gru_map(s):
    return {"W_xh": s["dense_i"]["kernel"][...].T, "W_hh": s["dense_h"]["kernel"][...].T,
            "b_xh": s["dense_i"]["bias"][...], "b_hh": jnp.zeros(3 * N, F64)}


def _eqx_gru_map(m):
    z = jnp.zeros(N, F64)
    return {"W_xh": m.weight_ih, "W_hh": m.weight_hh, "b_xh": m.bias,
            "b_hh": _cat(z, z, m.bias_n)}


def _tanh_step(p, h, x):
    h = jnp.tanh(p["W"] @ h + p["U"] @ x + p["b"])
    return h, h


def _scaled(tree, gain):
    return jax.tree_util.tree_map(lambda a: gain * a, tree)


@functools.cache
def _models():
    """name -> (wrapped cell, its params, built-in cell, map to built-in params, perm):
    the wrapped state is the built-in state permuted, ``s_w = s_b[perm]`` (linen's LSTM
    carry is (c, h), jrnn's (h, c))."""
    k1, k2, k3 = jax.random.split(KEY, 3)
    out = {}
    x0 = jnp.zeros(D, F64)
    gain = 1.5  # recurrent weights large enough for a non-trivial spectrum
    for name, module, builtin, fmap, carry in (
        ("linen_gru", nn.GRUCell(N, param_dtype=F64), jrnn.cells.gru(N), _linen_gru_map,
         jnp.zeros(N, F64)),
        ("linen_lstm", nn.LSTMCell(N, param_dtype=F64), jrnn.cells.lstm(N), _linen_lstm_map,
         (jnp.zeros(N, F64),) * 2),
        ("linen_simple", nn.SimpleCell(N, param_dtype=F64), jrnn.cells.elman(N),
         _linen_simple_map, jnp.zeros(N, F64)),
    ):
        variables = _scaled(module.init(k1, carry, x0), gain)
        cell, params = jrnn.wrap(module, params=variables)
        out[name] = (cell, params, builtin, fmap, None)
    perm = np.r_[N:2 * N, 0:N]
    out["linen_lstm"] = out["linen_lstm"][:4] + (perm,)
    nmod = nnx.GRUCell(D, N, rngs=nnx.Rngs(0), param_dtype=F64)
    nnx.update(nmod, _scaled(nnx.state(nmod, nnx.Param), gain))
    cell, params = jrnn.wrap(nmod)
    out["nnx_gru"] = (cell, params, jrnn.cells.gru(N), _nnx_gru_map, None)
    emod = eqx.nn.GRUCell(D, N, key=k2, dtype=F64)
    emod = eqx.tree_at(lambda m: (m.weight_hh, m.bias, m.bias_n), emod,
                       (gain * emod.weight_hh, emod.bias + 0.3, emod.bias_n + 0.2))
    cell, params = jrnn.wrap(emod)
    out["eqx_gru"] = (cell, params, jrnn.cells.gru(N), _eqx_gru_map, None)
    ks = jax.random.split(k3, 3)
    p = {"W": gain * jax.random.normal(ks[0], (N, N), F64) / N**0.5,
         "U": jax.random.normal(ks[1], (N, D), F64), "b": 0.1 * jax.random.normal(ks[2], (N,), F64)}
    cell, params = jrnn.wrap(_tanh_step, params=p, carry=jnp.zeros(N, F64), input_size=D)
    out["step"] = (cell, params, jrnn.cells.elman(N),
                   lambda q: {"W_xh": q["U"], "W_hh": q["W"], "b_h": q["b"]}, None)
    return out


MODELS = ["linen_gru", "linen_lstm", "linen_simple", "nnx_gru", "eqx_gru", "step"]


def test_linen_maps_agree_with_interop():
    for name, kind in (("linen_gru", "GRUCell"), ("linen_lstm", "LSTMCell"),
                       ("linen_simple", "SimpleCell")):
        _, params, _, fmap, _ = _models()[name]
        _, ref = jrnn.interop.from_flax_linen(params, kind)
        _close(fmap(params), ref)


def _perm_matrix(J, perm):
    return J if perm is None else J[..., perm, :][..., :, perm]


def _frames(name):
    """Equal frames in both coordinates: ``(k=2 frame, full frame)`` for the wrapped cell and
    for the built-in one (concrete: the diagnostics check them eagerly)."""
    cell, _, _, _, perm = _models()[name]
    S = cell.state_size
    idx = np.arange(S) if perm is None else perm
    Q0 = jnp.linalg.qr(jax.random.normal(jax.random.key(5), (S, 2), F64))[0]
    QS = jnp.eye(S, dtype=F64)
    return (Q0[idx], QS[idx]), (Q0, QS)


@pytest.mark.parametrize("name", MODELS)
def test_wrapped_jacobians_propagation_and_spectra_equal_the_builtin_cell(name):
    cell, params, builtin, fmap, perm = _models()[name]
    dg = jrnn.diagnostics
    assert cell.state_size == builtin.state_size and cell.hidden_size == N
    loss = lambda hs: jnp.sum(hs**2)  # noqa: E731
    extras = name in ("linen_lstm", "step")  # the other diagnostics, on two of the models

    def everything(c, p, frames):
        Qa, QS = frames
        out = {
            "hs": jrnn.unroll(c, p, XS)[1],
            "J": dg.step_jacobians(c, p, XS),
            "prop": dg.propagation(c, p, XS[0]),
            "lyap_stacked": dg.lyapunov_spectrum(c, p, XS, Q0=QS, mode="stacked").exponents,
            "lyap_stream": dg.lyapunov_spectrum(c, p, XS, Q0=Qa, k=2, mode="tangent",
                                                warmup=2).exponents,
        }
        if extras:
            out["sv"] = dg.singular_value_stats(c, p, XS, per_step=False)
            out["gn"] = dg.gradient_norms(loss, c, p, XS[0])
            out["lyap_chunked"] = dg.lyapunov_spectrum(c, p, XS, Q0=Qa, k=2, mode="chunked",
                                                       chunk=5).exponents
            out["ftle"] = dg.finite_time_exponents(c, p, XS[0], window=4, Q0=Qa, k=2).exponents
        return out

    frames_w, frames_b = _frames(name)
    got, ref = jax.jit(lambda p: (everything(cell, p, frames_w),
                                  everything(builtin, fmap(p), frames_b)))(params)
    _close(got["J"], _perm_matrix(ref["J"], perm))
    for key in ref:
        if key != "J":
            _close(got[key], ref[key])
    assert np.ptp(np.asarray(ref["lyap_stacked"])) > 0.1  # a spectrum, not a degenerate one


@pytest.mark.parametrize("name", MODELS)
def test_wrapped_clvs_and_penalty_gradients_equal_the_builtin_cell(name):
    """Flossing the user's model: the gradient w.r.t. the user's own params."""
    cell, params, builtin, fmap, perm = _models()[name]
    if perm is None:  # CLVs and penalties start from a key's frame: equal where coordinates are
        pen_w = jrnn.penalties.lyapunov_penalty(cell, k=2, warmup=2)
        pen_b = jrnn.penalties.lyapunov_penalty(builtin, k=2, warmup=2)
        f_w, f_b = (lambda p: pen_w(p, XS)), (lambda p: pen_b(fmap(p), XS))
        clv = lambda c, p: jrnn.diagnostics.covariant_lyapunov_vectors(  # noqa: E731
            c, p, XS[0], k=2, warmup=4, backward=4).vectors
        _close(jax.jit(lambda p: clv(cell, p))(params),
               jax.jit(lambda p: clv(builtin, fmap(p)))(params))
    else:  # the same loss from equal frames
        (Qw, _), (Qb, _) = _frames(name)

        def floss(c, p, Q0):
            lam = jrnn.diagnostics.lyapunov_spectrum(c, p, XS, Q0=Q0, k=2, warmup=2).exponents
            return jnp.mean(lam**2)

        f_w, f_b = (lambda p: floss(cell, p, Qw)), (lambda p: floss(builtin, fmap(p), Qb))
    g_w, g_b = jax.jit(lambda p: (jax.grad(f_w)(p), jax.grad(f_b)(p)))(params)
    assert jax.tree_util.tree_structure(g_w) == jax.tree_util.tree_structure(params)
    _close(g_w, g_b)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(g_w)) > 1e-6


# --------------------------------------------------------------------------- own cells


class TwoTimescale(nn.Module):
    """A user's linen cell with a tuple carry (h, m): a fast tanh unit and a slow trace."""

    features: int

    @nn.compact
    def __call__(self, carry, x):
        h, m = carry
        h = jnp.tanh(nn.Dense(self.features, param_dtype=F64)(x)
                     + nn.Dense(self.features, use_bias=False, param_dtype=F64)(h + m))
        m = 0.8 * m + 0.2 * h
        return (h, m), h

    def initialize_carry(self, rng, input_shape):
        z = jnp.zeros(input_shape[:-1] + (self.features,), F64)
        return (z, z)


class DictRate(eqx.Module):
    """A user's Equinox cell with a dict carry {"h", "v"}."""

    W: jax.Array
    U: jax.Array

    def __call__(self, x, carry):
        h = jnp.tanh(self.W @ (carry["h"] - carry["v"]) + self.U @ x)
        return {"h": h, "v": 0.7 * carry["v"] + 0.3 * h}


def _own_cells():
    mod = TwoTimescale(N)
    var = _scaled(mod.init(KEY, mod.initialize_carry(KEY, (D,)), jnp.zeros(D, F64)), 1.5)
    k1, k2 = jax.random.split(KEY)
    emod = DictRate(2.0 * jax.random.normal(k1, (N, N), F64) / N**0.5,
                    jax.random.normal(k2, (N, D), F64))
    z = jnp.zeros(N, F64)
    static = eqx.partition(emod, eqx.is_array)[1]

    def eqx_flat(p, s, x):
        new = eqx.combine(p, static)(x, {"h": s[:N], "v": s[N:]})
        return jnp.concatenate([new["h"], new["v"]])

    return {
        # flat reference steps s (2N,) -> s' written from the math, in flatten_carry order
        "linen_tuple": (jrnn.wrap(mod, params=var, input_size=D),
                        lambda p, s, x: jnp.concatenate(
                            mod.apply(p, (s[:N], s[N:]), x)[0])),
        "eqx_dict": (jrnn.wrap(emod, carry={"h": z, "v": z}, input_size=D), eqx_flat),
    }


@pytest.mark.parametrize("name", ["linen_tuple", "eqx_dict"])
def test_own_cells_with_tuple_and_dict_carries(name):
    (cell, params), flat = _own_cells()[name]
    assert cell.state_size == 2 * N
    h0 = jax.tree_util.tree_map(lambda a: 0.3 + a, cell.initial_carry(params))
    s0 = jrnn.cells.flatten_carry(h0)
    x = XS[0]

    @jax.jit
    def run(p):
        J = jrnn.diagnostics.step_jacobians(cell, p, x, carry=h0)
        stacked = jrnn.diagnostics.lyapunov_spectrum(cell, p, x, carry=h0, mode="stacked")
        stream = jrnn.diagnostics.lyapunov_spectrum(cell, p, x, carry=h0, mode="tangent")

        def body(s, xt):
            return flat(p, s, xt), jax.jacfwd(flat, argnums=1)(p, s, xt)

        _, J_ref = jax.lax.scan(body, s0, x)
        return J, J_ref, stacked.exponents, stream.exponents

    J, J_ref, lam, lam_stream = run(params)
    _close(J, J_ref)
    _close(lam, lam_stream)
    logdet = jnp.mean(jnp.linalg.slogdet(J_ref)[1])
    np.testing.assert_allclose(jnp.sum(lam), logdet, rtol=1e-9, atol=1e-9)  # the sum rule


@pytest.mark.parametrize("name", MODELS + ["linen_tuple", "eqx_dict"])
def test_check_cell_passes(name):
    if name in MODELS:
        cell = _models()[name][0]
    else:
        cell = _own_cells()[name][0][0]
    report = check_cell(cell, D, quick=name != "step")  # raises AssertionError on a failure
    assert set(report) == {"float32", "float64"}


def _elman_linear():
    J = lambda p, h, x: (1 - jnp.tanh(p["W"] @ h + p["U"] @ x + p["b"]) ** 2)[:, None] * p["W"]  # noqa: E731
    T_ = lambda p, h, x, V: J(p, h, x) @ V  # noqa: E731
    return J, T_


def test_analytic_jacobian_and_tangent_are_used_and_checked():
    _, params, _, _, _ = _models()["step"]
    J, tangent = _elman_linear()
    cell, _ = jrnn.wrap(_tanh_step, params=params, carry=jnp.zeros(N, F64), input_size=D,
                        jacobian=J, tangent=tangent)
    assert cell.linear is not None
    report = check_cell(cell, D, dtype="float64")
    assert report["float64"]["jacobian == jacfwd"] < 1e-12
    assert report["float64"]["tangent == jacfwd @ V"] < 1e-12
    got = jrnn.diagnostics.step_jacobians(cell, params, XS[0], method="analytic")
    _close(got, jrnn.diagnostics.step_jacobians(cell, params, XS[0], method="jacfwd"))
    # A wrong analytic Jacobian is caught by check_cell.
    bad, _ = jrnn.wrap(_tanh_step, params=params, carry=jnp.zeros(N, F64), input_size=D,
                       jacobian=lambda p, h, x: p["W"])
    with pytest.raises(AssertionError, match="jacobian == jacfwd"):
        check_cell(bad, D, dtype="float64", quick=True)


# --------------------------------------------------------------------------- contract


def test_jit_traces_each_diagnostic_once():
    cell, params, _, _, _ = _models()["linen_gru"]
    dg = jrnn.diagnostics

    @jax.jit
    @chex.assert_max_traces(n=1)
    def diagnostics(p, xs):
        return (dg.step_jacobians(cell, p, xs), dg.propagation(cell, p, xs),
                dg.lyapunov_spectrum(cell, p, xs, k=2, mode="tangent"),
                dg.lyapunov_spectrum(cell, p, xs, mode="stacked"),
                dg.finite_time_exponents(cell, p, xs, window=4, k=2),
                dg.singular_value_stats(cell, p, xs),
                jrnn.penalties.lyapunov_penalty(cell, k=2)(p, xs))

    first = diagnostics(params, XS)
    second = diagnostics(_scaled(params, 0.5), XS[:, ::-1])  # new values, same shapes
    assert not np.allclose(first[0], second[0])


def test_init_and_putting_params_back():
    # linen: the framework's own initialiser, a new key gives new weights
    module = nn.GRUCell(N)
    variables = module.init(KEY, jnp.zeros(N), jnp.zeros(D))
    cell, params = jrnn.wrap(module, params=variables)
    assert params is variables
    _close(cell.init(KEY, D), variables, 0.0)
    assert not np.allclose(cell.init(jax.random.key(7), D)["params"]["hr"]["kernel"],
                           variables["params"]["hr"]["kernel"])
    with pytest.raises(ValueError, match="input_size must be 3"):
        cell.init(KEY, 5)
    # NNX: params are nnx.state(module, nnx.Param); nnx.update puts trained ones back
    nmod = nnx.SimpleCell(D, N, rngs=nnx.Rngs(1), param_dtype=F64)
    cell, params = jrnn.wrap(nmod)
    assert cell.init(jax.random.key(9), D) is params
    grads = jax.grad(lambda p: jnp.sum(jrnn.unroll(cell, p, XS[0])[1] ** 2))(params)
    trained = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    nnx.update(nmod, trained)
    h_nnx = nmod(jnp.zeros(N, F64), XS[0, 0])[1]
    _close(h_nnx, cell.step(trained, cell.initial_carry(trained), XS[0, 0])[1])
    # Equinox: params are the array leaves; eqx.combine puts them back
    emod = eqx.nn.GRUCell(D, N, key=KEY, dtype=F64)
    cell, params = jrnn.wrap(emod)
    trained = jax.tree_util.tree_map(lambda a: 1.1 * a, params)
    new = eqx.combine(trained, eqx.partition(emod, eqx.is_array)[1])
    _close(new(XS[0, 0], jnp.zeros(N, F64)), cell.step(trained, jnp.zeros(N, F64), XS[0, 0])[1])


def test_unit_health_refuses_a_wrapped_cell_clearly():
    cell, params, _, _, _ = _models()["step"]
    with pytest.raises(ValueError, match="pointwise"):
        jrnn.diagnostics.unit_health(cell, params, XS)
    with pytest.raises(ValueError, match="pointwise"):
        jrnn.diagnostics.pascanu_bound(cell, params)


def test_params_of_another_structure_are_named_before_tracing():
    cell, params, _, _, _ = _models()["linen_gru"]
    bad = jax.tree_util.tree_map(lambda a: a, params)
    bad["params"]["hr"]["kernel"] = bad["params"]["hr"]["kernel"][:, :2]
    with pytest.raises(ValueError, match=r"params\['params'\]\['hr'\]\['kernel'\].*\(4, 4\)"):
        jrnn.diagnostics.step_jacobians(cell, bad, XS)
    del bad["params"]["hr"]
    with pytest.raises(ValueError, match="missing"):
        jrnn.unroll(cell, bad, XS)


# --------------------------------------------------------------------------- the README


def test_readme_snippet_runs():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## Your own model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    with jax.numpy_rank_promotion("allow"):
        exec(compile(code, "README.md (Your own model)", "exec"), {})
