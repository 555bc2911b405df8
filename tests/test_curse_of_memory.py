"""experiments.curse_of_memory: the smoke run of the contract, and its theory chain."""

import json
import math
import os

import numpy as np
import pytest

from experiments import curse_of_memory as com


def test_theory_chain_matches_hand_derived_forms():
    for r in (0.5, 0.9, 0.99):
        plain = (1 + r**2) / (1 - r**2) ** 2
        assert com.theory_ratio(r, 0.0, 0.0, False, False, False) == pytest.approx(plain)
        # h = sqrt(1 - r^2) h~: E h^2 = 1 and E(dh/dr)^2 = 1 / (1 - r^2)^2 (white noise)
        assert com.theory_ratio(r, 0.0, 0.0, False, True, False) == pytest.approx(
            1 / (1 - r**2) ** 2)
        assert com.theory_ratio(r, 0.0, 0.0, False, False, True) == pytest.approx(
            plain * (r * math.log(r)) ** 2)


def test_diagonal_cells_are_the_equations():
    import jax
    import jax.numpy as jnp

    cell = com.diagonal(2, "complex")
    p = cell.init(jax.random.key(0), 1)
    lam = p["lam_re"] + 1j * p["lam_im"]
    b = p["B_re"][:, 0] + 1j * p["B_im"][:, 0]
    s, _ = cell.step(p, jnp.zeros(4), jnp.ones(1))
    s, _ = cell.step(p, s, 2 * jnp.ones(1))
    h = lam * b + 2 * b
    np.testing.assert_allclose(s, jnp.concatenate([h.real, h.imag]), rtol=1e-6)


def test_smoke_run_writes_the_contract(tmp_path):
    out = str(tmp_path / "com")
    m = com.main(["--preset", "smoke", "--out", out, "--models", "real_diagonal",
                  "reparametrized"])
    for f in ("report.md", "run_info.json", "metrics.json", "sensitivity_vs_memory.png",
              "hessian_concentration.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    text = open(os.path.join(out, "metrics.json")).read()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["mode"] == "smoke"
    s = m["sensitivity"]
    real, rep = s["real_diagonal"], s["reparametrized"]
    assert np.all(np.isfinite(real["normalized"])) and np.all(np.array(real["stderr"]) > 0)
    # the curse: the plain recurrence's sensitivity grows ~100x from |lambda| 0.9 to 0.99,
    # the reparametrised one stays O(1) (theory 0.45 -> 0.50)
    assert real["normalized"][-1] > 20 * real["normalized"][1]
    assert rep["normalized"][-1] < 3.0
    assert real["theory"][-1] == pytest.approx((1 + 0.99**2) / (1 - 0.99**2) ** 2, rel=1e-9)
    h = m["hessian"]
    assert set(h) == {"complex_diagonal", "dense"}
    for r in h.values():
        assert all(1 / r["parameters"] - 1e-9 <= v <= 1 + 1e-9 for v in r["participation"])
    report = open(os.path.join(out, "report.md")).read()
    assert "## Conclusions" in report and "![sensitivity_vs_memory.png]" in report
