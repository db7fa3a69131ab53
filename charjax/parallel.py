"""Devices, the data-parallel mesh, and placing host batches onto it.

charjax is data-parallel through `jax.jit` with shardings (not `jax.pmap`, which JAX keeps in
maintenance mode): a 1-D mesh over every device of every process, the batch split along its
"data" axis, params and optimizer state replicated. The same jitted step runs on 1 CPU, 8 GPUs
or a multi-host TPU slice; XLA inserts the gradient all-reduce.
"""

import hashlib

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from charjax.errors import CharjaxError

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named "data" over `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh; the other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    if batch_size % mesh.size:
        raise CharjaxError(
            f"batch size {batch_size} must be a multiple of the number of devices ({mesh.size})"
        )


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places this process's part of a global batch onto the mesh.

    Each process passes only its local rows; `make_array_from_process_local_data` assembles the
    global array, so the same code serves one process and many.
    """
    sharding = data_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def replica_digest(tree) -> str:
    """A short SHA-256 of this process's copy of a replicated pytree (e.g. the params).

    Every process holds a full replica; equal digests across processes show the replicas
    agree bit for bit, without moving any params between machines.
    """
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(np.asarray(leaf.addressable_shards[0].data).tobytes())
    return digest.hexdigest()[:16]


def describe_devices() -> str:
    """One line for logs: backend, device count and processes."""
    devs = jax.devices()
    kind = devs[0].device_kind if devs else "?"
    return (
        f"{jax.default_backend()} backend, {len(devs)} device(s) ({kind}), "
        f"process {jax.process_index()} of {jax.process_count()}"
    )
