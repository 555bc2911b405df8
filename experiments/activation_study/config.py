"""The activation study's configuration: its typed config, presets and the cells it compares."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jrnn
from jrnn import cells

NAME = "activation_study"
RESIDUAL_ALPHA = 0.5
INPUT_SIZE = 1  # the propagation / spectra / Lyapunov drive: x_t ~ N(0, 1), one feature
VANISHED = -20.0  # ln-norm below which a gradient is numerically gone (e^-20 ~ 2e-9)
GRU_GATE_BIAS = 3.0  # update-gate bias of the "gru-gate-bias" row: z = sigmoid(3) ~ 0.95
SIGNIFICANCE = 2.0  # a difference is stated as a finding only beyond this many standard errors


def _scaled(n_gain: float = 1.0):
    return jrnn.initializers.scaled_normal(n_gain)


def _with_update_gate_bias(cell: jrnn.Cell, bias: float) -> jrnn.Cell:
    """The GRU with its update-gate input bias (the z slice of ``b_xh``) initialised to ``bias``."""
    n, base = cell.hidden_size, cell.init

    def init(key, input_size):
        p = base(key, input_size)
        return dict(p, b_xh=p["b_xh"].at[n:2 * n].set(bias))

    return cell._replace(init=init)


# Remedy name -> (hidden -> Cell, description), in the order of the report.
REMEDY_CELLS: dict[str, tuple[Callable[[int], jrnn.Cell], str]] = {
    "residual": (lambda n: cells.residual(n, "tanh", RESIDUAL_ALPHA, recurrent_init=_scaled()),
                 f"h + {RESIDUAL_ALPHA} tanh(W h + U x + b), W ~ N(0, 1/n)"),
    "leaky": (lambda n: cells.leaky(n, "tanh", dt=0.1, recurrent_init=_scaled()),
              "rate network (1 - dt) h + dt tanh(W h + U x + b), dt = 0.1"),
    "irnn": (lambda n: cells.irnn(n), "ReLU, W_hh = I (Le et al. 2015)"),
    "indrnn": (lambda n: cells.indrnn(n), "ReLU, diagonal recurrent weights (Li et al. 2018)"),
    "lstm": (lambda n: cells.lstm(n), "forget bias 1, orthogonal W per gate"),
    "gru": (lambda n: cells.gru(n), "PyTorch/cuDNN gates, zero biases"),
    "gru-gate-bias": (lambda n: _with_update_gate_bias(cells.gru(n), GRU_GATE_BIAS),
                      f"GRU with update-gate bias +{GRU_GATE_BIAS:g} (z ~ 0.95)"),
    "min_gru": (lambda n: cells.min_gru(n), "minGRU (Feng et al. 2024), linear recurrence"),
    "lru": (lambda n: cells.lru(n, r_min=0.9, r_max=0.999),
            "LRU, |lambda| in [0.9, 0.999] (Orvieto et al. 2023)"),
    "antisymmetric": (lambda n: cells.antisymmetric(n), "AntisymmetricRNN (Chang et al. 2019)"),
    "cornn": (lambda n: cells.cornn(n), "coupled oscillatory RNN (Rusch & Mishra 2021)"),
    "lem": (lambda n: cells.lem(n), "long expressive memory (Rusch et al. 2022)"),
    "orthogonal": (lambda n: cells.orthogonal(n),
                   "W_hh = expm(skew), tanh (Lezcano-Casado & Martinez-Rubio 2019)"),
    "mgu": (lambda n: cells.mgu(n), "minimal gated unit (Zhou et al. 2016)"),
    "lipschitz": (lambda n: cells.lipschitz(n), "Lipschitz RNN (Erichson et al. 2021)"),
}
REMEDIES = tuple(REMEDY_CELLS)


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes, budgets and the configurations the activation study measures."""

    hidden: int = 64
    """width of the cells measured at initialisation"""
    T: int = 100
    """sequence length of the propagation and Jacobian measurements"""
    sequences: int = 4
    """input sequences per seed"""
    seeds: int = 3
    """networks per configuration (seeds run as one sharded program)"""
    lyap_T: int = 300
    """steps of each Lyapunov trajectory"""
    lyap_warmup: int = 100
    """warm-up steps before the Lyapunov average"""
    train_hidden: int = 32
    """width of the cells trained on the adding problem"""
    train_T: int = 30
    """adding-problem sequence length"""
    train_batch: int = 32
    """training batch size"""
    train_steps: int = 1000
    """Adam steps per configuration"""
    lr: float = 1e-2
    """Adam learning rate"""
    clip: float = 1.0
    """global-norm gradient clipping"""
    eval_size: int = 256
    """held-out adding sequences"""
    checkpoint_every: int = 500
    """steps between training checkpoints"""
    activations: tuple[str, ...] | None = None
    """Elman activations (registered names); None: every registered one at run time"""
    cells: tuple[str, ...] = REMEDIES
    """remedy cells (any of the defaults)"""
    train: bool = True
    """train every configuration on the adding problem"""

    def __post_init__(self):
        if self.activations is not None:
            if not self.activations:
                raise ValueError("activations must name at least one, got ().")
            for a in self.activations:
                jrnn.activations.get(a)  # raises with the nearest names
            object.__setattr__(self, "activations", tuple(dict.fromkeys(self.activations)))
        if not self.cells:
            raise ValueError("cells must name at least one, got ().")
        for name in self.cells:
            if name not in REMEDY_CELLS:
                raise ValueError(f"cells must be among {','.join(REMEDIES)}, got {name!r}.")
        object.__setattr__(self, "cells", tuple(dict.fromkeys(self.cells)))

    def measured(self) -> dict:
        """The sizes and budgets (``metrics.json``'s ``config``): every field but the selection."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("activations", "cells", "train")}


PRESETS = {
    "smoke": Config(
        hidden=6, T=12, sequences=2, seeds=2, lyap_T=20, lyap_warmup=5, train_hidden=4,
        train_T=6, train_batch=4, train_steps=4, lr=1e-2, clip=1.0, eval_size=8,
        checkpoint_every=2, activations=("sigmoid", "relu"), cells=("lstm",)),
    "default": Config(),
    "full": Config(
        hidden=256, T=500, sequences=16, seeds=8, lyap_T=2000, lyap_warmup=500,
        train_hidden=128, train_T=100, train_batch=64, train_steps=5000, lr=3e-3, clip=1.0,
        eval_size=1000, checkpoint_every=500),
}
DEFAULT_PRESET = "default"


def config_name(family: str, activation: str | None, init: str) -> str:
    return f"{family}-{activation}-{init}" if activation else family


def make_cell(family: str, activation: str | None, hidden: int) -> jrnn.Cell:
    """Elman cells with ``W_hh ~ N(0, 1/n)`` (rescaled by the gain later); remedies as built."""
    if family == "elman":
        return jrnn.cells.elman(hidden, activation, recurrent_init=_scaled())
    if family not in REMEDY_CELLS:
        raise ValueError(f"cells must be among {REMEDIES}, got {family!r}.")
    return REMEDY_CELLS[family][0](hidden)
