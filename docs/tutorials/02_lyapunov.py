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
# # 2. Lyapunov spectra at research scale
#
# The Lyapunov exponents $\lambda_1 \ge \lambda_2 \ge \dots$ of an RNN driven by its inputs
# are the long-run growth rates of the products $J_T \cdots J_1$ of tutorial 1: $\lambda_1 <
# 0$ means every gradient direction vanishes, $\lambda_1 > 0$ means chaos (explosion). jrnn
# computes them with the Benettin/QR method: a frame $Q$ of $k$ tangent vectors is pushed
# through each $J_t$ and re-orthonormalised, and the logs of $R$'s diagonal are averaged.
#
# This tutorial shows the parts that matter at research scale: streaming (memory that does
# not grow with $T$), error bars, the two self-check flags `unresolved` and `stationary`,
# continuing a run in segments, and float32 against float64. Sizes are small so the page
# builds quickly; the same calls run at N = 4096 (see the reproductions page).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jrnn

jax.config.update("jax_enable_x64", True)  # float64 for the comparison at the end

n, T, d = 32, 400, 1
gain = 2.0  # W_hh ~ N(0, gain^2 / n): chaotic for tanh
cell = jrnn.cells.elman(n, "tanh", recurrent_init=jrnn.initializers.scaled_normal(gain))
params = cell.init(jax.random.key(0), d)
xs = 0.1 * jax.random.normal(jax.random.key(1), (T, d), jnp.float32)
h0 = jax.random.normal(jax.random.key(2), (n,), jnp.float32)  # h = 0 can be a fixed point

# %% [markdown]
# ## A full spectrum, with error bars and the sum rule
#
# `transient` steps advance only the state (forget the start), `warmup` steps align the frame
# without averaging. `stderr` comes from 20 batch means of the local exponents along the
# trajectory. With $k = S$ (all exponents) the sum of the exponents must equal the time
# average of $\log|\det J_t|$; `sum_rule_residual` is the difference.

# %%
lyap = jrnn.diagnostics.lyapunov_spectrum(
    cell, params, xs, carry=h0, k=n, transient=100, warmup=50
)
print("lambda_1..4 :", np.round(np.asarray(lyap.exponents[:4]), 4))
print("stderr      :", np.round(np.asarray(lyap.stderr[:4]), 4))
print("sum rule residual:", float(lyap.sum_rule_residual))
print("Kaplan-Yorke dimension:", float(lyap.kaplan_yorke_dimension))
print("entropy rate (nats/step):", float(lyap.entropy_rate))
print("unresolved:", int(np.sum(lyap.unresolved)), "of", n, " stationary:", bool(lyap.stationary))

fig, ax = plt.subplots(figsize=(6, 3.5))
i = np.arange(1, n + 1)
ax.errorbar(i, lyap.exponents, yerr=2 * np.asarray(lyap.stderr), fmt=".", ms=3)
ax.axhline(0, color="k", lw=0.5)
ax.set(xlabel="index i", ylabel="lambda_i (nats/step)", title=f"tanh, gain {gain}, n={n}")
plt.show()

# %% [markdown]
# The sum rule holds to float32 round-off, and the error bars say that the four leading
# exponents are resolved from each other only roughly at this length: a longer `xs` shrinks
# `stderr` like $1/\sqrt{T}$.
#
# ## Streaming: the tangent path
#
# With `mode="tangent"` (what `mode="auto"` picks when $4k \le S$) the scan carries the state
# and the frame $Q$ ($S \times k$) and forms $J_t Q$ from the cell's tangent map, never the
# $(T, S, S)$ Jacobian stack: memory does not grow with $T$. For a few leading exponents it is
# also much cheaper. It agrees with the stacked path:

# %%
top = jrnn.diagnostics.lyapunov_spectrum(
    cell, params, xs, carry=h0, k=4, transient=100, warmup=50, mode="tangent"
)
print("tangent path :", np.round(np.asarray(top.exponents), 4))
print("full spectrum:", np.round(np.asarray(lyap.exponents[:4]), 4))

# %% [markdown]
# ## Continuing a run in segments
#
# Long runs can be split: `final_frame` and `final_carry` continue the chain exactly where it
# stopped, so segment results combine into the result of one long run (the local exponents
# concatenate). This is how a run too long for one call, or one that must survive a restart,
# is made.

