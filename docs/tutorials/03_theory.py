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
# # 3. Theory beside measurement, and critical initialisation
#
# For a random Elman network $h_t = \phi(W h_{t-1} + W_{xh} x_t + b)$ with
# $W_{ij} \sim N(0, \sigma_w^2/n)$, mean-field theory (Poole et al. 2016; Molgedey et al.
# 1992) predicts the pre-activation variance $q^*$ and the mean squared gain per step
#
# $$\chi = \sigma_w^2\, \mathbb{E}_z\big[\phi'(\sqrt{q^*} z)^2\big], \qquad
# \lambda_{\max} = \tfrac12 \ln \chi,$$
#
# so the gradient vanishes for $\chi < 1$, explodes for $\chi > 1$, and the *critical gain*
# $g^*$ with $\chi(g^*) = 1$ is the edge of chaos. jrnn's `jrnn.theory` computes these (with
# the input drive $\sigma_u$ in $q^*$), and `jrnn.diagnostics` measures the same quantities
# on an actual network. This tutorial puts them side by side and shows where the theory holds
# and where it does not.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jrnn

n, T, d = 64, 300, 1
xs = jax.random.normal(jax.random.key(1), (T, d))
h0 = 0.5 * jax.random.normal(jax.random.key(2), (n,))

# %% [markdown]
# ## The input drive
#
# The inputs enter the variance like a bias: `drive_scale` measures the root-mean-square
# input term $\sigma_u$ of a layer from its input weights and a sample of inputs.

# %%
cell = jrnn.cells.elman(n, "tanh", recurrent_init=jrnn.initializers.scaled_normal(1.0))
params = cell.init(jax.random.key(0), d)
sigma_u = float(jrnn.theory.drive_scale(params["W_xh"], xs))
print(f"sigma_u = {sigma_u:.3f}")

# %% [markdown]
# ## $\lambda_1$ against the gain: measured and predicted
#
# One network per gain $g$ (the same draw of $W$, scaled), its largest Lyapunov exponent
# with its standard error, and the mean-field line. The cell object is the same for every
# gain, so the diagnostics compile once.

# %%
gains = np.linspace(0.6, 3.0, 9)
base = params["W_hh"]
measured, err = [], []
for g in gains:
    p = dict(params, W_hh=g * base)
    ly = jrnn.diagnostics.lyapunov_spectrum(cell, p, xs, carry=h0, k=1, transient=50)
    measured.append(float(ly.exponents[0]))
    err.append(float(ly.stderr[0]))
grid = jnp.linspace(0.5, 3.1, 60)
theory = jax.vmap(lambda g: jrnn.theory.mean_field("tanh", g, sigma_u=sigma_u).lambda_max)(grid)
g_star = float(jrnn.theory.critical_gain("tanh", sigma_u=sigma_u))
print(f"critical gain g* = {g_star:.3f} (without the input drive: "
      f"{float(jrnn.theory.critical_gain('tanh')):.3f})")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(grid, theory, label="mean field, 0.5 ln chi")
ax.errorbar(gains, measured, yerr=2 * np.array(err), fmt="o", ms=4,
            label="measured lambda_1 (+-2 se)")
ax.axhline(0, color="k", lw=0.5)
ax.axvline(g_star, color="gray", ls="--", lw=0.8, label="g*")
ax.set(xlabel="gain sigma_w", ylabel="nats/step", title=f"tanh Elman, n={n}")
ax.legend()
plt.show()
for g, m, e, t in zip(gains, measured, err,
                      jax.vmap(lambda g: jrnn.theory.mean_field("tanh", g, sigma_u=sigma_u)
                               .lambda_max)(jnp.asarray(gains))):
    print(f"g={g:.2f}  measured {m:+.3f} +- {e:.3f}   mean field {float(t):+.3f}")

