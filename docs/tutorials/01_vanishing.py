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
# # 1. Is my RNN's gradient vanishing?
#
# jrnn grew from a (Chinese-language) blog article on activation functions in RNNs. It makes
# four claims about the Elman RNN
#
# $$h_t = f(W_{hh} h_{t-1} + W_{xh} x_t + b_h), \qquad o_t = g(W_{ho} h_t + b_o):$$
#
# 1. sigmoid and tanh make the gradient vanish ("their output range is bounded"), tanh
#    more slowly than sigmoid;
# 2. ReLU's derivative is 1, so its gradient does not decay, but units can die;
# 3. LSTM and GRU gates, and
# 4. residual connections are the remedies.
#
# This tutorial turns each claim into a measurement on one small network. The backward pass
# multiplies the per-step Jacobians $J_t = \partial h_t / \partial h_{t-1}$:
#
# $$\frac{\partial h_T}{\partial h_t} = J_T J_{T-1} \cdots J_{t+1},$$
#
# so the gradient vanishes when this product shrinks geometrically with the lag $T - t$.
# Everything here runs at small sizes (n = 32 units, T = 60 steps) so the page builds in
# seconds; the full study is `python -m experiments.activation_study`.

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

import jrnn

n, T, d = 32, 60, 1
xs = jax.random.normal(jax.random.key(1), (T, d))  # one input sequence (T, d)

# %% [markdown]
# ## Gradient propagation: $\log \|\partial h_T / \partial h_t\|$ against the lag
#
# `jrnn.diagnostics.propagation` returns the log spectral norm of the Jacobian product for
# every $t$ (computed stably in log space), and the mean decay rate per step with its
# standard error. A cell is a NamedTuple of pure functions made by a factory; `cell.init`
# draws the parameters. `elman`'s defaults are Keras' `SimpleRNN` (the seed article's model):
# orthogonal $W_{hh}$, Glorot-uniform $W_{xh}$, zero bias.

# %%
activations = ["sigmoid", "tanh", "relu"]
fig, ax = plt.subplots(figsize=(6, 3.5))
for act in activations:
    cell = jrnn.cells.elman(n, act)
    params = cell.init(jax.random.key(0), d)
    prop = jrnn.diagnostics.propagation(cell, params, xs)
    lag = T - np.arange(T + 1)
    ax.plot(lag, np.asarray(prop.log_spectral_norm) / np.log(10), label=act)
    print(f"{act:8s} rate {float(prop.rate):+.3f} +- {float(prop.rate_stderr):.3f} nats/step")
ax.set(xlabel="lag T - t", ylabel="log10 ||dh_T / dh_t||", title="Elman, standard init")
ax.legend()
plt.show()

# %% [markdown]
# The rate is $(\log\|P_0\|_F - \log\|P_T\|_F)/T$ for the product $P_t$: negative is
# decay, in nats per step. Sigmoid loses a factor of about $e^{-1.4}$ every step (its
# $\sup|f'| = 1/4$ alone gives $\log 0.25 = -1.39$); tanh decays much more slowly, which
# confirms claim 1 including "tanh more slowly than sigmoid". ReLU's derivative is 1 on
# active units, but each step zeroes the rows of the inactive ones, so at this
# initialisation ReLU decays *faster* than tanh: claim 2's "does not decay" is not
# confirmed. All three are statements about the gain of $W_{hh}$ as much as about $f$.
#
# ## Why: the spectra of the step Jacobians
#
# `step_jacobians` gives the exact $J_t$ (the cell's analytic Jacobian, checked against
# `jax.jacfwd`), and `singular_values` their spectra. `pascanu_bound` is the sufficient
# condition of Pascanu, Mikolov & Bengio (2013): $\|J_t\| \le \sup|f'| \cdot
# \sigma_{\max}(W_{hh})$, and the gradient *must* vanish when this bound is below 1.

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for act in activations:
    cell = jrnn.cells.elman(n, act)
    params = cell.init(jax.random.key(0), d)
    J = jrnn.diagnostics.step_jacobians(cell, params, xs)  # (T, n, n)
    sv = jrnn.diagnostics.singular_values(J)  # (T, n), descending
    bound = jrnn.diagnostics.pascanu_bound(cell, params)
    ax.hist(np.log10(np.asarray(sv).ravel() + 1e-30), bins=60, alpha=0.5, label=act)
    print(f"{act:8s} sup|f'| = {float(bound.grad_bound):.2f}  sigma_max(W_hh) = "
          f"{float(bound.sigma_max):.2f}  bound = {float(bound.bound):.2f}  "
          f"must vanish: {bool(bound.must_vanish)}  median sigma_max(J_t) = "
          f"{float(np.median(sv[:, 0])):.2f}")
