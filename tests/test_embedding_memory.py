"""Streaming large memory-mapped datasets: pages released after use, embeddings written to a file."""

import pathlib
import sys

import numpy as np
import pytest
import torch

import utils
from configs.schema import load_config
from data.io import _malloc_trim, release_pages, trim_heap
from models.build import build_model_from_config


def resident_mb(kind):
    """This process's resident memory of one kind (``RssFile``, ``RssAnon``), in MB."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{kind}:"):
            return int(line.split()[1]) / 1024
    pytest.skip(f"no {kind} in /proc/self/status")


def resident_file_mb():
    return resident_mb("RssFile")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_released_pages_leave_resident_memory_and_the_data_reads_back(tmp_path):
    x = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, (256, 1, 128, 128))  # 16 MB
    x[:] = np.arange(256, dtype=np.float32)[:, None, None, None]
    x.flush()
    del x
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    before = resident_file_mb()
    total = sum(float(np.array(x[i : i + 32]).sum()) for i in range(0, 256, 32))
    read = resident_file_mb() - before
    for i in range(0, 256, 32):
        release_pages(x[i : i + 32])
    released = resident_file_mb() - before
    print(f"resident after reading 16 MB: +{read:.1f} MB; after releasing: +{released:.1f} MB")
    assert read > 12 and released < 1
    assert total == 128 * 128 * sum(range(256))
    np.testing.assert_array_equal(np.array(x[250, 0, :2, :2]), np.full((2, 2), 250, np.float32))


def test_release_pages_ignores_arrays_that_are_not_read_only_or_shared_maps(tmp_path):
    plain = np.ones(10)
    release_pages(plain)  # not a map: nothing happens
    np.save(tmp_path / "c.npy", np.ones((4, 4096), np.float32))
    copy_on_write = np.load(tmp_path / "c.npy", mmap_mode="c")
    copy_on_write[0] = 7.0  # a private change that dropping the page would lose
    release_pages(copy_on_write[:1])
    assert (copy_on_write[0] == 7.0).all()


@pytest.mark.skipif(_malloc_trim() is None, reason="the C library has no malloc_trim (not glibc)")
def test_trim_heap_returns_freed_heap_memory_to_the_system():
    trim_heap()  # what earlier code freed
    before = resident_mb("RssAnon")
    arrays = [np.ones(6_250) for _ in range(2_200)]  # 110 MB in 50 kB blocks: malloc's heap
    kept = arrays[::10]  # every tenth stays, so the freed blocks are holes free() cannot hand back
    del arrays
    freed = resident_mb("RssAnon")
    assert trim_heap()
    trimmed = resident_mb("RssAnon")
    print(f"heap: +{freed - before:.0f} MB after freeing 99 MB; trim_heap released {freed - trimmed:.0f} MB")
    assert freed - before > 80 and freed - trimmed > 80
    assert sum(a.sum() for a in kept) == 220 * 6_250


def test_embeddings_written_to_a_memory_map_equal_the_in_memory_ones(tmp_path):
    torch.manual_seed(0)
    model = build_model_from_config(load_config("configs.config_tiny")).eval()
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((70, 1, 16, 16), dtype=np.float32))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "emb.npy", "w+", np.float32, (70, 4))
    returned = utils.get_model_embeddings_from_tensors(model, x, batch_size=16, progress=False, out=out)
    assert returned is out
    del out, returned
    expected = utils.get_model_embeddings_from_tensors(model, np.array(x), batch_size=70, progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "emb.npy"), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"out must have shape \(n, zdim\) = \(70, 4\), got \(69, 4\)"):
        utils.get_model_embeddings_from_tensors(model, x, out=np.zeros((69, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(n, zdim\) = \(70, 4\), got \(70, 5\)"):  # before any work
        utils.get_model_embeddings_from_tensors(model, x, out=np.zeros((70, 5), np.float32))
