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
# # 4. Your own model: `jrnn.wrap`
#
# Every diagnostic in jrnn takes a `jrnn.Cell`. Your model need not be one:
# `cell, params = jrnn.wrap(obj, ...)` turns a Flax linen cell (built-in or your own), a Flax
# NNX cell, an Equinox cell or a plain step function `step(params, carry, x) -> (carry, y)`
# into a Cell that runs **your own code on your own params**. Nothing is converted: `params`
# is your pytree, so `jax.grad` with respect to it is your gradient, and trained params go
# straight back into your model.
#
# The state $s_t$ the diagnostics see is your carry flattened (leaves in `jax.tree_util`
# order, each raveled), and $J_t = \partial s_t / \partial s_{t-1}$ comes from `jax.jacfwd`
# of your step; the streaming diagnostics apply $J_t$ to a thin frame with `jax.linearize`,
# so nothing of size $S \times S$ is ever formed when $k \ll S$.

# %%
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jrnn

# %% [markdown]
# ## A Flax linen cell you wrote
#
# A two-timescale cell: a fast tanh unit $h$ and a slow trace $m$ of it, fed back into the
# recurrence. Its carry is the tuple `(h, m)`, so the state is $s_t = [h_t; m_t]$.

# %%
class TwoTimescale(nn.Module):
    features: int
    decay: float = 0.9

    @nn.compact
    def __call__(self, carry, x):
        h, m = carry
        h = jnp.tanh(nn.Dense(self.features)(x)
                     + nn.Dense(self.features, use_bias=False)(h + m))
        m = self.decay * m + (1 - self.decay) * h
        return (h, m), h

    def initialize_carry(self, rng, input_shape):
        z = jnp.zeros(input_shape[:-1] + (self.features,))
        return (z, z)


n, d, T = 32, 2, 400
flax_cell = TwoTimescale(n)
variables = flax_cell.init(jax.random.key(0), flax_cell.initialize_carry(None, (d,)),
                           jnp.zeros(d))
# A larger recurrent gain, to have something to look at.
variables = jax.tree.map(lambda a: 1.5 * a, variables)

cell, params = jrnn.wrap(flax_cell, params=variables, input_size=d)
print(cell.describe(), "| state size", cell.state_size)

# %% [markdown]
# `input_size` is needed because a user-defined module does not say it (built-in Flax and
# Equinox cells do, and `carry` comes from `initialize_carry`). Now every diagnostic applies:

# %%
xs = 0.5 * jax.random.normal(jax.random.key(1), (T, d))
prop = jrnn.diagnostics.propagation(cell, params, xs)
lyap = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, k=6, warmup=50)
print("lambda_1..6 (nats/step):", np.round(np.asarray(lyap.exponents), 3))
print("stderr:                 ", np.round(np.asarray(lyap.stderr), 3))

# %% [markdown]
# With $k = 6 \ll S = 64$ the spectrum streamed a thin frame through `jax.linearize` of your
# step. The full spectrum from the stacked Jacobians agrees to rounding:

# %%
full = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, warmup=50, mode="stacked")
print("max |streamed - stacked| =",
      float(jnp.max(jnp.abs(lyap.exponents - full.exponents[:6]))))

# %% [markdown]
# ## An Equinox cell
#
# An `eqx.nn.GRUCell` (your own `eqx.Module` with `__call__(x, carry) -> carry` works the
# same, with `carry=` and `input_size=`). Its params are its array leaves,
# `eqx.partition(cell, eqx.is_array)[0]`; the input size and the carry are read from the
# module.

# %%
gru = eqx.nn.GRUCell(d, n, key=jax.random.key(2))
gru = eqx.tree_at(lambda m: m.weight_hh, gru, 3.0 * gru.weight_hh)
ecell, eparams = jrnn.wrap(gru)
eprop = jrnn.diagnostics.propagation(ecell, eparams, xs)
elyap = jrnn.diagnostics.lyapunov_spectrum(ecell, eparams, xs, k=6, warmup=50)
print(ecell.describe(), "| lambda_1..6:", np.round(np.asarray(elyap.exponents), 3))

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(np.arange(T), prop.log_spectral_norm, label="linen TwoTimescale")
ax.plot(np.arange(T), eprop.log_spectral_norm, label="equinox GRUCell")
ax.set_xlabel("t")
ax.set_ylabel(r"$\log \|\partial s_T / \partial s_t\|_2$")
ax.set_title("How far back does the gradient reach?")
ax.legend()
plt.show()

# %% [markdown]
# ## Your gradient, your params
#
# Because `params` is your pytree, a penalty on the spectrum differentiates straight into it.
# One step of gradient flossing (Engelken 2023) on the Equinox cell, and the trained params go
# back into the module with `eqx.combine`:

# %%
pen = jrnn.penalties.lyapunov_penalty(ecell, k=2, warmup=50)
grads = jax.grad(pen)(eparams, xs[None])
trained = jax.tree.map(lambda p, g: p - 0.5 * g, eparams, grads)
new_gru = eqx.combine(trained, eqx.partition(gru, eqx.is_array)[1])
print("penalty before / after one step:", float(pen(eparams, xs[None])),
      float(pen(trained, xs[None])))
print("the module itself runs the new weights:",
      bool(jnp.allclose(new_gru(xs[0], jnp.zeros(n)), ecell.step(trained, jnp.zeros(n), xs[0])[1])))

# %% [markdown]
# For an NNX cell the params are `nnx.state(module, nnx.Param)` and `nnx.update(module,
# params)` puts trained ones back; for a linen cell they are its variables.
#
# ## What a wrapped cell is, and is not
#
# - `input_map` is the identity: your step projects its input itself, so the projection is
#   not hoisted out of the scan (built-in cells compute $W_{xh} x_t$ for all $t$ at once).
# - `jrnn.testing.check_cell(cell, d)` holds it to the Cell contract and its Jacobians to
#   autodiff; pass `jacobian=` / `tangent=` to `wrap` for analytic ones, and `check_cell`
#   checks those too.
# - `unit_health` and `pascanu_bound` need one elementwise activation and its recurrent
#   matrix (the `pointwise` capability), which jrnn cannot see inside your code: they raise a
#   `ValueError`. Jacobians, spectra, propagation, Lyapunov exponents and vectors all apply.
# - `cell.init(key, d)` re-initialises a linen module with its own `module.init` (a new key,
#   new weights); for NNX, Equinox and step functions it returns the wrapped params.

# %%
report = jrnn.testing.check_cell(ecell, d, dtype="float32", quick=True)
print("check_cell: jacrev/jacfwd/unroll all pass;", len(report["float32"]), "properties")
