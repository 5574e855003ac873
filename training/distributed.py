"""Process-group helpers (as stylegan3's ``torch_utils/distributed.py``), so nothing else asks whether it runs
under ``torchrun``. One code path: without ``WORLD_SIZE`` in the environment everything is single-process.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str = "auto") -> Context:
    """Join the ``torchrun`` process group (nccl on CUDA, gloo on CPU) if there is one; pick the device.

    ``device`` is ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but CUDA is not available")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return Context(rank=rank, world_size=world, local_rank=local, device=dev)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (a NaN on any rank makes the result NaN, which is what the bad-step check wants)."""
    if is_distributed():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values


def average_buffers(module: nn.Module) -> None:
    """Make the floating buffers (BatchNorm running statistics) the mean over ranks, in place.

    Under DDP with ``broadcast_buffers=False`` each rank's BatchNorm keeps statistics of its own part of the
    batch; averaging them after every step keeps the ranks' models identical (and their statistics those of
    the global batch, as SyncBatchNorm's would be). Integer buffers (``num_batches_tracked``) agree anyway."""
    if not is_distributed():
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer.data, op=dist.ReduceOp.SUM)
            buffer.data /= dist.get_world_size()


def all_gather_objects(obj: Any) -> list[Any]:
    """The ``obj`` of every rank, in rank order (JSON-able data only is sent here: RNG states)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap(module: nn.Module, context: Context) -> nn.Module:
    """DistributedDataParallel when running on several ranks, else the module itself.

    On CUDA ranks BatchNorm layers become SyncBatchNorm first (in place: the parameters, the optimizer's
    references and the state-dict keys stay the same), so batch statistics span the global batch as in FOMM.
    SyncBatchNorm has no CPU kernel: CPU ranks (gloo, the tests) keep per-rank statistics."""
    if context.world_size == 1:
        return module
    if context.device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` (shuffled, drop_last) whose order depends only on (seed, epoch) and that can
    start in the middle of an epoch, so a resumed run continues with exactly the samples it would have seen.
    """

    def __init__(self, dataset: Sized, world_size: int, rank: int, *, seed: int, batch_size: int) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.start = 0

    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def set_position(self, epoch: int, batches_done: int) -> None:
        """Iterate epoch ``epoch``, skipping the ``batches_done`` batches already consumed."""
        self.set_epoch(epoch)
        self.start = min(batches_done * self.batch_size, self.num_samples)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start
