"""Breaker checks of issue 28.3 (lyapunov_penalty clip="median", floss_windows): an independent
float64 NumPy reference for the frozen, median-clipped gradient with k < S (the initial frame
from ``key``), even batches (the median of two middle norms), B = 2, and bad ``inputs`` of
floss_windows named before any update."""

import dataclasses
import os

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import flossing as fl
from jrnn import penalties


def _net(n, B, T, seed, gain=3.0):
    cell = jrnn.cells.elman(n, "tanh")
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                    cell.init(jax.random.key(seed), 1))
    params["W_hh"] = gain / np.sqrt(n) * jax.random.normal(jax.random.key(seed + 50), (n, n),
                                                           jnp.float64)
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, 1), jnp.float64)
    return cell, params, xs


def _frozen_penalty(p, p0, x, Q0, tgt, warmup, transient=0):
    """One sequence's frozen penalty, NumPy float64: states ``h*`` visited under ``p0``, the
    Jacobians ``diag(1 - tanh(W h*_{t-1} + U x_t + b)^2) W`` under ``p``; QR every step from
    ``Q0``; exponents sorted descending."""
    W, U, b = (np.asarray(p[k], np.float64) for k in ("W_hh", "W_xh", "b_h"))
    W0, U0, b0 = (np.asarray(p0[k], np.float64) for k in ("W_hh", "W_xh", "b_h"))
    h = np.zeros(W.shape[0])
    for t in range(transient):
        h = np.tanh(W0 @ h + U0 @ x[t] + b0)
    Q, acc = Q0.copy(), np.zeros(Q0.shape[1])
    for t in range(transient, x.shape[0]):
        a = 1.0 - np.tanh(W @ h + U @ x[t] + b) ** 2
        Q, R = np.linalg.qr(a[:, None] * W @ Q)
        h = np.tanh(W0 @ h + U0 @ x[t] + b0)
        if t >= transient + warmup:
            acc += np.log(np.abs(np.diag(R)))
    lam = np.sort(acc / (x.shape[0] - transient - warmup))[::-1]
    return np.mean((lam - tgt) ** 2)


def _reference(params, xs, Q0, tgt, warmup, transient=0, eps=1e-6):
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    flat = np.asarray(flat)
    per = np.array([[(_frozen_penalty(unravel(flat + eps * e), params, x, Q0, tgt, warmup,
                                      transient)
                      - _frozen_penalty(unravel(flat - eps * e), params, x, Q0, tgt, warmup,
                                        transient)) / (2 * eps)
                     for e in np.eye(flat.size)] for x in np.asarray(xs)])
    norm = np.linalg.norm(per, axis=1)
    m = np.median(norm)  # numpy: the mean of the two middle norms for an even batch
    clipped = np.mean(np.minimum(1.0, m / norm)[:, None] * per, axis=0)
    value = np.mean([_frozen_penalty(params, params, x, Q0, tgt, warmup, transient)
                     for x in np.asarray(xs)])
    return per, norm, clipped, value


