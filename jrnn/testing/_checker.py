"""The checker behind the test kit: the largest difference per property, precise failures."""

from __future__ import annotations

import math

import jax
import numpy as np

__all__ = ["Checker"]


class Checker:
    """Collects the largest difference per property and fails with a precise message."""

    def __init__(self, label: str):
        self.label = label
        self.report: dict[str, float] = {}

    def close(self, prop: str, got, ref, tol: float, where: str = "") -> None:
        got_leaves = jax.tree_util.tree_leaves(got)
        ref_leaves = jax.tree_util.tree_leaves(ref)
        if len(got_leaves) != len(ref_leaves):
            self.fail(prop, where, f"{len(got_leaves)} leaves, expected {len(ref_leaves)}")
        worst = 0.0
        for g, r in zip(got_leaves, ref_leaves):
            g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
            if g.shape != r.shape:
                self.fail(prop, where, f"shape {g.shape}, expected {r.shape}")
            if g.size == 0:
                continue
            scale = max(1.0, float(np.max(np.abs(r))) if np.all(np.isfinite(r)) else 1.0)
            diff = float(np.max(np.abs(g - r))) / scale
            if not math.isfinite(diff):
                diff = math.inf
            worst = max(worst, diff)
        self.report[prop] = max(self.report.get(prop, 0.0), worst)
        if not worst <= tol:
            self.fail(prop, where, f"largest difference {worst:.3g} > tolerance {tol:.3g}")

    def true(self, prop: str, ok: bool, where: str, detail: str) -> None:
        if not ok:
            self.fail(prop, where, detail)

    def fail(self, prop: str, where: str, detail: str):
        at = f" at {where}" if where else ""
        raise AssertionError(f"{self.label}: property {prop!r} fails{at}: {detail}.")

