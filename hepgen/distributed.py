"""Devices and data-parallel ranks for the training loop.

:func:`resolve_device` turns ``train.device`` (auto, cpu, cuda, cuda:N) into a torch device.
Under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`init_dist` joins the process group (nccl on GPU,
gloo on CPU) and :class:`Dist` says which rank this process is; with one process every helper
here is a no-op, so the loop is written once. :func:`loss_module` is the piece
DistributedDataParallel wraps (it averages the gradients); :func:`check_replicas` confirms, bit
for bit, that every rank ended with the same parameters.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as td
from torch import nn

from .errors import HepgenError


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """``name`` (auto, cpu, cuda, cuda:N) as a torch device; ``what`` names the setting in errors."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HepgenError(f"{what} = {name!r} but no CUDA GPU is available (use auto or cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise HepgenError(f"{what} = {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None


@dataclass
class Dist:
    """This process's place among the ranks (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    owned: bool = False  # this module started the process group (so it also ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1

    def place(self, device: torch.device) -> torch.device:
        """The device of this rank: one GPU per rank (round robin), the CPU shared."""
        if self.on and device.type == "cuda":
            return torch.device("cuda", self.rank % torch.cuda.device_count())
        return device


def init_dist(device: torch.device) -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (started here unless already up)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    owned = not td.is_initialized()
    if owned:
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(td.get_rank(), td.get_world_size(), owned)


def end_dist(dist: Dist) -> None:
    """End a process group this module started; left to exit, gloo's threads can abort the
    process ("terminate called without an active exception") after a successful run."""
    if dist.owned:
        td.barrier()
        td.destroy_process_group()


def broadcast(obj, dist: Dist):
    """Rank 0's ``obj`` on every rank (picklable)."""
    if not dist.on:
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, dist: Dist) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.on:
        return [obj]
    out = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


class _LossModule(nn.Module):
    """forward(x, c, weight) = model.loss(x, c[, weight]): the call DistributedDataParallel wraps;
    with ``c_varied`` and ``w_varied`` (``train.nuisance_paired``) model.paired_loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, c, weight=None, c_varied=None, w_varied=None):
        if c_varied is not None:
            return self.model.paired_loss(x, c, c_varied, w_varied, weight)
        return self.model.loss(x, c) if weight is None else self.model.loss(x, c, weight)


def loss_module(model: nn.Module, dist: Dist) -> nn.Module:
    """A module whose forward(x, c) is ``model.loss(x, c)``; DDP-wrapped across ranks."""
    wrapped = _LossModule(model)
    return nn.parallel.DistributedDataParallel(wrapped) if dist.on else wrapped


def check_replicas(model: nn.Module, dist: Dist) -> str:
    """sha256 of the parameters, equal on every rank (else :class:`HepgenError`)."""
    digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values()))
    sums = gather(digest.hexdigest(), dist)
    if len(set(sums)) != 1:
        raise HepgenError(f"DDP ranks ended with different parameters ({', '.join(s[:8] for s in sums)})")
    return sums[0]