@pytest.mark.parametrize("B,transient", [(4, 0), (2, 0), (3, 6)])
def test_frozen_median_clipped_gradient_with_k_below_S_against_numpy(B, transient):
    """k = 2 < S = 5: Q_0 is the Q of ``normal(key, (S, k))`` (lyapunov_spectrum's frame);
    the jitted frozen, median-clipped gradient equals the clipped mean of per-sequence central
    differences of the NumPy chain, for an even batch (B = 4: median = mean of the middle two
    norms, two sequences clipped), B = 2 (both clipped to their mean norm unless equal), and
    a transient before the window."""
    cell, params, xs = _net(5, B, 24 + transient, seed=11 + B)
    key, k, warmup, tgt = jax.random.key(5), 2, 4, np.array([0.05, -0.2])
    Q0 = np.linalg.qr(np.asarray(jax.random.normal(key, (5, k), jnp.float64)))[0]
    per, norm, want, value = _reference(params, xs, Q0, tgt, warmup, transient)
    pen = penalties.lyapunov_penalty(cell, k, tgt, gradient="frozen", clip="median",
                                     warmup=warmup, transient=transient, key=key)
    got_value, got = jax.jit(jax.value_and_grad(pen.fn))(params, xs)
    np.testing.assert_allclose(got_value, value, rtol=1e-10)
    got = np.asarray(jax.flatten_util.ravel_pytree(got)[0])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(per).max())
    assert np.sum(norm > np.median(norm)) == B // 2  # clipping is active
    assert np.linalg.norm(got - per.mean(0)) > 0.02 * np.linalg.norm(per.mean(0))
    # another key is another frame: a different value (the key is used, not ignored)
    other = penalties.lyapunov_penalty(cell, k, tgt, gradient="frozen", clip="median",
                                       warmup=warmup, transient=transient,
                                       key=jax.random.key(6))
    assert abs(float(other.fn(params, xs)) - value) > 1e-6


def _bits(key, b, t):
    return jnp.sign(jax.random.normal(key, (b, t, 1), jnp.float32))


def test_floss_windows_names_inputs_of_the_wrong_shape_before_any_update():
    """``inputs(key, batch, warmup + steps)`` must return ``(batch, warmup + steps, d)``. Was:
    a ``(T, d)`` result (no batch axis) flossed one unclipped sequence per update, another
    batch size or a longer window were used as they came, silently; a task's ``(x, y)`` pair
    failed with "None is not a valid value for jnp.array", naming nothing."""
    cell = jrnn.cells.elman(3, "tanh")
    params = cell.init(jax.random.key(0), 1)
    w = ((2, 5, 5, 1e-2),)
    bad = {
        "no batch axis": lambda k, b, t: _bits(k, b, t)[0],
        "another batch": lambda k, b, t: _bits(k, b + 3, t),
        "longer": lambda k, b, t: _bits(k, b, t + 7),
        "shorter": lambda k, b, t: _bits(k, b, t - 2),
        "a pair": lambda k, b, t: (_bits(k, b, t), None),
        "None": lambda k, b, t: None,
    }
    for _name, fn in bad.items():
        with pytest.raises((TypeError, ValueError), match=r"inputs.*\(2, 10, d\)"):
            fl.floss_windows(cell, params, fn, jax.random.key(1), k=1, windows=w, batch=2)
    # the right shape in any real dtype or as a NumPy array still works
    ok = lambda k, b, t: np.asarray(_bits(k, b, t)).astype(np.int32).tolist()
    res = fl.floss_windows(cell, params, ok, jax.random.key(1), k=1, windows=w, batch=2)
    assert res.loss.shape == (2,) and res.skipped == 0


def test_median_clipped_gradient_has_the_parameters_dtype():
    """float32 parameters driven by float64 inputs: the median-clipped gradient is float32 like
    the unclipped one (was float64: the custom VJP returned ``cotangent * g`` in the
    cotangent's dtype), for a batch and for one sequence."""
    lin = lambda p, xs: jnp.mean(xs[..., 0, :] @ p["w"].astype(xs.dtype))
    f = penalties._median_clipped(lin, lambda xs: xs)
    p = {"w": jnp.ones(2, jnp.float32)}
    xs = jnp.asarray([[1.0, 0.0], [3.0, 4.0], [0.0, 2.0]], jnp.float64)[:, None, :]
    for x in (xs, xs[0]):
        assert jax.grad(lin)(p, x)["w"].dtype == jax.grad(f)(p, x)["w"].dtype == jnp.float32


