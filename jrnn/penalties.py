"""Loss terms that control a recurrent cell's Jacobians: gradient flossing and norm penalties.

Gradient flossing (Engelken, "Gradient flossing: improving gradient descent
through dynamic control of Jacobians", NeurIPS 2023) trains the leading ``k``
Lyapunov exponents of the network driven by the training inputs towards 0:

.. math::

   P_{\\mathrm{floss}}(\\theta) = \\frac{1}{B k} \\sum_{b=1}^{B} \\sum_{i=1}^{k}
   \\left(\\lambda_i^{(b)}(\\theta) - \\lambda^\\ast\\right)^2, \\qquad
   \\lambda_i = \\frac{1}{T} \\sum_t \\log |(R_t)_{ii}|, \\quad J_t Q_{t-1} = Q_t R_t,

differentiated through the QR chain of :func:`jrnn.diagnostics.lyapunov_spectrum`
(so any faster path that function gains, e.g. streaming, is used here too).
``lambda_i`` is in nats per step; ``||d s_T / d s_t||`` grows or decays like
``exp((T - t) lambda_1)``, so ``lambda_1 ~ 0`` keeps the error signal of a
``T - t``-step-old input neither vanishing nor exploding, and ``k`` exponents
near 0 keep a ``k``-dimensional subspace of such signals alive.

Pieces (all pure; the loss terms sit below :mod:`jrnn.train`, the schedules
that build train steps from them sit above it, in :mod:`jrnn.flossing`):

* :func:`lyapunov_penalty` — the flossing loss term (``gradient="frozen"``:
  through the Jacobians at the visited states only, finite from a chaotic
  start; ``clip="median"``: every sequence's gradient clipped to the batch
  median norm); :func:`jacobian_norm_penalty`
  and :func:`spectral_norm_penalty` — the classic baselines (keep
  ``||J_t||`` or ``||W_hh||_2`` near a target). Each is a :class:`Penalty`.
* :func:`regularize` — ``(apply_fn, loss)`` with ``loss + weight * penalty``
  for :func:`jrnn.train.make_train_step` ("always" flossing); :func:`penalty_loss`
  — ``(apply_fn, loss)`` with ``weight * penalty`` alone (flossing updates).

The QR re-orthonormalisation need not run every step ("QR every ``r`` steps",
``every``), which cuts the cost of each penalty evaluation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._median_clip import _median_clipped  # noqa: F401 (tests reach it here)
from jrnn.cells.base import Cell, Linearization
from jrnn.diagnostics import _trajectory
from jrnn.diagnostics.jacobians import sequence_jacobians
from jrnn.diagnostics.lyapunov import QR_METHODS, lyapunov_spectrum
from jrnn.validation import NumberTypeError, check_int, check_number

__all__ = [
    "CLIPS",
    "GRADIENTS",
    "Penalty",
    "jacobian_norm_penalty",
    "lyapunov_penalty",
    "penalty_loss",
    "regularize",
    "spectral_norm_penalty",
]

#: Accepted ``gradient`` of :func:`lyapunov_penalty`: through the whole trajectory
#: (``"full"``) or through the Jacobians at the visited states only (``"frozen"``).
#: (``"clipped"``, deprecated, is ``gradient="full", clip="median"``.)
GRADIENTS = ("full", "frozen")

#: Accepted ``clip`` of :func:`lyapunov_penalty`: every sequence's gradient as it is
#: (``None``) or clipped to the batch's median norm (``"median"``).
CLIPS = (None, "median")

#: Sane range of a flossing target, nats per step: beyond +-1 a gradient is
#: multiplied by e every step, which no training target can want.
TARGET_RANGE = (-1.0, 1.0)


class Penalty(NamedTuple):
    """A loss term on the recurrent cell's parameters and a batch of inputs.

    Fields:
      name: ``"lyapunov"``, ``"jacobian_norm"`` or ``"spectral_norm"``.
      fn: ``(cell_params, xs (B, T, d) or (T, d)) -> ()`` the penalty value.
      exponents: for ``"lyapunov"``, ``(cell_params, xs) -> (B, k)`` (or
        ``(k,)``) the exponents the penalty sees; None otherwise.
      config: the static settings, for reports.

    A penalty is called like the loss it is: ``pen(params, xs)`` is
    ``pen.fn(params, xs)``.
    """

    name: str
    fn: Callable[[Any, jax.Array], jax.Array]
    exponents: Callable[[Any, jax.Array], jax.Array] | None = None
    config: tuple[tuple[str, Any], ...] = ()

    def __call__(self, params: Any, xs: jax.Array) -> jax.Array:
        """``self.fn(params, xs)``: the penalty value."""
        return self.fn(params, xs)


def _check_cell(cell, method: str = "auto") -> Cell:
    if not isinstance(cell, Cell):
        hint = " (for a jrnn.models.Model pass model.cell)" if hasattr(cell, "cell") else ""
        raise TypeError(f"cell must be a jrnn.Cell{hint}, got {type(cell).__name__}.")
    if method not in _trajectory.JACOBIAN_METHODS:
        raise ValueError(f"method must be one of {_trajectory.JACOBIAN_METHODS}, got {method!r}.")
    if method == "analytic" and (cell.linear is None or cell.linear.jacobian is None):
        raise ValueError(
            f"method='analytic' needs a cell with an analytic jacobian, but cell "
            f"{cell.describe()} has none; use method='auto' (jax.jacfwd of the step)."
        )
    return cell


def _optional_int(value, name: str, minimum: int) -> int | None:
    return None if value is None else check_int(value, name, low=minimum)


def _window(xs, warmup: int, steps: int | None, batch: int | None, name: str,
            transient: int = 0):
    """``xs[:batch, :transient + warmup + steps]`` with the lengths checked (static shapes)."""
    if xs is None or isinstance(xs, str):
        raise TypeError(f"{name}: xs must be a (T, d) or (B, T, d) array, got {xs!r}.")
    xs = jnp.asarray(xs)
    if xs.ndim not in (2, 3):
        raise ValueError(f"xs must be (T, d) or (B, T, d), got shape {xs.shape}.")
    if 0 in xs.shape:
        raise ValueError(f"{name}: xs must not be empty, got shape {xs.shape}.")
    T = xs.shape[-2]
    need = transient + warmup + (steps if steps is not None else 1)
    if T < need:
        lead = f"transient={transient} + " if transient else ""
        raise ValueError(
            f"{name}: xs has T={T} steps, but {lead}warmup={warmup} + steps="
            f"{steps if steps is not None else 1} = {need} are needed."
        )
    if steps is not None:
        xs = xs[..., : transient + warmup + steps, :]
    if batch is not None and xs.ndim == 3:
        xs = xs[:batch]
    return xs


def _frozen(cell: Cell, method: str) -> Cell:
    """``cell`` whose trajectory carries no derivative: the frozen-trajectory linearisation.

    The state update is ``stop_gradient(recur(...))``, so ``s*_t`` is a constant
    for ``jax.grad``; the Jacobians and tangents are those of the original cell
    (``method``) at the visited state with live parameters and inputs, so
    ``J_t = J(s*_{t-1}, u_t(theta); theta)`` keeps its explicit dependence on
    ``theta``. Values are unchanged.
    """
    recur = cell.recur

    def frozen_recur(params, carry, u):
        return jax.lax.stop_gradient(recur(params, carry, u))

    def jacobian(params, carry, u):
        return _trajectory.jacobian_fn(cell, params, method)(carry, u)

    def tangent(params, carry, u, V):
        return _trajectory.tangent_map(cell, params)(carry, u, V)

    return cell._replace(recur=frozen_recur, linear=Linearization(jacobian, tangent),
                         fused=None, affine=None)


def _advance(cell: Cell, params, xs):
    """The carry after ``xs`` ((T, d) or (B, T, d)) from the cell's initial carry."""
    batch = _trajectory.prepare(cell, params, xs, None)

    def one(x, carry):
        us, c0 = _trajectory.inputs(cell, params, x, carry)
        return _trajectory.advance(cell, params, us, c0)

    return _trajectory.map_sequences(one, batch, xs, None)


