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
# # 6. Beyond vanishing gradients: the curse of memory, curvature and memory capacity
#
# A recurrence can have perfectly behaved gradients through time and still be hard to train.
# Zucchet & Orvieto (NeurIPS 2024) show that as the memory grows (eigenvalues $|\lambda| \to 1$)
# the hidden state becomes ever more sensitive to the *parameters*:
#
# $$ h_t = \lambda h_{t-1} + x_t, \qquad
#    \frac{E[(\partial h_t/\partial\lambda)^2]}{E[h_t^2]} = \frac{1+\lambda^2}{(1-\lambda^2)^2}
#    \quad (\text{white-noise input}). $$
#
# This tutorial puts the closed form (`jrnn.theory.linear_memory`) beside the measurement
# (`jrnn.diagnostics.parameter_sensitivity`), looks at the loss curvature
# (`jrnn.diagnostics.hessian_spectrum`), and computes memory capacity the numerically sound
# way (`jrnn.diagnostics.memory_capacity`, Ballarin et al. 2024).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jrnn
import jrnn.plot

jax.config.update("jax_enable_x64", True)

# %% [markdown]
# ## The closed form, and the measurement on a one-unit linear cell
#
# The one-unit Elman cell with the identity activation is exactly $h_t = w h_{t-1} + u x_t + b$.
# `parameter_sensitivity` carries the state and its parameter tangents through one scan (forward
# mode, memory independent of $T$); small leaves are done exactly, large ones with random probes
# and an error bar.

# %%
cell = jrnn.cells.elman(1, "identity")
moduli = np.array([0.5, 0.8, 0.9, 0.95, 0.98])
T, B = 500, 64
xs = jax.random.normal(jax.random.key(0), (B, T, 1))   # white noise, unit variance


@jax.jit                                                # one compilation for every lambda
def measure(lam):
    params = {"W_xh": jnp.ones((1, 1)), "W_hh": jnp.full((1, 1), lam), "b_h": jnp.zeros(1)}
    sens = jrnn.diagnostics.parameter_sensitivity(cell, params, xs)
    tail = slice(T - 50, T)                             # the stationary tail
    return (jnp.mean(sens.normalized["W_hh"][tail]),
            jnp.mean(sens.normalized_stderr["W_hh"][tail]))


measured, stderr = (np.array(v) for v in zip(*(measure(lam) for lam in moduli)))
theory = np.asarray(jrnn.theory.linear_memory(moduli).ratio)
for r, m, e, t in zip(moduli, measured, stderr, theory):
    print(f"|lambda| = {r:5}: measured {m:9.2f} +- {e:6.2f}   theory {t:9.2f}")

# %%
ax = jrnn.plot.sensitivity_vs_memory(moduli, {"linear, 1 unit": measured},
                                     stderr={"linear, 1 unit": stderr},
                                     theory={"linear, 1 unit": theory})
plt.show()

# %% [markdown]
# The reparametrisation $\lambda = \exp(-\exp(\nu))$ of the LRU multiplies the sensitivity by
# $(d\lambda/d\nu)^2 = (\lambda \ln \lambda)^2 \approx (1-\lambda)^2$, which cancels the
# divergence: the normalised sensitivity with respect to $\nu$ stays bounded. The complex case
# and an input with autocorrelation $\rho$ have closed forms too:

# %%
lam = np.array([0.9, 0.99, 0.999])
plain = np.asarray(jrnn.theory.linear_memory(lam).ratio)
print("w.r.t. lambda:", plain.round(1))
print("w.r.t. nu    :", (plain * (lam * np.log(lam)) ** 2).round(3))
print("complex, rho=0.5:", np.asarray(jrnn.theory.linear_memory(lam * np.exp(0.5j), 0.5).ratio))

# %% [markdown]
# ## Loss curvature: the top of the Hessian spectrum
#
# `hessian_spectrum` runs Lanczos (full reorthogonalisation) on Hessian-vector products, so the
# $P \times P$ Hessian is never formed, and reports how concentrated the top eigenvectors are.

# %%
n = 4
dcell = jrnn.cells.elman(n, "identity")
kx, ky, kp = jax.random.split(jax.random.key(1), 3)
batch = (jax.random.normal(kx, (16, 20, 1)), jax.random.normal(ky, (16,)))
params = {"cell": dcell.init(kp, 1), "c": jnp.ones(n) / n}
params["cell"]["W_hh"] = 0.8 * params["cell"]["W_hh"]     # |eigenvalues| = 0.8
params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)


def loss(p, batch):
    xs, ys = batch
    h, _ = jrnn.unroll(dcell, p["cell"], xs)
    return jnp.mean((h @ p["c"] - ys) ** 2)


spec = jrnn.diagnostics.hessian_spectrum(loss, params, batch, k=3)
print("eigenvalues  ", np.asarray(spec.eigenvalues).round(4), "+-", np.asarray(spec.residuals))
print("participation", np.asarray(spec.participation).round(3))
print({k: np.asarray(v).round(2) for k, v in spec.leaf_mass.items()})

# %% [markdown]
# ## Memory capacity, computed right
#
# For a linear network $s_t = A s_{t-1} + c z_t$ the capacity $MC_k$ of recalling $z_{t-k}$ is
# the $k$-th leverage score of the Krylov matrix $[c, Ac, A^2c, \dots]$, so the total is its
# rank (at most the state size). jrnn computes it from one SVD; an in-sample regression with too
# few samples overshoots the bound.

# %%
rng = np.random.default_rng(0)
W = rng.standard_normal((6, 6))
W *= 0.9 / np.max(np.abs(np.linalg.eigvals(W)))
lin = jrnn.cells.elman(6, "identity")
p = {"W_xh": jnp.asarray(rng.standard_normal((6, 1))), "W_hh": jnp.asarray(W),
     "b_h": jnp.zeros(6)}
exact = jrnn.diagnostics.memory_capacity(lin, p, max_delay=80)
held_out = jrnn.diagnostics.memory_capacity(lin, p, max_delay=80, method="regression",
                                            samples=4000)
z = rng.standard_normal(300)
_, hs = jrnn.unroll(lin, p, jnp.asarray(z)[:, None])
X = np.asarray(hs)[100:] - np.asarray(hs)[100:].mean(0)
naive = []
for k in range(81):
    y = z[100 - k: 300 - k]
    w = np.linalg.lstsq(X, y - y.mean(), rcond=None)[0]
    naive.append(np.corrcoef(X @ w, y)[0, 1] ** 2)
print(f"exact total {float(exact.total):.3f} (rank {int(exact.rank)}), held-out regression "
      f"{float(held_out.total):.3f}, naive in-sample {sum(naive):.2f}  <- exceeds the bound 6")
plt.plot(exact.curve, label="Krylov (exact)")
plt.plot(held_out.curve, label="held-out regression")
plt.plot(naive, label="naive in-sample", alpha=0.7)
plt.xlabel("delay k")
plt.ylabel("$MC_k$")
plt.legend()
plt.show()
