# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Keras, PyTorch and Flax weights in and out
#
# A model trained elsewhere can be measured with jrnn: `jrnn.interop` converts the weights of
# Keras 3 `SimpleRNN` / `LSTM` / `GRU` layers (and `Sequential` stacks of them with a `Dense`
# readout), PyTorch `nn.RNN` / `nn.LSTM` / `nn.GRU` state dicts and `flax.linen` cells into
# jrnn cells whose outputs and gradients are the original's, so every diagnostic of the
# earlier tutorials applies. `to_keras` goes back. Each conversion below is checked against
# the original framework's own forward pass.

# %%
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras 3 on JAX: no TensorFlow needed

import flax.linen as nn
import jax
import jax.numpy as jnp
import keras
import numpy as np

import jrnn

# %% [markdown]
# ## Keras: the seed article's model
#
# The article's program is `SimpleRNN(64, return_sequences=True) -> SimpleRNN(32) ->
# Dense(1)`; here at a quarter of the size and untrained (training it in Keras is
# `python -m experiments.seed_example --keras`).

# %%
keras.utils.set_random_seed(0)
kmodel = keras.Sequential([
    keras.Input((10, 1)),
    keras.layers.SimpleRNN(16, return_sequences=True),
    keras.layers.SimpleRNN(8),
    keras.layers.Dense(1),
])
x = np.random.default_rng(0).normal(size=(4, 10, 1)).astype("float32")

model, params = jrnn.interop.from_keras(kmodel)
print(type(model).__name__, "of a", model.cell.name, "cell; readout", model.output_size)
print("max |jrnn - keras| =", float(np.max(np.abs(model.apply(params, x) - kmodel(x)))))

# %% [markdown]
# The converted model is a `jrnn.models.Model` whose `cell` is a stack of the two Elman
# layers, so the diagnostics run on it directly:

# %%
lyap = jrnn.diagnostics.lyapunov_spectrum(model.cell, params["cell"], x[0], k=4)
print("lambda_1..4 of the Keras model:", np.round(np.asarray(lyap.exponents), 3))

# %% [markdown]
# And back: `to_keras` builds a Keras model with jrnn's weights (for instance after training
# or flossing in jrnn). A stack does not keep its cells, so `layers=` names them as they were
# given to `jrnn.models.rnn`.

# %%
params2 = jax.tree.map(lambda a: 0.9 * a, params)  # "trained" in jrnn
layers = [jrnn.cells.elman(16), jrnn.cells.elman(8)]
kmodel2 = jrnn.interop.to_keras(model, params2, layers=layers)
print("max |keras(to_keras) - jrnn| =", float(np.max(np.abs(kmodel2(x) - model.apply(params2, x)))))

# %% [markdown]
# Unsupported layers or options (`go_backwards`, `stateful`, `Bidirectional`, an activation
# jrnn lacks) raise a `ValueError` naming the layer and the option, rather than converting
# to something different.
#
# ## PyTorch: a state dict
#
# `from_torch_state_dict` reads `module.state_dict()` with NumPy (or array-like) values, so
# it needs no torch at conversion time: `{k: v.numpy() for k, v in module.state_dict().items()}`.
# Here the state dict of a one-layer `nn.LSTM(input_size=2, hidden_size=3,
# batch_first=True)` is written by hand with PyTorch's names, shapes and gate order
# (i, f, g, o), and the converted cell is checked against PyTorch's LSTM equations in NumPy.

# %%
rng = np.random.default_rng(0)
H, D = 3, 2
sd = {
    "weight_ih_l0": rng.normal(size=(4 * H, D)).astype("float32"),
    "weight_hh_l0": rng.normal(size=(4 * H, H)).astype("float32"),
    "bias_ih_l0": rng.normal(size=4 * H).astype("float32"),
    "bias_hh_l0": rng.normal(size=4 * H).astype("float32"),
}
cell, cell_params = jrnn.interop.from_torch_state_dict(sd, "lstm")


def torch_lstm_reference(sd, xs):
    """PyTorch's nn.LSTM equations (gate order i, f, g, o), zero initial state."""
    sig = lambda a: 1 / (1 + np.exp(-a))
    h, c, out = np.zeros(H), np.zeros(H), []
    for x_t in xs:
        z = sd["weight_ih_l0"] @ x_t + sd["bias_ih_l0"] + sd["weight_hh_l0"] @ h + sd["bias_hh_l0"]
        i, f, g, o = np.split(z, 4)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        out.append(h)
    return np.stack(out)


xs = rng.normal(size=(7, D)).astype("float32")
_, hs = jrnn.unroll(cell, cell_params, xs)
print("max |jrnn - PyTorch equations| =", float(np.max(np.abs(hs - torch_lstm_reference(sd, xs)))))

# %% [markdown]
# With torch installed, the same check is `module(torch.from_numpy(xs[None]))[0]`; jrnn's
# test suite runs it against `torch.nn` itself where torch is available.
#
# ## Flax: a `linen` cell
#
# `from_flax_linen` takes the params of a `SimpleCell`, `LSTMCell` / `OptimizedLSTMCell` or
# `GRUCell` (Flax kernels are `(in, out)`; jrnn's are transposed, and gates reordered).

# %%
flax_cell = nn.GRUCell(features=5)
xs = jax.random.normal(jax.random.key(0), (7, 2))
variables = nn.RNN(flax_cell).init(jax.random.key(1), xs[None])
flax_out = nn.RNN(flax_cell).apply(variables, xs[None])[0]

cell, cell_params = jrnn.interop.from_flax_linen(variables["params"]["cell"], "gru")
_, hs = jrnn.unroll(cell, cell_params, xs)
print(cell.name, "max |jrnn - flax| =", float(jnp.max(jnp.abs(hs - flax_out))))
