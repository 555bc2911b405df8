"""The contract every experiment follows, and the helpers that implement it.

An experiment is a module ``experiments/NAME.py`` with small constants at the
top and a ``main(argv=None)``; importing it has no side effects. It runs as::

    python -m experiments.NAME [--quick] [--seed N] [--out DIR]
                               [--coordinator-address HOST:PORT --num-processes P --process-id I]

and writes into ``DIR`` (default ``results/NAME/``):

* ``metrics.json`` — results only: numbers (and the strings / lists / dicts
  holding them), keys sorted, non-finite numbers written as ``null``; no
  timestamps or timings, so two runs with the same seed give the same file;
* ``run_info.json`` — what is *not* reproducible: wall time, machine, versions;
* ``report.md`` — the human-readable report, with PNG figures beside it;
* ``checkpoints/`` — training checkpoints; rerunning after an interruption
  resumes from them (see :func:`checkpoint_dir`).

A hidden ``--smoke`` flag selects a tiny configuration for the test suite.

Typical use::

    def main(argv=None):
        args = common.parse_args("long_sequence", __doc__, argv)
        cfg = SMOKE if args.smoke else QUICK if args.quick else FULL
        ...
        common.write_metrics(args.out, metrics)
        common.write_report(args.out, text)
        common.write_run_info(args.out, wall_time=...)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "add_common_args",
    "checkpoint_dir",
    "format_table",
    "init_distributed",
    "markdown_table",
    "parse_args",
    "print_table",
    "progress",
    "pyplot",
    "save_figure",
    "write_metrics",
    "write_report",
    "write_run_info",
]

RESULTS_ROOT = "results"


def add_common_args(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """Adds ``--quick --seed --out --smoke`` and the multi-host flags to ``parser``."""
    parser.add_argument("--quick", action="store_true",
                        help="a reduced configuration that runs in minutes on a laptop CPU")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--out", default=None,
                        help=f"output directory (default {RESULTS_ROOT}/{name}/)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    group = parser.add_argument_group("multi-host (jax.distributed.initialize)")
    group.add_argument("--coordinator-address", default=None, help="HOST:PORT of process 0")
    group.add_argument("--num-processes", type=int, default=None)
    group.add_argument("--process-id", type=int, default=None)
    return parser


def parse_args(
    name: str,
    description: str | None,
    argv: Sequence[str] | None = None,
    extra: Any = None,
) -> argparse.Namespace:
    """Parses the common flags (plus ``extra(parser)`` ones), fills ``args.out``,
    creates it, and initialises multi-host JAX when asked.

    Args:
      name: the experiment's name (default output ``results/NAME``).
      description: shown by ``--help`` (the module docstring).
      argv: arguments without the program name; None reads ``sys.argv``.
      extra: optional ``parser -> None`` adding experiment-specific flags.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{name}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser, name)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    from jrnn import host

    host.configure_xla()  # before the first computation; importing sets nothing
    if args.out is None:
        args.out = os.path.join(RESULTS_ROOT, name)
    os.makedirs(args.out, exist_ok=True)
    args.name = name
    init_distributed(args)
    return args


def init_distributed(args: argparse.Namespace) -> bool:
    """Calls ``jax.distributed.initialize`` when any multi-host flag is given.

    Returns True if it initialised. All three flags are needed (JAX's
    auto-detection on a cluster is used only when none is given).
    """
    flags = (args.coordinator_address, args.num_processes, args.process_id)
    if all(f is None for f in flags):
        return False
    if any(f is None for f in flags):
        raise ValueError(
            "--coordinator-address, --num-processes and --process-id must be given together, "
            f"got {flags}."
        )
    import jax

    jax.distributed.initialize(
        coordinator_address=args.coordinator_address,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )
    return True


def checkpoint_dir(out: str, *parts: str) -> str:
    """``OUT/checkpoints/PART/...``: where a run's checkpoints live (one run per path)."""
    return os.path.join(out, "checkpoints", *parts)


