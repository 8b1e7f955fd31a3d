"""Data-parallel training over several processes with PyTorch's own distributed runtime::

    torchrun --nproc_per_node 4 $(which ffpt-ase) train --device cuda --data pt.npz -o runs/pt
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        $(which ffpt-ase) train ...

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; each process then joins the
process group (NCCL on GPUs, gloo on CPUs) and takes ``cuda:LOCAL_RANK`` when the device
is ``cuda``.

What is the same as one process: the *global* batch. Every process draws the same seeded
order of the training frames; each global batch of ``batch_size`` frames is cut into
``world_size`` contiguous shares, one per process. Each process's loss is its share's sum
of errors divided by the global batch's counts (frames, force components, pairs), and the
gradients are summed over the processes (one all-reduce of a flat buffer per step), so the
optimizer sees exactly the gradient of the global batch's loss: the same training as one
process with the same batch size, to floating-point rounding of the sums. Validation frames
are shared out too and their predictions gathered, so every process computes the same
validation loss and the scheduler stays in step.

One process (rank 0) writes the run folder (lock, ``run.json``, checkpoints, logs); the
others read the split and, on resume, ``last.pt`` from it after rank 0 has opened it. The
model is broadcast from rank 0 after start-up, so every process starts from the same
weights. A run may be resumed with another number of processes (the global batch is
unchanged); ``config.json`` records the ``world_size`` of each start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Distributed:
    """This process's place in a data-parallel run (``world_size`` 1: a plain run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str) -> "Distributed":
        """Join the process group torchrun describes in the environment (nothing to join
        without ``WORLD_SIZE`` > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist
        for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise ValueError(f"WORLD_SIZE is {world} but {name} is not set: start "
                                 f"distributed training with torchrun")
        out = cls(int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"]))
        if not dist.is_initialized():
            backend = "nccl" if str(device).startswith("cuda") else "gloo"
            if backend == "nccl":   # each process's collectives on its own GPU
                torch.cuda.set_device(out.local_rank)
            dist.init_process_group(backend=backend)
        return out

    def device_name(self, device: str) -> str:
        """``cuda`` becomes ``cuda:LOCAL_RANK`` in a distributed run; other names stay."""
        if self.active and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()

    # ------------------------------------------------------------------ collectives
    def share(self, items: np.ndarray) -> np.ndarray:
        """This process's contiguous share of ``items`` (all of them in a plain run)."""
        if not self.active:
            return items
        return np.array_split(items, self.world_size)[self.rank]

    def all_gather(self, obj) -> list:
        """Every process's ``obj`` (picklable), in rank order."""
        if not self.active:
            return [obj]
        import torch.distributed as dist
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every process."""
        if not self.active:
            return obj
        import torch.distributed as dist
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, value: float) -> float:
        """The sum of a number over the processes."""
        if not self.active:
            return value
        import torch.distributed as dist
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return float(t.item())

    def sum_gradients(self, model: torch.nn.Module) -> None:
        """Sum the parameters' gradients over the processes (one flat all-reduce); a missing
        gradient counts as zero."""
        if not self.active:
            return
        import torch.distributed as dist
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p))
            offset += n

    def broadcast_model(self, model: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every process."""
        if not self.active:
            return
        import torch.distributed as dist
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist
            dist.barrier()

    def _comm_device(self):
        import torch.distributed as dist
        return torch.device(f"cuda:{self.local_rank}") if dist.get_backend() == "nccl" \
            else torch.device("cpu")

    def agree(self, error: BaseException | None) -> None:
        """Raise on every process if any process failed (so none waits forever at the next
        collective): the first failure's message, as a ValueError on the others."""
        messages = self.all_gather(None if error is None else
                                   f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        failed = [m for m in messages if m]
        if failed:
            raise ValueError(f"another training process failed: {failed[0]}")