def lyapunov_penalty(
    cell: Cell,
    k: int,
    target=0.0,
    *,
    gradient: str = "full",
    clip: str | None = None,
    every: int = 1,
    transient: int = 0,
    warmup: int = 0,
    steps: int | None = None,
    batch: int | None = None,
    qr: str = "auto",
    method: str = "auto",
    key: jax.Array | None = None,
) -> Penalty:
    """The gradient-flossing loss ``mean_{b,i} (lambda_i^(b) - target_i)^2`` (Engelken 2023).

    .. math::

       P(\\theta) = \\frac{1}{B k} \\sum_{b, i \\le k}
       \\left(\\lambda_i^{(b)} - \\lambda^\\ast_i\\right)^2

    with ``lambda_i^(b)`` the ``i``-th exponent (descending, nats per step) of
    trajectory ``b`` of the batch, from :func:`jrnn.diagnostics.lyapunov_spectrum`
    with ``reorth_every=every`` after ``warmup`` alignment steps. Differentiable
    with respect to the cell parameters, through the QR chain and, with
    ``gradient="full"``, the trajectory.

    **Which gradient.** ``lambda_i`` depends on ``theta`` through the Jacobians
    ``J_t = J(s_{t-1}(theta), u_t(theta); theta)`` and through the states they
    are taken at. ``gradient="full"`` differentiates both: the exact derivative
    of the finite-``T`` exponents (Mikhaeil et al. 2022), but on a chaotic orbit
    ``d s_t / d theta`` grows like ``exp(lambda_1 t)``, so the gradient grows like
    ``exp(lambda_1 T)`` (tanh N = 32, g = 3, float32: ``inf`` at T = 300, and
    Adam's moments overflow; :func:`jrnn.flossing.make_penalty_step` then skips
    the update and warns). ``gradient="frozen"`` holds the visited states fixed:

    .. math::

       \\frac{\\partial \\Lambda}{\\partial \\theta}\\Big|_{s^\\ast}, \\qquad
       \\Lambda(\\theta; s^\\ast) = \\frac{1}{T} \\sum_t \\log |R_{ii}(t)|, \\quad
       J_t = J(s^\\ast_{t-1}, u_t(\\theta); \\theta),

    the exact derivative of the exponents of the Jacobians recomputed at the
    states ``s*`` visited under the current parameters (a stop-gradient on the
    carry). It is finite for any ``T`` and equal in value; its bias is the
    dropped term ``sum_t (d Lambda / d s_t)(d s_t / d theta)``, the exponents'
    response to the attractor moving. On a contracting net (``lambda_1 < 0``)
    that term is small (tanh g = 0.5, N = 8, k = 2: cosine 0.998 between the
    two gradients; g = 0.8, ``lambda_1 = -0.07``: 0.95); on a chaotic one it is
    what the full gradient cannot estimate either. ``transient`` steps before
    the window advance the state with no derivative at all, so the window
    starts on the attractor (not at the initial carry) and the full gradient
    grows only like ``exp(lambda_1 (warmup + steps))``: a truncated, finite
    alternative for short windows.

    **Clipping** (``clip="median"``). With ``g_b`` the gradient (``full`` or
    ``frozen``) of sequence ``b``'s term and ``m`` the batch median of ``|g_b|``
    (norm over all parameters),

    .. math::

       \\hat g = \\frac{1}{B} \\sum_b \\min\\left(1, \\frac{m}{\\lVert g_b \\rVert}\\right) g_b

    (the value is unchanged; inputs get the same weights; one sequence, ``xs``
    of shape ``(T, d)``, is not clipped; a non-finite ``g_b`` makes ``hat g``
    NaN, so a flossing step skips and warns). The per-sequence gradients are
    heavy-tailed, the full ones by decades on a chaotic window (norms from 10 to
    ``10^8`` within one batch), the frozen ones too (median 0.8, largest 85 over
    512 windows of 80 steps): unclipped, a few sequences set every update's
    direction and, through Adam's second moment, shrink the updates that follow.
    Clipping to the median bounds every sequence's say; it under-weights the
    most expanding windows (a bias). If more than half of the sequences have a
    gradient of exactly 0 (e.g. every unit saturated), the median is 0 and so
    is the clipped gradient, whatever the others say.

    **Measured from chaos** (tanh N = 32, ``W ~ N(0, 9/N)``, input +-1 bits,
    ``k = 4``; exponents on fresh inputs, T = 3000, 4 streams; this 2-core
    CPU). At a point where the full gradient got stuck (``lambda_1..5 = 0.06,
    -0.04, -0.16, -0.29, -0.42``, reached from g = 3 by full-gradient flossing
    on short windows; a one-off script), 256 windows of 50 + 450 steps, float64: the cosine
    between the median-clipped estimates of two halves of the batch is 0.04
    for the full gradient (no signal: one step of 0.1 along it changes the
    long-run penalty 0.0287 by +0.0001), 0.62 for the frozen one (-0.0156; a
    random direction: at most 0.0007 either way); unclipped, on 80-step
    windows, the frozen one's cosine is 0.08 even over 512 windows. At the
    chaotic start itself (g = 3, 128 windows of 50 + 150 steps, float32;
    ``python -m experiments.flossing_chaos``) every estimate is weaker and the
    clipped frozen one is still the best: cosine between halves 0.30 (unclipped
    0.02, its norms spanning 383x the median; full: -0.21, clipped 0.15, norms
    ~``10^21``), and a step of 0.5 along it changes the long-run penalty by
    -0.0011, against at most 0.0008 along random directions (the others: -0.0006
    to +0.0001, within that noise). So from
    chaos use ``gradient="frozen", clip="median"`` on long windows
    (:func:`jrnn.flossing.floss_windows`, its default: ``|lambda_1..4| < 0.05``
    from g = 3 in 10 of 10 measured runs, the largest ``|lambda_i|`` 0.026).
    Its bias (the dropped response of the attractor) did not stop the
    exponents closing in on the target (largest ``|lambda_1..4|`` 0.033-0.046
    after 1400 updates, 0.015-0.026 after 2400). Without
    clipping the frozen gradient does not get there: T = 200, B = 8, lr 1e-2,
    1500 updates end at ``(0.15, 0.06, -0.05, -0.16)``; the full gradient on
    200-step windows is non-finite (600 of 600 updates skipped).
    The default stays ``gradient="full"``: exact, and the right choice at and
    below the edge of chaos, where flossing is usually started.

    Args:
      cell: the recurrent :class:`~jrnn.cells.base.Cell` (``model.cell`` for a model).
      k: number of leading exponents flossed, ``1 <= k <= cell.state_size``.
      target: ``lambda*``, a number or ``(k,)`` values in ``[-1, 1]`` nats per
        step (0: neither vanishing nor exploding).
      gradient: ``"full"`` (default: through the trajectory and the Jacobians)
        or ``"frozen"`` (through the Jacobians at the visited states only); see
        above, :data:`GRADIENTS`. ``"clipped"`` (deprecated, warns) is
        ``gradient="full", clip="median"``.
      clip: ``None`` (default) or ``"median"``: every sequence's gradient
        clipped to the batch median norm (above, :data:`CLIPS`).
      every: QR re-orthonormalisation every ``every`` steps (the paper's
        speed-up; each block is checked and redone stepwise if inaccurate).
      transient: leading steps that only advance the state, with no derivative
        (the window then starts on the attractor); ``xs`` needs
        ``transient + warmup + steps`` steps.
      warmup: steps after the transient that only align the frame (not averaged).
      steps: time steps averaged after the warmup (default: the rest of ``xs``);
        ``xs`` is cut to ``transient + warmup + steps`` steps.
      batch: use only the first ``batch`` sequences of ``xs`` (cost).
      qr, method: passed to ``lyapunov_spectrum``.
      key: PRNG key of the initial frame when ``k < S`` (default ``key(0)``).

    Returns:
      A :class:`Penalty` whose ``fn(cell_params, xs)`` is the scalar above and
      ``exponents(cell_params, xs)`` the ``(B, k)`` exponents it penalises.

    Raises:
      TypeError: ``cell`` is not a Cell (e.g. a Model); ``k``, ``every``,
        ``transient``, ``warmup``, ``steps`` or ``batch`` not an integer; ``target`` not real
        numbers (a :class:`~jrnn.validation.NumberTypeError`, also a ValueError).
      ValueError: ``k`` not in ``[1, S]``; ``target`` not finite, outside
        ``[-1, 1]`` or of the wrong length; ``every``, ``transient``, ``warmup``,
        ``steps``, ``batch`` out of range; ``qr`` / ``method`` / ``gradient`` /
        ``clip`` unknown;
        ``method="analytic"`` for a cell without an analytic Jacobian; (when
        called) ``xs`` shorter than ``transient + warmup + steps``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.elman(8, "tanh")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> pen = jrnn.penalties.lyapunov_penalty(cell, k=2, warmup=10)
        >>> xs = jax.random.normal(jax.random.key(1), (4, 50, 1))
        >>> float(pen.fn(params, xs)) > 0, pen.exponents(params, xs).shape
        (True, (4, 2))
        >>> frozen = jrnn.penalties.lyapunov_penalty(cell, k=2, warmup=10, gradient="frozen")
        >>> bool(jnp.allclose(frozen.fn(params, xs), pen.fn(params, xs)))
        True
    """
    _check_cell(cell, method)
    S = cell.state_size
    k = check_int(k, "k", low=1)
    if k > S:
        raise ValueError(f"k must be at most the cell's state size {S}, got {k}.")
    try:
        if isinstance(target, bool | np.bool_) or np.asarray(target).dtype.kind not in "iuf":
            raise TypeError
        tgt = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError):
        raise NumberTypeError(  # a TypeError, and a ValueError as check_number's
            f"target must be a real number or ({k},) real numbers in {list(TARGET_RANGE)} nats "
            f"per step, got {target!r}."
        ) from None
    if tgt.ndim > 1 or (tgt.ndim == 1 and tgt.shape[0] != k):
        raise ValueError(f"target must be a number or have shape ({k},), got shape {tgt.shape}.")
    lo, hi = TARGET_RANGE
    if not np.all(np.isfinite(tgt)) or np.any(tgt < lo) or np.any(tgt > hi):
        raise ValueError(
            f"target must be finite and in [{lo}, {hi}] nats per step, got {target!r}."
        )
    every = check_int(every, "every", low=1)
    transient = check_int(transient, "transient", low=0)
    warmup = check_int(warmup, "warmup", low=0)
    steps = _optional_int(steps, "steps", 1)
    batch = _optional_int(batch, "batch", 1)
    if qr not in QR_METHODS:
        raise ValueError(f"qr must be one of {QR_METHODS}, got {qr!r}.")
    if gradient == "clipped":  # the name of one (gradient, clip) pair, before clip existed
        warnings.warn('lyapunov_penalty(gradient="clipped") is deprecated: it is '
                      'gradient="full", clip="median".', DeprecationWarning, stacklevel=2)
        if clip not in (None, "median"):
            raise ValueError(f'gradient="clipped" is clip="median"; it takes no clip={clip!r}.')
        gradient, clip = "full", "median"
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}.")
    if not any(clip is c or clip == c for c in CLIPS) or isinstance(clip, bool):
        raise ValueError(f"clip must be one of {CLIPS}, got {clip!r}.")
    tgt_list = tgt.tolist()
    # "frozen": the cell's own Jacobians (``method``) at a trajectory without derivative.
    run_cell, run_method = ((_frozen(cell, method), "auto") if gradient == "frozen"
                            else (cell, method))

    def exponents(params, xs):
        xs = _window(xs, warmup, steps, batch, "lyapunov_penalty", transient)
        carry = None
        if transient:  # the window starts on the attractor; no derivative through the lead-in
            carry = jax.lax.stop_gradient(_advance(cell, params, xs[..., :transient, :]))
            xs = xs[..., transient:, :]
        spec = lyapunov_spectrum(run_cell, params, xs, carry=carry, k=k, reorth_every=every,
                                 warmup=warmup, method=run_method, qr=qr, key=key)
        return spec.exponents

    def fn(params, xs):
        lam = exponents(params, xs)
        tgt_arr = jnp.broadcast_to(jnp.asarray(tgt_list, lam.dtype), lam.shape)
        return jnp.mean(jnp.square(lam - tgt_arr))

    if clip == "median":
        fn = _median_clipped(fn, lambda xs: _window(xs, warmup, steps, batch,
                                                    "lyapunov_penalty", transient))

    config = (("k", k), ("target", tgt_list), ("gradient", gradient), ("clip", clip),
              ("every", every),
              ("transient", transient), ("warmup", warmup),
              ("steps", steps), ("batch", batch), ("qr", qr), ("method", method))
    return Penalty("lyapunov", fn, exponents, config)


