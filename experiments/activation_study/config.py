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
# |lambda_max| within this (nats per step) of 0, plus SIGNIFICANCE stderr, is "at the edge of
# chaos": a gradient then changes by at most e^{+-2} ~ 7x (under one decade) over 100 steps.
EDGE_TOLERANCE = 0.02
# A training run diverged when its held-out loss ends non-finite or above this many times the
# baseline of always predicting the mean (which any network reaches within a few steps).
DIVERGED_FACTOR = 2.0
# A network "keeps" its gradient when |log10 ||d s_T / d s_0||| stays below this at lag T.
KEPT_DECADES = 3.0


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
    "flossed": (lambda n: cells.elman(n, "tanh", recurrent_init=_scaled()),
                "Elman tanh, W ~ N(0, 1/n), then gradient flossing (Engelken 2023): Adam on "
                "mean_i lambda_i^2 over the k leading Lyapunov exponents before any use"),
}
REMEDIES = tuple(REMEDY_CELLS)
# Families whose parameters are transformed after ``cell.init`` (see measure.init_params).
FLOSSED = ("flossed",)
# The configurations the default run trains: those the claims are about (the vanishing
# reference elman-tanh, ReLU for dying units, the gated and residual remedies, the flossed net).
TRAINED = ("elman-tanh-standard", "elman-relu-standard", "residual", "irnn", "lstm", "gru",
           "gru-gate-bias", "flossed")


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
    lyap_T: int = 600
    """steps of each Lyapunov trajectory"""
    lyap_warmup: int = 100
    """warm-up steps before the Lyapunov average"""
    lyap_hidden: int = 256
    """width at which lambda_max is measured against the mean field (k = 1, streamed)"""
    train_hidden: int = 32
    """width of the cells trained on the adding problem"""
    train_T: int = 150
    """adding-problem sequence length (Le et al. 2015 use 150-400)"""
    train_batch: int = 32
    """training batch size"""
    train_steps: int = 1500
    """Adam steps per configuration"""
    lr: float = 1e-2
    """Adam learning rate"""
    clip: float = 1.0
    """global-norm gradient clipping"""
    eval_size: int = 256
    """held-out adding sequences"""
    checkpoint_every: int = 500
    """steps between training checkpoints"""
    floss_steps: int = 150
    """flossing updates (Adam) of the flossed row, before it is measured or trained"""
    floss_k: int = 4
    """Lyapunov exponents flossed towards 0"""
    floss_lr: float = 1e-2
    """flossing learning rate"""
    floss_T: int = 60
    """steps of the flossing input sequences (after floss_warmup)"""
    floss_warmup: int = 20
    """warm-up steps of the flossing penalty"""
    floss_batch: int = 4
    """sequences per flossing update"""
    activations: tuple[str, ...] | None = None
    """Elman activations (registered names); None: every registered one at run time"""
    cells: tuple[str, ...] = REMEDIES
    """remedy cells (any of the defaults)"""
    train: bool = True
    """train on the adding problem"""
    trained: tuple[str, ...] | None = TRAINED
    """configurations trained (names as in the report); None: every standard one"""

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
        if self.trained is not None:
            object.__setattr__(self, "trained", tuple(dict.fromkeys(self.trained)))

    def measured(self) -> dict:
        """The sizes and budgets (``metrics.json``'s ``config``): every field but the selection."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("activations", "cells", "train", "trained")}

    def trains(self, name: str) -> bool:
        """Whether configuration ``name`` (e.g. ``"elman-tanh-standard"``) is trained."""
        return self.train and (self.trained is None or name in self.trained)


PRESETS = {
    "smoke": Config(
        hidden=6, T=12, sequences=2, seeds=2, lyap_T=20, lyap_warmup=5, lyap_hidden=8,
        train_hidden=4, train_T=6, train_batch=4, train_steps=4, lr=1e-2, clip=1.0, eval_size=8,
        checkpoint_every=2, floss_steps=2, floss_k=2, floss_T=6, floss_warmup=2, floss_batch=2,
        activations=("sigmoid", "relu"), cells=("lstm", "flossed"), trained=None),
    "quick": Config(
        hidden=32, T=60, sequences=3, seeds=2, lyap_T=200, lyap_warmup=50, lyap_hidden=64,
        train_hidden=16, train_T=40, train_batch=16, train_steps=200, eval_size=64,
        checkpoint_every=100, floss_steps=30, floss_T=30, floss_warmup=10,
        activations=("tanh", "sigmoid", "relu", "identity"),
        cells=("residual", "irnn", "lstm", "gru", "gru-gate-bias", "flossed")),
    "default": Config(),
    "full": Config(
        hidden=256, T=500, sequences=16, seeds=8, lyap_T=2000, lyap_warmup=500,
        lyap_hidden=512, train_hidden=128, train_T=400, train_batch=64, train_steps=10000,
        lr=3e-3, clip=1.0, eval_size=1000, checkpoint_every=500, floss_steps=500, floss_k=16,
        floss_T=200, floss_warmup=50, floss_batch=8, trained=None),
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
