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
  shape and dtype, the model's description (cell family and static config
  such as the activation, when known) and a user config dict (see
  :func:`fingerprint`).

:func:`save` and :func:`restore` compare fingerprints and raise ``ValueError``
when a directory holds a different model, so a run never resumes from, nor
writes over, someone else's checkpoints; :func:`save` compares before it
touches anything in the directory (temporary leftovers included).

A damaged checkpoint (a truncated array file, broken JSON, missing metadata:
a disk that filled up, a copy cut short) is skipped: :func:`restore` without
``step`` falls back to the newest intact checkpoint with a ``RuntimeWarning``
naming the damaged one, and :func:`resume` with ``set_aside_corrupt=True`` (as
:func:`jrnn.train.fit` uses it) renames it to ``<step>.corrupt`` so the run
can write that step again. A fingerprint mismatch is never skipped.

Example::

    >>> import tempfile, jax.numpy as jnp, jrnn
    >>> ckpt = tempfile.mkdtemp()
    >>> state = {"w": jnp.arange(3.0)}
    >>> jrnn.checkpoint.save(ckpt, state, step=100, extra={"loss": [0.5]},
    ...                      config={"task": "adding"})
    100
    >>> jrnn.checkpoint.latest_step(ckpt)
    100
    >>> state, extra = jrnn.checkpoint.restore(ckpt, template=state, config={"task": "adding"})
    >>> extra
    {'loss': [0.5]}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from typing import Any

import jax
import numpy as np

from jrnn import validation

__all__ = [
    "all_steps",
    "check_writable",
    "fingerprint",
    "latest_step",
    "restore",
    "resume",
    "save",
]

_ITEMS = ("state", "meta", "fingerprint")


def _ocp():
    import orbax.checkpoint as ocp  # imported lazily: it takes ~1 s

    return ocp


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


_PY_SCALARS = (bool, int, float)


