"""More than one process, through torch's own engine: ``torchrun`` starts one process a GPU (or,
for tests, a few CPU processes on gloo) and FSDP2 (``fully_shard``) shards parameters, gradients
and optimizer state across them. One process needs none of it."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Processes:
    """This process's place: rank among ``world`` (1 without torchrun) and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1


def start(device: str | None = None) -> Processes:
    """Read torchrun's environment and join the process group (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world > 1 and not dist.is_initialized():
        if chosen.type == "cuda":
            dist.init_process_group("nccl", device_id=chosen)
        else:
            dist.init_process_group("gloo")
    return Processes(rank, world, chosen)


def stop(processes: Processes) -> None:
    if processes.sharded and dist.is_initialized():
        dist.destroy_process_group()


def shard(root: nn.Module, blocks: list[nn.Module], processes: Processes, bf16: bool) -> None:
    """FSDP2 over ``blocks`` (one unit each: the ViT's and the LLM's layers) and ``root`` (all the
    rest). Parameters must all be float32 (the master copy); with ``bf16`` they are gathered in
    bf16 for compute and gradients are reduced in float32."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(processes.device.type, (processes.world,))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(root, mesh=mesh, mp_policy=policy)


def total(value: float | int, processes: Processes) -> float:
    """Sum of ``value`` over all processes."""
    if not processes.sharded:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64,
                          device=processes.device if processes.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return float(tensor.item())


def barrier(processes: Processes) -> None:
    if processes.sharded:
        dist.barrier()