def _check_norm_target(target) -> float:
    return check_number(target, "target", low=0.0, high=10.0, low_open=True)


def jacobian_norm_penalty(
    cell: Cell,
    target: float = 1.0,
    *,
    norm: str = "spectral",
    steps: int | None = None,
    batch: int | None = None,
    method: str = "auto",
) -> Penalty:
    """Baseline: keep every step Jacobian's norm near ``target``.

    .. math::

       P(\\theta) = \\frac{1}{B T} \\sum_{b, t} \\left(\\lVert J_t^{(b)} \\rVert - c\\right)^2,
       \\qquad J_t = \\partial s_t / \\partial s_{t-1},

    with ``||.||`` the spectral norm (``norm="spectral"``) or the RMS singular
    value ``||J||_F / sqrt(S)`` (``norm="rms"``, smooth everywhere). A local,
    one-step control of the factors of ``d s_T / d s_t``, cheaper than the
    spectrum but blind to how the factors align (Pascanu, Mikolov & Bengio
    2013 regularise a related norm ratio).

    Args:
      cell: the recurrent Cell.
      target: ``c`` in ``(0, 10]``.
      norm: ``"spectral"`` or ``"rms"``.
      steps, batch: use the first ``steps`` steps and ``batch`` sequences.
      method: Jacobian method (:func:`jrnn.diagnostics.step_jacobians`).

    Raises:
      TypeError / ValueError: as :func:`lyapunov_penalty`, for a bad cell,
      target, norm, steps or batch.
    """
    _check_cell(cell, method)
    c = _check_norm_target(target)
    if norm not in ("spectral", "rms"):
        raise ValueError(f"norm must be 'spectral' or 'rms', got {norm!r}.")
    steps = _optional_int(steps, "steps", 1)
    batch = _optional_int(batch, "batch", 1)
    S = cell.state_size

    def fn(params, xs):
        xs = _window(xs, 0, steps, batch, "jacobian_norm_penalty")
        batched = _trajectory.prepare(cell, params, xs, None)
        seq = lambda x, cr: sequence_jacobians(cell, params, x, cr, method)[0]
        Js = _trajectory.map_sequences(seq, batched, xs, None)
        if norm == "spectral":
            nrm = jnp.linalg.svd(Js, compute_uv=False)[..., 0]
        else:
            nrm = jnp.sqrt(jnp.sum(jnp.square(Js), axis=(-2, -1)) / S)
        return jnp.mean(jnp.square(nrm - c))

    return Penalty("jacobian_norm", fn, None, (("target", c), ("norm", norm), ("steps", steps),
                                               ("batch", batch), ("method", method)))


