"""Smoke tests of the Lyapunov peer benchmark's building blocks (no timing is asserted)."""

import math
import os

import numpy as np
import pytest

from experiments.benchmarks import lyapunov as bench


def test_peer_speed_runs_every_peer_and_agrees_on_a_short_run():
    r = bench.peer_speed("float64", n=8, T=5, gain=2.0, repeats=2, warmup=0)
    times = r["times"]
    assert {"jrnn lyapunov_spectrum", "LAPACK chain alone"} <= set(times)
    for name, ts in times.items():
        assert len(ts) == 2 and all(math.isfinite(t) and t > 0 for t in ts), name
    if "torch loop" in times:  # 5 steps: the float64 trajectories have not separated yet
        assert r["max_abs_diff"] < 1e-10


def test_lapack_floor_equals_the_explicit_qr_chain():
    rng = np.random.default_rng(0)
    Js = rng.standard_normal((6, 5, 5))
    Q, ref = np.eye(5), np.zeros(5)
    for J in Js:
        Q, R = np.linalg.qr(J @ Q)
        ref += np.log(np.abs(np.diag(R)))
    np.testing.assert_allclose(np.asarray(bench._lapack_floor(Js)), ref, rtol=1e-12)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux /proc only")
def test_peak_memory_is_this_process_high_water_mark():
    with open("/proc/self/status") as fh:
        rss = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:")) / 1024.0
    assert bench._peak_mb() >= rss * 0.99


def test_benchmarks_import_public_names_only():
    """The benchmarks use jrnn's public API: no ``from jrnn... import _private`` and no
    ``jrnn.<...>._private`` attribute (the chain is ``jrnn.linalg.qr_chain``)."""
    import ast
    import inspect

    from experiments.benchmarks import spectra

    for mod in (bench, spectra):
        tree = ast.parse(inspect.getsource(mod))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jrnn"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private and "._" not in node.module, (mod.__name__, node.module)
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                assert not (isinstance(root, ast.Name) and root.id == "jrnn"), node.attr


def test_adaptive_row_runs_every_implementation_and_agrees():
    r = bench.adaptive_row(8, 4, "float64", T=6, gain=1.5, repeats=1)
    peers = {"torch loop"} if bench._have_torch() else set()
    assert {"numpy loop", "jrnn adaptive", "jrnn every step", "W Q alone"} | peers == set(
        r["times"]
    )
    assert all(math.isfinite(t) and t > 0 for ts in r["times"].values() for t in ts)
    assert r["max_abs_diff_adaptive_vs_every"] < 1e-8 and r["interval"] >= 1
    if peers:  # the same float64 loop in torch: equal exponents (a short, contracting run)
        assert r["max_abs_diff_torch_vs_every"] < 1e-8, r["max_abs_diff_torch_vs_every"]
    else:
        assert math.isnan(r["max_abs_diff_torch_vs_every"])
    assert r["matmul_gflops"] > 0