# %%
kw = dict(k=4, mode="tangent")
first = jrnn.diagnostics.lyapunov_spectrum(
    cell, params, xs[:250], carry=h0, transient=100, warmup=50, **kw
)
second = jrnn.diagnostics.lyapunov_spectrum(
    cell, params, xs[250:], carry=first.final_carry, Q0=first.final_frame, **kw
)
local = np.concatenate([first.local, second.local])
print("two segments:", np.round(local.mean(axis=0), 5))
print("one run     :", np.round(np.asarray(top.exponents), 5))

# %% [markdown]
# ## `stationary` and `unresolved`: when the numbers mean something else
#
# Start a network that is *not* chaotic (gain 0.5) at $h = 0$ with zero input: the trajectory
# never moves, and the exponents are those of the fixed point ($\log|\mathrm{eig}|$ of one
# Jacobian), not of a driven trajectory. `stationary` says so.

# %%
calm = jrnn.cells.elman(n, "tanh", recurrent_init=jrnn.initializers.scaled_normal(0.5))
calm_params = calm.init(jax.random.key(0), d)
still = jrnn.diagnostics.lyapunov_spectrum(calm, calm_params, jnp.zeros((200, d)), k=4)
print("stationary:", bool(still.stationary))
print("lambda_1..4:", np.round(np.asarray(still.exponents), 3))

# %% [markdown]
# A ReLU network zeroes the rows of its inactive units at every step, so the product of its
# Jacobians loses rank and its trailing exponents are $-\infty$, or numbers at the
# round-off floor $\log\varepsilon + \lambda_1$ of the chain's precision that only look
# like measurements (in float32, $\log\varepsilon \approx -15.9$). `unresolved` marks
# them; a derived quantity that would need one (the Kaplan-Yorke dimension, the entropy rate)
# is NaN instead of a number built on round-off.

# %%
relu = jrnn.cells.elman(n, "relu", recurrent_init=jrnn.initializers.scaled_normal(1.5))
relu_params = relu.init(jax.random.key(0), d)
rl = jrnn.diagnostics.lyapunov_spectrum(relu, relu_params, xs, carry=h0, k=n, transient=100)
print("unresolved:", int(np.sum(rl.unresolved)), "of", n)
print("last resolved / first unresolved exponents:",
      np.asarray(rl.exponents)[~np.asarray(rl.unresolved)][-1:],
      np.asarray(rl.exponents)[np.asarray(rl.unresolved)][:1])
print("Kaplan-Yorke dimension:", float(rl.kaplan_yorke_dimension))

# %% [markdown]
# ## float32 against float64
#
# The same network and inputs in float64 (`jax_enable_x64` is on; the params and inputs
# decide the precision). In a chaotic network the float32 and float64 trajectories separate
# after roughly $1/\lambda_1$ steps, so the two runs are two samples of the same exponents:
# compare their difference with the combined standard error (a z-score, $|z| \lesssim 2$
# being agreement). The sum rule is a precision check with no statistics in it.

# %%
params64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
top64 = jrnn.diagnostics.lyapunov_spectrum(
    cell, params64, xs.astype(jnp.float64), carry=h0.astype(jnp.float64),
    transient=100, warmup=50, **kw
)
z = (np.asarray(top64.exponents) - np.asarray(top.exponents)) / np.hypot(
    np.asarray(top64.stderr), np.asarray(top.stderr))
print("float32:", np.round(np.asarray(top.exponents), 4))
print("float64:", np.round(np.asarray(top64.exponents), 4))
print("z      :", np.round(z, 2))

# %%
full64 = jrnn.diagnostics.lyapunov_spectrum(
    cell, params64, xs.astype(jnp.float64), carry=h0.astype(jnp.float64), k=n,
    transient=100, warmup=50,
)
print("sum rule residual float32:", float(lyap.sum_rule_residual))
print("sum rule residual float64:", float(full64.sum_rule_residual))

# ## Finite-time exponents
#
# The exponents are averages; `finite_time_exponents` gives the local growth rate per window,
# whose spread shows how unevenly the gradient vanishes along the trajectory.

# %%
ftle = jrnn.diagnostics.finite_time_exponents(
    cell, params, xs, carry=h0, k=2, window=25, transient=100, warmup=50
)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(np.asarray(ftle.exponents[:, 0]), ".-", label="lambda_1 per window")
ax.axhline(float(ftle.mean[0]), color="k", lw=0.8, label="mean")
ax.set(xlabel="window (25 steps)", ylabel="nats/step")
ax.legend()
plt.show()
print("mean", np.round(np.asarray(ftle.mean), 4), "std", np.round(np.asarray(ftle.std), 4))
