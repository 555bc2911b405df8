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
# # 9. Writing and checking your own cell
#
# A jrnn cell is a `jrnn.Cell`: a NamedTuple of pure functions with static sizes. The core
# fields are
#
# | field | signature | meaning |
# |---|---|---|
# | `name`, `hidden_size`, `state_size` | | family name, size of $h_t$, size of the flattened carry |
# | `init` | `(key, input_size) -> params` | parameters, a dict named as in the equations |
# | `initial_carry` | `params -> carry` | the zero state of one sequence |
# | `input_map` | `(params, x_t) -> u_t` | the input term, independent of the carry (applied to all steps at once) |
# | `recur` | `(params, carry, u_t) -> (carry, h_t)` | the recurrence proper |
# | `input_size` | `params -> d` | the feature size the params expect |
# | `param_spec` | `d -> {name: (shape, kind)}` | the params expected, for eager validation with messages naming the key |
#
# With these, every diagnostic works: Jacobians come from `jax.jacfwd` and streaming
# diagnostics from `jax.linearize`. A hand-written analytic Jacobian is an optional speed-up
# (the built-in cells have one). `jrnn.testing.check_cell` then holds the cell to the same
# standard as the built-ins.

# %%
import jax
import jax.numpy as jnp
import numpy as np

import jrnn
from jrnn.testing import check_activation, check_cell

# %% [markdown]
# ## A sine-residual cell
#
# $h_t = h_{t-1} + \alpha \sin(W_{hh} h_{t-1} + W_{xh} x_t + b_h)$: a residual cell with a
# periodic activation.

# %%
def sine_residual(n, alpha=0.1):
    """h_t = h_{t-1} + alpha sin(W_hh h_{t-1} + W_xh x_t + b_h)."""

    def init(key, d):
        k1, k2 = jax.random.split(key)
        return {
            "W_xh": jax.random.normal(k1, (n, d)) / d**0.5,
            "W_hh": jax.random.normal(k2, (n, n)) / n**0.5,
            "b_h": jnp.zeros(n),
        }

    def recur(p, h, u):
        h = h + alpha * jnp.sin(p["W_hh"] @ h + u)
        return h, h

    return jrnn.Cell(
        name="sine_residual",
        hidden_size=n,
        state_size=n,
        init=init,
        initial_carry=lambda p: jnp.zeros(n, p["W_hh"].dtype),
        input_map=lambda p, x: p["W_xh"] @ x + p["b_h"],
        recur=recur,
        input_size=lambda p: p["W_xh"].shape[1],
        param_spec=lambda d: {"W_xh": ((n, d), "f"), "W_hh": ((n, n), "f"), "b_h": ((n,), "f")},
    )


cell = sine_residual(16)
params = cell.init(jax.random.key(0), 2)
xs = jax.random.normal(jax.random.key(1), (50, 2))
h_T, hs = jrnn.unroll(cell, params, xs)
print(hs.shape)

# %% [markdown]
# ## `check_cell`
#
# `check_cell(cell, input_size)` runs a random trajectory in float32 and float64 and checks,
# at every step: the Cell contract (sizes, `param_spec`, the initial carry's zeros and
# dtype), `step == recur(input_map)`, `jax.jacrev == jax.jacfwd` and finite differences
# `== jax.jacfwd` (and an analytic Jacobian and tangent map against `jacfwd` when the cell
# has them), `jit ==` no jit, no retracing, and `jrnn.unroll` against a Python loop,
# reversed and with `lengths`. It returns the largest relative difference per property and
# raises `AssertionError` naming the failing one.

# %%
report = check_cell(cell, input_size=2)
for dtype, props in report.items():
    print(dtype)
    for prop, value in props.items():
        print(f"   {prop:40s} {value:.1e}")

# %% [markdown]
# ## A bug `check_cell` catches
#
# A common slip: the initial carry built in float32 whatever the params' precision. In
# float32 nothing shows; in float64 the carry silently changes dtype at the first step.

# %%
buggy = sine_residual(16)._replace(initial_carry=lambda p: jnp.zeros(16, jnp.float32))
try:
    check_cell(buggy, input_size=2)
except AssertionError as err:
    print("AssertionError:", err)

# %% [markdown]
# ## The diagnostics on the new cell
#
# Nothing else is needed to measure it:

# %%
prop = jrnn.diagnostics.propagation(cell, params, xs)
lyap = jrnn.diagnostics.lyapunov_spectrum(cell, params, xs, k=4, transient=10)
print(f"propagation rate {float(prop.rate):+.4f} +- {float(prop.rate_stderr):.4f} nats/step")
print("lambda_1..4", np.round(np.asarray(lyap.exponents), 4))

# %% [markdown]
# ## Activations and property tests
#
# `check_activation` does the same for an activation record (the derivative against
# autodiff, `grad_bound` against a dense scan of $|f'|$, the output range, kinks). For your
# own property tests, `jrnn.testing.strategies` has hypothesis strategies (`cells`,
# `activations`, `shapes`, `sequences`) and `register_profile()`, a deterministic profile.

# %%
print(check_activation("tanh"))
