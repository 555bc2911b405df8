"""Long-memory tasks across sequence lengths: which cells learn, which do not.

The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015)
and the copy-memory task (Arjovsky, Shah & Bengio 2016) for the Elman RNN with
tanh and with ReLU, the IRNN (ReLU, identity-initialised), IndRNN, a residual
RNN, the LSTM and the GRU, and the cells designed against vanishing gradients
(leaky rate network, MGU, AntisymmetricRNN, coRNN, LEM, orthogonal/expRNN,
Lipschitz RNN), several seeds each (vmapped into one program).

For every task, length and cell the table gives the final held-out loss
against the memoryless baseline (1/6 for adding, ``10 ln 8 / (T + 20)`` for
copy), how many seeds solved it (held-out loss below ``SOLVED_FRACTION`` of the
baseline) and the median number of steps they needed — the presentation of Le
et al. 2015 (Fig. 2) and Arjovsky et al. 2016 (Fig. 1). A cell whose gradient
vanishes over ``T`` steps stays at the baseline.

``--preset quick`` (a few minutes on 2 CPU cores) uses short runs and lengths
where the difference already shows; without it, the paper-scale lengths (hours
on a CPU; checkpointed, so an interrupted run resumes where it stopped).
``--help`` lists every field of the config.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

import jrnn
from experiments import common

NAME = "long_sequence"
BASE_CELLS = ("elman-tanh", "elman-relu", "irnn", "indrnn", "residual", "lstm", "gru")
# Cells designed against vanishing gradients (jrnn.cells remedies), paper defaults unless noted.
REMEDY_CELLS = ("leaky", "mgu", "antisymmetric", "cornn", "lem", "orthogonal", "lipschitz")
CELLS = BASE_CELLS + REMEDY_CELLS
LEAKY_DT = 0.1  # rate network: each unit keeps 90% of its state per step
ANTISYMMETRIC = dict(eps=0.1, gamma=0.01)  # Chang et al. 2019 (eps from their grid)
SOLVED_FRACTION = 0.1  # solved: held-out loss < SOLVED_FRACTION * baseline
RESIDUAL_ALPHA = 0.1  # h_t = h_{t-1} + alpha tanh(...): small alpha keeps |J_t| near 1

COPY_SYMBOLS, COPY_LENGTH = 8, 10


@dataclasses.dataclass(frozen=True)
class Config:
    """Tasks, lengths, cells and training budget of the long-memory study."""

    adding_lengths: tuple[int, ...] = (150, 200, 300, 400)
    """adding-problem lengths T (Le et al. 2015)"""
    copy_delays: tuple[int, ...] = (100, 200, 300, 500)
    """copy-task delays T, sequence T + 20 (Arjovsky et al. 2016)"""
    seeds: int = 3
    """seeds per cell (vmapped)"""
    hidden: int = 128
    """hidden units"""
    batch: int = 32
    """training batch size"""
    steps: int = 20_000
    """Adam steps"""
    lr: float = 1e-3
    """Adam learning rate"""
    clip: float = 1.0
    """global-norm gradient clipping"""
    eval_every: int = 200
    """steps between held-out evaluations"""
    eval_size: int = 1000
    """held-out sequences"""
    checkpoint_every: int = 1000
    """steps between checkpoints"""
    cells: tuple[str, ...] = CELLS
    """cells compared"""
    copy_length: int = COPY_LENGTH
    """symbols to copy"""

    def __post_init__(self):
        if not self.cells:
            raise ValueError("cells must name at least one cell, got ().")
        for name in self.cells:
            if name not in CELLS:
                raise ValueError(f"cells must be among {CELLS}, got {name!r}.")


PRESETS = {
    "smoke": Config(adding_lengths=(6,), copy_delays=(3,), seeds=2, hidden=4, batch=4, steps=6,
                    lr=1e-2, clip=1.0, eval_every=3, eval_size=8, checkpoint_every=3,
                    cells=("elman-tanh",), copy_length=2),
    "quick": Config(adding_lengths=(10, 50), copy_delays=(10,), seeds=3, hidden=32, batch=32,
                    steps=800, lr=1e-2, clip=1.0, eval_every=50, eval_size=500,
                    checkpoint_every=200),
    "full": Config(),
}
DEFAULT_PRESET = "full"


def make_cell(name: str, hidden: int) -> jrnn.Cell:
    """The cell families compared, with their standard initialisations."""
    factories = {
        "elman-tanh": lambda: jrnn.cells.elman(hidden, "tanh"),
        "elman-relu": lambda: jrnn.cells.elman(hidden, "relu"),
        "irnn": lambda: jrnn.cells.irnn(hidden),
        "indrnn": lambda: jrnn.cells.indrnn(hidden),
        "residual": lambda: jrnn.cells.residual(hidden, "tanh", alpha=RESIDUAL_ALPHA),
        "lstm": lambda: jrnn.cells.lstm(hidden),
        "gru": lambda: jrnn.cells.gru(hidden),
        "leaky": lambda: jrnn.cells.leaky(hidden, "tanh", dt=LEAKY_DT),
        "mgu": lambda: jrnn.cells.mgu(hidden),
        "antisymmetric": lambda: jrnn.cells.antisymmetric(hidden, "tanh", **ANTISYMMETRIC),
        "cornn": lambda: jrnn.cells.cornn(hidden),  # dt=0.042, gamma=2.7, epsilon=4.7
        "lem": lambda: jrnn.cells.lem(hidden),  # dt=1
        "orthogonal": lambda: jrnn.cells.orthogonal(hidden, "tanh"),  # expRNN, henaff init
        "lipschitz": lambda: jrnn.cells.lipschitz(hidden),  # eps=0.03, beta=0.75
    }
    if name not in factories:
        raise ValueError(f"cell must be one of {sorted(factories)}, got {name!r}.")
    return factories[name]()


def task_spec(task: str, length: int, cfg: Config):
    """``(generate(key, batch) -> (x, y), input_size, output_size, sequences, loss, baseline)``."""
    if task == "adding":
        gen = lambda key, b: jrnn.tasks.adding(key, b, length)
        return gen, 2, 1, False, jrnn.tasks.mse, jrnn.tasks.ADDING_BASELINE
    if task == "copy":
        L = cfg.copy_length
        gen = lambda key, b: jrnn.tasks.copy_memory(key, b, length, COPY_SYMBOLS, L)
        base = jrnn.tasks.copy_baseline(length, COPY_SYMBOLS, L)
        return (gen, COPY_SYMBOLS + 2, COPY_SYMBOLS + 1, True,
                jrnn.tasks.sequence_cross_entropy, base)
    raise ValueError(f"task must be 'adding' or 'copy', got {task!r}.")


def run_one(task: str, length: int, cell_name: str, cfg: Config, seed: int, out: str,
            on_step=None) -> dict:
    """Trains ``cfg.seeds`` seeds of one cell on one task/length (vmapped); resumable.

    Returns per-seed final held-out losses, steps to solve, the held-out curve
    (mean over seeds) and the count of skipped non-finite updates.
    """
    gen, d_in, d_out, seqs, loss, baseline = task_spec(task, length, cfg)
    model = jrnn.models.rnn(make_cell(cell_name, cfg.hidden), d_out, return_sequences=seqs)
    S = cfg.seeds
    config = {"task": task, "length": length, "cell": cell_name, "seed": seed,
              **{k: (list(v) if isinstance(v, tuple) else v)
                 for k, v in dataclasses.asdict(cfg).items()}}
    _, result, _ = common.train_seeds(
        model, d_in, gen, loss, seed=seed, seeds=S, lr=cfg.lr, clip=cfg.clip,
        batch=cfg.batch, steps=cfg.steps, eval_size=cfg.eval_size,
        eval_every=cfg.eval_every,
        checkpoint_dir=common.checkpoint_dir(out, task, f"T{length}", cell_name),
        checkpoint_every=cfg.checkpoint_every, config=config, on_step=on_step,
    )
    ev_steps = result.eval_history["step"]
    ev = np.asarray(result.eval_history["loss"], dtype=np.float64)  # (E, S)
    threshold = SOLVED_FRACTION * baseline
    steps_to_solve = []
    for s in range(S):
        hit = np.nonzero(ev[:, s] < threshold)[0]
        steps_to_solve.append(int(ev_steps[hit[0]]) if hit.size else None)
    final = ev[-1]
    finite = np.asarray(result.history["finite"], dtype=bool)  # (steps, S)
    return {
        "baseline": baseline,
        "final_loss": final.tolist(),
        "final_loss_median": float(np.median(final)),
        "final_over_baseline": float(np.median(final) / baseline),
        "solved": int(np.sum(final < threshold)),
        "seeds": S,
        "steps_to_solve": steps_to_solve,
        "nonfinite_updates": (~finite).sum(axis=0).tolist(),
        "eval_step": list(ev_steps),
        "eval_loss_median": np.median(ev, axis=1).tolist(),
        "eval_loss_per_seed": ev.T.tolist(),  # (S, E): the figure's min-max band
    }


def _median_steps(steps: Sequence[int | None]) -> float | None:
    done = [s for s in steps if s is not None]
    return float(np.median(done)) if done else None


def table_rows(runs: dict) -> list[list]:
    """One row per task / length / cell for the terminal and Markdown tables."""
    rows = []
    for task, by_len in runs.items():
        for key, by_cell in by_len.items():
            for cell, r in by_cell.items():
                med = _median_steps(r["steps_to_solve"])
                rows.append([
                    task, int(key[1:]), cell, r["final_loss_median"], r["baseline"],
                    r["final_over_baseline"], f"{r['solved']}/{r['seeds']}",
                    "-" if med is None else int(med),
                ])
    return rows


HEADERS = ["task", "T", "cell", "final loss", "baseline", "loss/baseline", "solved",
           "steps to solve"]


def plot(runs: dict, out: str) -> list[str]:
    """One PNG per task: held-out loss vs step for every cell (``jrnn.plot.training``: median
    and min-max band over seeds), one panel per length."""
    import jrnn.plot

    files = []
    for task, by_len in runs.items():
        fig, axes = jrnn.plot.subplots(1, len(by_len), width=5.2, height=4.2)
        for ax, (key, by_cell) in zip(axes[0], by_len.items()):
            histories = {cell: [{"step": r["eval_step"], "loss": seed_loss}
                                for seed_loss in r["eval_loss_per_seed"]]
                         for cell, r in by_cell.items()}
            jrnn.plot.training(histories, "loss", ax=ax, log=True)
            base = next(iter(by_cell.values()))["baseline"]
            ax.axhline(base, color="k", ls="--", lw=1, label=f"baseline {base:.3g}")
            ax.axhline(SOLVED_FRACTION * base, color="gray", ls=":", lw=1,
                       label=f"solved (< {SOLVED_FRACTION:g} x baseline)")
            ax.set_title(f"{task}, T = {key[1:]}", fontsize=10)
            ax.set_ylabel("held-out loss (median over seeds; band: min-max)")
            ax.legend(fontsize=7, loc="best", framealpha=0.85)
        files.append(common.save_figure(fig, out, f"{task}_loss"))
    return files


def report(runs: dict, cfg: Config, mode: str, figures: list[str]) -> str:
    lines = [
        "# Long-memory tasks across lengths",
        "",
        f"Mode: {mode}. {cfg.seeds} seeds per cell (vmapped), hidden size {cfg.hidden}, "
        f"batch {cfg.batch}, {cfg.steps} Adam steps at learning rate {cfg.lr}, "
        f"global-norm clipping {cfg.clip}.",
        "",
        f"*Solved*: held-out loss below {SOLVED_FRACTION} x the memoryless baseline "
        "(adding: always answer 1, MSE 1/6; copy: blanks then a uniform guess, "
        "10 ln 8 / (T + 20)). *Steps to solve*: median first evaluation step below that "
        "line, over the seeds that reached it. Copy-task T is the delay (sequence T + 20).",
        "",
        common.table(HEADERS, table_rows(runs)),
        "",
    ]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Runs the study and writes metrics.json, report.md and PNGs under ``--out``."""
    args = common.parse(NAME, __doc__, PRESETS, DEFAULT_PRESET, argv)
    cfg, mode = args.config, args.preset
    plan = [("adding", T) for T in cfg.adding_lengths] + [
        ("copy", T) for T in cfg.copy_delays]
    t0 = time.perf_counter()
    bar = common.progress(len(plan) * len(cfg.cells) * cfg.steps, NAME)
    runs: dict = {}
    for task, T in plan:
        for cell in cfg.cells:
            bar.set_postfix_str(f"{task} T={T} {cell}")
            r = run_one(task, T, cell, cfg, args.seed, args.out, on_step=lambda s, m: bar.update())
            runs.setdefault(task, {}).setdefault(f"T{T}", {})[cell] = r
    bar.close()
    figures = plot(runs, args.out)
    metrics = {"mode": mode, "seed": args.seed, "solved_fraction": SOLVED_FRACTION,
               "config": {k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in dataclasses.asdict(cfg).items() if k != "cells"},
               "cells": list(cfg.cells), "runs": runs}
    common.write_metrics(args.out, metrics)
    common.write_report(args.out, report(runs, cfg, mode, figures))
    wall = time.perf_counter() - t0
    common.write_run_info(args, wall_time_s=wall, mode=mode)
    common.print_table(HEADERS, table_rows(runs), title=f"{NAME} ({mode}), {wall:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
