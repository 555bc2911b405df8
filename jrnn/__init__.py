"""jrnn: measure vanishing and exploding gradients in recurrent networks, exactly and fast.

Pure-function RNN cells run with ``jax.lax.scan``; activations with their
analytic properties; exact per-step Jacobians, spectra, gradient propagation,
Lyapunov spectra and mean-field theory; optax training on long-memory tasks.
"""

from jrnn import (
    activations,
    cells,
    checkpoint,
    diagnostics,
    flossing,
    host,
    initializers,
    interop,
    linalg,
    models,
    monitor,
    newton,
    nnx,
    parallel,
    penalties,
    plot,
    prediction,
    tasks,
    testing,
    theory,
    train,
    unrolling,
    validation,
)
from jrnn.cells import Cell, stack, wrap
from jrnn.prediction import predict
from jrnn.unrolling import Associative, Bidirectional, Fused, Scan, bidirectional, unroll
from jrnn.unrolling.newton import Newton

__version__ = "0.1.0"

__all__ = [
    "Associative",
    "Bidirectional",
    "Cell",
    "Fused",
    "Newton",
    "Scan",
    "__version__",
    "activations",
    "bidirectional",
    "cells",
    "checkpoint",
    "diagnostics",
    "flossing",
    "host",
    "initializers",
    "interop",
    "linalg",
    "models",
    "monitor",
    "newton",
    "nnx",
    "parallel",
    "penalties",
    "plot",
    "predict",
    "prediction",
    "stack",
    "tasks",
    "testing",
    "theory",
    "train",
    "unroll",
    "unrolling",
    "validation",
    "wrap",
]