# %% [markdown]
# Read the table: on the ordered side ($g < g^*$) measurement and mean field agree to about
# 0.01-0.02 nats per step; both cross zero at the critical gain; deep in the chaotic regime
# the measured $\lambda_1$ lies a few hundredths below the line, a finite-size effect at
# $n = 64$ (the reproductions page compares at $n = 4096$). The theory also assumes
# *random* weights drawn once: it says nothing about trained ones.
#
# ## The whole spectrum: annealed random-matrix theory
#
# `theory.spectra.annealed_spectrum` predicts all $n$ exponents of a chaotic network.
# It tracks the bulk of the measured spectrum; the edges carry $O(1/n)$ corrections.

# %%
g = 2.5
p = dict(params, W_hh=g * base)
full = jrnn.diagnostics.lyapunov_spectrum(cell, p, xs, carry=h0, k=n, transient=50)
annealed = jrnn.theory.spectra.annealed_spectrum("tanh", g, n, sigma_u=sigma_u)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(np.arange(1, n + 1) / n, full.exponents, ".", label="measured")
ax.plot(np.arange(1, n + 1) / n, annealed.exponents, label="annealed theory")
ax.set(xlabel="i / n", ylabel="lambda_i", title=f"tanh, gain {g}, n={n}")
ax.legend()
plt.show()
print("Kaplan-Yorke dimension: measured", float(full.kaplan_yorke_dimension),
      " theory", float(annealed.kaplan_yorke))

# %% [markdown]
# ## Critical initialisation
#
# `jrnn.initializers.critical(activation, sigma_u=...)` draws $W_{hh} \sim N(0, g^{*2}/n)$ at
# the input-aware critical gain. The gradient then neither vanishes nor explodes
# exponentially: the propagation rate (tutorial 1) is close to zero, where the standard
# orthogonal initialisation of tutorial 1 lost about 0.14 nats per step.

# %%
crit = jrnn.cells.elman(
    n, "tanh", recurrent_init=jrnn.initializers.critical("tanh", sigma_u=sigma_u)
)
crit_params = crit.init(jax.random.key(0), d)
prop = jrnn.diagnostics.propagation(crit, crit_params, xs)
ly = jrnn.diagnostics.lyapunov_spectrum(crit, crit_params, xs, carry=h0, k=1, transient=50)
print(f"critical init: propagation rate {float(prop.rate):+.3f} +- {float(prop.rate_stderr):.3f}, "
      f"lambda_1 {float(ly.exponents[0]):+.3f} +- {float(ly.stderr[0]):.3f}")

# %% [markdown]
# ## Beyond the Gaussian ensemble
#
# The mean field assumes i.i.d. Gaussian weights. An orthogonal $W_{hh}$ at the same
# $\sigma_w$ has all its singular values equal to $\sigma_w$; measured, its $\lambda_1$ at
# $g^*$ is also close to zero. That is a measurement, not something the theory promises:
# $\lambda_1$ depends on the weights mostly through their gain, the rest of the spectrum
# does not. For gated cells the theory is a different one (`jrnn.theory.gated`, Gilboa et
# al. 2019, here the LSTM's predicted log growth per step at $\sigma_w = 1$), and for an
# arbitrary cell `jrnn.theory` has nothing to say: measure.

# %%
ortho = jrnn.cells.elman(n, "tanh", recurrent_init=jrnn.initializers.orthogonal(g_star))
ortho_params = ortho.init(jax.random.key(0), d)
ly = jrnn.diagnostics.lyapunov_spectrum(ortho, ortho_params, xs, carry=h0, k=1, transient=50)
print(f"orthogonal W at g*: lambda_1 {float(ly.exponents[0]):+.3f} +- {float(ly.stderr[0]):.3f}")
gated = jrnn.theory.gated.annealed_lstm_mean_field(sigma_w=1.0, sigma_u=sigma_u)
print("LSTM annealed mean field at sigma_w = 1: log growth per step", float(gated.log_growth))
edge = jrnn.theory.gated.lstm_edge(1.0)   # tied weights: the quiescent state's spectral radius
print("tied LSTM at sigma_w = 1: radius", float(edge.radius), "lambda_1", float(edge.log_radius))
