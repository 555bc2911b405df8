"""Scale-out on a JAX device mesh: sharded grid sweeps and data-parallel steps.

jrnn does not schedule work itself; it hands JAX one SPMD program and lets
``jax.sharding`` place it. A study over a grid of hyper-parameters

.. math::

   R[i_1, \\dots, i_k] = \\mathrm{fn}(a_1[i_1], \\dots, a_k[i_k])

is flattened to ``G = \\prod_j len(a_j)`` points, padded to a multiple of the
device count ``D``, split into ``D`` contiguous blocks (one per device, a
``NamedSharding`` over every mesh axis) and evaluated as one vmapped, jitted
program: each device runs ``vmap(fn)`` on its block with no communication at
all. A data-parallel train step shards the batch over the mesh and replicates
the parameters; because the loss is a mean over the global batch, GSPMD
inserts the gradient all-reduce and the step returns the single-device result.

Multi-host (several processes, each with its own devices):
:func:`initialize_distributed` wraps ``jax.distributed.initialize``; after it,
``jax.devices()`` lists every process's devices, :func:`make_mesh` spans them
all, and :func:`sweep` / :func:`shard_step` run unchanged on every process
(SPMD: every process calls them with the same arguments). Command-line flags
for the three arguments belong to the scripts (``experiments/common.py``).

References: GSPMD (Xu et al. 2021, arXiv:2105.04663); the JAX guide
"Distributed arrays and automatic parallelization".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jrnn import validation

__all__ = [
    "initialize_distributed",
    "local_devices_mesh",
    "make_mesh",
    "shard_step",
    "sweep",
]


# --------------------------------------------------------------------------- meshes


def make_mesh(axis_name: str = "grid", devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process).

    The axis type is ``Auto``, so ``jax.jit`` with shardings partitions the
    program by GSPMD propagation (the classic model).

    Args:
      axis_name: the name of the single mesh axis.
      devices: the devices to span; default ``jax.devices()``.

    Raises:
      TypeError: ``axis_name`` not a string; ``devices`` a string or holding
        anything but ``jax.Device`` objects (e.g. device names).
      ValueError: an empty ``axis_name``, no devices, a device listed twice.

    Example::

        >>> import jrnn
        >>> mesh = jrnn.parallel.make_mesh("data")
        >>> mesh.axis_names
        ('data',)
    """
    if not isinstance(axis_name, str):
        raise TypeError(f"axis_name must be a non-empty string, got {axis_name!r}.")
    if not axis_name:
        raise ValueError("axis_name must be a non-empty string, got ''.")
    if isinstance(devices, str | bytes):
        raise TypeError(
            f"devices must be a sequence of jax.Device objects, got the string {devices!r}; "
            f"pass jax.devices({devices!r}) for every device of that platform."
        )
    if devices is not None and not isinstance(devices, Iterable):
        raise TypeError(
            f"devices must be a sequence of jax.Device objects, got {type(devices).__name__} "
            f"{devices!r}; pass a list, e.g. [jax.devices()[0]]."
        )
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must contain at least one device, got an empty sequence.")
    for i, device in enumerate(devices):
        if not isinstance(device, jax.Device):
            hint = (
                f" (a device name: use jax.devices() and pick by .platform / .id, e.g. "
                f"[d for d in jax.devices() if str(d) == {device!r}])"
                if isinstance(device, str)
                else ""
            )
            raise TypeError(
                f"devices[{i}] must be a jax.Device, got {device!r} "
                f"({type(device).__name__}){hint}."
            )
    if len(set(devices)) != len(devices):
        raise ValueError(
            f"devices must be distinct, got {[str(d) for d in devices]} (a device appears twice)."
        )
    return Mesh(np.array(devices), (axis_name,))


def local_devices_mesh(axis_name: str = "grid") -> Mesh:
    """A 1-D mesh over this process's devices only (``jax.local_devices()``).

    Useful on a multi-host job to run a per-host program that needs no
    cross-host communication.
    """
    return make_mesh(axis_name, jax.local_devices())


