import pathlib
import subprocess
import sys

import pytest

import allocator
import run
from configs.schema import apply_overrides

REPO = pathlib.Path(__file__).resolve().parents[1]
BUFFER_PAGES = 64 * 2**20 // 4096  # the pages of one 64 MiB tensor

# Allocates and frees a 64 MiB tensor: 10 rounds to settle, then counts the minor page faults of
# 10 more in a fresh process (glibc's own thresholds until keep_freed_memory is called).
FAULTS_OF_TEN_ROUNDS = """
import resource, sys, torch
import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory()
def rounds(n):
    for _ in range(n):
        t = torch.ones(16 * 2**20)
        del t
rounds(10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(10)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_of_ten_rounds(mode):
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_OF_TEN_ROUNDS, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator.glibc() is None, reason="glibc's mallopt only")
def test_kept_memory_is_reused_without_page_faults():
    system, kept = faults_of_ten_rounds("system"), faults_of_ten_rounds("keep")
    print(f"minor page faults of 10 allocations of 64 MiB: {system} by default, {kept} kept")
    assert system >= 9 * BUFFER_PAGES  # glibc maps each one afresh and faults every page in
    assert kept < BUFFER_PAGES / 10  # the freed pages are reused


def test_limit_out_of_mallopts_range_is_refused():
    for limit in (0, 2**31):
        with pytest.raises(ValueError, match="limit_bytes"):
            allocator.keep_freed_memory(limit)


def test_training_keeps_freed_memory(tiny_config, monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(True))
    run.train(apply_overrides(tiny_config, ["training.epochs=1", "training.max_steps_per_epoch=1"]))
    assert calls == [True]
