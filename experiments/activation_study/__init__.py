"""The activation study: how the activation function and the cell decide whether gradients survive.

Every claim of the seed article, measured with error bars and set against theory. For each
registered activation in the Elman cell ``h_t = f(W_hh h_{t-1} + W_xh x_t + b_h)`` and for every
remedy cell jrnn has (residual, leaky/rate, IRNN, IndRNN, LSTM, GRU, minGRU, LRU, and the
oscillatory, antisymmetric and orthogonal cells where present, and a tanh network after
gradient flossing, Engelken 2023):

1. gradient propagation at initialisation: ``log ||d h_T / d h_t||`` against the lag ``T - t``
   over ``seeds x sequences`` networks and inputs (mean, standard error, median and quartiles),
   under the standard initialisation ``W_hh ~ N(0, 1/n)`` and the *input-aware* critical one
   ``N(0, g*^2 / n)``, where ``g*`` solves ``chi = 1`` for the network as it is driven: the
   pre-activation variance includes ``sigma_u^2 = Var[(W_xh x_t)_i]``
   (:func:`jrnn.theory.critical_gain`);
2. the singular values of the per-step Jacobians ``J_t``;
3. the largest Lyapunov exponent (one trajectory per sequence and seed, from a random state,
   after a warm-up) with its standard error, at the study's width and again at ``lyap_hidden``
   (256; ``k = 1`` streamed) where the mean field applies, next to the theory prediction and
   the Pascanu bound ``sup|f'| * sigma_max(W_hh)``;
4. a training run on the adding problem at ``train_T`` = 150 (seeds vmapped into one program)
   for the configurations the claims are about (``Config.trained``): held-out loss against
   the 1/6 baseline with its spread over seeds, and ``||dL/dh_t||`` over ``t``;
5. dead and saturated unit fractions before and after training;
6. ``report.md`` whose verdicts are computed from these numbers, one function per claim in
   :mod:`.verdicts` ("confirmed", "not confirmed", "depends on ...", "not tested at this
   length"), ``metrics.json`` with every number and its standard error, PNG plots, a
   "How this was run" section, and a summary table in the terminal.

Run ``python -m experiments.activation_study`` (about 10 minutes on an idle 2-core CPU; a
progress bar per stage); ``--preset quick`` for a few-minute version; ``--preset full``
for publication-scale sizes (sharded over all devices by :func:`jrnn.parallel.sweep`),
``--activations relu tanh`` and ``--cells lstm gru`` for subsets, ``--no-train`` to skip training;
``--help`` lists every field of the config. Activations you register with
:func:`jrnn.activations.register` before calling :func:`main` are included.

The package: :mod:`.config` (the typed config, presets and cells), :mod:`.measure`
(measurements), :mod:`.verdicts` (one function per claim), :mod:`.plots`, :mod:`.report`
(``report_template.md`` filled in) and :mod:`.study` (:func:`main`).
"""

from experiments.activation_study.study import main

__all__ = ["main"]