def _resolve_mesh(mesh: Mesh | None, default_axis: str) -> Mesh:
    if mesh is None:
        return make_mesh(default_axis)
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh (e.g. jrnn.parallel.make_mesh()), "
            f"got {type(mesh).__name__}."
        )
    return mesh


# --------------------------------------------------------------------------- distributed


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 60,
) -> bool:
    """Joins a multi-process JAX job (``jax.distributed.initialize``).

    A no-op returning False when all three arguments are None (a single
    process, the default for every experiment), so scripts can always call
    it with their command-line flags. Otherwise it must run before any other
    JAX call in the process; afterwards ``jax.devices()`` spans all processes.

    Args:
      coordinator_address: ``"host:port"`` of process 0.
      num_processes: number of processes in the job.
      process_id: this process's index in ``[0, num_processes)``.
      timeout_s: seconds to wait for the coordinator and the other processes
        (JAX's own default is 300 s of silent blocking); then a RuntimeError
        says what to check.

    Returns:
      True if this call initialised the distributed runtime, False if it did
      nothing (all arguments None, or already initialised).

    Raises:
      ValueError / TypeError: a bad argument; RuntimeError: no coordinator
        answered within ``timeout_s``.

    Example::

        >>> import jrnn
        >>> jrnn.parallel.initialize_distributed()   # single process: no-op
        False
    """
    timeout_s = validation.check_int(timeout_s, "timeout_s", low=1)
    if coordinator_address is None and num_processes is None and process_id is None:
        return False
    if coordinator_address is not None and (
        not isinstance(coordinator_address, str) or ":" not in coordinator_address
    ):
        raise ValueError(
            f"coordinator_address must be 'host:port' (process 0's address), got "
            f"{coordinator_address!r}."
        )
    if num_processes is not None:
        num_processes = validation.check_int(num_processes, "num_processes", low=1)
    if process_id is not None:
        process_id = validation.check_int(process_id, "process_id", low=0)
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(
                f"process_id must lie in [0, num_processes) = [0, {num_processes}), "
                f"got {process_id}."
            )
    if jax.distributed.is_initialized():
        return False
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=timeout_s,
        )
    except Exception as err:  # JAX raises XlaRuntimeError (DEADLINE_EXCEEDED, UNAVAILABLE)
        raise RuntimeError(
            f"initialize_distributed: could not join the job at coordinator_address="
            f"{coordinator_address!r} (num_processes={num_processes}, process_id={process_id}) "
            f"within timeout_s={timeout_s}: {type(err).__name__}: {str(err)[:300]}. Check that "
            "process 0 runs with the same address and port, that the port is reachable, and "
            "that every process was started."
        ) from err
    return True


# --------------------------------------------------------------------------- sweep


def _grid_axes(axes: dict[str, Any]) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    if not axes:
        raise ValueError(
            "sweep needs at least one grid axis as a keyword argument, e.g. "
            "sweep(fn, gain=jnp.linspace(0.5, 2.0, 8)); got none (empty grid)."
        )
    names, values = [], []
    for name, value in axes.items():
        if isinstance(value, jax.core.Tracer):
            raise ValueError(f"grid axis {name!r} must be a concrete array, got a tracer.")
        try:
            arr = np.asarray(value)
        except Exception as err:  # e.g. typed PRNG key arrays
            raise ValueError(
                f"grid axis {name!r} must be a 1-D numeric array, got {type(value).__name__} "
                f"({err})."
            ) from err
        if arr.dtype.kind not in "biufc":
            raise ValueError(
                f"grid axis {name!r} must be numeric, got dtype {arr.dtype} ({arr[:3]!r}...). "
                "sweep vmaps its axes, so static choices (activation names, cell "
                "families) cannot be grid axes: loop over them in Python, or bind "
                "them with functools.partial(fn, activation=...)."
            )
        if arr.ndim != 1:
            raise ValueError(
                f"grid axis {name!r} must be 1-D (one value per grid point), got shape "
                f"{arr.shape}; pass vectors of scalars, e.g. {name}=jnp.linspace(...)."
            )
        if arr.shape[0] == 0:
            raise ValueError(f"grid axis {name!r} is empty (shape (0,)): the grid has no points.")
        canon = arr.astype(jax.dtypes.canonicalize_dtype(arr.dtype))
        if arr.dtype.kind in "iu" and not np.array_equal(canon.astype(arr.dtype), arr):
            bad = arr[canon.astype(arr.dtype) != arr]
            raise ValueError(
                f"grid axis {name!r} holds values that do not fit {canon.dtype} (64-bit "
                f"integers need jax_enable_x64), e.g. {bad[0]} would become "
                f"{bad[0].astype(canon.dtype)}, so distinct seeds would collide. Use values "
                f"below 2**31, or jax.config.update('jax_enable_x64', True)."
            )
        names.append(name)
        values.append(canon)
    return tuple(names), tuple(values)


