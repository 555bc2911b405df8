"""Atomic checkpoints of training state with orbax-checkpoint, and exact resume.

A checkpoint directory holds one sub-directory per saved step, written by
``orbax.checkpoint.CheckpointManager``: orbax writes into a temporary directory
and renames it into place only when every file is on disk (then marks it
committed), so a process killed mid-save — even by ``SIGKILL`` — leaves the
previous checkpoints intact and the half-written one is ignored and cleaned up.

Each checkpoint has three items:

* ``state``: the leaves of any pytree (``jrnn.train.TrainState``: params,
  optimizer state, step, RNG), saved bit-exactly; typed PRNG keys are stored
  as their raw key data and re-wrapped on restore;
* ``meta``: a JSON dict for everything else (metrics history so far, ...);
* ``fingerprint``: the model's identity — tree structure, every leaf's path,
  shape and dtype, and a user config dict (see :func:`fingerprint`).

:func:`save` and :func:`restore` compare fingerprints and raise ``ValueError``
when a directory holds a different model, so a run never resumes from, nor
writes over, someone else's checkpoints.

Example::

    >>> ckpt = "/tmp/run/checkpoints"
    >>> jrnn.checkpoint.save(ckpt, state, extra={"history": hist}, config={"task": "adding"})
    >>> jrnn.checkpoint.latest_step(ckpt)
    100
    >>> state, extra = jrnn.checkpoint.restore(ckpt, template=state, config={"task": "adding"})
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

__all__ = ["all_steps", "fingerprint", "latest_step", "restore", "resume", "save"]

_ITEMS = ("state", "meta", "fingerprint")


def _ocp():
    import orbax.checkpoint as ocp  # imported lazily: it takes ~1 s

    return ocp


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _canonical(config) -> Any:
    """``config`` as plain JSON types (tuples become lists), or ValueError."""
    if config is None:
        return None
    try:
        return json.loads(json.dumps(config, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise ValueError(
            "config must be JSON-serialisable (numbers, strings, lists, dicts), got "
            f"{config!r}: {e}"
        ) from None


def fingerprint(tree: Any, config: dict | None = None) -> dict:
    """The identity of a state pytree: structure, leaf paths / shapes / dtypes, config.

    Two runs may share a checkpoint directory only if their fingerprints are
    equal. Values are not part of it (they are what a checkpoint stores).

    Args:
      tree: the state pytree (arrays or ``jax.ShapeDtypeStruct``).
      config: optional JSON-serialisable dict of hyper-parameters that must
        also match (task, length, learning rate, ...).

    Returns:
      ``{"treedef": str, "leaves": [[path, shape, dtype], ...], "config": ...}``.
    """
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves = [
        [jax.tree_util.keystr(path), [int(s) for s in np.shape(x)], str(x.dtype)]
        for path, x in leaves_with_path
    ]
    return {"treedef": str(treedef), "leaves": leaves, "config": _canonical(config)}


def _describe_mismatch(stored: dict, current: dict) -> str:
    if stored.get("config") != current.get("config"):
        return (
            f"config differs: stored {stored.get('config')!r}, this run {current.get('config')!r}"
        )
    s_leaves, c_leaves = stored.get("leaves", []), current.get("leaves", [])
    for s, c in zip(s_leaves, c_leaves):
        if list(s) != list(c):
            return f"leaf differs: stored {s}, this run {c}"
    if len(s_leaves) != len(c_leaves):
        return f"number of leaves differs: stored {len(s_leaves)}, this run {len(c_leaves)}"
    return "tree structure differs"


def _manager(directory, max_to_keep: int | None = None, *, write: bool = False):
    """A synchronous orbax manager; readers (``write=False``) never create, clean or save."""
    ocp = _ocp()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=False,
        create=write,
        cleanup_tmp_directories=write,  # leftovers of a save killed mid-write
    )
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options,
                                 item_names=_ITEMS)


def _check_directory(directory) -> str:
    if directory is None or not isinstance(directory, str | os.PathLike):
        raise ValueError(f"directory must be a path, got {directory!r}.")
    path = os.path.abspath(os.fspath(directory))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"directory must be a directory, but {path!r} is a file.")
    return path


def all_steps(directory) -> list[int]:
    """Steps of the committed checkpoints in ``directory``, ascending ([] if none)."""
    path = _check_directory(directory)
    if not os.path.isdir(path):
        return []
    mgr = _manager(path)
    try:
        return sorted(int(s) for s in mgr.all_steps())
    finally:
        mgr.close()


def latest_step(directory) -> int | None:
    """The newest committed checkpoint's step in ``directory``, or None."""
    steps = all_steps(directory)
    return steps[-1] if steps else None


def _stored_fingerprint(mgr, step: int) -> dict:
    ocp = _ocp()
    out = mgr.restore(step, args=ocp.args.Composite(fingerprint=ocp.args.JsonRestore()))
    return out["fingerprint"]


