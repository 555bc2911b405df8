"""jrnn.host: the one door for host tuning and jaxlib workarounds."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import host


def test_predicate_and_identity_barriers(monkeypatch):
    """The barriers are identities where the deadlock cannot happen, barriers where it can."""
    x = jnp.arange(3.0)
    monkeypatch.setattr(host, "lapack_pool_deadlock", lambda: False)
    assert host.after(x, jnp.ones(2)) is x
    assert host.together((x,))[0] is x
    monkeypatch.undo()
    text = jax.jit(lambda a: host.after(a, a + 1)).lower(x).as_text()
    assert ("optimization_barrier" in text) == host.lapack_pool_deadlock()


def test_configure_xla_sets_the_flag_once(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--foo")
    host.configure_xla(benchmark=True)
    assert "eigen" not in jax_flags()
    host.configure_xla()
    flag = " --xla_cpu_multi_thread_eigen=false" if host.lapack_pool_deadlock() else ""
    expected = "--foo" + flag
    assert jax_flags() == expected
    host.configure_xla()  # idempotent; a user's own setting wins
    assert jax_flags() == expected


def jax_flags():
    import os

    return os.environ["XLA_FLAGS"]


def test_importing_has_no_side_effects():
    """Importing jrnn and experiments leaves XLA_FLAGS as it was."""
    code = ("import os; os.environ['XLA_FLAGS'] = '--x'; import jrnn, experiments, "
            "experiments.common; print(os.environ['XLA_FLAGS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "--x"


@pytest.mark.parametrize(
    "value, error, match",
    [(0, ValueError, ">= 1"), (-1, ValueError, ">= 1"), (2**40, ValueError, "C int"),
     ("big", TypeError, "integer"), (1.5e9, TypeError, "integer")],
)  # fmt: skip
def test_keep_host_buffers_bad_threshold(value, error, match):
    """Rejected before mallopt sees it (a C int: 2**40 used to wrap around to 0)."""
    with pytest.raises(error, match="threshold_bytes.*" + match):
        host.keep_host_buffers(value)


def test_keep_host_buffers_in_a_subprocess():
    """The allocator knob is process-wide, so each run gets its own interpreter: on glibc it
    reports success, a train step whose temporaries exceed 64 MiB stops page-faulting them
    in on every call, and the gradients are bit-identical to a run without it."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys, ctypes.util, resource
        from jrnn.host import keep_host_buffers
        ok = keep_host_buffers() if sys.argv[1] == "1" else None  # before any computation
        import jax, jax.numpy as jnp, numpy as np, jrnn
        big = jrnn.cells.lstm(128)
        pb = big.init(jax.random.key(0), 1)
        xb = jnp.sin(jnp.arange(64 * 256.0)).reshape(64, 256, 1)
        g = jax.jit(jax.grad(lambda p: jnp.sum(jrnn.unroll(big, p, xb)[1][:, -1] ** 2)))
        first = g(pb)
        for _ in range(3):
            jax.block_until_ready(g(pb))
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            jax.block_until_ready(g(pb))
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) // 3
        digest = sum(float(np.abs(np.asarray(a, np.float64)).sum())
                     for a in jax.tree_util.tree_leaves(first))
        print(ok, bool(ctypes.util.find_library("c")), faults, repr(digest))
        """
    )
    runs = []
    for knob in ("0", "1"):
        out = subprocess.run(
            [sys.executable, "-c", code, knob], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        runs.append(out.stdout.split())
    (_, glibc, before, digest0), (ok, _, after, digest1) = runs
    assert digest0 == digest1  # same gradients to the bit
    if glibc == "True" and sys.platform.startswith("linux"):
        assert ok == "True"
        # Without the knob every call faults in its ~70 MiB of temporaries afresh.
        assert int(before) > 4000 and int(after) < int(before) // 10, (before, after)


# --------------------------------------------------------------------------- default path



def _scipy_blas_threads():
    import scipy.linalg.cython_lapack  # noqa: F401
    import threadpoolctl

    return {
        i["filepath"]: i["num_threads"]
        for i in threadpoolctl.threadpool_info()
        if i["user_api"] == "blas"
    }


def test_lapack_threads_limits_scipys_openblas_and_restores():
    before = _scipy_blas_threads()
    if not any("scipy" in p and "numpy" not in p for p in before):
        pytest.skip("no scipy-bundled OpenBLAS visible to threadpoolctl")
    cell = jrnn.cells.elman(24, "tanh")
    params = cell.init(jax.random.key(0), 1)
    xs = 0.5 * jax.random.normal(jax.random.key(1), (40, 1))
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
        ref = jrnn.diagnostics.lyapunov_spectrum(cell, p64, xs.astype(jnp.float64)).exponents
        with host.lapack_threads(1):
            inside = _scipy_blas_threads()
            got = jrnn.diagnostics.lyapunov_spectrum(cell, p64, xs.astype(jnp.float64)).exponents
    import scipy

    scipy_root = os.path.realpath(os.path.dirname(scipy.__file__))
    for path, threads in inside.items():  # scipy's library limited, any other (numpy's) not
        ours = os.path.realpath(path).startswith((scipy_root, scipy_root + ".libs"))
        assert threads == (1 if ours else before[path]), path
    assert any(os.path.realpath(p).startswith(scipy_root) for p in inside)
    assert _scipy_blas_threads() == before  # restored on exit
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [(0, ValueError, ">= 1"), (-2, ValueError, ">= 1"), (1.0, TypeError, "integer"),
     ("1", TypeError, "integer"), (True, TypeError, "integer"), (2**32 + 1, ValueError, "C int"),
     (10**400, ValueError, "C int")],
)  # fmt: skip
def test_lapack_threads_bad_n(value, error, match):
    with pytest.raises(error, match=match):
        host.lapack_threads(value)


def test_after_orders_without_changing_values_or_gradients():
    """jrnn.host.after ties a value to its dependencies with an optimization barrier
    (so XLA cannot run the LAPACK calls that follow concurrently with the dependencies) and
    changes neither the value nor its derivatives."""
    after = jrnn.host.after
    cell = jrnn.cells.elman(4, "tanh")
    params = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 1)
    )
    xs = jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float64)[:, None]

    def f(W, ordered):
        p = {**params, "W_hh": W}
        prop = jrnn.diagnostics.propagation(cell, p, xs)
        if ordered:
            p = after(p, prop)
        sv = jrnn.diagnostics.singular_values(jrnn.diagnostics.step_jacobians(cell, p, xs))
        return jnp.sum(sv) + jnp.sum(prop.log_spectral_norm)

    W = params["W_hh"]
    np.testing.assert_allclose(f(W, True), f(W, False), rtol=1e-14)
    np.testing.assert_allclose(jax.grad(f)(W, True), jax.grad(f)(W, False), rtol=1e-12)
    assert "optimization_barrier" in jax.jit(f, static_argnums=1).lower(W, True).as_text()
    assert "optimization_barrier" not in jax.jit(f, static_argnums=1).lower(W, False).as_text()
    assert after(params) is params  # no dependencies: unchanged