def _result_spec(grid_shape: tuple[int, ...], n_devices: int, axes: tuple[str, ...]) -> P:
    """Shards the first grid dimension divisible by the device count, else replicates."""
    for i, length in enumerate(grid_shape):
        if length % n_devices == 0:
            return P(*([None] * i), axes)
    return P()


@functools.lru_cache(maxsize=64)
def _sweep_program(
    fn: Callable[..., Any],
    names: tuple[str, ...],
    mesh: Mesh,
    grid_shape: tuple[int, ...],
    per_device_batch: int | None,
):
    axes = tuple(mesh.axis_names)
    n_points = math.prod(grid_shape)
    flat = P(axes)

    def point(values):
        try:
            return fn(**dict(zip(names, values)))
        except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError,
                jax.errors.TracerIntegerConversionError) as err:
            raise TypeError(
                f"fn branched in Python on a grid value (axes {', '.join(names)}): sweep "
                "vmaps its axes, so every grid value is a traced scalar and `if`, `while`, "
                "int(), float() or bool() on it cannot run. Use jnp.where / jax.lax.cond / "
                "jax.lax.select for value-dependent choices, or, for a static choice (a size, "
                "an activation name), loop over it in Python and bind it with "
                f"functools.partial(fn, ...). JAX said: {type(err).__name__}."
            ) from err

    def local(*columns):  # this device's contiguous block of grid points
        if per_device_batch is None:
            return jax.vmap(point)(columns)
        return jax.lax.map(point, columns, batch_size=per_device_batch)

    out_spec = _result_spec(grid_shape, mesh.size, axes)

    def program(*columns):
        results = jax.shard_map(local, mesh=mesh, in_specs=flat, out_specs=flat, check_vma=False)(
            *columns
        )

        def unpad(leaf):
            leaf = leaf[:n_points].reshape(grid_shape + leaf.shape[1:])
            spec = out_spec if leaf.ndim >= len(out_spec) else P()
            return jax.lax.with_sharding_constraint(leaf, NamedSharding(mesh, spec))

        return jax.tree.map(unpad, results)

    return jax.jit(program, in_shardings=NamedSharding(mesh, flat))


