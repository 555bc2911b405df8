"""Predict-then-measure: the theory that applies to a given cell, in one call.

:func:`predict` (exported as ``jrnn.predict``) reads a concrete cell and its
params and returns the predictions of :mod:`jrnn.theory` that apply to it. It
sits above both the cells it inspects and the theory it calls (the theory
package stays below the cells: the initialisers import it).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jrnn.theory import gated as _gated
from jrnn.theory import spectra as _spectra
from jrnn.theory.mean_field import drive_scale, mean_field

__all__ = ["COVERED", "predict", "scales_from_params"]

#: Cell families :func:`predict` covers.
COVERED = ("elman", "gru", "lstm")

_GATES = {"gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}


def _rms(a) -> float:
    return float(jnp.sqrt(jnp.mean(jnp.asarray(a, jnp.float64 if _x64() else jnp.float32) ** 2)))


def _x64() -> bool:
    return bool(jnp.zeros(()).astype(float).dtype == jnp.float64)


def scales_from_params(cell, params, input_sample=None, *, per_unit: bool = False) -> dict:
    """The mean-field scales of a concrete network.

    ``sigma_w = sqrt(n mean(W_hh^2))`` per gate (the scale of
    ``N(0, sigma_w^2 / n)``; for ``gain * orthogonal`` it is ``gain``), biases as
    the gate's mean bias (``per_unit=True``: the ``(n,)`` bias vector of each gate, which the
    tied gated theory averages over), and ``sigma_u`` per gate from ``input_sample``
    (:func:`~jrnn.theory.drive_scale`; 0 without a sample).

    Raises:
      ValueError: cell family not in :data:`COVERED`.
    """
    name = cell.name
    if name not in COVERED:
        raise ValueError(f"predict covers cells {list(COVERED)}, got a {name!r} cell.")
    n = cell.hidden_size
    W = np.asarray(params["W_hh"], np.float64)
    Wx = params["W_xh"]
    if name == "elman":
        b = params.get("b_h")
        out = {
            "sigma_w": math.sqrt(n * float(np.mean(W**2))),
            "sigma_b": _rms(b) if b is not None else 0.0,
            "sigma_u": float(drive_scale(Wx, input_sample)) if input_sample is not None else 0.0,
        }
        return out
    gates = _GATES[name]
    G = len(gates)
    sw = {g: math.sqrt(n * float(np.mean(W[k * n:(k + 1) * n] ** 2))) for k, g in enumerate(gates)}
    su = {
        g: (float(drive_scale(Wx[k * n:(k + 1) * n], input_sample))
            if input_sample is not None else 0.0)
        for k, g in enumerate(gates)
    }
    reduce = (lambda v: v) if per_unit else (lambda v: float(v.mean()))
    if name == "gru":
        bx = np.asarray(params["b_xh"], np.float64).reshape(G, n)
        bh = np.asarray(params["b_hh"], np.float64).reshape(G, n)
        biases = {"bias_r": bx[0] + bh[0], "bias_z": bx[1] + bh[1],
                  "bias_in": bx[2], "bias_hn": bh[2]}
    else:
        b = np.asarray(params["b_h"], np.float64).reshape(G, n)
        biases = {f"bias_{g}": b[k] for k, g in enumerate(gates)}
    return {"sigma_w": sw, "sigma_u": su, **{k: reduce(v) for k, v in biases.items()}}


def predict(cell, params_or_init_spec, input_sample=None, *, spectrum: bool = True) -> dict:
    """The predictions that apply to ``cell``, to set next to its measurements.

    Elman cells (any registered activation): the driven mean field
    (:func:`~jrnn.theory.mean_field`: ``q*``, ``chi``, ``lambda_max = 0.5 ln chi``,
    ``c*``, ``chi_c``, ``xi_q``, ``xi_c``) and, with ``spectrum=True``, the
    annealed Lyapunov spectrum with its Kaplan-Yorke dimension and entropy rate
    (:func:`~jrnn.theory.spectra.annealed_spectrum`). GRU / LSTM
    (:mod:`jrnn.theory.gated`): ``chi`` and ``log_growth`` (the mean squared gain of one step,
    annealed mean field; ``"annealed"`` holds all its fields) and the tied-weight quiescent
    state averaged over the cell's actual per-unit bias vectors (:func:`~jrnn.theory.gated.gru_edge`
    / :func:`~jrnn.theory.gated.lstm_edge`): ``q_h``, ``radius``, ``memory``, ``active`` and
    ``lambda_max = ln radius`` (nats per step), or NaN where the state is active (``radius > 1``:
    chaos or oscillation, whose exponent is not derived), with ``"lambda_max_note"`` saying which.
    With an input the input is a quenched field per unit (a heuristic). Measured (float64,
    tests/test_theory_gated.py): default init within 0.012 nats/step (GRU -0.285 predicted vs
    -0.292, LSTM -0.036 vs -0.026, N = 64, N(0, 1) input); biases ~ U(-2, 2) within 0.03.

    Args:
      cell: a :class:`~jrnn.cells.Cell` of a family in :data:`COVERED`.
      params_or_init_spec: the cell's params (scales are read off them:
        :func:`scales_from_params`), or a dict of scales: Elman
        ``{"sigma_w", "sigma_b", "sigma_u"}``; gated ``{"sigma_w", "sigma_u",
        "sigma_b", "bias_<gate>"...}`` as in :func:`~jrnn.theory.gated.annealed_gru_mean_field`.
      input_sample: ``(T, d)`` or ``(B, T, d)`` inputs giving ``sigma_u`` when
        params are passed.
      spectrum: include the annealed spectrum for Elman cells (``n`` exponents).

    Returns:
      dict with ``"family"``, ``"scales"`` and the applicable predictions as
      floats (``"spectrum"``: an :class:`~jrnn.theory.spectra.AnnealedSpectrum`).

    Raises:
      ValueError: a cell family not covered (the message lists :data:`COVERED`).

    Example::

        >>> import jrnn
        >>> p = jrnn.predict(jrnn.cells.elman(8, "relu"), {"sigma_w": 1.0})
        >>> round(p["chi"], 6), p["lambda_max"] < 0
        (0.5, True)
    """
    name = getattr(cell, "name", None)
    if name not in COVERED:
        raise ValueError(f"predict covers cells {list(COVERED)}, got a {name!r} cell.")
    spec = dict(params_or_init_spec)
    is_params = "W_hh" in spec
    scales = scales_from_params(cell, spec, input_sample) if is_params else spec
    if name == "elman":
        known = {"sigma_w", "sigma_b", "sigma_u"}
        unknown = sorted(set(scales) - known)
        if unknown:
            raise ValueError(f"an Elman init spec takes keys {sorted(known)}, got {unknown}.")
        sw, sb, su = (scales.get(k, 0.0) for k in ("sigma_w", "sigma_b", "sigma_u"))
        if "sigma_w" not in scales:
            raise ValueError("an Elman init spec needs 'sigma_w'.")
        mf = mean_field(cell.pointwise.activation, sw, sb, sigma_u=su)
        out = {"family": name, "scales": {"sigma_w": sw, "sigma_b": sb, "sigma_u": su}}
        out.update({k: float(v) for k, v in mf._asdict().items()})
        if spectrum:
            out["spectrum"] = _spectra.annealed_spectrum(
                cell.pointwise.activation, sw, cell.hidden_size, sb, sigma_u=su
            )
        return out
    return _predict_gated(cell, name, scales, spec, input_sample, is_params)


def _predict_gated(cell, name, scales, spec, input_sample, is_params) -> dict:
    """Gated cells: the annealed mean field (``chi``, ``log_growth``) and the tied edge."""
    annealed = _gated.annealed_gru_mean_field if name == "gru" else _gated.annealed_lstm_mean_field
    tied = _gated.gru_edge if name == "gru" else _gated.lstm_edge
    g = annealed(**scales)
    out = {"family": name, "scales": scales}
    out["chi"], out["log_growth"] = float(g.chi), float(g.log_growth)
    out["annealed"] = {k: float(v) for k, v in g._asdict().items()}
    # the tied theory averages over the actual per-unit bias vectors
    unit_scales = (scales_from_params(cell, spec, input_sample, per_unit=True) if is_params
                   else scales)
    edge = tied(**unit_scales)
    out.update(q_h=float(edge.q_h), radius=float(edge.radius), memory=float(edge.memory),
               active=bool(edge.active))
    driven = any(float(v) > 0 for v in _gated_values(scales.get("sigma_u", 0.0)))
    if bool(edge.active):
        out["lambda_max"] = math.nan
        out["lambda_max_note"] = (
            "active state: the quiescent state is unstable (tied spectral radius "
            f"{float(edge.radius):.3f} >= 1); its exponent needs the dynamic mean field, "
            "not implemented")
    else:
        out["lambda_max"] = float(edge.log_radius)
        out["lambda_max_note"] = (
            "ln of the tied quiescent state's spectral radius"
            + (" with the input as a quenched field per unit (heuristic)" if driven else ""))
    return out


def _gated_values(v):
    return list(v.values()) if isinstance(v, dict) else (list(v) if isinstance(v, tuple | list)
                                                        else [v])
