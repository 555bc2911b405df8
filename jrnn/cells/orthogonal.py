"""Elman cell with an exactly orthogonal recurrent matrix (expRNN, Cayley).

``W_hh`` is never stored: it is a function of an unconstrained matrix ``A``
whose skew-symmetric part ``S = (A - A^T) / 2`` is mapped onto the special
orthogonal group, so any gradient step on ``A`` leaves ``W_hh`` orthogonal to
float rounding (Lezcano-Casado & Martinez-Rubio 2019, "Cheap orthogonal
constraints in neural networks", expRNN; Helfrich, Willmott & Ye 2018, scoRNN,
for the Cayley map):

.. math::

   W_{hh} = \\exp(S) \\;\\text{(expm)} \\quad\\text{or}\\quad
   W_{hh} = (I + S)^{-1} (I - S) \\;\\text{(cayley)},

   h_t = f(W_{hh} h_{t-1} + W_{xh} x_t + b_h), \\qquad
   J_t = \\mathrm{diag}(f'(a_t)) W_{hh}.

Every singular value of ``W_hh`` is exactly 1, so ``||J_t|| <= sup|f'|`` and
the only loss of gradient is the activation's (e.g. none on active ReLU/
``modrelu``-like units, ``f'`` on tanh units).

Cost: ``W_hh`` is recomputed from ``A`` inside each step (one ``expm`` or one
``n x n`` solve); cheap for the sizes diagnostics use, a factor for long
training runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import activations as _activations
from jrnn import initializers as inits
from jrnn.cells._core_fields import check_input_size, float_spec, input_size_of, zeros_carry
from jrnn.cells._pointwise import largest_singular_value, pascanu_step_bound
from jrnn.cells.base import Cell, Linearization, Pointwise
from jrnn.validation import check_int

__all__ = ["exprnn", "orthogonal"]

PARAMETRIZATIONS = ("expm", "cayley")
SKEW_INITS = ("henaff", "cayley")


def _skew(A):
    return 0.5 * (A - A.T)


def _block_skew(s, n: int, dtype):
    """Block-diagonal skew matrix with 2x2 blocks ``[[0, s_i], [-s_i, 0]]``."""
    A = jnp.zeros((n, n), dtype)
    idx = jnp.arange(len(s))
    A = A.at[2 * idx, 2 * idx + 1].set(s)
    return A.at[2 * idx + 1, 2 * idx].set(-s)


def _generator_from_orthogonal(W0: np.ndarray, parametrization: str) -> np.ndarray:
    """The skew ``S`` with ``map(S) = W0`` (``logm`` or the inverse Cayley map)."""
    import scipy.linalg

    n = W0.shape[0]
    eye = np.eye(n)
    if parametrization == "expm":
        S = np.real(scipy.linalg.logm(W0))
    else:
        S = np.linalg.solve((eye + W0).T, (eye - W0).T).T  # (I - W)(I + W)^{-1}
    return 0.5 * (S - S.T)


def _check_init(init, n: int, parametrization: str):
    if isinstance(init, str):
        if init not in SKEW_INITS:
            raise ValueError(
                f"init must be one of {SKEW_INITS} or an orthogonal (n, n) array, got {init!r}."
            )
        return init
    W0 = np.asarray(init, dtype=np.float64)
    if W0.shape != (n, n):
        raise ValueError(
            f"init must be a square ({n}, {n}) orthogonal matrix for hidden_size={n}, "
            f"got shape {W0.shape}."
        )
    err = float(np.max(np.abs(W0.T @ W0 - np.eye(n))))
    if not np.isfinite(err) or err > 1e-5:
        raise ValueError(
            f"init must be orthogonal (max |W^T W - I| <= 1e-5), got max |W^T W - I| = {err:.3g}."
        )
    det = float(np.linalg.det(W0))
    if det < 0:
        raise ValueError(
            f"init must have determinant +1 (the {parametrization!r} map reaches only SO(n)), "
            f"got det = {det:.3g}; flip the sign of one column."
        )
    eig = np.linalg.eigvals(W0)
    if parametrization == "cayley" and np.min(np.abs(eig + 1.0)) < 1e-6:
        raise ValueError(
            "init must have no eigenvalue -1 for parametrization='cayley' (the Cayley map "
            f"cannot reach it), got an eigenvalue within {np.min(np.abs(eig + 1.0)):.1e} of -1."
        )
    S = _generator_from_orthogonal(W0, parametrization)
    # The principal logarithm of W0 is not real when W0 has the eigenvalue -1
    # (e.g. W0 = -I): the skew part of its real part then maps to another matrix.
    if parametrization == "expm":
        import scipy.linalg

        back = scipy.linalg.expm(S)
    else:
        back = np.linalg.solve(np.eye(n) + S, np.eye(n) - S)
    miss = float(np.max(np.abs(back - W0)))
    if not miss <= 1e-4:
        raise ValueError(
            f"init: no real skew generator S with {parametrization}(S) = init was found "
            f"(max |{parametrization}(S) - init| = {miss:.3g}; an eigenvalue -1 of init has no "
            "real principal logarithm); perturb init or pass init='henaff'."
        )
    return S


def orthogonal(
    hidden_size: int,
    activation="tanh",
    *,
    parametrization: str = "expm",
    init="henaff",
    input_init=None,
    bias_init=inits.zeros,
) -> Cell:
    """Elman cell whose ``W_hh`` is orthogonal by construction (params ``A``, not ``W_hh``).

    Args:
      hidden_size: ``n``.
      activation: a registered name or Activation.
      parametrization: ``"expm"`` (expRNN, ``W = exp(S)``) or ``"cayley"``
        (scoRNN, ``W = (I + S)^{-1} (I - S)``), ``S = (A - A^T) / 2``.
      init: initial ``A``: ``"henaff"`` (expRNN's default: 2x2 rotation blocks,
        angles ``U[-pi, pi]``, Henaff, Szlam & LeCun 2016), ``"cayley"``
        (scoRNN's: ``s_i = -sqrt((1 - cos t_i) / (1 + cos t_i))``,
        ``t_i ~ U[0, pi/2]``), or an ``(n, n)`` orthogonal matrix ``W0`` with
        ``det W0 = +1`` (then ``A`` is its generator and ``W_hh = W0`` at init).
      input_init, bias_init: initialisers for ``W_xh (n, d)`` (default Glorot
        uniform) and ``b_h (n,)``.

    Raises:
      ValueError: unknown ``parametrization`` or ``init``; an ``init`` matrix
        that is not square ``(n, n)``, not orthogonal, of determinant -1, or
        with an eigenvalue -1 (Cayley; expm: when its generator is not real,
        e.g. ``-I``). Messages name the argument, what came
        and what was expected.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> cell = jrnn.cells.orthogonal(6, "tanh")
        >>> W = cell.pointwise.recurrent_matrix(cell.init(jax.random.key(0), 2))
        >>> bool(jnp.allclose(W.T @ W, jnp.eye(6), atol=1e-5))
        True
    """
    n = check_int(hidden_size, "hidden_size", low=1)
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}."
        )
    skew_init = _check_init(init, n, parametrization)
    act = _activations.get(activation)
    f, df = act.fn, act.derivative
    input_init = input_init or inits.glorot_uniform()

    def init_A(key, dtype):
        m = n // 2
        if isinstance(skew_init, np.ndarray):
            return jnp.asarray(skew_init, dtype)
        if skew_init == "henaff":
            s = jax.random.uniform(key, (m,), dtype, -jnp.pi, jnp.pi)
        else:
            t = jax.random.uniform(key, (m,), dtype, 0.0, jnp.pi / 2)
            s = -jnp.sqrt((1.0 - jnp.cos(t)) / (1.0 + jnp.cos(t)))
        return _block_skew(s, n, dtype)

    def init_fn(key, input_size):
        d = check_input_size(input_size)
        k_x, k_a, k_b = jax.random.split(key, 3)
        W_xh = input_init(k_x, (n, d))
        return {"W_xh": W_xh, "A": init_A(k_a, W_xh.dtype), "b_h": bias_init(k_b, (n,))}

    def recurrent_matrix(params):
        S = _skew(params["A"])
        if parametrization == "expm":
            return jax.scipy.linalg.expm(S)
        eye = jnp.eye(n, dtype=S.dtype)
        return jnp.linalg.solve(eye + S, eye - S)

    def input_map(params, x):
        return params["W_xh"] @ x + params["b_h"]

    def preactivation(params, h, u):
        return recurrent_matrix(params) @ h + u

    def recur(params, h, u):
        h_new = f(preactivation(params, h, u))
        return h_new, h_new

    def jacobian(params, h, u):
        W = recurrent_matrix(params)
        return df(W @ h + u)[:, None] * W

    def tangent(params, h, u, V):
        W = recurrent_matrix(params)
        return df(W @ h + u)[:, None] * (W @ V)

    step_bound = pascanu_step_bound(act, largest_singular_value(recurrent_matrix))
    return Cell(
        name="orthogonal", hidden_size=n, state_size=n,
        init=init_fn, initial_carry=zeros_carry(n, "A"), input_map=input_map, recur=recur,
        input_size=input_size_of("W_xh"),
        param_spec=lambda d: float_spec(W_xh=(n, d), A=(n, n), b_h=(n,)),
        config=(("activation", act.name), ("parametrization", parametrization),
                ("init", init if isinstance(init, str) else "matrix")),
        linear=Linearization(jacobian, tangent),
        pointwise=Pointwise(act, preactivation, recurrent_matrix, step_bound),
    )  # fmt: skip


def exprnn(hidden_size: int, activation="tanh", **kwargs) -> Cell:
    """expRNN (Lezcano-Casado & Martinez-Rubio 2019): :func:`orthogonal` with ``expm``.

    Example::

        >>> import jrnn
        >>> jrnn.cells.exprnn(4).describe()
        'orthogonal(hidden_size=4, activation=tanh, parametrization=expm, init=henaff)'
    """
    if kwargs.get("parametrization", "expm") != "expm":
        raise ValueError(
            f"exprnn uses parametrization='expm', got {kwargs['parametrization']!r}; "
            "use jrnn.cells.orthogonal for 'cayley'."
        )
    return orthogonal(hidden_size, activation, **kwargs)
