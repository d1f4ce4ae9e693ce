"""Training on several processes (DistributedDataParallel): everything the loop needs, in one place.

``torchrun --nproc_per_node=N -m diffusion_edu train ...`` starts N copies of the program with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. :func:`start` joins them into one process group
(NCCL on GPUs, gloo on CPUs); afterwards every process trains on its own share of the data,
DDP averages the gradients, and rank 0 alone shows progress and writes files. Without torchrun
every function here is a no-op for a single process (rank 0 of 1).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

__all__ = [
    "RANK_SEED_STRIDE",
    "start",
    "stop",
    "rank_and_world",
    "wrap",
    "mean_over_processes",
    "gather",
    "barrier",
]

RANK_SEED_STRIDE = 1_000_003  # a prime: rank r draws its random numbers from seed + r * stride


def start(device: torch.device) -> tuple[torch.device, int, int]:
    """Join torchrun's process group when launched by it (``WORLD_SIZE > 1``).

    Returns ``(device, rank, world_size)``: on GPUs each process takes the GPU of its
    ``LOCAL_RANK``. A single process gets ``(device, 0, 1)`` and nothing is started.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return device, 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, *rank_and_world()


def stop() -> None:
    """Leave the process group, if one was started."""
    if _active():
        torch.distributed.destroy_process_group()


def _active() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` unless a process group has been started."""
    if _active():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` inside DistributedDataParallel when there are several processes, else itself.

    DDP broadcasts rank 0's weights at construction, so every process starts from the same model,
    and averages the gradients during ``backward()``.
    """
    if rank_and_world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """The average of ``value`` over all processes (``value`` itself for one process)."""
    world_size = rank_and_world()[1]
    if world_size == 1:
        return value
    value = value.detach().clone()
    torch.distributed.all_reduce(value)
    return value / world_size


def gather(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` for one process)."""
    world_size = rank_and_world()[1]
    if world_size == 1:
        return [obj]
    objects: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(objects, obj)
    return objects


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for with one process)."""
    if rank_and_world()[1] > 1:
        torch.distributed.barrier()
