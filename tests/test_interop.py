"""jrnn.interop: imported weights reproduce PyTorch's equations (a NumPy reference
written from the torch.nn docs, no torch import) and flax.linen cells' outputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import interop

# --------------------------------------------------------------------------- NumPy reference


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _torch_layer(kind, x, w_ih, w_hh, b_ih, b_hh):
    """One direction of one layer of torch.nn.{RNN, LSTM, GRU}, x (B, T, d), h0 = c0 = 0.

    Equations as in the PyTorch docs:
      RNN:  h' = act(W_ih x + b_ih + W_hh h + b_hh)
      LSTM: i, f, g, o = chunk4(W_ih x + b_ih + W_hh h + b_hh)
            c' = sig(f) c + sig(i) tanh(g),  h' = sig(o) tanh(c')
      GRU:  r = sig(W_ir x + b_ir + W_hr h + b_hr),  z = sig(W_iz x + b_iz + W_hz h + b_hz)
            n = tanh(W_in x + b_in + r (W_hn h + b_hn)),  h' = (1 - z) n + z h
    """
    B, T, _ = x.shape
    n = w_hh.shape[1]
    h, c = np.zeros((B, n)), np.zeros((B, n))
    outs = []
    for t in range(T):
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        if kind in ("rnn_tanh", "rnn_relu"):
            a = gi + gh
            h = np.tanh(a) if kind == "rnn_tanh" else np.maximum(a, 0.0)
        elif kind == "lstm":
            i, f, g, o = np.split(gi + gh, 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:
            ir, iz, in_ = np.split(gi, 3, axis=-1)
            hr, hz, hn = np.split(gh, 3, axis=-1)
            r, z = _sigmoid(ir + hr), _sigmoid(iz + hz)
            cand = np.tanh(in_ + r * hn)
            h = (1.0 - z) * cand + z * h
        outs.append(h)
    return np.stack(outs, axis=1)


def _torch_forward(kind, sd, x, num_layers, bidirectional=False):
    """nn.RNN/LSTM/GRU(batch_first=True) output sequence from a state dict."""

    def get(name, shape):
        return sd.get(name, np.zeros(shape))

    for layer in range(num_layers):
        outs = []
        for sfx, rev in (("", False), ("_reverse", True)) if bidirectional else (("", False),):
            w_ih, w_hh = sd[f"weight_ih_l{layer}{sfx}"], sd[f"weight_hh_l{layer}{sfx}"]
            g = w_hh.shape[0]
            b_ih = get(f"bias_ih_l{layer}{sfx}", (g,))
            b_hh = get(f"bias_hh_l{layer}{sfx}", (g,))
            inp = x[:, ::-1] if rev else x
            out = _torch_layer(kind, inp, w_ih, w_hh, b_ih, b_hh)
            outs.append(out[:, ::-1] if rev else out)
        x = np.concatenate(outs, axis=-1)
    return x


_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def _state_dict(kind, d, n, num_layers, bias=True, bidirectional=False, seed=0):
    """Random weights in PyTorch's layout and naming (U(-1/sqrt(n), 1/sqrt(n)) scaled up)."""
    rng = np.random.default_rng(seed)
    g = _GATES[kind] * n
    sd = {}
    for layer in range(num_layers):
        d_in = d if layer == 0 else n * (2 if bidirectional else 1)
        for sfx in ("", "_reverse") if bidirectional else ("",):
            sd[f"weight_ih_l{layer}{sfx}"] = rng.uniform(-1, 1, (g, d_in))
            sd[f"weight_hh_l{layer}{sfx}"] = rng.uniform(-1, 1, (g, n))
            if bias:
                sd[f"bias_ih_l{layer}{sfx}"] = rng.uniform(-1, 1, (g,))
                sd[f"bias_hh_l{layer}{sfx}"] = rng.uniform(-1, 1, (g,))
    return sd


# --------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_torch_state_dict_matches_numpy_reference(kind, num_layers, bias):
    d, n, B, T = 3, 4, 2, 6
    sd = _state_dict(kind, d, n, num_layers, bias=bias, seed=num_layers + 2 * bias)
    x = np.random.default_rng(7).normal(size=(B, T, d))
    cell, params = interop.from_torch_state_dict(sd, kind)
    _, hs = jrnn.unroll(cell, params, jnp.asarray(x))
    ref = _torch_forward(kind, sd, x, num_layers)
    np.testing.assert_allclose(hs, ref, rtol=1e-10, atol=1e-12)
    if num_layers == 1:
        assert cell.name == ("elman" if kind.startswith("rnn") else kind)
        assert isinstance(params, dict)
    else:
        assert cell.name == "stack" and isinstance(params, tuple) and len(params) == num_layers


def test_torch_bias_layout():
    """RNN/LSTM fold the two biases; GRU keeps them apart; bias=False -> no / zero bias."""
    sd = _state_dict("gru", 2, 3, 1)
    _, p = interop.from_torch_state_dict(sd, "gru")
    np.testing.assert_array_equal(p["b_xh"], sd["bias_ih_l0"])
    np.testing.assert_array_equal(p["b_hh"], sd["bias_hh_l0"])
    sd = _state_dict("lstm", 2, 3, 1)
    _, p = interop.from_torch_state_dict(sd, "lstm")
    np.testing.assert_allclose(p["b_h"], sd["bias_ih_l0"] + sd["bias_hh_l0"])
    cell, p = interop.from_torch_state_dict(_state_dict("rnn_tanh", 2, 3, 1, bias=False), "rnn")
    assert set(p) == {"W_xh", "W_hh"} and dict(cell.config)["activation"] == "tanh"
    _, p = interop.from_torch_state_dict(_state_dict("lstm", 2, 3, 1, bias=False), "LSTM")
    np.testing.assert_array_equal(p["b_h"], np.zeros(12))


def test_torch_rnn_kind_with_nonlinearity_and_prefix():
    sd = _state_dict("rnn_relu", 2, 3, 1)
    cell, _ = interop.from_torch_state_dict(sd, "rnn", nonlinearity="relu")
    assert dict(cell.config)["activation"] == "relu"
    prefixed = {f"encoder.rnn.{k}": v for k, v in sd.items()} | {"head.weight": np.ones((1, 3))}
    cell, params = interop.from_torch_state_dict(prefixed, "rnn_relu", prefix="encoder.rnn.")
    x = np.random.default_rng(1).normal(size=(1, 4, 2))
    np.testing.assert_allclose(
        jrnn.unroll(cell, params, jnp.asarray(x))[1],
        _torch_forward("rnn_relu", sd, x, 1),
        rtol=1e-10,
    )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_torch_bidirectional_single_layer(kind):
    sd = _state_dict(kind, 3, 4, 1, bidirectional=True, seed=5)
    x = np.random.default_rng(3).normal(size=(2, 5, 3))
    bi, params = interop.from_torch_state_dict(sd, kind)
    _, hs = bi.apply(params, jnp.asarray(x))
    np.testing.assert_allclose(hs, _torch_forward(kind, sd, x, 1, bidirectional=True), rtol=1e-10)


def test_torch_errors_name_key_and_shapes():
    sd = _state_dict("lstm", 3, 4, 2)
    bad = dict(sd, weight_hh_l1=np.zeros((16, 5)))
    with pytest.raises(ValueError, match=r"'weight_hh_l1'.*\(16, 5\).*expected \(16, 4\)"):
        interop.from_torch_state_dict(bad, "lstm")
    missing = {k: v for k, v in sd.items() if k != "bias_hh_l1"}
    with pytest.raises(ValueError, match=r"missing key 'bias_hh_l1'.*\(16,\)"):
        interop.from_torch_state_dict(missing, "lstm")
    with pytest.raises(ValueError, match="'weight_ih_l1'.*expected \\(16, 4\\)"):
        interop.from_torch_state_dict(dict(sd, weight_ih_l1=np.zeros((16, 3))), "lstm")
    with pytest.raises(ValueError, match=r"'weight_hh_l0'.*\(16, 4\).*kind='gru'"):
        interop.from_torch_state_dict(sd, "gru")  # 4n rows is not 3n
    with pytest.raises(ValueError, match="kind must be one of"):
        interop.from_torch_state_dict(sd, "transformer")
    with pytest.raises(ValueError, match="unexpected key 'running_mean'"):
        interop.from_torch_state_dict(dict(sd, running_mean=np.zeros(3)), "lstm")
    with pytest.raises(ValueError, match="proj_size"):
        interop.from_torch_state_dict(dict(sd, weight_hr_l0=np.zeros((2, 4))), "lstm")
    with pytest.raises(ValueError, match="num_layers=1.*unexpected keys"):
        interop.from_torch_state_dict(sd, "lstm", num_layers=1)
    with pytest.raises(ValueError, match="missing key 'weight_ih_l2'"):
        interop.from_torch_state_dict(sd, "lstm", num_layers=3)
    with pytest.raises(ValueError, match="missing key 'weight_hh_l0'"):
        interop.from_torch_state_dict({}, "gru")
    with pytest.raises(ValueError, match="bidirectional.*num_layers=1 only"):
        interop.from_torch_state_dict(_state_dict("gru", 2, 3, 2, bidirectional=True), "gru")
    with pytest.raises(ValueError, match="nonlinearity"):
        interop.from_torch_state_dict(sd, "rnn", nonlinearity="sigmoid")


# --------------------------------------------------------------------------- Flax linen


def _flax_run(flax_cell, variables, x, carry):
    apply, outs = jax.jit(flax_cell.apply), []
    for t in range(x.shape[1]):
        carry, y = apply(variables, carry, x[:, t])
        outs.append(y)
    return jnp.stack(outs, axis=1)


@pytest.mark.parametrize(
    "kind, make",
    [
        ("SimpleCell", lambda n: nn.SimpleCell(n, param_dtype=jnp.float64)),
        ("LSTMCell", lambda n: nn.LSTMCell(n, param_dtype=jnp.float64)),
        ("OptimizedLSTMCell", lambda n: nn.OptimizedLSTMCell(n, param_dtype=jnp.float64)),
        ("GRUCell", lambda n: nn.GRUCell(n, param_dtype=jnp.float64)),
    ],
)
def test_flax_linen_cells_match(kind, make):
    d, n, B, T = 3, 4, 2, 5
    flax_cell = make(n)
    x = jax.random.normal(jax.random.key(1), (B, T, d), jnp.float64)
    carry = flax_cell.initialize_carry(jax.random.key(2), (B, d))
    variables = flax_cell.init(jax.random.key(0), carry, x[:, 0])
    # random (non-zero) biases so the bias mapping is exercised
    variables = jax.tree.map(
        lambda p: p + 0.3 * jax.random.normal(jax.random.key(p.size), p.shape, p.dtype), variables
    )
    cell, params = interop.from_flax_linen(variables, kind)
    _, hs = jrnn.unroll(cell, params, x)
    np.testing.assert_allclose(
        hs, _flax_run(flax_cell, variables, x, carry), rtol=1e-10, atol=1e-12
    )


def test_flax_simple_cell_residual_and_activation():
    d, n = 2, 3
    flax_cell = nn.SimpleCell(n, activation_fn=nn.relu, residual=True, param_dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (1, 4, d), jnp.float64)
    carry = flax_cell.initialize_carry(jax.random.key(2), (1, d))
    variables = flax_cell.init(jax.random.key(0), carry, x[:, 0])
    cell, params = interop.from_flax_linen(
        variables["params"], "simple", activation="relu", residual=True
    )
    _, hs = jrnn.unroll(cell, params, x)
    np.testing.assert_allclose(hs, _flax_run(flax_cell, variables, x, carry), rtol=1e-10)


def test_flax_errors():
    flax_cell = nn.GRUCell(4)
    variables = flax_cell.init(jax.random.key(0), jnp.zeros((4,)), jnp.zeros((3,)))
    p = jax.tree.map(np.asarray, variables["params"])
    with pytest.raises(
        ValueError, match=r"params\['hn'\]\['kernel'\] has shape \(4, 5\).*\(4, 4\)"
    ):
        interop.from_flax_linen(
            dict(p, hn={"kernel": np.zeros((4, 5)), "bias": p["hn"]["bias"]}), "gru"
        )
    with pytest.raises(ValueError, match=r"missing params\['hz'\]\['kernel'\]"):
        interop.from_flax_linen({k: v for k, v in p.items() if k != "hz"}, "gru")
    with pytest.raises(ValueError, match="unexpected entries"):
        interop.from_flax_linen(p, "lstm")
    with pytest.raises(ValueError, match="kind must be one of"):
        interop.from_flax_linen(p, "mgu")
