"""Run by ``tests/test_distributed.py`` under torchrun: ``run.main`` with every process's parameters
recorded after each optimizer step, saved to ``$RECORD_DIR/rank<RANK>.pt`` (steps x parameters),
and the times (``time.time()``) at which its training ended and ``run.main`` returned, saved to
``$RECORD_DIR/times<RANK>.json``."""

import json
import os
import sys
import time

import torch

import run

recorded = []
times = {}
train_step = run.train_step
train = run.train


def recording_train_step(net, *args, **kwargs):
    result = train_step(net, *args, **kwargs)
    recorded.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    return result


def timed_train(*args, **kwargs):
    result = train(*args, **kwargs)
    times["trained"] = time.time()
    return result


run.train_step = recording_train_step
run.train = timed_train
try:
    run.main(sys.argv[1:])
    times["returned"] = time.time()
finally:
    record_dir, rank = os.environ["RECORD_DIR"], os.environ["RANK"]
    steps = torch.stack(recorded) if recorded else torch.zeros(0)
    torch.save(steps, os.path.join(record_dir, f"rank{rank}.pt"))
    with open(os.path.join(record_dir, f"times{rank}.json"), "w") as f:
        json.dump(times, f)
