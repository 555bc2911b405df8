"""The contract every experiment follows, and the helpers that implement it.

An experiment is a module (or package) ``experiments/NAME`` with one frozen
dataclass ``Config`` of its settings, a dict ``PRESETS`` of named instances
(``smoke`` for the test suite, and ``quick`` / ``default`` / ``full`` where the
study has them), and a ``main(argv=None)``; importing it has no side effects.
It runs as::

    python -m experiments.NAME [--preset P] [--FIELD VALUE ...] [--seed N] [--out DIR]
                               [--coordinator-address HOST:PORT --num-processes P --process-id I]

``--help`` lists every field of the config with its value in the chosen preset
(``--preset full --help`` shows the full one); any field can be overridden and
an unknown flag is an error. It writes into ``DIR`` (default ``results/NAME/``):

* ``metrics.json`` — results only: numbers (and the strings / lists / dicts
  holding them), keys sorted, non-finite numbers written as ``null``; no
  timestamps or timings, so two runs with the same seed give the same file;
* ``run_info.json`` — how the numbers were made and what is *not*
  reproducible: the command line, the preset and full config, the seed, jrnn's
  git commit, package versions, the device, wall time (:func:`write_run_info`);
* ``report.md`` — the human-readable report, with PNG figures beside it;
* ``checkpoints/`` — training checkpoints; rerunning after an interruption
  resumes from them (see :func:`checkpoint_dir`).

Typical use::

    def main(argv=None):
        args = common.parse(NAME, __doc__, PRESETS, "default", argv)
        cfg = args.config
        ...
        common.write_metrics(args.out, metrics)
        common.write_report(args.out, text)
        common.write_run_info(args, wall_time_s=...)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

__all__ = [
    "Args",
    "Run",
    "checkpoint_dir",
    "init_distributed",
    "one_after_another",
    "parse",
    "print_table",
    "progress",
    "pyplot",
    "save_figure",
    "table",
    "write_metrics",
    "write_report",
    "write_run_info",
]

RESULTS_ROOT = "results"
# The packages whose versions run_info.json records.
PACKAGES = ("jrnn", "jax", "jaxlib", "flax", "optax", "chex", "numpy", "scipy")


@dataclasses.dataclass(frozen=True)
class Run:
    """The flags every experiment shares: where to write, the seed, multi-host JAX."""

    out: str | None = None
    """output directory (None: results/NAME/)"""
    seed: int = 0
    """base random seed: every key of the run derives from it"""
    coordinator_address: str | None = None
    """multi-host (jax.distributed.initialize): HOST:PORT of process 0"""
    num_processes: int | None = None
    """multi-host: the number of processes"""
    process_id: int | None = None
    """multi-host: this process's index"""


@dataclasses.dataclass(frozen=True)
class Args:
    """A parsed command line: the experiment, its preset, its config and the common flags."""

    name: str
    preset: str
    config: Any
    run: Run
    argv: tuple[str, ...]

    @property
    def out(self) -> str:
        return self.run.out

    @property
    def seed(self) -> int:
        return self.run.seed


def parse(
    name: str,
    description: str | None,
    presets: Mapping[str, Any],
    default: str,
    argv: Sequence[str] | None = None,
) -> Args:
    """Parses ``argv`` into one of ``presets`` (a frozen dataclass each) with any field
    overridden, plus the common :class:`Run` flags; creates the output directory,
    applies :func:`jrnn.host.configure_xla` and initialises multi-host JAX when asked.

    Args:
      name: the experiment's name (``python -m experiments.NAME``; default output
        ``results/NAME``).
      description: shown by ``--help`` (the module docstring).
      presets: preset name -> config instance (all of one dataclass type).
      default: the preset used without ``--preset``.
      argv: arguments without the program name; None reads ``sys.argv``.
    """
    import tyro

    argv = tuple(sys.argv[1:] if argv is None else argv)
    names = tuple(presets)
    if default not in presets:
        raise ValueError(f"default must be one of {names}, got {default!r}.")
    # The preset decides the defaults of every field, so it is read first; tyro then
    # parses the whole line again (an unknown preset is reported by tyro).
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset", default=default)
    chosen = pre.parse_known_args(argv)[0].preset
    chosen = chosen if chosen in presets else default
    config_type = type(presets[default])
    cli = dataclasses.make_dataclass(
        "Cli",
        [
            ("preset", Annotated[Literal[names], tyro.conf.arg(  # type: ignore[valid-type]
                help="the preset every field starts from (its values show below)")],
             dataclasses.field(default=chosen)),
            ("config", config_type, dataclasses.field(default=presets[chosen])),
            ("run", Run, dataclasses.field(default=Run())),
        ],
        frozen=True,
    )
    parsed = tyro.cli(
        cli, args=list(argv), prog=f"python -m experiments.{name}", description=description,
        config=(tyro.conf.OmitArgPrefixes,),
    )
    run = parsed.run
    if run.out is None:
        run = dataclasses.replace(run, out=os.path.join(RESULTS_ROOT, name))
    from jrnn import host

    host.configure_xla()  # before the first computation; importing sets nothing
    os.makedirs(run.out, exist_ok=True)
    init_distributed(run)
    return Args(name=name, preset=parsed.preset, config=parsed.config, run=run, argv=argv)