def test_a_non_finite_sequence_makes_the_whole_clipped_gradient_nan():
    """The documented contract (a non-finite ``g_b`` makes ``hat g`` NaN, never dropped). Was:
    only the entries where ``g_b`` is non-finite became NaN (``0 * inf``), the others kept the
    finite sequences' clipped mean; a NaN norm made the median NaN and switched clipping off.
    Linear per-sequence terms ``x_b . w`` (gradient ``x_b``)."""
    lin = lambda p, xs: jnp.mean(xs[..., 0, :] @ p["w"])
    f = penalties._median_clipped(lin, lambda xs: xs)
    p = {"w": jnp.ones(2)}
    for bad in (np.inf, np.nan):
        xs = jnp.asarray([[1.0, 0.0], [bad, 0.0], [3.0, 4.0]])[:, None, :]
        assert np.all(np.isnan(np.asarray(jax.grad(f)(p, xs)["w"]))), bad
        gx = jax.grad(f, argnums=1)(p, xs)
        assert np.all(np.isnan(np.asarray(gx))), bad
    xs = jnp.asarray([[1.0, 0.0], [2.0, 0.0], [3.0, 4.0]])[:, None, :]  # finite: clipped mean
    np.testing.assert_allclose(jax.grad(f)(p, xs)["w"], [(1 + 2 + 3 * 0.4) / 3, 4 * 0.4 / 3])


def test_flossing_chaos_refuses_another_config_before_any_work(tmp_path, monkeypatch):
    """A changed config in an ``--out`` that holds runs is refused at the start (was: only when
    a run of the same gain and index came up, after the gradient comparison had run; a
    changed ``--gains`` was never refused and its runs sat beside the old ones)."""
    from experiments import flossing_chaos as fc
    from experiments.common import _write_json

    out = str(tmp_path / "fc")
    cfg = fc.PRESETS["smoke"]
    os.makedirs(os.path.join(out, "seeds"))
    record = {"config": fc._run_config(cfg), "gain": 3.0, "index": 0, "seed": 0}
    _write_json(fc._seed_file(out, 3.0, 0), record)
    calls = []
    monkeypatch.setattr(fc, "gradient_quality", lambda *a: calls.append(a) or [])
    for argv in (["--lr", "0.5"], ["--gains", "2.0"], ["--seed", "1"]):
        with pytest.raises(ValueError, match="another config or seed"):
            fc.main(["--preset", "smoke", "--out", out] + argv)
    assert calls == []
    # the gradient comparison's fields do not change a flossing run: its runs are reused
    fc.check_out(dataclasses.replace(cfg, snr_eta=0.3, snr_batch=4, seeds=5), 0, out)
    # a write cut off by a kill leaves a partial .tmp beside the runs: resuming ignores it
    with open(fc._seed_file(out, 3.0, 1) + ".tmp", "w") as fh:
        fh.write('{"config": ')
    fc.check_out(cfg, 0, out)


def test_documented_experiment_commands_parse():
    """Every ``python -m experiments.NAME --flags`` in the README and docs parses (was:
    ``python -m experiments.flossing --quick`` in docs/reproductions.md and tutorial 5, which
    exits with "Unrecognized options: --quick"; the flag is ``--preset quick``)."""
    import glob
    import importlib
    import re

    from experiments import common

    root = os.path.join(os.path.dirname(__file__), "..")
    files = [os.path.join(root, "README.md")] + glob.glob(
        os.path.join(root, "docs", "**", "*.*"), recursive=True)
    pattern = re.compile(r"python -m (experiments\.[\w.]+)((?: --?[a-z][\w-]*(?: [\w./-]+)?)*)`")
    seen = 0
    for path in files:
        if not path.endswith((".md", ".py")):
            continue
        for mod_name, args in pattern.findall(open(path).read()):
            if mod_name.split(".")[-1].isupper():  # a placeholder (experiments.NAME)
                continue
            mod = importlib.import_module(mod_name)
            if not hasattr(mod, "PRESETS") or "--out" in args:
                continue
            try:
                common.parse(mod.NAME, mod.__doc__, mod.PRESETS, mod.DEFAULT_PRESET,
                             args.split())
            except SystemExit:
                pytest.fail(f"{os.path.relpath(path, root)}: python -m {mod_name}{args}")
            seen += 1
    assert seen > 5