ax.set(xlabel="log10 singular value of J_t", ylabel="count")
ax.legend()
plt.show()

# %% [markdown]
# Sigmoid's $\sup|f'| = 1/4$ puts the bound below 1 for any $\|W_{hh}\| < 4$: the gradient
# must vanish, whatever the data. For tanh and ReLU the bound is above 1, so it decides
# nothing; the measured spectra do. ReLU's Jacobians have exact zeros (the mass at the left
# of the histogram): every inactive unit contributes a zero row.
#
# ## Claim 2's other half: dead units
#
# `unit_health` counts units that are inactive on every step (dead) and saturated ones.

# %%
for act in activations:
    cell = jrnn.cells.elman(n, act)
    params = cell.init(jax.random.key(0), d)
    health = jrnn.diagnostics.unit_health(cell, params, xs)
    print(f"{act:8s} dead {float(health.dead_fraction):.2f}  "
          f"saturated {float(health.saturated_fraction):.2f}")

# %% [markdown]
# At initialisation few ReLU units are dead; `python -m experiments.dead_neurons` follows the
# fraction through training, where large learning rates kill units.
#
# ## Claims 3 and 4: gates and residual connections
#
# The same measurement for the remedies: an LSTM, a GRU and a residual Elman cell
# $h_t = h_{t-1} + \alpha f(\cdot)$.

# %%
cells = {
    "tanh (Elman)": jrnn.cells.elman(n, "tanh"),
    "lstm": jrnn.cells.lstm(n),
    "gru": jrnn.cells.gru(n),
    "residual tanh": jrnn.cells.residual(n, "tanh", 0.5),
}
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, cell in cells.items():
    params = cell.init(jax.random.key(0), d)
    prop = jrnn.diagnostics.propagation(cell, params, xs)
    ax.plot(T - np.arange(T + 1), np.asarray(prop.log_spectral_norm) / np.log(10), label=name)
    print(f"{name:14s} rate {float(prop.rate):+.3f} +- {float(prop.rate_stderr):.3f} nats/step")
ax.set(xlabel="lag T - t", ylabel="log10 ||ds_T / ds_t||")
ax.legend()
plt.show()

# %% [markdown]
# At initialisation the LSTM (forget-gate bias 1) decays most slowly; the GRU with zero
# gate biases decays about as fast as ReLU, and the residual cell's product *grows*
# (rate > 0): $I + \alpha\,\mathrm{diag}(f')W_{hh}$ has singular values above 1.
# Gates and residual paths change the rate; whether they fix it depends on their
# initialisation (the activation study also runs the GRU with an update-gate bias init)
# and, for the remedies, on training (tutorial 5).
#
# What to take away:
#
# - "Is my gradient vanishing?" has a measured answer: the slope of
#   $\log\|\partial h_T/\partial h_t\|$ against the lag, with its standard error
#   (`propagation(...).rate`, `rate_stderr`).
# - The activation's $\sup|f'|$ decides only through the Pascanu bound; beyond it, the gain
#   of $W_{hh}$ and the input drive decide (tutorial 3 predicts the rate from theory and
#   finds the critical gain where it is zero).
# - The activation study runs all of this for every registered activation and remedy cell,
#   over seeds, with verdicts per claim.
