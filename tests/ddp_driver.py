"""Run by ``tests/test_distributed.py`` under torchrun: ``run.main`` with every process's parameters
recorded after each optimizer step, saved to ``$RECORD_DIR/rank<RANK>.pt`` (steps x parameters)."""

import os
import sys

import torch

import run

recorded = []
train_step = run.train_step


def recording_train_step(net, *args, **kwargs):
    result = train_step(net, *args, **kwargs)
    recorded.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    return result


run.train_step = recording_train_step
try:
    run.main(sys.argv[1:])
finally:
    steps = torch.stack(recorded) if recorded else torch.zeros(0)
    torch.save(steps, os.path.join(os.environ["RECORD_DIR"], f"rank{os.environ['RANK']}.pt"))
