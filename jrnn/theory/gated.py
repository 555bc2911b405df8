"""Mean field of gated cells (GRU, LSTM) at initialisation: tied (default) and annealed.

Two theories, for two different random networks:

- **Tied** (:func:`gru_edge`, :func:`lstm_edge`, :func:`critical_scale`): the recurrent weights
  are drawn once and kept, as in every network people build and train. The edge of chaos is
  where the quiescent (fixed-point) state loses stability: the spectral radius of the step
  Jacobian there reaches 1 (a random-matrix criterion, derived in :mod:`jrnn.theory._tied`).
  At zero biases: GRU ``J = <z> I + <(1-z) r> W_n``, a disk centred at ``<z>``, critical at
  ``sigma_w = 2``; LSTM ``b_f = 1``: ``sigma_w = 1.08``. Measured ``lambda_1`` at
  :func:`critical_scale`: 0 within the finite-size spread (N = 256: within 0.04 of 0;
  tests/test_theory_gated.py). The active state's exponent and ``q_h`` are not derived
  (NaN, flagged ``active``).
- **Annealed** (:func:`annealed_gru_mean_field`, :func:`annealed_lstm_mean_field`,
  :func:`annealed_critical_scale`): the weights are redrawn at every step. Its ``chi`` and
  ``q_h`` match such a simulation within 0.4%, and ``chi`` is the mean squared gain
  ``||J_t||_F^2 / S`` of one step of a tied network too, but its ``chi = 1`` is **not** the
  tied network's edge of chaos (GRU: ``sigma_w = 3.44``, where a tied N = 256 GRU has
  ``lambda_1 = +0.07``), its ``q_h`` misses the temporal correlations that memory builds (30%
  too low at GRU ``b_z = 1``, 59% at LSTM ``b_f = 2``), and its ``q_h -> 0`` ("dead") is
  wrong where the tied network is active (LSTM ``sigma_w = 1.5, b_f = 1``; GRU
  ``sigma_w = 3``): :func:`gru_edge` / :func:`lstm_edge` flag those states ``active``.

The rest of this docstring describes the annealed theory.

Random gated networks with recurrent weights ``W_hh^{(g)} ~ N(0, sigma_g^2 / N)``
per gate ``g``, input drive of scale ``sigma_u`` per gate, constant gate biases
``b_g`` (the forget / update-gate bias included) and bias noise ``sigma_b``.
As in Gilboa, Chang, Chen, Pennington, Schoenholz, Ganguli & Sohl-Dickstein
(2019, "Dynamical isometry and a mean field theory of LSTMs and GRUs", sec. 3)
and Chen, Pennington & Schoenholz (2018, minimalRNN), every gate pre-activation
is Gaussian with mean ``b_g`` and variance

.. math::

   v_g = \\sigma_g^2 Q_h + \\sigma_{u}^2 + \\sigma_b^2, \\qquad Q_h = \\mathbb{E}[h^2],

and ``Q_h`` is the fixed point of the cell's second-moment map. The cells follow
jrnn's (PyTorch's) equations exactly:

- GRU: ``r = s(a_r)``, ``z = s(a_z)``, ``n = tanh(a_in + r a_hn)``,
  ``h' = (1 - z) n + z h``, with ``a_hn = W_hn h + b_hn ~ N(b_hn, sigma_n^2 Q_h)``.
  Stationary moments (``h`` independent of this step's gates):
  ``E h = E n``, ``Q_h = (E(1-z)^2 E n^2 + 2 E z(1-z) E n E h) / (1 - E z^2)``.
- LSTM: ``c' = f c + i g``, ``h' = o tanh(c')``; the cell state is treated as
  Gaussian with its exact stationary mean and variance
  (``E c = E i E g / (1 - E f)``, ``E c^2 = (E i^2 E g^2 + 2 E f E i E g E c) / (1 - E f^2)``):
  the one approximation beyond the annealed mean field.

**Gain per step.** Each weight block maps a perturbation to a fresh Gaussian
vector (annealed: independent of the gates), so the mean squared gain of the
state Jacobian on an isotropic perturbation, ``||J_t||_F^2 / S``, is a sum of
independent terms. GRU (``S = N``):

.. math::

   \\chi = \\mathbb{E}[z^2] + \\mathbb{E}[(1 - z)^2]\\big(\\sigma_n^2 \\mathbb{E}[r^2 n'^2]
     + \\sigma_r^2 \\mathbb{E}[n'^2 r'^2 a_{hn}^2]\\big)
     + \\sigma_z^2 \\mathbb{E}[z'^2]\\,\\mathbb{E}[(h - n)^2].

LSTM (``S = 2N``): with ``A = sigma_f^2 E[c^2 f'^2] + sigma_i^2 E[g^2 i'^2] +
sigma_g^2 E[i^2 g'^2]`` the second moments ``(E dc^2, E dh^2)`` of a
perturbation evolve by the matrix
``M = [[E f^2, A], [E o^2 E[tanh'(c')^2 f^2], B]]``,
``B = sigma_o^2 E[tanh(c')^2 o'^2] + E o^2 E[tanh'(c')^2 a]``
(``a`` the integrand of ``A``), and ``chi = (sum of M) / 2`` is the mean squared
gain ``||J_t||_F^2 / 2N``. ``0.5 ln chi`` is the growth per step (nats) of the
norm of an isotropic gradient or perturbation, ``> 0`` exploding, ``< 0``
vanishing.

**Limits** (measured, N = 256, this module's tests): ``chi`` matches the
measured ``||J_t||_F^2 / S`` to about 1-2% for weight scales up to 2 and gate
biases in [-1, 3]. It assumes ``h_{t-1}`` independent of this step's candidate
``n_t`` / cell input; in strongly chaotic GRUs with a large update-gate weight
scale, where consecutive states are correlated, it overestimates the update-gate
term (``sigma_w = 3, b_z = -1``: 1.20 predicted, 0.92 measured), and the
Gaussian cell state of the LSTM is off by ~7% at ``b_f = 3`` (long memory,
heavy-tailed ``c``). The largest Lyapunov exponent of a gated net is *not*
``0.5 ln chi``: perturbations localise on units whose gates hold them, so the
measured exponent lies above it in the ordered phase (GRU ``sigma_w = 1``:
``-0.31`` measured vs ``0.5 ln chi = -0.55``).

Quadrature: tensor-product Gauss-Hermite (24 nodes per gate, 16 for ``c``; the
gate nonlinearities are smooth).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import validation
from jrnn.activations import sigmoid_prime, tanh_prime
from jrnn.theory import _tied
from jrnn.theory._quadrature import check_scales, float_dtype, hermite
from jrnn.theory._tied import TiedEdge

__all__ = [
    "COVERED",
    "GatedMeanField",
    "TiedEdge",
    "annealed_critical_scale",
    "annealed_gru_mean_field",
    "annealed_lstm_mean_field",
    "critical_scale",
    "gru_edge",
    "lstm_edge",
]

#: Cell families the gated mean field covers.
COVERED = ("gru", "lstm")


class GatedMeanField(NamedTuple):
    """Gated-cell mean field at one setting (``()`` each).

    Fields:
      q_h: fixed point of ``E[h^2]``.
      chi: mean squared gain of one step, ``||J_t||_F^2 / S`` (``S`` state size).
      log_growth: ``0.5 ln chi``, the growth per step of an isotropic gradient's
        norm (nats per step; a lower bound on the largest Lyapunov exponent in
        the ordered phase, not an estimate of it: module docstring).
      memory: ``E[z^2]`` (GRU) or ``E[f^2]`` (LSTM), the gain of the gated
        carry-through path alone.
    """

    q_h: jax.Array
    chi: jax.Array
    log_growth: jax.Array
    memory: jax.Array


def _gates(values, names):
    if not isinstance(values, (dict, tuple, list)) and jnp.ndim(values) == 0:
        return {n: values for n in names}
    if isinstance(values, dict):
        missing = sorted(set(names) - set(values))
        if missing:
            raise ValueError(f"per-gate values must cover gates {list(names)}, missing {missing}.")
        return {n: values[n] for n in names}
    vals = tuple(values)
    if len(vals) != len(names):
        raise ValueError(
            f"per-gate values must be a scalar, a dict or a {len(names)}-tuple in the order "
            f"{names}, got {len(vals)} values."
        )
    return dict(zip(names, vals))


def _grid(n, dtype, dims):
    x, w = hermite(n)
    x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
    grids = jnp.meshgrid(*([x] * dims), indexing="ij")
    weights = functools.reduce(lambda a, b: a * b, jnp.meshgrid(*([w] * dims), indexing="ij"))
    return [g.ravel() for g in grids], weights.ravel()


def _checked_gate_scales(sigma_w, sigma_u, sigma_b, names):
    """Per-gate ``(sigma_w, sigma_u)`` dicts, every scale checked non-negative and finite."""
    sw, su = _gates(sigma_w, names), _gates(sigma_u, names)
    check_scales(sigma_b=sigma_b, **{f"sigma_w[{k}]": v for k, v in sw.items()},
                  **{f"sigma_u[{k}]": v for k, v in su.items()})
    return sw, su


def _squared_scales(sw, su, sigma_b, *biases):
    """The working dtype and the squared scales ``sigma_b^2``, ``sigma_w^2``, ``sigma_u^2``."""
    dtype = float_dtype(*sw.values(), *su.values(), sigma_b, *biases)
    square = lambda v: jnp.asarray(v, dtype) ** 2
    return (dtype, square(sigma_b), {k: square(v) for k, v in sw.items()},
            {k: square(v) for k, v in su.items()})


def annealed_gru_mean_field(
    sigma_w=1.0,
    *,
    sigma_u=0.0,
    sigma_b=0.0,
    bias_r=0.0,
    bias_z=0.0,
    bias_in=0.0,
    bias_hn=0.0,
    iterations: int = 200,
) -> GatedMeanField:
    """GRU mean field at initialisation (jrnn / PyTorch gate order ``r, z, n``).

    Args:
      sigma_w: recurrent weight scale, scalar or per gate (``(r, z, n)`` tuple or
        dict): ``W_hh^{(g)} ~ N(0, sigma_g^2 / N)``.
      sigma_u: input drive scale per gate (scalar, tuple or dict), the rms of
        ``W_xh^{(g)} x_t``.
      sigma_b: std of the random part of every bias.
      bias_r, bias_z: reset / update gate biases (``b_xh + b_hh`` of the slice);
        a positive ``bias_z`` keeps ``h`` (``h' = (1-z) n + z h``).
      bias_in, bias_hn: candidate biases outside / inside the reset product.
      iterations: fixed-point steps for ``Q_h``.

    Returns:
      :class:`GatedMeanField`; traceable and vmappable over every scale and bias.

    Raises:
      ValueError: negative scales, or per-gate values of the wrong length.

    Example::

        >>> import jrnn
        >>> mf = jrnn.theory.gated.annealed_gru_mean_field(1.0, bias_z=10.0)
        >>> bool(mf.chi > 0.999)  # update gate shut: h is copied, chi -> 1
        True
    """
    sw, su = _checked_gate_scales(sigma_w, sigma_u, sigma_b, ("r", "z", "n"))
    iterations = validation.check_int(iterations, "iterations", low=1)
    return _gru(sw, su, sigma_b, bias_r, bias_z, bias_in, bias_hn, iterations)


@functools.partial(jax.jit, static_argnums=(7,))
def _gru(sw, su, sigma_b, b_r, b_z, b_in, b_hn, iterations):
    dtype, sb2, sw2, su2 = _squared_scales(sw, su, sigma_b, b_r, b_z, b_in, b_hn)
    (zr, zh, zi), w3 = _grid(24, dtype, 3)
    z1, w1 = (jnp.asarray(a, dtype) for a in hermite(48))

    def moments(Q):
        a_r = b_r + jnp.sqrt(sw2["r"] * Q + su2["r"] + sb2) * zr
        a_hn = b_hn + jnp.sqrt(sw2["n"] * Q + sb2) * zh
        a_in = b_in + jnp.sqrt(su2["n"] + sb2) * zi
        r = jax.nn.sigmoid(a_r)
        a_n = a_in + r * a_hn
        n = jnp.tanh(a_n)
        n1 = tanh_prime(a_n)
        a_z = b_z + jnp.sqrt(sw2["z"] * Q + su2["z"] + sb2) * z1
        z = jax.nn.sigmoid(a_z)
        E = lambda v: jnp.sum(w3 * v)  # noqa: E731
        Ez = lambda v: jnp.sum(w1 * v)  # noqa: E731
        return dict(
            n=E(n), n2=E(n * n), rn1=E(r * r * n1 * n1),
            hn=E(n1 * n1 * sigmoid_prime(a_r) ** 2 * a_hn * a_hn),
            z=Ez(z), z2=Ez(z * z), omz2=Ez((1 - z) ** 2), zomz=Ez(z * (1 - z)),
            dz2=Ez(sigmoid_prime(a_z) ** 2),
        )

    def update(Q):
        m = moments(Q)
        Eh = m["n"]  # E h = E[(1-z)] E n + E z E h
        return (m["omz2"] * m["n2"] + 2 * m["zomz"] * m["n"] * Eh) / (1 - m["z2"])

    Q = jax.lax.fori_loop(0, iterations, lambda _, q: update(q), jnp.asarray(0.5, dtype))
    m = moments(Q)
    Eh = m["n"]
    h_minus_n = Q - 2 * Eh * m["n"] + m["n2"]
    chi = (
        m["z2"]
        + m["omz2"] * (sw2["n"] * m["rn1"] + sw2["r"] * m["hn"])
        + sw2["z"] * m["dz2"] * h_minus_n
    )
    return GatedMeanField(Q, chi, 0.5 * jnp.log(chi), m["z2"])


def annealed_lstm_mean_field(
    sigma_w=1.0,
    *,
    sigma_u=0.0,
    sigma_b=0.0,
    bias_i=0.0,
    bias_f=1.0,
    bias_g=0.0,
    bias_o=0.0,
    iterations: int = 200,
) -> GatedMeanField:
    """LSTM mean field at initialisation (jrnn / PyTorch gate order ``i, f, g, o``).

    Args:
      sigma_w: recurrent weight scale, scalar or per gate (``(i, f, g, o)`` tuple or dict).
      sigma_u: input drive scale per gate (scalar, tuple or dict).
      sigma_b: std of the random part of every bias.
      bias_i, bias_f, bias_g, bias_o: gate biases (``bias_f`` is jrnn's
        ``forget_bias``, default 1).
      iterations: fixed-point steps for ``Q_h``.

    Returns:
      :class:`GatedMeanField` (``chi = ||J_t||_F^2 / 2N``).

    Raises:
      ValueError: negative scales, or per-gate values of the wrong length.

    Example::

        >>> import jrnn
        >>> mf = jrnn.theory.gated.annealed_lstm_mean_field(1.0, bias_f=8.0)
        >>> bool(mf.memory > 0.999)  # forget gate open: c is kept
        True
    """
    sw, su = _checked_gate_scales(sigma_w, sigma_u, sigma_b, ("i", "f", "g", "o"))
    iterations = validation.check_int(iterations, "iterations", low=1)
    return _lstm(sw, su, sigma_b, bias_i, bias_f, bias_g, bias_o, iterations)


@functools.partial(jax.jit, static_argnums=(7,))
def _lstm(sw, su, sigma_b, b_i, b_f, b_g, b_o, iterations):
    dtype, sb2, sw2, su2 = _squared_scales(sw, su, sigma_b, b_i, b_f, b_g, b_o)
    (zi, zf, zg), w3 = _grid(20, dtype, 3)
    zc, wc = (jnp.asarray(a, dtype) for a in hermite(16))
    z1, w1 = (jnp.asarray(a, dtype) for a in hermite(48))

    def gates(Q):
        sd = {k: jnp.sqrt(sw2[k] * Q + su2[k] + sb2) for k in sw2}
        a_i, a_f, a_g = b_i + sd["i"] * zi, b_f + sd["f"] * zf, b_g + sd["g"] * zg
        a_o = b_o + sd["o"] * z1
        return a_i, a_f, a_g, a_o

    def c_moments(a_i, a_f, a_g):
        i, f, g = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g)
        E = lambda v: jnp.sum(w3 * v)  # noqa: E731
        Ef, Ef2 = E(f), E(f * f)
        Ei, Ei2, Eg, Eg2 = E(i), E(i * i), E(g), E(g * g)
        mc = Ei * Eg / (1 - Ef)
        c2 = (Ei2 * Eg2 + 2 * Ef * Ei * Eg * mc) / (1 - Ef2)
        return mc, jnp.maximum(c2 - mc * mc, 0.0)

    def update(Q):
        a_i, a_f, a_g, a_o = gates(Q)
        mc, vc = c_moments(a_i, a_f, a_g)
        c = mc + jnp.sqrt(vc) * zc
        Eo2 = jnp.sum(w1 * jax.nn.sigmoid(a_o) ** 2)
        return Eo2 * jnp.sum(wc * jnp.tanh(c) ** 2)

    Q = jax.lax.fori_loop(0, iterations, lambda _, q: update(q), jnp.asarray(0.5, dtype))
    a_i, a_f, a_g, a_o = gates(Q)
    mc, vc = c_moments(a_i, a_f, a_g)
    i, f, g = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g)
    di, df, dg = sigmoid_prime(a_i), sigmoid_prime(a_f), tanh_prime(a_g)
    o = jax.nn.sigmoid(a_o)
    Eo2 = jnp.sum(w1 * o * o)
    Edo2 = jnp.sum(w1 * sigmoid_prime(a_o) ** 2)
    # 4-D: gates (3-D grid) x previous cell state c (Gaussian approximation).
    c = mc + jnp.sqrt(vc) * zc[None, :]
    cn = f[:, None] * c + (i * g)[:, None]
    W = w3[:, None] * wc[None, :]
    E4 = lambda v: jnp.sum(W * v)  # noqa: E731
    t1 = tanh_prime(cn) ** 2
    a_term = (sw2["f"] * (c * df[:, None]) ** 2 + (sw2["i"] * (g * di) ** 2
              + sw2["g"] * (i * dg) ** 2)[:, None])
    A = E4(a_term)
    M = jnp.array(
        [
            [E4((f * f)[:, None] + 0 * c), A],
            [Eo2 * E4(t1 * (f * f)[:, None]),
             sw2["o"] * Edo2 * E4(jnp.tanh(cn) ** 2) + Eo2 * E4(t1 * a_term)],
        ]
    )
    chi = jnp.sum(M) / 2.0
    return GatedMeanField(Q, chi, 0.5 * jnp.log(chi), M[0, 0])


def gru_edge(
    sigma_w=1.0,
    *,
    sigma_u=0.0,
    sigma_b=0.0,
    bias_r=0.0,
    bias_z=0.0,
    bias_in=0.0,
    bias_hn=0.0,
    iterations: int = 200,
) -> TiedEdge:
    """Tied-weight GRU: the quiescent state and the spectral radius of its step Jacobian.

    ``h = n`` at the fixed point; ``rho`` is the largest root of
    ``<(1-z)^2 n'^2 (r^2 sigma_n^2 + a_hn^2 s'(a_r)^2 sigma_r^2) / (rho - z)^2> = 1`` over units
    and their static fields (:mod:`jrnn.theory._tied`). One bias value: ``rho = <z> +
    <(1-z) r> sigma_n`` (a disk centred at ``<z>``); ``rho < 1``: ``lambda_1 = ln rho``.

    Args:
      sigma_w: recurrent weight scale, scalar or per gate ``(r, z, n)`` (tuple or dict).
      sigma_u: input drive per gate; ``> 0`` treats the input as a quenched field (a heuristic).
      sigma_b: std of a Gaussian spread of every bias across units.
      bias_r, bias_z, bias_in, bias_hn: gate biases as in :func:`annealed_gru_mean_field`,
        scalars or arrays of per-unit values (broadcast together; averaged over, as the
        actual bias vectors of a trained or uniformly initialised cell).
      iterations: fixed-point steps for ``q_h`` (from 0: the quiescent branch).

    Returns:
      :class:`TiedEdge` (``log_radius`` nats per step; NaN with ``active`` where ``rho > 1``).

    Raises:
      ValueError: negative scales, per-gate values of the wrong length, ``iterations < 1``.

    Example::

        >>> import jrnn
        >>> e = jrnn.theory.gated.gru_edge(1.0)  # disk centred at 1/2, radius 1/4
        >>> round(float(e.radius), 6), bool(e.active)
        (0.75, False)
    """
    sw, su = _checked_gate_scales(sigma_w, sigma_u, sigma_b, ("r", "z", "n"))
    iterations = validation.check_int(iterations, "iterations", low=1)
    _, sb2, sw2, su2 = _squared_scales(sw, su, sigma_b, bias_r, bias_z, bias_in, bias_hn)
    return _tied.gru_edge(sw2, su2, sb2, bias_r, bias_z, bias_in, bias_hn, iterations)


def lstm_edge(
    sigma_w=1.0,
    *,
    sigma_u=0.0,
    sigma_b=0.0,
    bias_i=0.0,
    bias_f=1.0,
    bias_g=0.0,
    bias_o=0.0,
    iterations: int = 200,
) -> TiedEdge:
    """Tied-weight LSTM: the quiescent state ``(h, c)`` and its ``2N x 2N`` Jacobian's radius.

    ``rho`` is the largest root of ``<sigma_o^2 t^2 s'(a_o)^2 / rho^2 + o^2 t'^2 V_A /
    (rho - f)^2> = 1`` (``t = tanh c``, ``V_A`` the row variance of ``dc'/dh``; derived by a
    Schur complement of the block Jacobian in :mod:`jrnn.theory._tied`). Zero biases but
    ``b_f``: a disk centred at ``f`` of radius ``i o sigma_g``, critical where
    ``sigma_g i o / (1 - f) = 1``.

    Args:
      sigma_w: recurrent weight scale, scalar or per gate ``(i, f, g, o)``.
      sigma_u, sigma_b, iterations: as in :func:`gru_edge`.
      bias_i, bias_f, bias_g, bias_o: gate biases, scalars or per-unit arrays.

    Returns:
      :class:`TiedEdge` (``memory = <f>``).

    Raises:
      ValueError: negative scales, per-gate values of the wrong length, ``iterations < 1``.

    Example::

        >>> import jrnn
        >>> e = jrnn.theory.gated.lstm_edge(1.0, bias_f=0.0)  # disk centred at 1/2, radius 1/4
        >>> round(float(e.radius), 6)
        0.75
    """
    sw, su = _checked_gate_scales(sigma_w, sigma_u, sigma_b, ("i", "f", "g", "o"))
    iterations = validation.check_int(iterations, "iterations", low=1)
    _, sb2, sw2, su2 = _squared_scales(sw, su, sigma_b, bias_i, bias_f, bias_g, bias_o)
    return _tied.lstm_edge(sw2, su2, sb2, bias_i, bias_f, bias_g, bias_o, iterations)


def critical_scale(
    cell: str, *, lower: float = 0.1, upper: float = 30.0, bisections: int = 40, **settings
) -> jax.Array:
    """Tied-weight edge of chaos: the recurrent scale ``sigma_w*`` (all gates) where the
    quiescent state's spectral radius reaches 1 (:func:`gru_edge` / :func:`lstm_edge`).

    Zero biases: GRU 2.0 (any ``b_z``: the update gate moves the disk's centre, not the
    crossing), LSTM ``b_f = 1``: 1.076. A tied network at this scale has ``lambda_1 = 0`` up
    to the finite-size spread of its largest eigenvalue (N = 256, 4 draws: GRU -0.039 to
    +0.000, LSTM -0.025 to -0.002, vs +0.05 to +0.065 / +0.02 to +0.04 at the annealed scale;
    tests/test_theory_gated.py); the annealed ``chi = 1`` scale is
    :func:`annealed_critical_scale`.

    Args:
      cell: ``"gru"`` or ``"lstm"``.
      lower, upper: bracket for ``sigma_w`` (first crossing on a 48-point log grid, then
        bisection); NaN when the radius stays below 1 on the bracket.
      bisections: halvings of the log bracket.
      **settings: the other arguments of :func:`gru_edge` / :func:`lstm_edge`.

    Raises:
      ValueError: ``cell`` not covered (the message lists :data:`COVERED`),
        ``lower <= 0``, ``lower >= upper``, a negative ``bisections``.

    Example::

        >>> import jrnn
        >>> round(float(jrnn.theory.gated.critical_scale("gru")), 6)
        2.0
    """
    fn = _family(cell)[1]
    return _first_crossing(lambda s: fn(s, **settings).radius - 1.0, lower, upper, bisections)


def annealed_critical_scale(
    cell: str, *, lower: float = 0.1, upper: float = 30.0, bisections: int = 40, **settings
) -> jax.Array:
    """Annealed recurrent weight scale ``sigma_w*`` (all gates) with ``chi = 1``: gradients of
    a network whose weights are redrawn every step neither grow nor shrink on average.

    Not the edge of chaos of a tied (ordinary) network, which is :func:`critical_scale`
    (GRU at zero biases: 3.44 here, 2.0 tied).

    The first crossing of ``chi(sigma_w) = 1`` on a 48-point log grid over
    ``[lower, upper]``, refined by bisection (``chi`` falls again at large
    ``sigma_w`` as the gates saturate); NaN when ``chi < 1`` on the whole bracket.

    Args:
      cell: ``"gru"`` or ``"lstm"``.
      lower, upper: bracket for ``sigma_w``.
      bisections: halvings of the log bracket.
      **settings: the other arguments of :func:`annealed_gru_mean_field` /
        :func:`annealed_lstm_mean_field` (``sigma_u``, ``sigma_b``, gate biases).

    Raises:
      ValueError: ``cell`` not covered (the message lists :data:`COVERED`),
        ``lower <= 0``, ``lower >= upper``, a negative ``bisections``.

    Example::

        >>> import jrnn
        >>> g = jrnn.theory.gated.annealed_critical_scale("gru")
        >>> bool(abs(jrnn.theory.gated.annealed_gru_mean_field(g).chi - 1) < 1e-6)
        True
    """
    fn = _family(cell)[0]
    return _first_crossing(lambda s: fn(s, **settings).chi - 1.0, lower, upper, bisections)


def _first_crossing(excess, lower, upper, bisections):
    """First ``sigma`` on a 48-point log grid over ``[lower, upper]`` with ``excess > 0``,
    refined by bisection of the log bracket; NaN when there is none."""
    lower = validation.check_number(lower, "lower", low=0.0, low_open=True)
    upper = validation.check_number(upper, "upper", low=0.0, low_open=True)
    validation.check_order(lower, upper, ("lower", "upper"))
    bisections = validation.check_int(bisections, "bisections", low=0)
    f = lambda log_s: excess(jnp.exp(log_s))  # noqa: E731
    grid = jnp.linspace(np.log(lower), np.log(upper), 48)
    above = jax.vmap(f)(grid) > 0
    first = jnp.argmax(above)
    bracketed = jnp.any(above) & (first > 0)
    lo, hi = grid[jnp.maximum(first - 1, 0)], grid[first]

    def body(_, b):
        a, c = b
        m = 0.5 * (a + c)
        below = f(m) <= 0
        return jnp.where(below, m, a), jnp.where(below, c, m)

    a, c = jax.lax.fori_loop(0, int(bisections), body, (lo, hi))
    return jnp.where(bracketed, jnp.exp(0.5 * (a + c)), jnp.nan)


def _family(cell: str):
    table = {"gru": (annealed_gru_mean_field, gru_edge),
             "lstm": (annealed_lstm_mean_field, lstm_edge)}
    if cell not in table:
        raise ValueError(
            f"gated mean field covers cells {list(COVERED)}, got {cell!r}; for an Elman cell "
            f"use jrnn.theory.mean_field."
        )
    return table[cell]
