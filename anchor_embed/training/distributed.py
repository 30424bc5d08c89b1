"""Multi-process training (`torchrun --nproc-per-node N -m anchor_embed.cli pretrain|transfer ...`).

Each rank embeds its contiguous share of every global batch; the vectors of all ranks are gathered so every
rank computes the same loss over the whole batch, with gradients flowing through its own share only (the
other ranks' vectors arrive without a graph, as open_clip's gather_features does). DDP averages the
gradients, so the loss is scaled by the world size before backward: the update equals a single process's
on the concatenated batch. Rank 0 writes checkpoints, metrics and the model and scores the validation
share; its verdicts are broadcast so every rank stops together.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from anchor_embed.errors import AnchorEmbedError


def _shutdown() -> None:
    """Destroy the process group before the interpreter tears down, for ranks run from Python rather than the
    CLI (the CLI ends its ranks with `exit_rank`, since gloo's teardown can abort even after this)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> None:
    """End a torchrun rank: wait for the others, then leave without the interpreter's and C++'s teardown, where
    gloo's threads abort now and then ('terminate called without an active exception', exit -6, even after
    destroy_process_group). Every file is written and closed by then; stdout and stderr are flushed."""
    if code == 0 and dist.is_initialized():    # a failing rank leaves at once: the others may never arrive
        try:
            dist.barrier()
        except RuntimeError:          # a rank already gone: its exit code tells torchrun what happened
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass
class Dist:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        """From torchrun's environment; initialises the process group (gloo on CPU, nccl on CUDA) once."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            atexit.register(_shutdown)
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's contiguous part of a global batch of n (n must divide evenly)."""
        if n % self.world:
            raise AnchorEmbedError(f"--batch-size: a global batch of {n} does not split over {self.world} processes")
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """The rows of every rank in rank order; this rank's rows keep their gradient."""
        if self.world == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.detach().contiguous())
        parts[self.rank] = x
        return torch.cat(parts)

    def broadcast_flags(self, *flags: float) -> list[float]:
        """Rank 0's values for every rank (selection and stop decisions stay in step)."""
        if self.world == 1:
            return list(flags)
        t = torch.tensor(flags, dtype=torch.float64)
        dist.broadcast(t, 0)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()
