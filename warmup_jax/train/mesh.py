"""Device mesh with ('data', 'fsdp') axes and the shardings of parameters, state and batches.

Parameters and optimizer state are sharded FSDP-style: each array is split along its largest
axis that the ``fsdp`` axis size divides (replicated if none does). Batches are split over both
axes, so every device sees a distinct slice of each micro-batch. With ``fsdp=1`` this is plain
data parallelism; on one device everything is replicated.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA, FSDP = "data", "fsdp"
BATCH_AXES = (DATA, FSDP)


def make_mesh(fsdp: int = 1, devices: list[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp) mesh over all devices (of every process) with Auto axis types."""
    devices = devices if devices is not None else jax.devices()
    if len(devices) % fsdp:
        raise ValueError(f"fsdp={fsdp} does not divide the {len(devices)} devices")
    shape = (len(devices) // fsdp, fsdp)
    auto = (jax.sharding.AxisType.Auto,) * 2
    if devices == jax.devices():
        return jax.make_mesh(shape, (DATA, FSDP), axis_types=auto)
    return Mesh(np.asarray(devices).reshape(shape), (DATA, FSDP), axis_types=auto)


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int) -> P:
    """Shards the largest axis divisible by ``fsdp_size``; replicates otherwise."""
    if fsdp_size > 1:
        for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
            if shape[axis] % fsdp_size == 0 and shape[axis] >= fsdp_size:
                spec = [None] * len(shape)
                spec[axis] = FSDP
                return P(*spec)
    return P()


def state_shardings(tree: Any, mesh: Mesh) -> Any:
    """NamedShardings for a pytree of arrays (or ShapeDtypeStructs): FSDP on each leaf."""
    fsdp_size = mesh.shape[FSDP]
    return jax.tree_util.tree_map(
        lambda x: NamedSharding(mesh, fsdp_spec(tuple(getattr(x, "shape", ())), fsdp_size)), tree
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Micro-batched tokens ``(K, b, T+1)``: the b axis over every device."""
    return NamedSharding(mesh, P(None, BATCH_AXES, None))


def eval_batch_sharding(mesh: Mesh) -> NamedSharding:
    """Evaluation tokens ``(b, T+1)``: the b axis over every device."""
    return NamedSharding(mesh, P(BATCH_AXES, None))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch_from_local(local: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Assembles the global array from each process's local rows (multi-host input)."""
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return jax.make_array_from_process_local_data(sharding, local)