def init_distributed(run: Run) -> bool:
    """Calls ``jax.distributed.initialize`` when any multi-host flag is given.

    Returns True if it initialised. All three flags are needed (JAX's
    auto-detection on a cluster is used only when none is given).
    """
    flags = (run.coordinator_address, run.num_processes, run.process_id)
    if all(f is None for f in flags):
        return False
    if any(f is None for f in flags):
        raise ValueError(
            "--coordinator-address, --num-processes and --process-id must be given together, "
            f"got {flags}."
        )
    import jax

    jax.distributed.initialize(
        coordinator_address=run.coordinator_address,
        num_processes=run.num_processes,
        process_id=run.process_id,
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


def _portable(arg: str) -> str:
    """A command-line argument with any absolute path made relative to the working directory
    (or cut to its last part, ``.../NAME``, where it lies outside it)."""
    key, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if os.path.isabs(value):
        rel = os.path.relpath(value)
        value = rel if not rel.startswith("..") else os.path.join("...", os.path.basename(value))
    return key + sep + value


def _git_commit() -> dict:
    """jrnn's git commit and whether its tree has uncommitted changes (best effort: None
    where jrnn is not in a git checkout or git is missing)."""
    import jrnn

    root = os.path.dirname(os.path.dirname(os.path.abspath(jrnn.__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return {"commit": head.stdout.strip(), "dirty": dirty}


def _versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _config_record(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {"type": type(config).__qualname__, **dataclasses.asdict(config)}
    return config


def write_run_info(args: Args, **info: Any) -> str:
    """Writes ``OUT/run_info.json``: how the numbers in ``metrics.json`` were made.

    Records the command line (absolute paths made relative), the preset and the
    full config, the base seed, jrnn's git commit (``git rev-parse HEAD``, best
    effort) and whether its tree was dirty, the versions of jrnn, jax, jaxlib,
    flax, optax, chex, numpy and scipy, the device and machine, plus ``info``
    (e.g. ``wall_time_s``). Kept apart from ``metrics.json`` because the
    machine and timings are not reproducible. Holds no absolute paths.
    """
    import jax

    base = {
        "experiment": args.name,
        "command": ["python", "-m", f"experiments.{args.name}"]
        + [_portable(a) for a in args.argv],
        "preset": args.preset,
        "config": _config_record(args.config),
        "seed": args.seed,
        "out": _portable(args.out),
        "multi_host": {"coordinator_address": args.run.coordinator_address,
                       "num_processes": args.run.num_processes,
                       "process_id": args.run.process_id},
        "git": _git_commit(),
        "versions": _versions(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    base.update(info)
    path = os.path.join(args.out, "run_info.json")
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


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
          markdown: bool = True) -> str:
    """The one table formatter (``tabulate``): GitHub Markdown, or plain text for a terminal
    (``markdown=False``). Floats print to 4 decimals (3 significant digits when tiny or
    huge); every other cell as ``str``."""
    from tabulate import tabulate

    cells = [[_fmt(v) for v in row] for row in rows]
    if markdown:
        return tabulate(cells, headers=list(headers), tablefmt="github", disable_numparse=True)
    align = ("left",) + ("right",) * (len(headers) - 1)
    return tabulate(cells, headers=list(headers), tablefmt="simple", disable_numparse=True,
                    colalign=align)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None):
    """Prints :func:`table` as plain text (with an optional title) to stdout."""
    if title:
        print(f"\n{title}")
    print(table(headers, rows, markdown=False))


def one_after_another(params: Any, *measurements: Callable[[Any], Any]) -> list:
    """``[m(params) for m in measurements]``, each started only once the previous result is
    computed (:func:`jrnn.host.after`).

    Run concurrently inside one jitted program, LAPACK-based diagnostics (QR, SVD,
    ``eigh``) can deadlock jaxlib 0.10's CPU thread pool (:mod:`jrnn.host`); this is
    the one place the studies order them. Values are unchanged.
    """
    from jrnn import host

    results = []
    for measure in measurements:
        result = measure(params)
        params = host.after(params, result)
        results.append(result)
    return results


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
    prepare=None,
):
    """Trains ``seeds`` copies of ``model`` as one vmapped program with Adam; resumable.

    Seed ``s`` is initialised from ``fold_in(key(seed), s)`` and draws its batches
    ``generate(key, batch) -> (x, y)`` from ``fold_in(key(seed + 1), s)``; the
    held-out batch comes from ``key(seed + 2)``. Non-finite updates are skipped
    per seed. Checkpoints go to ``checkpoint_dir`` (``config`` is their fingerprint).
    ``prepare(params, key) -> params``, when given, transforms each seed's initial params
    before training (e.g. gradient flossing), with the key ``fold_in(key(seed + 3), s)``.

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
    if prepare is not None:
        prep_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(seed + 3), s))(idx)
        params0 = jax.jit(jax.vmap(prepare))(params0, prep_keys)
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
