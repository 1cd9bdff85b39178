"""Device mesh and batch sharding for plain data parallelism.

One 1-d mesh over every device of every process, axis name 'data': batches are split along their
leading axis, parameters are replicated. The same code runs on 1 CPU, N simulated CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N), a GPU, or a multi-host TPU pod.
"""
from __future__ import annotations

import logging
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from ecorep.errors import ConfigError

DATA_AXIS = "data"
_log = logging.getLogger(__name__)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-host job. Call before any other JAX call; a no-op when already initialised.

  On TPU pods and SLURM/Kubernetes clusters JAX discovers all three arguments itself; pass them
  explicitly elsewhere (e.g. a two-process CPU test).
  """
  if jax.distributed.is_initialized():
    return
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id)
  _log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
            jax.process_count(), jax.local_device_count(), jax.device_count())


def is_main_process() -> bool:
  """Only process 0 writes files and logs."""
  return jax.process_index() == 0


def data_mesh(devices: list[Any] | None = None) -> Mesh:
  """A 1-d mesh named 'data' over `devices` (default: all devices of all processes).

  Auto axis types: with Explicit axes (the jax.make_mesh default) gradients of batch-sharded
  convolutions fail to compile, and plain data parallelism needs no sharding-in-types.
  """
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split across the 'data' axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch_size: int, mesh: Mesh | int,
                     field: str = "train.batch_size") -> int:
  """Returns the per-process batch size; a batch that does not split evenly over the devices
  (a mesh, or their number) is a config error naming `field`."""
  n_dev = mesh if isinstance(mesh, int) else mesh.devices.size
  if global_batch_size <= 0 or global_batch_size % n_dev:
    raise ConfigError(
        f"batch size {global_batch_size} is not divisible by the {n_dev} devices of the mesh; "
        f"use a multiple of {n_dev}", field=field)
  return global_batch_size // jax.process_count()


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Turns this process's part of a batch (a pytree of numpy arrays) into global sharded arrays."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local_batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree on every device of the mesh (parameters, optimiser state, rasters)."""
  return jax.device_put(tree, replicated(mesh))
