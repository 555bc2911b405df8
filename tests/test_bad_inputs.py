"""Bad inputs across the public API: each gives ValueError or TypeError naming the
argument (issue 16), raised before tracing; degenerate but valid inputs give the
documented result.

One table, one assertion per row: the exception type and a fragment of the
message that names the argument (and, for params, the key and the shapes).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn import activations, initializers, parallel, tasks, train, validation

KEY = jax.random.key(0)
ELMAN = jrnn.cells.elman(4)
P = ELMAN.init(KEY, 3)
XS = jnp.ones((5, 3))
FUSED_VJP = jrnn.Fused(backward="custom_vjp")  # the hand-written custom VJP
LSTM = jrnn.cells.lstm(2)
LP = LSTM.init(KEY, 3)
STACK = jrnn.stack([jrnn.cells.elman(4), jrnn.cells.gru(2)])
SP = STACK.init(KEY, 3)
MODEL = jrnn.models.rnn(ELMAN, 1)
MP = MODEL.init(KEY, 3)
MODEL2 = jrnn.models.rnn(ELMAN, 2)
MP2 = MODEL2.init(KEY, 3)
TORCH_SD = {"weight_ih_l0": np.ones((4, 3), np.float32),
            "weight_hh_l0": np.eye(4, dtype=np.float32),
            "bias_ih_l0": np.zeros(4, np.float32), "bias_hh_l0": np.zeros(4, np.float32)}


def _drop(d, k):
    return {n: v for n, v in d.items() if n != k}


def _state(rng=None):
    opt = optax.sgd(0.1)
    s = train.init_state(MP, opt, KEY)
    return s if rng is None else s._replace(rng=rng)


def _step():
    return train.make_train_step(MODEL.apply, tasks.mse, optax.sgd(0.1))


def _batch(key, t):
    return jnp.ones((2, 5, 3)), jnp.ones((2, 1))



# jrnn.wrap (issue 25): the objects and step functions it refuses
def _tanh_step(p, h, x):
    h = jnp.tanh(p @ h + x[:1])
    return h, h


def _wrap_step(step, **kw):
    kw = {"params": jnp.eye(4), "carry": jnp.zeros(4), "input_size": 3, **kw}
    return jrnn.wrap(step, **kw)


def _wrap_linen(**kw):
    import flax.linen as nn

    return jrnn.wrap(nn.GRUCell(4), **kw)


def nn_gru_params():
    import flax.linen as nn

    return nn.GRUCell(4).init(KEY, jnp.zeros(4), jnp.zeros(3))


def _eqx_gru():
    import equinox as eqx

    return eqx.nn.GRUCell(3, 4, key=KEY)


def _wrap_eqx_linear():
    import equinox as eqx

    return jrnn.wrap(eqx.nn.Linear(3, 4, key=KEY))


# (id, thunk, exception type, fragments the message must contain)
CASES = [
    # 1. params against the cell's param_spec
    ("missing key", lambda: jrnn.unroll(ELMAN, _drop(P, "W_hh"), XS), ValueError,
     ["params", "'W_hh'"]),
    ("extra key", lambda: jrnn.unroll(ELMAN, {**P, "W_x": P["W_xh"]}, XS), ValueError,
     ["params", "'W_x'"]),
    ("transposed W_xh", lambda: jrnn.unroll(ELMAN, {**P, "W_xh": P["W_xh"].T}, XS), ValueError,
     ["params['W_xh']", "(4, 3)", "(3, 4)", "transposed"]),
    ("b_h (1,)", lambda: jrnn.unroll(ELMAN, {**P, "b_h": jnp.zeros(1)}, XS), ValueError,
     ["params['b_h']", "(4,)", "(1,)"]),
    ("b_h scalar", lambda: jrnn.unroll(ELMAN, {**P, "b_h": jnp.float32(0)}, XS), ValueError,
     ["params['b_h']", "()"]),
    ("b_h fused", lambda: jrnn.unroll(ELMAN, {**P, "b_h": jnp.zeros(1)}, XS, method=FUSED_VJP),
     ValueError, ["params['b_h']"]),
    ("int params", lambda: jrnn.unroll(ELMAN, {**P, "W_hh": jnp.zeros((4, 4), int)}, XS),
     TypeError, ["params['W_hh']", "int"]),
    ("model params to cell", lambda: jrnn.unroll(ELMAN, MP, XS), ValueError,
     ["'cell'", "params['cell']"]),
    ("lstm W_hh", lambda: jrnn.unroll(LSTM, {**LP, "W_hh": jnp.zeros((8, 3))}, XS), ValueError,
     ["params['W_hh']", "(8, 2)", "(8, 3)"]),
    ("stack layer", lambda: jrnn.unroll(STACK, (SP[0], _drop(SP[1], "b_hh")), XS), ValueError,
     ["params[1]", "'b_hh'"]),
    ("stack not tuple", lambda: jrnn.unroll(STACK, SP[0], XS), ValueError, ["params", "tuple"]),
    ("jacobians", lambda: jrnn.diagnostics.step_jacobians(ELMAN, _drop(P, "b_h"), XS),
     ValueError, ["'b_h'"]),
    ("pascanu", lambda: jrnn.diagnostics.pascanu_bound(ELMAN, _drop(P, "W_hh")), ValueError,
     ["'W_hh'"]),
    ("model apply", lambda: MODEL.apply({**MP, "cell": _drop(P, "W_hh")}, XS), ValueError,
     ["'W_hh'"]),
    ("xs feature size", lambda: jrnn.unroll(ELMAN, P, jnp.ones((5, 2))), ValueError,
     ["xs", "(5, 2)", "(T, 3)"]),
    # 5. degenerate sizes and dtypes
    ("complex xs", lambda: jrnn.unroll(ELMAN, P, XS.astype(jnp.complex64)), TypeError,
     ["xs", "complex"]),
    ("complex xs diag", lambda: jrnn.diagnostics.step_jacobians(ELMAN, P, XS + 0j), TypeError,
     ["xs", "complex"]),
    ("string xs", lambda: jrnn.unroll(ELMAN, P, np.array([["a", "b", "c"]])), TypeError,
     ["xs"]),
    ("lengths > T", lambda: jrnn.unroll(ELMAN, P, XS[None], lengths=jnp.array([9])), ValueError,
     ["lengths", "[0, 5]"]),
    ("lengths float", lambda: jrnn.unroll(ELMAN, P, XS[None], lengths=jnp.array([2.0])),
     ValueError, ["lengths", "float"]),
    # 6. argument types
    ("activation None", lambda: jrnn.cells.elman(4, None), TypeError, ["activation", "None"]),
    ("activation typo", lambda: jrnn.cells.elman(4, "tnah"), ValueError, ["activation", "tanh"]),
    ("negative_slope nan", lambda: activations.get("leaky_relu", negative_slope=float("nan")),
     ValueError, ["negative_slope", "finite"]),
    ("negative_slope str", lambda: activations.get("leaky_relu", negative_slope="0.1"),
     TypeError, ["negative_slope", "'0.1'"]),
    ("elu alpha inf", lambda: activations.get("elu", alpha=float("inf")), ValueError,
     ["alpha", "finite"]),
    ("gelu approximate 'no'", lambda: activations.get("gelu", approximate="no"), TypeError,
     ["approximate", "'no'"]),
    ("residual alpha nan", lambda: jrnn.cells.residual(4, alpha=float("nan")), ValueError,
     ["alpha"]),
    ("residual alpha str", lambda: jrnn.cells.residual(4, alpha="big"), TypeError, ["alpha"]),
    ("forget_bias nan", lambda: jrnn.cells.lstm(4, forget_bias=float("nan")), ValueError,
     ["forget_bias"]),
    ("forget_bias str", lambda: jrnn.cells.lstm(4, forget_bias="1"), TypeError,
     ["forget_bias"]),
    ("use_bias 'no'", lambda: jrnn.cells.elman(4, use_bias="no"), TypeError,
     ["use_bias", "'no'"]),
    ("irnn scale inf", lambda: jrnn.cells.irnn(4, scale=float("inf")), ValueError, ["scale"]),
    ("gain nan", lambda: initializers.orthogonal(float("nan")), ValueError, ["gain"]),
    ("glorot gain str", lambda: initializers.glorot_uniform("1"), TypeError, ["gain"]),
    ("scaled_normal gain inf", lambda: initializers.scaled_normal(float("inf")), ValueError,
     ["gain"]),
    ("uniform(1, 0)", lambda: initializers.uniform(1, 0), ValueError, ["low", "high"]),
    ("uniform nan", lambda: initializers.uniform(0, float("nan")), ValueError, ["high"]),
    ("constant nan", lambda: initializers.constant(float("nan")), ValueError, ["value"]),
    ("cross_entropy -1", lambda: tasks.cross_entropy(jnp.zeros((2, 3)), jnp.array([0, -1])),
     ValueError, ["labels", "[0, 3)"]),
    ("cross_entropy C", lambda: tasks.cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 3])),
     ValueError, ["labels"]),
    ("distributed timeout", lambda: parallel.initialize_distributed("h:1", 2, 0, timeout_s=0),
     ValueError, ["timeout_s"]),
    ("distributed address", lambda: parallel.initialize_distributed("nohost", 2, 0),
     ValueError, ["coordinator_address", "host:port"]),
    ("clip_norm str", lambda: train.make_train_step(MODEL.apply, tasks.mse, optax.sgd(0.1),
                                                    clip_norm="1"), TypeError, ["clip_norm"]),
    ("clip_norm nan", lambda: train.make_train_step(MODEL.apply, tasks.mse, optax.sgd(0.1),
                                                    clip_norm=float("nan")), ValueError,
     ["clip_norm"]),
    ("skip_nonfinite 'no'", lambda: train.make_train_step(MODEL.apply, tasks.mse,
                                                          optax.sgd(0.1), skip_nonfinite="no"),
     TypeError, ["skip_nonfinite"]),
    ("fit int key", lambda: train.fit(_step(), _state(rng=0), _batch, steps=1), TypeError,
     ["state.rng"]),
    ("fit float key", lambda: train.fit(_step(), _state(rng=jnp.zeros(2)), _batch, steps=1),
     TypeError, ["state.rng"]),
    ("fit key batch 2-D", lambda: train.fit(
        _step(), _state(rng=jax.random.split(KEY, (2, 2))), _batch, steps=1), ValueError,
     ["state.rng"]),
    ("fit steps str", lambda: train.fit(_step(), _state(), _batch, steps="4"), TypeError,
     ["steps"]),
    ("fit steps float", lambda: train.fit(_step(), _state(), _batch, steps=2.5), TypeError,
     ["steps"]),
    ("fit nan_guard 'no'", lambda: train.fit(_step(), _state(), _batch, steps=1, nan_guard="no"),
     TypeError, ["nan_guard"]),
    ("fit max_to_keep 0", lambda: train.fit(_step(), _state(), _batch, steps=1, max_to_keep=0),
     ValueError, ["max_to_keep"]),
    ("fit eval_every str", lambda: train.fit(_step(), _state(), _batch, steps=1,
                                             eval_every="2"), TypeError, ["eval_every"]),
    ("fit callback", lambda: train.fit(_step(), _state(), _batch, steps=1, callback=3),
     TypeError, ["callback"]),
    ("save max_to_keep 0", lambda: jrnn.checkpoint.save("/nonexistent-jrnn", {"a": XS}, step=1,
                                                        max_to_keep=0), ValueError,
     ["max_to_keep"]),
    ("save directory None", lambda: jrnn.checkpoint.save(None, {"a": XS}, step=1), TypeError,
     ["directory"]),
    # 7. issue 33: metadata and arguments that contradicted themselves
    ("register grad_bound < 0", lambda: activations.register(
        "bad_bound", jnp.tanh, grad_bound=-1.0), ValueError, ["grad_bound", "-1.0"]),
    ("register grad_bound nan", lambda: activations.register(
        "bad_bound", jnp.tanh, grad_bound=float("nan")), ValueError, ["grad_bound", "nan"]),
    ("register output_range reversed", lambda: activations.register(
        "bad_range", jnp.tanh, grad_bound=1.0, output_range=(1.0, -1.0)), ValueError,
     ["output_range[0]", "output_range[1]"]),
    ("register saturation_threshold < 0", lambda: activations.register(
        "bad_sat", jnp.tanh, grad_bound=1.0, saturation_threshold=-2.0), ValueError,
     ["saturation_threshold"]),
    ("orthogonal float dims", lambda: initializers.orthogonal()(KEY, (2.5, 3)), TypeError,
     ["shape[0]", "2.5"]),
    ("normal negative dim", lambda: initializers.scaled_normal()(KEY, (-1, 3)), ValueError,
     ["shape[0]", "-1"]),
    ("gaussian_expectation scale < 0", lambda: jrnn.theory.gaussian_expectation(
        jnp.tanh, -1.0), ValueError, ["scale", "-1.0"]),
    ("gaussian_expectation num_points 0", lambda: jrnn.theory.gaussian_expectation(
        jnp.tanh, 1.0, num_points=0), ValueError, ["num_points", "0"]),
    ("critical_gain lower < 0", lambda: jrnn.theory.critical_gain("tanh", lower=-1.0),
     ValueError, ["lower", "(0, inf)"]),
    ("critical_gain lower = 0", lambda: jrnn.theory.critical_gain("tanh", lower=0.0),
     ValueError, ["lower"]),
    ("critical_gain lower > upper", lambda: jrnn.theory.critical_gain(
        "tanh", lower=10.0, upper=1.0), ValueError, ["lower", "upper", "10.0"]),
    ("critical_gain bisections < 0", lambda: jrnn.theory.critical_gain(
        "tanh", bisections=-3), ValueError, ["bisections", "-3"]),
    ("critical_gain bisections float", lambda: jrnn.theory.critical_gain(
        "tanh", bisections=2.5), TypeError, ["bisections", "2.5"]),
    ("critical_scale lower > upper", lambda: jrnn.theory.gated.critical_scale(
        "gru", lower=3.0, upper=1.0), ValueError, ["lower", "upper"]),
    ("critical no bracket", lambda: initializers.critical("sigmoid", sigma_b=1e6),
     ValueError, ["critical gain", "sigmoid"]),
    ("mean_field iterations 0", lambda: jrnn.theory.mean_field("tanh", 1.5, iterations=0),
     ValueError, ["iterations", "0"]),
    ("mean_field iterations float", lambda: jrnn.theory.mean_field(
        "tanh", 1.5, iterations=2.5), TypeError, ["iterations", "2.5"]),
    ("mean_field num_points 0", lambda: jrnn.theory.mean_field("tanh", 1.5, num_points=0),
     ValueError, ["num_points"]),
    ("gru_mean_field iterations 0", lambda: jrnn.theory.gated.annealed_gru_mean_field(
        1.0, iterations=0), ValueError, ["iterations"]),
    ("unroll complex carry", lambda: jrnn.unroll(ELMAN, P, XS, carry=jnp.zeros(4, jnp.complex64)),
     TypeError, ["carry", "complex"]),
    ("model b_o (1,)", lambda: MODEL2.apply(
        {**MP2, "readout": {**MP2["readout"], "b_o": jnp.zeros(1)}}, XS), ValueError,
     ["params['readout']['b_o']", "(2,)", "(1,)"]),
    ("model W_ho int", lambda: MODEL.apply(
        {**MP, "readout": {**MP["readout"], "W_ho": jnp.zeros((1, 4), int)}}, XS), TypeError,
     ["params['readout']['W_ho']", "int"]),
    ("model missing readout", lambda: MODEL.apply({"cell": MP["cell"]}, XS), ValueError,
     ["params", "'readout'"]),
    ("torch int weights", lambda: jrnn.interop.from_torch_state_dict(
        {k: v.astype(np.int64) for k, v in TORCH_SD.items()}, "rnn"), TypeError,
     ["weight_", "int64"]),
    ("torch prefix matches nothing", lambda: jrnn.interop.from_torch_state_dict(
        TORCH_SD, "rnn", prefix="encoder."), ValueError, ["prefix", "'encoder.'"]),
    ("accuracy label C", lambda: tasks.accuracy(jnp.zeros((2, 3)), jnp.array([0, 7])),
     ValueError, ["labels", "[0, 3)"]),
    ("accuracy label -1", lambda: tasks.accuracy(jnp.zeros((2, 3)), jnp.array([-1, 0])),
     ValueError, ["labels", "[0, 3)"]),
    ("accuracy float labels", lambda: tasks.accuracy(jnp.zeros((2, 3)), jnp.array([0.0, 1.0])),
     TypeError, ["labels", "float"]),
    ("kaplan_yorke complex", lambda: jrnn.diagnostics.kaplan_yorke_dimension(jnp.ones(2) + 0j),
     TypeError, ["exponents", "complex"]),
    ("params beyond memory", lambda: jrnn.cells.elman(10**6).init(KEY, 3), ValueError,
     ["elman", "TB", "W_hh", "(1000000, 1000000)", "memory"]),
    ("cell.init int key", lambda: ELMAN.init(5, 3), TypeError, ["key", "5", "PRNG"]),
    ("cell.init float key", lambda: LSTM.init(jnp.zeros(2), 3), TypeError, ["key", "float"]),
    ("cell.init input_size float", lambda: ELMAN.init(KEY, 2.5), TypeError,
     ["input_size", "2.5"]),
    ("lyapunov int key", lambda: jrnn.diagnostics.lyapunov_spectrum(ELMAN, P, XS, k=2, key=5),
     TypeError, ["key", "5"]),
    ("clv int key", lambda: jrnn.diagnostics.covariant_lyapunov_vectors(
        ELMAN, P, jnp.ones((12, 3)), k=2, key=5), TypeError, ["key", "5"]),
    ("adding float key", lambda: tasks.adding(jnp.zeros(2), 4, 5), TypeError,
     ["key", "float"]),
    ("adding key batch", lambda: tasks.adding(jax.random.split(KEY, 3), 4, 5), ValueError,
     ["key", "vmap"]),
    ("register existing", lambda: activations.register("tanh", jnp.tanh), ValueError,
     ["'tanh'", "overwrite=True"]),
    ("gradient_norms vector loss", lambda: jrnn.diagnostics.gradient_norms(
        lambda hs: hs, ELMAN, P, XS), ValueError, ["loss_fn", "scalar", "(5, 4)"]),
    ("gradient_norms loss not callable", lambda: jrnn.diagnostics.gradient_norms(
        3, ELMAN, P, XS), TypeError, ["loss_fn"]),
    ("train step batch not pair", lambda: _step()(_state(), jnp.ones((2, 5, 3))), TypeError,
     ["batch", "(x, y)", "(2, 5, 3)"]),
    ("train step batch triple", lambda: _step()(_state(), (XS, XS, XS)), TypeError,
     ["batch", "3 entries"]),
    ("bidirectional non-cell", lambda: jrnn.bidirectional(3, ELMAN), TypeError,
     ["forward", "Cell", "3"]),
    ("bidirectional one params", lambda: jrnn.bidirectional(ELMAN, ELMAN).apply(P, XS),
     ValueError, ["params", "(forward_params, backward_params)", "'W_hh'"]),
    ("lru r_min str", lambda: jrnn.cells.lru(4, r_min="a"), TypeError, ["r_min", "'a'"]),
    ("lru max_phase 0", lambda: jrnn.cells.lru(4, max_phase=0.0), ValueError, ["max_phase"]),
    ("sine min_freq str", lambda: tasks.sine(KEY, 4, 5, min_freq="a"), TypeError,
     ["min_freq", "'a'"]),
    ("init_state optimizer None", lambda: train.init_state(MP, None, KEY), TypeError,
     ["optimizer", "None"]),
    ("init_state int key", lambda: train.init_state(MP, optax.sgd(0.1), 0), TypeError,
     ["key", "0"]),
    ("fit eval_fn list", lambda: train.fit(_step(), _state(), _batch, steps=1,
                                           eval_fn=lambda p: [1.0]), TypeError,
     ["eval_fn", "mapping", "list"]),
    ("make_mesh device names", lambda: parallel.make_mesh("grid", devices=["cpu:0"]),
     TypeError, ["devices[0]", "jax.Device", "'cpu:0'"]),
    ("make_mesh platform string", lambda: parallel.make_mesh("grid", devices="cpu"),
     TypeError, ["devices", "string", "jax.devices('cpu')"]),
    ("make_mesh duplicate device", lambda: parallel.make_mesh(
        "grid", devices=[jax.devices()[0]] * 2), ValueError, ["devices", "distinct"]),
    ("sweep python branch", lambda: parallel.sweep(
        lambda gain: gain if gain > 1.0 else -gain, gain=jnp.linspace(0.5, 2.0, 4)),
     TypeError, ["fn", "Python", "gain", "jnp.where"]),
    ("checkpoint str leaf", lambda: jrnn.checkpoint.save(
        "/nonexistent-dir-never-created", {"a": "x"}, step=0), TypeError,
     ["state leaf ['a']", "str", "extra="]),
    ("wrap not a model", lambda: jrnn.wrap(3), TypeError,
     ["obj", "step function", "Flax linen", "Equinox", "int"]),
    ("wrap a Cell", lambda: jrnn.wrap(ELMAN), TypeError, ["obj", "jrnn.Cell already"]),
    ("wrap a class", lambda: jrnn.wrap(jrnn.Cell), TypeError, ["obj", "class Cell"]),
    ("wrap step no carry", lambda: _wrap_step(_tanh_step, carry=None), ValueError,
     ["carry is required", "None"]),
    ("wrap step no params", lambda: _wrap_step(_tanh_step, params=None), ValueError,
     ["params is required", "None"]),
    ("wrap step no input_size", lambda: _wrap_step(_tanh_step, input_size=None), ValueError,
     ["input_size is required", "None"]),
    ("wrap step input_size 0", lambda: _wrap_step(_tanh_step, input_size=0), ValueError,
     ["input_size"]),
    ("wrap step carry shape", lambda: _wrap_step(lambda p, h, x: (h[:2], h)), ValueError,
     ["carry", "shape", "[4] in", "[2] out"]),
    ("wrap step carry dtype", lambda: _wrap_step(
        lambda p, h, x: (h.astype(jnp.float64), h), params=jnp.eye(4, dtype=jnp.float32),
        carry=jnp.zeros(4, jnp.float32)), ValueError, ["carry", "dtype", "float64"]),
    ("wrap step carry structure", lambda: _wrap_step(lambda p, h, x: ((h, h), h)), ValueError,
     ["carry", "structure"]),
    ("wrap step not a pair", lambda: _wrap_step(lambda p, h, x: h), ValueError,
     ["(carry, y)"]),
    ("wrap step fails on x", lambda: _wrap_step(lambda p, h, x: (p @ x, h)), ValueError,
     ["fails", "input_size"]),
    ("wrap int carry", lambda: _wrap_step(_tanh_step, carry=jnp.zeros(4, int)), TypeError,
     ["carry", "floating", "int"]),
    ("wrap jacobian not callable", lambda: _wrap_step(_tanh_step, jacobian=3), TypeError,
     ["jacobian", "int"]),
    ("wrap jacobian shape", lambda: _wrap_step(_tanh_step, jacobian=lambda p, h, x: p[:2]),
     ValueError, ["jacobian", "(4, 4)", "(2, 4)"]),
    ("wrap linen no params", lambda: _wrap_linen(), ValueError,
     ["params is required", "flax.linen.GRUCell", "None"]),
    ("wrap linen params not mapping", lambda: _wrap_linen(params=[1]), TypeError,
     ["params", "mapping", "list"]),
    ("wrap equinox non-cell", _wrap_eqx_linear, TypeError,
     ["obj", "Equinox", "Linear", "not a cell", "__call__(x, carry)"]),
    ("wrapped cell other params", lambda: jrnn.unroll(_wrap_step(_tanh_step)[0], jnp.eye(3),
                                                      XS), ValueError,
     ["params", "shape (4, 4)", "(3, 3)"]),
    ("wrapped cell unit_health", lambda: jrnn.diagnostics.unit_health(
        _wrap_step(_tanh_step)[0], jnp.eye(4), XS), ValueError, ["pointwise"]),
    ("make_mesh one device", lambda: parallel.make_mesh("grid", devices=jax.devices()[0]),
     TypeError, ["devices", "sequence", "list"]),
    ("make_mesh int", lambda: parallel.make_mesh("grid", devices=0), TypeError,
     ["devices", "int"]),
    ("checkpoint huge int leaf", lambda: jrnn.checkpoint.save(
        "/nonexistent-dir-never-created", {"a": 2**70}, step=0), ValueError,
     ["state leaf ['a']", "int64", str(2**70)]),
    ("check_key None", lambda: validation.check_key(None, "key"), TypeError, ["key"]),
    ("check_int bool", lambda: validation.check_int(True, "n"), TypeError, ["n"]),
    ("check_number array", lambda: validation.check_number(jnp.ones(2), "x"), TypeError, ["x"]),
    # issue 27 (break27): the curse-of-memory diagnostics
    ("linear_memory shapes", lambda: jrnn.theory.linear_memory(np.zeros(3), np.zeros(2)),
     ValueError, ["lam and rho", "(3,)", "(2,)"]),
    ("hessian complex loss", lambda: jrnn.diagnostics.hessian_spectrum(
        lambda p, b: jnp.sum(p["w"] ** 2) * (1 + 1j), {"w": jnp.ones(3)}, k=1), TypeError,
     ["loss_fn", "real floating", "complex"]),
    ("hessian int loss", lambda: jrnn.diagnostics.hessian_spectrum(
        lambda p, b: 3, {"w": jnp.ones(3)}, k=1), TypeError, ["loss_fn", "int"]),
    ("memory_capacity nan direction", lambda: jrnn.diagnostics.memory_capacity(
        ELMAN, P, max_delay=2, input_direction=jnp.array([jnp.nan, 1.0, 0.0])), ValueError,
     ["input_direction", "finite", "nan"]),
    ("memory_capacity inf direction", lambda: jrnn.diagnostics.memory_capacity(
        ELMAN, P, max_delay=2, input_direction=jnp.array([jnp.inf, 1.0, 0.0])), ValueError,
     ["input_direction", "finite", "inf"]),
    ("memory_capacity complex direction", lambda: jrnn.diagnostics.memory_capacity(
        ELMAN, P, max_delay=2, input_direction=jnp.array([1j, 1.0, 0.0])), TypeError,
     ["input_direction", "real", "complex"]),
    ("memory_capacity str direction", lambda: jrnn.diagnostics.memory_capacity(
        ELMAN, P, max_delay=2, input_direction="x"), TypeError, ["input_direction", "'x'"]),
    ("memory_capacity missing key", lambda: jrnn.diagnostics.memory_capacity(
        ELMAN, _drop(P, "W_xh"), max_delay=2), ValueError, ["params", "'W_xh'"]),
    ("memory_capacity int params", lambda: jrnn.diagnostics.memory_capacity(
        ELMAN, jax.tree.map(lambda a: a.astype(int), P), max_delay=2), TypeError,
     ["params", "floating", "int"]),
    ("memory_capacity under jit", lambda: jax.jit(lambda p: jrnn.diagnostics.memory_capacity(
        ELMAN, p, max_delay=2).total)(P), TypeError, ["params", "jax.jit", "traced"]),
    # break2: empty batches / sequences gave IndexError or named an argument never passed
    ("lyapunov empty batch", lambda: jrnn.diagnostics.lyapunov_spectrum(
        ELMAN, P, jnp.ones((0, 5, 3)), k=2), ValueError, ["xs", "sequence", "(0, 5, 3)"]),
    ("lyapunov T = 0", lambda: jrnn.diagnostics.lyapunov_spectrum(
        ELMAN, P, jnp.ones((2, 0, 3)), k=2), ValueError, ["xs", "step", "(2, 0, 3)"]),
    ("snapshot empty batch", lambda: jrnn.diagnostics.snapshot(
        ELMAN, P, jnp.ones((0, 5, 3)), k=2), ValueError, ["xs", "sequence", "(0, 5, 3)"]),
    # break2: a given input_size overrode the module's own, so a mismatch surfaced as the
    # step failing on x (dot_general shapes) instead of naming input_size
    ("wrap linen input_size mismatch", lambda: _wrap_linen(
        params=nn_gru_params(), input_size=5), ValueError, ["input_size must be 3", "got 5"]),
    ("wrap eqx input_size mismatch", lambda: jrnn.wrap(_eqx_gru(), input_size=5), ValueError,
     ["input_size must be 3", "got 5"]),
    ("fit Monitor str xs", lambda: train.fit(_step(), _state(), _batch, steps=1, monitor=(
        train.Monitor("abc", k=2)), monitor_every=1), TypeError, ["Monitor xs", "numeric"]),
    ("fit Monitor empty batch", lambda: train.fit(_step(), _state(), _batch, steps=1, monitor=(
        train.Monitor(jnp.ones((0, 5, 3)), k=2)), monitor_every=1), ValueError,
     ["xs", "sequence"]),
    ("fit monitor vector value", lambda: train.fit(_step(), _state(), _batch, steps=1,
        monitor=lambda p: {"w": p["cell"]["b_h"]}, monitor_every=1), TypeError,
     ["scalar", "'w'", "(4,)"]),
]


@pytest.mark.parametrize("thunk, exc, fragments", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_raises_naming_the_argument(thunk, exc, fragments):
    with pytest.raises(exc) as info:
        thunk()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_every_cell_declares_a_spec_that_its_init_satisfies():
    cells = [jrnn.cells.elman(3), jrnn.cells.elman(3, use_bias=False), jrnn.cells.irnn(3),
             jrnn.cells.residual(3), jrnn.cells.indrnn(3), jrnn.cells.lstm(3), jrnn.cells.gru(3),
             jrnn.cells.min_gru(3), jrnn.cells.min_lstm(3), jrnn.cells.lru(3), STACK,
             jrnn.cells.leaky(3), jrnn.cells.mgu(3), jrnn.cells.antisymmetric(3),
             jrnn.cells.cornn(3), jrnn.cells.lem(3), jrnn.cells.orthogonal(3),
             jrnn.cells.exprnn(3), jrnn.cells.lipschitz(3)]
    for cell in cells:
        assert cell.param_spec is not None, cell.describe()
        # Abstract init (no compile), materialised as zeros: shapes and dtypes only.
        abstract = jax.eval_shape(lambda k, c=cell: c.init(k, 2), KEY)
        params = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), abstract)
        spec = cell.param_spec(2)
        validation.check_params(cell, params, 2)
        validation.check_params(cell, params)
        # The spec's names and shapes are exactly the init's.
        got = jax.tree_util.tree_map(np.shape, params)
        want = spec if isinstance(spec, dict) else tuple(spec)
        flat = lambda s: {k: v[0] for k, v in s.items()}  # noqa: E731
        if isinstance(want, dict):
            assert got == flat(want), cell.describe()
        else:
            assert list(got) == [flat(w) for w in want]


def test_degenerate_sizes_and_integer_inputs():
    # T = 0: the carry unchanged and empty outputs, on every path.
    for kw in ({}, {"method": FUSED_VJP}, {"method": jrnn.Scan(remat=True)}):
        carry, hs = jrnn.unroll(ELMAN, P, jnp.ones((2, 0, 3)), **kw)
        assert hs.shape == (2, 0, 4) and carry.shape == (2, 4)
        np.testing.assert_array_equal(carry, 0.0)
    c0 = jnp.full((4,), 0.5)
    carry, hs = jrnn.unroll(ELMAN, P, jnp.ones((0, 3)), carry=c0)
    assert hs.shape == (0, 4)
    np.testing.assert_array_equal(carry, c0)
    (h, c), hs = jrnn.unroll(LSTM, LP, jnp.ones((0, 3)))
    assert hs.shape == (0, 2) and h.shape == c.shape == (2,)
    # B = 0.
    carry, hs = jrnn.unroll(ELMAN, P, jnp.ones((0, 5, 3)))
    assert hs.shape == (0, 5, 4) and carry.shape == (0, 4)
    # Integer and bool inputs are cast to the params' float dtype: same as float inputs.
    ints = jnp.array([[1, 0, 2], [0, 1, 1]], jnp.int32)
    ref = jrnn.unroll(ELMAN, P, ints.astype(jnp.float32))[1]
    out = jrnn.unroll(ELMAN, P, ints)[1]
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, ref)
    out = jrnn.unroll(ELMAN, P, ints > 0)[1]
    np.testing.assert_array_equal(out, jrnn.unroll(ELMAN, P, (ints > 0).astype(jnp.float32))[1])


def test_traced_lengths_act_clamped():
    xs = jax.random.normal(KEY, (3, 5, 3))
    run = jax.jit(lambda lengths: jrnn.unroll(ELMAN, P, xs, lengths=lengths))
    got = run(jnp.array([-1, 99, 2]))
    want = run(jnp.array([0, 5, 2]))
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(g, w)


def test_cross_entropy_traced_bad_label_is_nan_not_a_plausible_loss():
    f = jax.jit(tasks.cross_entropy)
    assert np.isnan(f(jnp.zeros((2, 3)), jnp.array([0, -1])))
    np.testing.assert_allclose(f(jnp.zeros((2, 3)), jnp.array([0, 2])), np.log(3), rtol=1e-6)


def test_valid_values_pass_through_the_checks():
    assert validation.check_number(np.float32(0.5), "x", low=0.0, high=1.0) == 0.5
    assert validation.check_int(np.int64(3), "n", low=1) == 3
    assert validation.check_bool(np.bool_(False), "flag") is False
    validation.check_key(jax.random.PRNGKey(0))
    validation.check_key(jax.random.split(KEY, 3), batched=True)
    assert activations.get("leaky_relu", negative_slope=0).fn(jnp.float32(-1.0)) == 0.0
    assert activations.get("gelu", approximate=True).name == "gelu(approximate=True)"
    # Small int64 sweep values are fine with x64 off or on.
    out = parallel.sweep(lambda seed: seed * 2, seed=np.array([1, 2, 3], np.int64))
    np.testing.assert_array_equal(np.asarray(out), [2, 4, 6])


def test_int64_sweep_values_that_would_collide_without_x64_are_rejected():
    seeds = np.array([1, 2**40 + 1], np.int64)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="'seed'.*collide"):
            parallel.sweep(lambda seed: seed, seed=seeds)
    # With x64 on (this suite's default) they are distinct and kept.
    np.testing.assert_array_equal(np.asarray(parallel.sweep(lambda seed: seed, seed=seeds)), seeds)
