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
# # 7. Parallel-in-time evaluation, and when the Lyapunov exponent says it pays
#
# A sequential scan costs $T$ dependent steps. DEER (Lim et al., ICLR 2024) evaluates the
# whole trajectory at once: Newton's method on the stacked residual
# $r_t(s) = s_t - F(s_{t-1}, u_t) = 0$. Linearising every step at the current iterate gives
# a *linear* recurrence
#
# $$ s^{(i+1)}_t = J_t\, s^{(i+1)}_{t-1} + b_t, \qquad J_t = \partial F/\partial s\,(s^{(i)}_{t-1}, u_t), $$
#
# which `jax.lax.associative_scan` solves in $O(\log T)$ depth. quasi-DEER keeps only the
# diagonal of $J_t$; ELK (Gonzalez et al., NeurIPS 2024) damps the step
# (Levenberg-Marquardt, solved as a parallel Kalman smoother). jrnn has all three as
# `jrnn.newton.unroll` and as a method of `jrnn.unroll`.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jrnn

jax.config.update("jax_enable_x64", True)  # agreement to 1e-10 below needs float64

N, T = 16, 300
cell = jrnn.cells.elman(N, "tanh")
params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 1))
W0 = jax.random.normal(jax.random.key(1), (N, N), jnp.float64) / np.sqrt(N)
xs = 0.5 * jax.random.normal(jax.random.key(2), (T, 1), jnp.float64)

p = dict(params, W_hh=0.8 * W0)
res = jrnn.newton.unroll(cell, p, xs)
_, ref = jrnn.unroll(cell, p, xs, method=jrnn.Scan())
print("iterations", int(res.iterations), "converged", bool(res.converged),
      "residual", float(res.residual), "max |Newton - scan|", float(jnp.max(jnp.abs(res.hs - ref))))

# %% [markdown]
# The same computation inside `jrnn.unroll` (so models and `jrnn.train.fit` can use it). There
# a sequence whose iteration did not converge comes back as NaN, never as a plausible wrong
# trajectory; `jrnn.newton.unroll` returns the last iterate with `converged` and `residual`.
# Gradients are implicit (one more parallel linear recurrence with $J_t^\top$), equal to the
# sequential gradient:

# %%
loss = lambda p, method: jnp.sum(jnp.sin(jrnn.unroll(cell, p, xs, method=method)[1]))
g_newton = jax.grad(loss)(p, jrnn.Newton())
g_scan = jax.grad(loss)(p, jrnn.Scan())
print("max |grad difference|", max(float(jnp.max(jnp.abs(a - b))) for a, b in
                                   zip(jax.tree_util.tree_leaves(g_newton),
                                       jax.tree_util.tree_leaves(g_scan))))

# %% [markdown]
# ## The exponent predicts the iterations
#
# Gonzalez et al. 2025 ("Predictability enables parallelization") tie the conditioning of the
# Newton problem to the largest Lyapunov exponent: perturbations live $\sim 1/|\lambda|$ steps
# when the dynamics contract, and grow like $e^{\lambda T}$ when they are chaotic. jrnn's rule
# `jrnn.newton.iteration_rule` is $K = \min(T, K_0 + A/2)$ with
# $A = \sum_{\tau<T} e^{\lambda\tau}$. A gain sweep across the edge of chaos:

# %%
gains = [0.3, 0.7, 1.0, 1.2, 2.5]
lam, measured, converged, predicted = [], [], [], []
for g in gains:
    pg = dict(params, W_hh=g * W0)
    lam.append(float(jrnn.diagnostics.lyapunov_spectrum(cell, pg, xs, k=1, warmup=50).exponents[0]))
    r = jrnn.newton.unroll(cell, pg, xs, max_iter=T)
    measured.append(int(r.iterations))
    converged.append(bool(r.converged))
    predicted.append(jrnn.newton.iteration_rule(lam[-1], T).iterations)
for g, lm, k, ok, kp in zip(gains, lam, measured, converged, predicted):
    print(f"gain {g:.1f}  lambda_max {lm:+.3f}  DEER iterations {k:4d}  "
          f"converged {ok!s:5}  rule {kp:4d}")

# %%
grid = np.linspace(-1.2, 0.3, 200)
fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
ax.plot(grid, [jrnn.newton.iteration_rule(x, T).iterations for x in grid], "k-",
        label="rule min(T, K0 + A/2)")
ok = np.array(converged)
ax.plot(np.array(lam)[ok], np.array(measured)[ok], "o", label="DEER, converged")
ax.plot(np.array(lam)[~ok], np.array(measured)[~ok], "x", label="DEER, not converged")
ax.set_yscale("log")
ax.axvline(0, color="grey", lw=0.7)
ax.set_xlabel("largest Lyapunov exponent (nats / step)")
ax.set_ylabel("Newton iterations")
ax.legend()
plt.show()

# %% [markdown]
# Contracting nets converge in a handful of iterations independent of $T$, so the
# $O(\log T)$-deep iterations win on a parallel device; near $\lambda = 0$ the count grows like
# $1/|\lambda|$, and chaotic nets need about $T$ iterations (in floating point the iterates
# overflow, and `converged=False` says so). `jrnn.newton.predict_iterations(cell, params, xs)`
# measures $\lambda_{max}$ and applies the rule before you pay for a run.
# `experiments/parallel_evaluation.py` runs the full study (DEER, quasi-DEER and ELK, GRU,
# LRU, minGRU, wall time against $T$); `experiments/benchmarks/newton.py` the timings.
