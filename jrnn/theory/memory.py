"""The curse of memory in closed form: a one-dimensional linear recurrence driven by AR(1) input.

.. math::

   h_t = \\lambda h_{t-1} + x_t, \\qquad x_t = \\rho x_{t-1} + \\sqrt{1 - \\rho^2}\\, \\xi_t,
   \\quad \\xi_t \\sim N(0, 1) \\text{ i.i.d.}

(Zucchet & Orvieto, "Recurrent neural networks: vanishing and exploding
gradients are not the end of the story", NeurIPS 2024, section 2). The input is
stationary with unit variance and autocorrelation ``E[x_t x_{t-k}] = rho^|k|``.
As the memory ``|lambda| -> 1`` the state variance ``E|h|^2`` grows like
``1 / (1 - |lambda|^2)`` but the sensitivity ``E|dh/dlambda|^2`` grows one power
faster, so even the normalised ratio diverges: a small change of ``lambda``
moves the output a lot, whatever happens to the gradients through time.
:func:`jrnn.diagnostics.parameter_sensitivity` measures the same quantity for any
cell.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import validation

__all__ = ["LinearMemory", "linear_memory"]


class LinearMemory(NamedTuple):
    """Stationary second moments of :func:`linear_memory` (arrays of ``lam``'s broadcast shape).

    Fields:
      var_h: ``E|h_t|^2`` (``E[h_t^2]`` for real ``lam``), in units of the input variance.
      var_dh: ``E|dh_t / dlambda|^2``, the squared sensitivity to ``lambda``.
      ratio: ``var_dh / var_h``, the normalised sensitivity of the paper.
    """

    var_h: jax.Array
    var_dh: jax.Array
    ratio: jax.Array


def _check(value, argument: str, *, allow_complex: bool) -> None:
    """Concrete, finite values with modulus < 1 (NaN passes: NaN in, NaN out)."""
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, bool | str | bytes) or value is None:
        raise TypeError(f"{argument} must be a number or an array of numbers, got {value!r}.")
    arr = np.asarray(value)
    kinds = "iufc" if allow_complex else "iuf"
    kind = validation.dtype_kind(arr.dtype)  # bfloat16 is "f", not NumPy's "V"
    if kind not in kinds:
        what = "real or complex" if allow_complex else "real"
        raise TypeError(f"{argument} must be {what} numbers, got dtype {arr.dtype}.")
    arr = arr.astype(np.complex128 if kind == "c" else np.float64)
    finite = arr[~np.isnan(arr)] if kind != "c" else arr[~np.isnan(arr.real + arr.imag)]
    if finite.size == 0:
        return
    if not np.all(np.isfinite(finite)):
        raise ValueError(f"{argument} must be finite, got {value!r}.")
    bad = np.abs(finite) >= 1
    if np.any(bad):
        why = (
            "|rho| >= 1 has no stationary unit-variance input"
            if argument == "rho"
            else "|lam| >= 1 has no stationary state"
        )
        first = finite[bad].ravel()[0]
        raise ValueError(f"{argument} must have modulus < 1 ({why}), got {first!r}.")


def linear_memory(lam, rho=0.0) -> LinearMemory:
    """Closed forms of ``E|h|^2`` and ``E|dh/dlambda|^2`` for ``h_t = lam h_{t-1} + x_t``.

    .. math::

       E|h|^2 = \\frac{1}{1 - |\\lambda|^2}\\,
                \\mathrm{Re}\\frac{1 + \\lambda\\rho}{1 - \\lambda\\rho}, \\qquad
       E\\Big|\\frac{dh}{d\\lambda}\\Big|^2 = g^2 \\Big[
          2\\,\\mathrm{Re}\\frac{\\lambda\\rho}{(1 - \\lambda\\rho)^2}
          + \\mathrm{Re}\\frac{1 + \\lambda\\rho}{1 - \\lambda\\rho}\\,
            \\frac{1 + |\\lambda|^2}{1 - |\\lambda|^2} \\Big],
       \\quad g = \\frac{1}{1 - |\\lambda|^2}

    with ``x_t`` stationary AR(1), unit variance, ``E[x_t x_{t-k}] = rho^|k|``
    (``rho = 0``: white noise, ``E h^2 = 1/(1 - lam^2)``,
    ``E (dh/dlam)^2 = (1 + lam^2)/(1 - lam^2)^3``, the paper's eq. (4)).

    Derivation. ``h_t = sum_i lam^i x_{t-i}`` and ``dh_t/dlam = sum_i i lam^(i-1)
    x_{t-i}``. Treat ``a = lam`` and ``b = conj(lam)`` as independent and sum
    the double series ``S(a, b) = sum_{i,j>=0} a^i b^j rho^|i-j|`` along the
    diagonals ``d = |i - j|``: ``S = (f(a) + f(b) - 1) / (1 - a b)`` with
    ``f(a) = 1 / (1 - a rho)``. Then ``E|h|^2 = S(lam, conj lam)`` and, ``h``
    being holomorphic in ``lam``, ``E|dh/dlam|^2 = d^2 S / da db`` at the same
    point, which is the second formula (``f'(a) = rho / (1 - a rho)^2``,
    ``d^2/da db (1 - ab)^-1 = g^2 + 2 ab g^3``).

    Complex ``lam``: the moments are ``E|h|^2`` and ``E|dh/dlambda|^2`` with the
    complex derivative; ``h`` is holomorphic, so the derivatives with respect
    to ``Re lambda`` and ``Im lambda`` have the same modulus (the carry
    ``[Re h, Im h]`` of a real implementation has exactly these squared norms).
    ``rho`` is real (a real input).

    Args:
      lam: ``lambda``, a real or complex scalar or array, ``|lam| < 1``.
      rho: the input's lag-one autocorrelation, real, ``|rho| < 1`` (broadcast
        against ``lam``).

    Returns:
      :class:`LinearMemory` (float arrays of the broadcast shape), units of the
      input variance (``var_h``, ``var_dh``) and ``1/lambda^2`` (``ratio``).
      NaN in either argument gives NaN.

    Raises:
      ValueError: ``|lam| >= 1`` (no stationary state) or ``|rho| >= 1`` (no
        stationary input), or infinite values, naming the argument and the value.
      TypeError: ``lam`` / ``rho`` not numbers (``rho`` complex).

    Example::

        >>> m = jrnn.theory.linear_memory(0.9)
        >>> round(float(m.var_h), 4), round(float(m.var_dh), 2)   # 1/0.19, 1.81/0.19^3
        (5.2632, 263.89)
    """
    _check(lam, "lam", allow_complex=True)
    _check(rho, "rho", allow_complex=False)
    lam = jnp.asarray(lam)
    rho = jnp.asarray(rho)
    if lam.dtype.kind in "iub":
        lam = lam.astype(jnp.result_type(float))
    if rho.dtype.kind in "iub":
        rho = rho.astype(jnp.result_type(float))
    try:
        lam, rho = jnp.broadcast_arrays(lam, rho)
    except ValueError:
        raise ValueError(f"lam and rho must broadcast together, got shapes {lam.shape} and "
                         f"{rho.shape}.") from None
    # Arrays, not dtypes: a Python-scalar rho (weakly typed) keeps a float32 lam float32.
    real_dtype = jnp.result_type(jnp.real(lam), rho)
    lam_c = lam.astype(jnp.result_type(real_dtype, jnp.complex64))
    m2 = jnp.real(lam_c * jnp.conj(lam_c))
    g = 1.0 / (1.0 - m2)
    lr = lam_c * rho
    re_f = jnp.real((1.0 + lr) / (1.0 - lr))  # Re (2 f(lam) - 1) = f(a) + f(b) - 1
    var_h = g * re_f
    var_dh = g**2 * (2.0 * jnp.real(lr / (1.0 - lr) ** 2) + re_f * (1.0 + m2) * g)
    var_h = var_h.astype(real_dtype)
    var_dh = var_dh.astype(real_dtype)
    return LinearMemory(var_h, var_dh, var_dh / var_h)