def spectral_norm_penalty(cell: Cell, target: float = 1.0) -> Penalty:
    """Baseline: ``(sigma_max(W_hh) - c)^2`` on the cell's effective recurrent matrix.

    Input-independent (``xs`` is ignored); ``sigma_max(W_hh) <= 1`` with
    ``|f'| <= 1`` bounds every ``||J_t||`` by 1 (Pascanu et al. 2013).

    Raises:
      TypeError: ``cell`` is not a Cell.
      ValueError: the cell exposes no ``recurrent_matrix`` (e.g. an LSTM:
        use :func:`jacobian_norm_penalty` or :func:`lyapunov_penalty`), or a
        target outside ``(0, 10]``.
    """
    _check_cell(cell)
    c = _check_norm_target(target)
    pw = cell.pointwise
    if pw is None or pw.recurrent_matrix is None:
        raise ValueError(
            f"spectral_norm_penalty needs a cell with a recurrent_matrix, but "
            f"{cell.describe()} has none; use jacobian_norm_penalty or lyapunov_penalty."
        )

    def fn(params, xs):
        del xs
        W = pw.recurrent_matrix(params)
        return jnp.square(jnp.linalg.svd(W, compute_uv=False)[0] - c)

    return Penalty("spectral_norm", fn, None, (("target", c),))


