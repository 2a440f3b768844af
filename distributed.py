"""Data-parallel training under ``torchrun``: the process group, each rank's share of the data, seeds.

``torchrun --nproc_per_node=N run.py configs.X`` starts N copies of ``run.py``; each finds its
rank here (from the environment torchrun sets) and trains a
:class:`~torch.nn.parallel.DistributedDataParallel` copy of the model on its share of every batch.
A plain ``python run.py`` has no such environment and trains as one process, unchanged.
"""

import dataclasses
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from configs.schema import ConfigError
from data.datasets import RecordingBatchSampler, WorkerLoader


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 logs and saves)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self):
        return self.size > 1

    @property
    def is_main(self):
        return self.rank == 0


ONE_PROCESS = World()


def join():
    """Join the process group that ``torchrun`` describes, if any; returns this process's :class:`World`.

    Without torchrun's environment (or with one process) nothing happens. The backend is gloo
    for CPU tensors and, where there is a GPU for every local process, NCCL for CUDA tensors;
    each process then uses the GPU of its ``LOCAL_RANK``.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return ONE_PROCESS
    world = World(int(os.environ["RANK"]), size, int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        if torch.cuda.is_available() and world.local_rank < torch.cuda.device_count():
            torch.cuda.set_device(world.local_rank)
            dist.init_process_group("cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group("gloo")
    return world


def leave(world):
    """Leave the process group (after training)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def finish_together(world):
    """Wait until every process has finished its run, then return: the end of a run that went well.

    Rank 0 validates, saves and reports after the others' last step. A process that exits early
    and fails in its own teardown (seen once in CI: a gloo process aborting after its last
    step) would have torchrun stop rank 0 in the middle of that; waiting here makes every
    process exit only once rank 0's files are written. A wait longer than the process group's
    timeout (30 minutes) gives up with a warning, and the processes exit as they finish.
    """
    if not world.distributed:
        return
    try:
        barrier(world)
    except RuntimeError as e:  # gloo's timeout, or a peer that gave up first
        print(f"warning: process {world.rank} stopped waiting for the others to finish: {e}", file=sys.stderr)


def barrier(world):
    """Wait until every process gets here (a CPU collective, so it works with either backend)."""
    if world.distributed:
        dist.all_reduce(torch.zeros(1))


def agree_on_signal(world, signum):
    """The stop signal any process received (the highest number when several), so that all stop
    after the same step; ``signum`` is this process's, or None."""
    if not world.distributed:
        return signum
    flag = torch.tensor([signum or 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag) or None


def rank_seed(seed, rank, *position):
    """A seed for the random draws of ``rank`` at ``position``: ``(epoch,)`` or ``(epoch, batch)``.

    Seeding every step from where it stands makes a resumed run draw what an uninterrupted one
    would, with no random state to save per process, and gives every rank its own draws.
    """
    # the length first: SeedSequence pads its entropy with zeros, so (2,) and (2, 0) would agree
    return int(np.random.SeedSequence([seed, rank, len(position), *position]).generate_state(1)[0])


def sharded_loader(dset, world, batch_size, seed, num_workers, pin_memory, generator):
    """The training loader of this rank: its share of each global batch of ``batch_size`` images.

    A :class:`~torch.utils.data.DistributedSampler` (shuffled with ``seed`` and the epoch: call
    ``loader.batch_sampler.sampler.set_epoch(epoch)``) gives each rank every ``world.size``-th
    image of one permutation, so that the ranks' batches of a step together hold the images of
    one single-process batch of that permutation. ``batch_size`` must divide by the number of
    processes, at least 2 images each (a ConfigError otherwise). ``generator`` seeds the workers'
    random draws.
    """
    if batch_size % world.size or batch_size < 2 * world.size:
        raise ConfigError(
            f"data.batch_size ({batch_size}) must be a multiple of the number of processes ({world.size}), "
            "at least 2 each: it is the global batch, shared equally, and batch normalisation needs 2"
        )
    local = batch_size // world.size
    sampler = DistributedSampler(dset, world.size, world.rank, shuffle=True, seed=seed, drop_last=True)
    # a last batch of one image cannot be batch-normalised: drop it
    batches = RecordingBatchSampler(sampler, local, drop_last=len(sampler) % local == 1)
    return WorkerLoader(
        dset,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=generator,
    )