def _check_fingerprint(path: str, stored: dict, current: dict, action: str) -> None:
    if stored != current:
        raise ValueError(
            f"checkpoint directory {path!r} holds a different model or config "
            f"({_describe_mismatch(stored, current)}); refusing to {action}. Use another "
            "directory (e.g. another --out) or delete this one."
        )


def save(
    directory,
    state: Any,
    *,
    step: int | None = None,
    extra: dict | None = None,
    config: dict | None = None,
    max_to_keep: int | None = 2,
) -> int:
    """Atomically writes ``state`` (and the JSON ``extra``) as checkpoint ``step``.

    Args:
      directory: the checkpoint directory (created if missing).
      state: a pytree of arrays; ``state.step`` is used when ``step`` is None.
      step: the checkpoint's step number (an int >= 0).
      extra: JSON-serialisable dict stored beside the arrays (metrics history).
      config: user config that is part of the fingerprint.
      max_to_keep: keep only the newest this many checkpoints (None keeps all).

    Returns:
      The step saved.

    Raises:
      ValueError: if ``directory`` already holds checkpoints of a different
        fingerprint (nothing is written), or checkpoint ``step`` already exists.
    """
    path = _check_directory(directory)
    if step is None:
        if not hasattr(state, "step"):
            raise ValueError("step must be given when state has no .step field.")
        step = int(np.asarray(state.step).reshape(-1)[0])
    if int(step) != step or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}.")
    step = int(step)
    fp = fingerprint(state, config)
    meta = {} if extra is None else extra
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra must be JSON-serialisable, got an error: {e}") from None
    ocp = _ocp()
    mgr = _manager(path, max_to_keep, write=True)
    try:
        existing = sorted(mgr.all_steps())
        if existing:
            _check_fingerprint(path, _stored_fingerprint(mgr, existing[-1]), fp, "overwrite it")
        if step in existing:
            raise ValueError(
                f"step {step} already exists in checkpoint directory {path!r}; refusing to "
                "overwrite it."
            )
        leaves = jax.tree_util.tree_leaves(state)
        arrays = {
            f"{i:05d}": np.asarray(jax.random.key_data(x) if _is_key(x) else x)
            for i, x in enumerate(leaves)
        }
        mgr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave({"leaves": arrays}),
                meta=ocp.args.JsonSave(meta),
                fingerprint=ocp.args.JsonSave(fp),
            ),
        )
        mgr.wait_until_finished()
    finally:
        mgr.close()
    return step


def restore(
    directory, template: Any, *, step: int | None = None, config: dict | None = None
) -> tuple[Any, dict]:
    """Reads checkpoint ``step`` (default: the latest) into the structure of ``template``.

    Args:
      directory: the checkpoint directory.
      template: a pytree with the structure, shapes and dtypes of the saved
        state (e.g. the freshly initialised state); its values are not used.
      step: which checkpoint; None for the latest.
      config: must equal the config the checkpoint was saved with.

    Returns:
      ``(state, extra)``: arrays exactly as saved, and the ``extra`` dict.

    Raises:
      ValueError: no checkpoint, or the stored fingerprint differs from
        ``fingerprint(template, config)``.
    """
    path = _check_directory(directory)
    steps = all_steps(path)
    if not steps:
        raise ValueError(f"directory {path!r} holds no checkpoint to restore.")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise ValueError(f"step must be one of the saved steps {steps}, got {step!r}.")
    fp = fingerprint(template, config)
    ocp = _ocp()
    leaves, treedef = jax.tree_util.tree_flatten(template)
    abstract = {
        f"{i:05d}": jax.ShapeDtypeStruct(
            tuple(jax.random.key_data(x).shape) if _is_key(x) else np.shape(x),
            jax.random.key_data(x).dtype if _is_key(x) else x.dtype,
        )
        for i, x in enumerate(leaves)
    }
    mgr = _manager(path)
    try:
        _check_fingerprint(path, _stored_fingerprint(mgr, step), fp, "restore from it")
        out = mgr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore({"leaves": abstract}),
                meta=ocp.args.JsonRestore(),
            ),
        )
    finally:
        mgr.close()
    arrays = out["state"]["leaves"]
    restored = []
    for i, x in enumerate(leaves):
        a = np.asarray(arrays[f"{i:05d}"])
        if _is_key(x):
            restored.append(jax.random.wrap_key_data(a, impl=jax.random.key_impl(x)))
        else:
            restored.append(jax.numpy.asarray(a, dtype=x.dtype))
    return jax.tree_util.tree_unflatten(treedef, restored), dict(out["meta"] or {})


def resume(directory, template: Any, *, config: dict | None = None):
    """Restores the latest checkpoint if there is one.

    Returns:
      ``(state, extra)`` from :func:`restore`, or None when ``directory`` holds
      no checkpoint yet (a fresh run).

    Raises:
      ValueError: the directory holds a different model (see :func:`restore`).
    """
    if latest_step(directory) is None:
        return None
    return restore(directory, template, config=config)