def _default_params_of(params):
    """Model params ``{"cell": ..., "readout": ...}`` -> the cell's; anything else as is."""
    if isinstance(params, dict) and "cell" in params:
        return params["cell"]
    return params


def _check_penalty(penalty) -> Penalty:
    if not isinstance(penalty, Penalty):
        raise TypeError(
            f"penalty must be a jrnn.penalties.Penalty (from lyapunov_penalty, "
            f"jacobian_norm_penalty or spectral_norm_penalty), got {type(penalty).__name__}."
        )
    return penalty


def _check_weight(weight) -> float:
    return check_number(weight, "weight", low=0.0)


def regularize(
    apply_fn: Callable[[Any, Any], Any],
    loss: Callable[[Any, Any], jax.Array],
    penalty: Penalty,
    weight: float,
    *,
    params_of: Callable[[Any], Any] | None = None,
) -> tuple[Callable, Callable]:
    """``(apply_fn', loss')`` for :func:`jrnn.train.make_train_step` minimising
    ``loss(apply_fn(params, x), y) + weight * penalty.fn(params_of(params), x)``.

    ``apply_fn'`` returns ``(predictions, penalty value)``; the step's recorded
    ``loss`` is the total. The penalty sees the same training inputs ``x``.

    Args:
      apply_fn, loss: as for ``make_train_step``.
      penalty: a :class:`Penalty`.
      weight: ``>= 0``.
      params_of: model params -> cell params (default: ``params["cell"]`` when
        ``params`` is a model's dict, else ``params``).

    Example::

        >>> import jax, optax, jrnn
        >>> model = jrnn.models.rnn(jrnn.cells.elman(8), 1)
        >>> pen = jrnn.penalties.lyapunov_penalty(model.cell, k=2)
        >>> apply, loss = jrnn.penalties.regularize(model.apply, jrnn.tasks.mse, pen, 0.1)
        >>> step = jrnn.train.make_train_step(apply, loss, optax.adam(1e-3))
    """
    _check_penalty(penalty)
    w = _check_weight(weight)
    get = params_of or _default_params_of

    def apply(params, x):
        return apply_fn(params, x), penalty.fn(get(params), x)

    def total(out, y):
        pred, pen = out
        return loss(pred, y) + w * pen

    return apply, total


def penalty_loss(
    penalty: Penalty,
    weight: float = 1.0,
    *,
    params_of: Callable[[Any], Any] | None = None,
) -> tuple[Callable, Callable]:
    """``(apply_fn, loss)`` for :func:`jrnn.train.make_train_step` minimising
    ``weight * penalty.fn(params_of(params), x)`` alone.

    The targets ``y`` are ignored and parameters the penalty does not touch (a
    readout) get zero gradient: the flossing update of Engelken 2023
    (:func:`jrnn.flossing.make_penalty_step` builds the step from it).

    Args:
      penalty, weight, params_of: as :func:`regularize`.
    """
    _check_penalty(penalty)
    w = _check_weight(weight)
    get = params_of or _default_params_of
    return (lambda p, x: w * penalty.fn(get(p), x)), (lambda value, y: value)