def sweep(
    fn: Callable[..., Any],
    *,
    mesh: Mesh | None = None,
    chunk_size: int | None = None,
    **axes: Any,
) -> Any:
    """Evaluates ``fn(**point)`` at every point of a Cartesian grid, sharded over a mesh.

    .. math::

       R[i_1, \\dots, i_k] = \\mathrm{fn}(name_1{=}a_1[i_1], \\dots, name_k{=}a_k[i_k])

    The ``G = len(a_1) * ... * len(a_k)`` points (row-major) are padded to a
    multiple of the mesh size ``D`` by repeating the last point, split in
    ``D`` contiguous blocks, and each device evaluates ``vmap(fn)`` on its block
    (``jax.shard_map`` inside one ``jax.jit``; no communication). The padding
    is dropped before returning.

    Axes are numeric: ``fn`` is traced once and vmapped, so every grid value is
    a traced scalar. Static choices (activation names, cell families, sizes)
    cannot be axes; loop over them in Python and bind them with
    ``functools.partial`` (each choice compiles its own program). A PRNG seed
    is a fine axis: build the key inside ``fn`` with ``jax.random.key(seed)``.

    The compiled program is cached on ``(fn, axis names, mesh, grid shape,
    chunking)``, so calling ``sweep`` again with the same ``fn`` and new values
    of the same shapes does not recompile.

    Args:
      fn: ``(**point) -> pytree`` of arrays; pure and jit-compatible.
      mesh: the device mesh; default :func:`make_mesh` over all devices. The
        grid is sharded over all its axes.
      chunk_size: evaluate at most about this many grid points at once (across
        all devices; ``jax.lax.map`` over chunks of ``ceil(chunk_size / D)``
        points per device) to bound memory for large grids. Default: all at once.
      **axes: the grid, ``name=1-D array``, in order; names are ``fn``'s
        keyword arguments (``mesh`` and ``chunk_size`` are reserved).

    Returns:
      ``fn``'s output pytree with every leaf shaped
      ``(len(a_1), ..., len(a_k), *leaf_shape)``. Leaves are sharded over the
      mesh along the first grid dimension whose length is a multiple of ``D``
      (replicated when there is none). On several processes, leaves are global
      arrays: gather them with ``jax.experimental.multihost_utils.process_allgather``.

    Raises:
      TypeError: ``fn`` not callable, ``mesh`` not a Mesh, ``chunk_size`` not
        an integer.
      ValueError: no axes (empty grid), an axis that is not 1-D, empty or not
        numeric, or ``chunk_size < 1``.

    Example::

        >>> import jax, jax.numpy as jnp, jrnn
        >>> def norm(gain, seed):
        ...     w = gain * jax.random.normal(jax.random.key(seed), (8, 8)) / jnp.sqrt(8.0)
        ...     return jnp.linalg.norm(w, 2)
        >>> out = jrnn.parallel.sweep(norm, gain=jnp.linspace(0.5, 2.0, 4), seed=jnp.arange(3))
        >>> out.shape
        (4, 3)
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}.")
    names, values = _grid_axes(axes)
    mesh = _resolve_mesh(mesh, "grid")
    n_dev = mesh.size
    grid_shape = tuple(len(v) for v in values)
    n_points = math.prod(grid_shape)
    per_device = -(-n_points // n_dev)
    batch = None
    if chunk_size is not None:
        chunk_size = validation.check_int(chunk_size, "chunk_size", low=1)
        batch = min(-(-chunk_size // n_dev), per_device)
        if batch == per_device:
            batch = None
    padded = per_device * n_dev
    columns = []
    sharding = NamedSharding(mesh, P(tuple(mesh.axis_names)))
    for col in np.meshgrid(*values, indexing="ij"):
        col = np.pad(col.ravel(), (0, padded - n_points), mode="edge")
        columns.append(jax.make_array_from_callback(col.shape, sharding, lambda idx, c=col: c[idx]))
    program = _sweep_program(fn, names, mesh, grid_shape, batch)
    return program(*columns)


# --------------------------------------------------------------------------- data parallel


def shard_step(
    step_fn: Callable[[Any, Any], tuple[Any, Any]],
    mesh: Mesh | None = None,
    batch_axis: int = 0,
) -> Callable[[Any, Any], tuple[Any, Any]]:
    """Data-parallel version of a train step: batch sharded, state replicated.

    ``step_fn(state, batch) -> (state, metrics)`` is any pure step (jitted or
    not), e.g. ``jrnn.train.make_train_step(...)``. The returned function is
    ``jax.jit(step_fn)`` with the state replicated on every device and every
    batch leaf split along ``batch_axis`` over all mesh axes. If the loss is a
    mean over the batch, GSPMD computes per-device partial gradients and
    all-reduces them, so

    .. math::

       \\nabla_\\theta \\frac{1}{B} \\sum_{b=1}^{B} \\ell_b
       = \\frac{1}{B} \\sum_{d=1}^{D} \\sum_{b \\in \\mathrm{shard}_d} \\nabla_\\theta \\ell_b

    and the new state equals the single-device one up to float summation order.
    (On CPU host devices GSPMD partitioned an RNN's time loop worse than an
    explicit ``jax.shard_map`` with a ``pmean`` of the local gradients: GRU
    train step 115 vs 68 ms on 2 devices, BENCHMARKS.md.)

    Args:
      step_fn: ``(state, batch) -> (state, metrics)``.
      mesh: default :func:`make_mesh` ``("data")`` over all devices.
      batch_axis: the batch dimension of every batch leaf (0 for ``(B, T, d)``).

    Returns:
      ``(state, batch) -> (state, metrics)``, jitted with shardings; state and
      metrics come back replicated. On several processes each process passes
      its local slice of the batch (host-local NumPy arrays); they are
      assembled into one global batch with
      ``jax.make_array_from_process_local_data``. Attributes: ``.mesh``, and
      ``.jitted``, the underlying ``jax.jit`` object (for ``.lower(...)``).

    Raises:
      TypeError: ``step_fn`` not callable, ``batch_axis`` not an integer,
        ``mesh`` not a Mesh.
      ValueError: ``batch_axis < 0``; (at call time) a batch leaf without
        ``batch_axis`` or whose batch size is not a multiple of the device count.

    Example::

        >>> import jax, jax.numpy as jnp, optax, jrnn
        >>> opt = optax.sgd(0.1)
        >>> def step(state, batch):
        ...     params, opt_state = state
        ...     x, y = batch
        ...     loss, g = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(params)
        ...     updates, opt_state = opt.update(g, opt_state)
        ...     return (optax.apply_updates(params, updates), opt_state), {"loss": loss}
        >>> w = jnp.zeros((3,))
        >>> dp_step = jrnn.parallel.shard_step(step)
        >>> state, metrics = dp_step((w, opt.init(w)), (jnp.ones((8, 3)), jnp.ones((8,))))
    """
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable, got {type(step_fn).__name__}.")
    batch_axis = validation.check_int(batch_axis, "batch_axis", low=0)
    mesh = _resolve_mesh(mesh, "data")
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(*([None] * batch_axis), tuple(mesh.axis_names)))
    jitted = jax.jit(
        step_fn,
        in_shardings=(replicated, batch_sharding),
        out_shardings=(replicated, replicated),
    )
    multi_process = jax.process_count() > 1

    def check(path, leaf):
        shape = np.shape(leaf)
        where = f"batch{jax.tree_util.keystr(path)}"
        if len(shape) <= batch_axis:
            raise ValueError(
                f"{where} must have a batch dimension at axis {batch_axis}, got shape {shape}."
            )
        size = shape[batch_axis] * (jax.process_count() if multi_process else 1)
        if size % mesh.size:
            raise ValueError(
                f"{where} has batch size {size} (shape {shape}, axis {batch_axis}), which is "
                f"not a multiple of the {mesh.size} devices of the mesh; use a batch size "
                f"divisible by {mesh.size}."
            )
        if multi_process and not isinstance(leaf, jax.Array):
            return jax.make_array_from_process_local_data(batch_sharding, np.asarray(leaf))
        return leaf

    @functools.wraps(step_fn)
    def sharded_step(state, batch):
        batch = jax.tree_util.tree_map_with_path(check, batch)
        return jitted(state, batch)

    sharded_step.mesh = mesh  # type: ignore[attr-defined]
    sharded_step.jitted = jitted  # type: ignore[attr-defined]
    return sharded_step