def _leaf_dtype(x, path=()) -> np.dtype:
    """A state leaf's dtype: arrays and PRNG keys as they are, Python ``bool`` /
    ``int`` / ``float`` as NumPy would store them; anything else is refused."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None:
        return dtype
    if isinstance(x, (*_PY_SCALARS, np.generic)):
        dtype = np.asarray(x).dtype
        if dtype.kind == "O":  # a Python int beyond int64/uint64: no array dtype holds it
            where = jax.tree_util.keystr(tuple(path)) or "(the root)"
            raise ValueError(f"state leaf {where} must fit in int64, got the Python int {x}; "
                             "store it as a float or a string in extra=.")
        return dtype
    where = jax.tree_util.keystr(tuple(path)) or "(the root)"
    raise TypeError(
        f"state leaf {where} must be an array or a Python number (bool, int, float), got "
        f"{type(x).__name__} {str(x)[:40]!r}; keep non-numeric data in extra= or config=."
    )


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


def fingerprint(tree: Any, config: dict | None = None, model: str | None = None) -> dict:
    """The identity of a state pytree: structure, leaf paths / shapes / dtypes, model, config.

    Two runs may share a checkpoint directory only if their fingerprints are
    equal. Values are not part of it (they are what a checkpoint stores).

    Args:
      tree: the state pytree (arrays or ``jax.ShapeDtypeStruct``).
      config: optional JSON-serialisable dict of hyper-parameters that must
        also match (task, length, learning rate, ...).
      model: optional description of the model's static config, e.g.
        ``"Model(cell=elman(hidden_size=8, activation=tanh), ...)"``: two
        models with the same shapes but another activation differ here.
        :func:`jrnn.train.make_train_step` derives it from a
        :class:`jrnn.models.Model`'s ``apply``.

    Returns:
      ``{"treedef": str, "leaves": [[path, shape, dtype], ...], "model": ...,
      "config": ...}``.
    """
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves = [
        [jax.tree_util.keystr(path), [int(s) for s in np.shape(x)], str(_leaf_dtype(x, path))]
        for path, x in leaves_with_path
    ]
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a string description or None, got {type(model).__name__}.")
    return {
        "treedef": str(treedef),
        "leaves": leaves,
        "model": model,
        "config": _canonical(config),
    }


def _normalised(fp: dict) -> dict:
    """A stored fingerprint with the fields older versions did not write."""
    return {"model": None, **fp}


def _describe_mismatch(stored: dict, current: dict) -> str:
    if stored.get("model") != current.get("model"):
        return f"model differs: stored {stored.get('model')!r}, this run {current.get('model')!r}"
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


def _check_directory(directory, argument: str = "directory") -> str:
    if directory is None or not isinstance(directory, str | os.PathLike):
        raise TypeError(
            f"{argument} must be a path, got {directory!r} ({type(directory).__name__})."
        )
    path = os.path.abspath(os.fspath(directory))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{argument} must be a directory, but {path!r} is a file.")
    return path


def check_writable(directory, argument: str = "directory") -> str:
    """Creates ``directory`` if needed and proves a file can be written there.

    :func:`jrnn.train.fit` calls it before the first step, so a read-only or
    unreachable checkpoint directory fails at once, not at the first save
    after the training time is spent.

    Returns:
      The absolute path.

    Raises:
      ValueError: naming ``argument`` and the OS error, if the directory
        cannot be created or written.
    """
    path = _check_directory(directory, argument)
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".jrnn-write-probe-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"{argument} {path!r} is not writable ({type(e).__name__}: {e}); checkpoints "
            "could not be saved. Pass another directory."
        ) from None
    return path


def _check_max_to_keep(max_to_keep) -> int | None:
    if max_to_keep is None:
        return None
    return validation.check_int(max_to_keep, "max_to_keep", low=1)


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
    fp = out["fingerprint"]
    if not isinstance(fp, dict) or "leaves" not in fp:
        raise ValueError(f"fingerprint of step {step} is not a fingerprint: {fp!r}")
    return fp


class _Corrupt(Exception):
    """A checkpoint step that cannot be read (damaged files); carries the cause."""


def _read_fingerprint(mgr, step: int) -> dict:
    try:
        return _normalised(_stored_fingerprint(mgr, step))
    except Exception as e:  # orbax / tensorstore / JSON errors of a damaged step
        raise _Corrupt(f"{type(e).__name__}: {e}") from e


def _newest_fingerprint(mgr, steps) -> dict | None:
    """The fingerprint of the newest step whose fingerprint can be read."""
    for step in sorted(steps, reverse=True):
        try:
            return _read_fingerprint(mgr, step)
        except _Corrupt:
            continue
    return None


def _check_fingerprint(path: str, stored: dict, current: dict, action: str) -> None:
    if _normalised(stored) != current:
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
    model: str | None = None,
    max_to_keep: int | None = 2,
) -> int:
    """Atomically writes ``state`` (and the JSON ``extra``) as checkpoint ``step``.

    Args:
      directory: the checkpoint directory (created if missing).
      state: a pytree of arrays (Python ``bool`` / ``int`` / ``float`` leaves are
        stored too and come back as Python numbers); ``state.step`` is used when
        ``step`` is None.
      step: the checkpoint's step number (an int >= 0).
      extra: JSON-serialisable dict stored beside the arrays (metrics history).
      config: user config that is part of the fingerprint.
      model: model description that is part of the fingerprint (see
        :func:`fingerprint`).
      max_to_keep: keep only the newest this many checkpoints, an int >= 1
        (None keeps all). 0 is rejected: it would delete every checkpoint.

    Returns:
      The step saved.

    Raises:
      TypeError: a leaf of ``state`` that is neither an array nor a Python number.
      ValueError: if ``directory`` already holds checkpoints of a different
        fingerprint (nothing in it is touched, temporary leftovers included),
        checkpoint ``step`` already exists, or ``max_to_keep`` is below 1.
    """
    path = _check_directory(directory)
    max_to_keep = _check_max_to_keep(max_to_keep)
    if step is None:
        if not hasattr(state, "step"):
            raise ValueError("step must be given when state has no .step field.")
        step = int(np.asarray(state.step).reshape(-1)[0])
    step = validation.check_int(step, "step", low=0)
    fp = fingerprint(state, config, model)
    meta = {} if extra is None else extra
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra must be JSON-serialisable, got an error: {e}") from None
    ocp = _ocp()
    # Compare with a read-only manager first: the writing one cleans temporary
    # leftovers when it opens, which must not happen in someone else's directory.
    existing = all_steps(path)
    if existing:
        reader = _manager(path)
        try:
            stored = _newest_fingerprint(reader, existing)
        finally:
            reader.close()
        if stored is not None:
            _check_fingerprint(path, stored, fp, "overwrite it")
    if step in existing:
        raise ValueError(
            f"step {step} already exists in checkpoint directory {path!r}; refusing to "
            "overwrite it."
        )
    _remove_deleted(path)
    # Old steps are pruned here, not by orbax: each is first renamed out of the step
    # namespace (atomic), then removed, so a kill mid-delete never leaves a half-deleted
    # step that all_steps would list.
    mgr = _manager(path, None, write=True)
    try:
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
    if max_to_keep is not None:
        for old_step in all_steps(path)[:-max_to_keep]:
            _delete_step(path, old_step)
    return step


_DELETING = ".deleting-"


def _delete_step(path: str, step: int) -> None:
    """Removes step ``step``: renamed out of the step namespace first (atomic), then deleted."""
    src = os.path.join(path, str(step))
    dst = os.path.join(path, f"{_DELETING}{step}")
    os.rename(src, dst)
    shutil.rmtree(dst, ignore_errors=True)


def _remove_deleted(path: str) -> None:
    """Finishes deletions a killed process left behind (``.deleting-<step>`` directories)."""
    if not os.path.isdir(path):
        return
    for name in os.listdir(path):
        if name.startswith(_DELETING):
            shutil.rmtree(os.path.join(path, name), ignore_errors=True)


def _abstract_leaves(template):
    leaves, treedef = jax.tree_util.tree_flatten(template)
    abstract = {
        f"{i:05d}": jax.ShapeDtypeStruct(
            tuple(jax.random.key_data(x).shape) if _is_key(x) else np.shape(x),
            jax.random.key_data(x).dtype if _is_key(x) else _leaf_dtype(x),
        )
        for i, x in enumerate(leaves)
    }
    return leaves, treedef, abstract


def _read_step(mgr, step: int, leaves, treedef, abstract):
    """``(state, extra)`` of ``step``; _Corrupt if its files cannot be read."""
    ocp = _ocp()
    try:
        out = mgr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore({"leaves": abstract}),
                meta=ocp.args.JsonRestore(),
            ),
        )
        arrays = out["state"]["leaves"]
        restored = []
        for i, x in enumerate(leaves):
            a = np.asarray(arrays[f"{i:05d}"])
            if a.shape != tuple(abstract[f"{i:05d}"].shape):
                raise ValueError(f"leaf {i} has shape {a.shape}, expected {abstract[f'{i:05d}']}")
            if _is_key(x):
                restored.append(jax.random.wrap_key_data(a, impl=jax.random.key_impl(x)))
            elif isinstance(x, _PY_SCALARS):  # a Python number comes back as one
                restored.append(type(x)(a.item()))
            else:
                restored.append(jax.numpy.asarray(a, dtype=x.dtype))
        meta = out["meta"]
        if meta is not None and not isinstance(meta, dict):
            raise ValueError(f"meta is not a dict: {meta!r}")
    except Exception as e:  # orbax / tensorstore / JSON errors of a damaged step
        raise _Corrupt(f"{type(e).__name__}: {e}") from e
    return jax.tree_util.tree_unflatten(treedef, restored), dict(meta or {})


def _restore(path, template, step, config, model):
    """``(state, extra, step, corrupt)``: ``corrupt`` lists ``(step, reason)`` skipped."""
    steps = all_steps(path)
    if not steps:
        raise ValueError(f"directory {path!r} holds no checkpoint to restore.")
    if step is not None and step not in steps:
        raise ValueError(f"step must be one of the saved steps {steps}, got {step!r}.")
    fp = fingerprint(template, config, model)
    leaves, treedef, abstract = _abstract_leaves(template)
    candidates = [step] if step is not None else sorted(steps, reverse=True)
    corrupt = []
    mgr = _manager(path)
    try:
        for s in candidates:
            try:
                stored = _read_fingerprint(mgr, s)
            except _Corrupt as e:
                corrupt.append((s, str(e)))
                continue
            # A different model is never skipped over: it is someone else's directory.
            _check_fingerprint(path, stored, fp, "restore from it")
            try:
                state, extra = _read_step(mgr, s, leaves, treedef, abstract)
            except _Corrupt as e:
                corrupt.append((s, str(e)))
                continue
            return state, extra, s, corrupt
    finally:
        mgr.close()
    bad = "; ".join(f"step {s}: {why[:300]}" for s, why in corrupt)
    raise ValueError(f"checkpoint directory {path!r} holds no intact checkpoint ({bad}).")


def _warn_corrupt(path: str, corrupt, restored_step: int, set_aside: bool) -> None:
    for s, why in corrupt:
        what = f"; renamed it to {s}.corrupt" if set_aside else ""
        warnings.warn(
            f"checkpoint step {s} in {path!r} is damaged and was skipped ({why[:300]}); "
            f"restored step {restored_step} instead{what}.",
            RuntimeWarning,
            stacklevel=3,
        )


def _set_aside(path: str, step: int) -> None:
    """Renames the damaged step directory so the step can be written again."""
    src = os.path.join(path, str(step))
    if not os.path.isdir(src):
        return
    dst, i = f"{src}.corrupt", 1
    while os.path.exists(dst):
        dst, i = f"{src}.corrupt{i}", i + 1
    os.rename(src, dst)


def restore(
    directory,
    template: Any,
    *,
    step: int | None = None,
    config: dict | None = None,
    model: str | None = None,
) -> tuple[Any, dict]:
    """Reads checkpoint ``step`` (default: the newest intact one) into ``template``'s structure.

    Args:
      directory: the checkpoint directory.
      template: a pytree with the structure, shapes and dtypes of the saved
        state (e.g. the freshly initialised state); its values are not used.
      step: which checkpoint; None for the newest intact one (damaged newer
        ones are skipped with a ``RuntimeWarning`` naming them).
      config: must equal the config the checkpoint was saved with.
      model: must equal the model description it was saved with.

    Returns:
      ``(state, extra)``: arrays exactly as saved, and the ``extra`` dict.

    Raises:
      ValueError: no (intact) checkpoint, a damaged ``step`` asked for by
        number, or the stored fingerprint differs from
        ``fingerprint(template, config, model)``.
    """
    path = _check_directory(directory)
    state, extra, s, corrupt = _restore(path, template, step, config, model)
    _warn_corrupt(path, corrupt, s, set_aside=False)
    return state, extra


def resume(
    directory,
    template: Any,
    *,
    config: dict | None = None,
    model: str | None = None,
    set_aside_corrupt: bool = False,
):
    """Restores the newest intact checkpoint if there is one.

    Args:
      directory, template, config, model: as for :func:`restore`.
      set_aside_corrupt: rename damaged checkpoints newer than the one
        restored to ``<step>.corrupt`` (for a writer that will save those
        steps again, as :func:`jrnn.train.fit` does).

    Returns:
      ``(state, extra)`` from :func:`restore`, or None when ``directory`` holds
      no checkpoint yet (a fresh run).

    Raises:
      ValueError: the directory holds a different model (see :func:`restore`),
        or only damaged checkpoints.
    """
    path = _check_directory(directory)
    if latest_step(path) is None:
        return None
    state, extra, s, corrupt = _restore(path, template, None, config, model)
    if set_aside_corrupt:
        for bad, _ in corrupt:
            _set_aside(path, bad)
    _warn_corrupt(path, corrupt, s, set_aside=set_aside_corrupt)
    return state, extra