def _clean(obj: Any, where: str = "metrics") -> Any:
    """Numbers-only JSON: ints, floats (non-finite -> None), bools, strings, lists, dicts."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "tolist"):  # numpy / jax arrays and scalars
        return _clean(obj.tolist(), where)
    raise ValueError(f"{where} must be a number, string, list or dict, got {type(obj).__name__}.")


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)


def write_metrics(out: str, metrics: dict) -> str:
    """Writes ``OUT/metrics.json`` (sorted keys, non-finite -> null); returns the path."""
    path = os.path.join(out, "metrics.json")
    _write_json(path, _clean(metrics))
    return path


def write_run_info(out: str, **info: Any) -> str:
    """Writes ``OUT/run_info.json``: ``info`` (e.g. ``wall_time_s``) plus machine and
    versions. Kept apart from ``metrics.json`` because none of it is reproducible."""
    import jax

    base = {
        "argv": sys.argv,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    base.update(info)
    path = os.path.join(out, "run_info.json")
    _write_json(path, _clean(base, "run_info"))
    return path


def write_report(out: str, text: str) -> str:
    """Writes ``OUT/report.md``; returns the path."""
    path = os.path.join(out, "report.md")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)
    return path


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str, name: str) -> str:
    """Saves ``fig`` as ``OUT/NAME.png`` (dpi 120), closes it, returns the file name."""
    plt = pyplot()
    fname = name if name.endswith(".png") else name + ".png"
    fig.savefig(os.path.join(out, fname), dpi=120, bbox_inches="tight")
    plt.close(fig)
    return fname


def progress(total: int, desc: str, **kwargs):
    """A tqdm progress bar (hidden when stderr is not a terminal, e.g. under pytest)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", None)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(total=total, desc=desc, **kwargs)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.3g}" if (v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4)) else f"{v:.4f}"
    return str(v)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (floats to 4 significant places)."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                               enumerate(zip(r, widths)))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None):
    """Prints :func:`format_table` (with an optional title) to stdout."""
    if title:
        print(f"\n{title}")
    print(format_table(headers, rows))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table as GitHub Markdown."""
    out = ["| " + " | ".join(str(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def train_seeds(
    model,
    input_size: int,
    generate,
    loss,
    *,
    seed: int,
    seeds: int,
    lr: float,
    clip: float | None,
    batch: int,
    steps: int,
    eval_size: int,
    eval_every: int,
    checkpoint_dir: str,
    checkpoint_every: int,
    config: dict,
    on_step=None,
):
    """Trains ``seeds`` copies of ``model`` as one vmapped program with Adam; resumable.

    Seed ``s`` is initialised from ``fold_in(key(seed), s)`` and draws its batches
    ``generate(key, batch) -> (x, y)`` from ``fold_in(key(seed + 1), s)``; the
    held-out batch comes from ``key(seed + 2)``. Non-finite updates are skipped
    per seed. Checkpoints go to ``checkpoint_dir`` (``config`` is their fingerprint).

    Returns:
      ``(params0, result, (x_eval, y_eval))``: the initial params (leading seed
      axis), the :class:`jrnn.train.FitResult` (eval history: per-seed held-out
      ``loss``) and the held-out batch.
    """
    import jax
    import jax.numpy as jnp
    import optax

    import jrnn

    opt = optax.adam(lr)
    step = jrnn.train.make_train_step(model.apply, loss, opt, clip_norm=clip,
                                      skip_nonfinite=True)
    vstep = jax.jit(jax.vmap(lambda st, key: step(st, generate(key, batch))))
    idx = jnp.arange(seeds)
    init_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(seed), s))(idx)
    data_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(seed + 1), s))(idx)
    params0 = jax.vmap(lambda k: model.init(k, input_size))(init_keys)
    states = jax.vmap(lambda p, r: jrnn.train.init_state(p, opt, r))(params0, data_keys)
    ex, ey = generate(jax.random.key(seed + 2), eval_size)
    veval = jax.jit(jax.vmap(lambda p: loss(model.apply(p, ex), ey)))
    result = jrnn.train.fit(
        vstep, states, lambda keys, t: keys, steps=steps,
        eval_fn=lambda p: {"loss": veval(p)}, eval_every=eval_every,
        callback=on_step, nan_guard=False, checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every, config=config,
    )
    return params0, result, (ex, ey)
