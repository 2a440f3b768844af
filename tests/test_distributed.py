"""Data-parallel training under torchrun (gloo on the CPU), mixed precision and pinned loading."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DistributedSampler

import distributed
import models.vae
import run
import utils
from configs.schema import ConfigError, load_config
from data.datasets import get_datasets_from_config
from models.build import build_model_from_config, load_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]


def torchrun(nproc, args, record_dir, tmp_path):
    """Run ``tests/ddp_driver.py`` (``run.main`` recording each step) under torchrun; returns the
    model.pt of the run and each rank's parameters after every step."""
    record_dir.mkdir(exist_ok=True)
    # PYTHONFAULTHANDLER: a process that aborts prints where (a rank aborted once after training)
    env = dict(os.environ, RECORD_DIR=str(record_dir), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env["PYTHONFAULTHANDLER"] = "1"
    env.pop("WANDB_MODE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    done = subprocess.run(
        [*cmd, str(ROOT / "tests" / "ddp_driver.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = [torch.load(record_dir / f"rank{r}.pt", weights_only=True) for r in range(nproc)]
    return done, steps


def run_dirs(out_dir):
    return sorted(pathlib.Path(out_dir).glob("wandb/*/files"))


def reference_run(config, world_size):
    """A single process doing what ``world_size`` torchrun processes do, step by step: each
    process's share of the batch (the same DistributedSampler), its own seeds and batch
    statistics, all starting the step from the same running statistics (rank 0's, broadcast),
    gradients averaged, one Adam step; rank 0's updated running statistics kept. One thread, as
    each torchrun process has (OMP_NUM_THREADS=1), so that the sums add in the same order.
    Returns the parameters after every step, and the model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference_run(config, world_size)
    finally:
        torch.set_num_threads(threads)


def _reference_run(config, world_size):
    training = config.training
    run.seed_everything(training.seed)
    dset = get_datasets_from_config(config)[0]
    model = build_model_from_config(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    samplers = [
        DistributedSampler(dset, world_size, r, shuffle=True, seed=training.seed, drop_last=True)
        for r in range(world_size)
    ]
    local = config.data.batch_size // world_size
    n_steps = min(len(samplers[0]) // local, training.max_steps_per_epoch)
    recorded = []
    for epoch in range(training.epochs):
        shares = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            shares.append(list(BatchSampler(sampler, local, drop_last=False)))
        for i in range(n_steps):
            optimizer.zero_grad(set_to_none=True)
            start = run.batch_norm_statistics(model)
            for rank in range(world_size):
                run.restore(start)
                run.seed_everything(distributed.rank_seed(training.seed, rank, epoch, i))
                x = torch.stack([dset[j][0] for j in shares[rank][i]])
                (model(x)["loss"] / world_size).backward()
                if rank == 0:
                    rank0_statistics = run.batch_norm_statistics(model)
            run.restore(rank0_statistics)
            optimizer.step()
            recorded.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return torch.stack(recorded), model


@pytest.mark.slow
def test_torchrun_trains_with_identical_ranks_equal_to_one_process_and_resumes_exactly(tiny_data, tmp_path):
    args = [
        "configs.config_tiny", f"data.data_dir={tiny_data}", "logging.wandb_mode=disabled",
        "data.batch_size=16", "training.max_steps_per_epoch=4",
    ]  # fmt: skip
    done, steps = torchrun(
        2, [*args, f"logging.out_dir={tmp_path / 'full'}"], tmp_path / "rec_full", tmp_path
    )
    assert done.stdout.count("model: o2 encoder") == 1  # rank 0 alone reports
    assert "on 2 processes (cpu)" in done.stdout
    assert "quality: kNN" in done.stdout
    assert steps[0].shape[0] == 2 * 4  # every step recorded
    for i in range(len(steps[0])):  # DistributedDataParallel keeps the copies equal, bit for bit
        assert torch.equal(steps[0][i], steps[1][i]), f"ranks differ after step {i + 1}"
    assert not torch.equal(steps[0][0], steps[0][-1])  # it trained
    times = [json.loads((tmp_path / "rec_full" / f"times{r}.json").read_text()) for r in range(2)]
    # rank 0 validates and reports after training; rank 1 waits for it (distributed.finish_together)
    assert times[1]["returned"] >= times[0]["trained"] > times[1]["trained"]

    config = load_config("configs.config_tiny", [a for a in args[1:]])
    expected, reference = reference_run(config, world_size=2)
    difference = (steps[0] - expected).abs().max().item()
    print(f"largest difference to the single-process computation: {difference:.2e}")
    torch.testing.assert_close(steps[0], expected, rtol=1e-6, atol=1e-7)  # 0 when measured
    [full_dir] = run_dirs(tmp_path / "full")
    state, _, _ = load_checkpoint(full_dir / "model.pt")
    assert state["world_size"] == 2 and state["epoch"] == 2
    for name, value in reference.state_dict().items():  # rank 0's running statistics too
        torch.testing.assert_close(state["model"][name], value, rtol=1e-6, atol=1e-7, msg=name)

    # stop after one epoch, resume under torchrun: the same weights, bit for bit
    first = [*args, "training.epochs=1", f"logging.out_dir={tmp_path / 'part'}"]
    torchrun(2, first, tmp_path / "rec_part", tmp_path)
    [part_dir] = run_dirs(tmp_path / "part")
    _, resumed = torchrun(
        2, ["--resume", str(part_dir), "training.epochs=2"], tmp_path / "rec_resumed", tmp_path
    )
    assert resumed[0].shape[0] == 4  # the second epoch only
    assert torch.equal(resumed[0], steps[0][4:])
    resumed_state, _, _ = load_checkpoint(part_dir / "model.pt")
    for name, value in state["model"].items():
        assert torch.equal(resumed_state["model"][name], value), name


def test_each_rank_gets_its_share_of_every_global_batch(tiny_config):
    dset = get_datasets_from_config(tiny_config)[0]
    shares = []
    for rank in range(2):
        world = distributed.World(rank, 2, rank)
        loader = distributed.sharded_loader(dset, world, 16, 0, 0, False, torch.Generator())
        loader.batch_sampler.sampler.set_epoch(3)
        shares.append([batch for batch in loader.batch_sampler])
        assert len(loader) == len(dset) // 2 // 8
    single = DistributedSampler(dset, 1, 0, shuffle=True, seed=0, drop_last=True)
    single.set_epoch(3)
    order = list(single)
    for i, (a, b) in enumerate(zip(*shares, strict=True)):
        assert len(a) == len(b) == 8
        assert sorted(a + b) == sorted(order[16 * i : 16 * (i + 1)])  # one single-process batch
    with pytest.raises(
        ValueError, match=r"data.batch_size \(15\) must be a multiple of the number of processes \(2\)"
    ):
        distributed.sharded_loader(dset, distributed.World(0, 2, 0), 15, 0, 0, False, None)
    with pytest.raises(ConfigError, match=r"data.batch_size \(2\) must be .* at least 2 each"):
        distributed.sharded_loader(dset, distributed.World(0, 2, 0), 2, 0, 0, False, None)


def test_rank_seeds_differ_by_rank_and_position_and_repeat():
    seeds = {distributed.rank_seed(0, r, e, b) for r in range(2) for e in range(3) for b in range(5)}
    assert len(seeds) == 30
    assert distributed.rank_seed(0, 1, 2, 3) == distributed.rank_seed(0, 1, 2, 3)
    assert distributed.rank_seed(0, 1, 2) != distributed.rank_seed(0, 1, 2, 0)


def test_a_process_that_waits_too_long_for_the_others_warns_and_goes_on(monkeypatch, capsys):
    def timed_out(world):
        raise RuntimeError("Timed out waiting 1800000ms for recv operation to complete")

    monkeypatch.setattr(distributed, "barrier", timed_out)
    distributed.finish_together(distributed.World(1, 2, 1))  # no exception: the run went well
    assert "process 1 stopped waiting for the others to finish: Timed out" in capsys.readouterr().err
    distributed.finish_together(distributed.ONE_PROCESS)  # one process: nothing to wait for
    assert capsys.readouterr().err == ""


def test_the_stop_check_acts_on_the_signal_the_processes_agree_on():
    """Without torchrun, agreeing is the identity; the check stops on what the agreement returns
    (the all-reduce itself runs in the torchrun test)."""
    assert distributed.agree_on_signal(distributed.ONE_PROCESS, None) is None
    assert distributed.agree_on_signal(distributed.ONE_PROCESS, 15) == 15
    stop = run.StopOnSignal()
    stop.check(lambda signum: None)  # no process got a signal: go on
    with pytest.raises(run.Terminated):
        stop.check(lambda signum: 15)  # another process got SIGTERM
    assert stop.received == 15


def test_cuda_only_settings_are_refused_on_the_cpu(tiny_config):
    cpu, world = torch.device("cpu"), distributed.World(0, 2, 0)
    bf16 = load_config("configs.config_tiny", ["training.precision=bf16"])
    with pytest.raises(ConfigError, match="training.precision='bf16' is for CUDA GPUs"):
        run.check_training_device(bf16.training, cpu, distributed.ONE_PROCESS)
    sync = load_config("configs.config_tiny", ["training.sync_batchnorm=True"])
    with pytest.raises(ConfigError, match="training.sync_batchnorm=True needs CUDA GPUs"):
        run.check_training_device(sync.training, cpu, world)
    run.check_training_device(sync.training, cpu, distributed.ONE_PROCESS)  # one process: nothing to sync
    with pytest.raises(ConfigError, match="training.precision must be one of"):
        load_config("configs.config_tiny", ["training.precision=fp16"])
    with pytest.raises(ConfigError, match="bf16"):
        run.train(load_config("configs.config_tiny", ["training.precision=bf16", "training.device=cpu"]))


def test_mixed_precision_keeps_registration_and_losses_in_float32(monkeypatch):
    torch.manual_seed(0)
    model = build_model_from_config(load_config("configs.config_tiny")).eval()
    x = torch.rand(8, 1, 16, 16)
    seen, register = [], models.vae.register

    def spy(fixed, moving, **kwargs):
        seen.append((fixed.dtype, moving.dtype, torch.is_autocast_enabled("cpu")))
        return register(fixed, moving, **kwargs)

    monkeypatch.setattr(models.vae, "register", spy)
    full = model(x)
    with torch.autocast("cpu", torch.bfloat16):
        assert model.encode(x)[0].dtype == torch.bfloat16  # the networks do run in bfloat16
        mixed = model(x)
    assert seen == [(torch.float32, torch.float32, False)] * 2
    assert mixed["loss"].dtype == mixed["out"].dtype == torch.float32
    torch.testing.assert_close(mixed["loss"], full["loss"], rtol=1e-2, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_and_exported_embedding_on_cuda(tiny_config):
    tiny_config.training.device = "cuda"
    run_dir = run.train(tiny_config)
    model = run.load_model(run_dir, device="cuda")
    x = torch.rand(40, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    gpu = utils.get_model_embeddings_from_tensors(model, x, batch_size=16, progress=False)
    cpu = utils.get_model_embeddings_from_tensors(model.cpu(), x, batch_size=16, progress=False, export=False)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-4)  # TF32 convolutions on the GPU


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL: one per process)")
def test_torchrun_with_nccl_on_two_gpus(tiny_data, tmp_path):
    args = [
        "configs.config_tiny", f"data.data_dir={tiny_data}", "logging.wandb_mode=disabled",
        "training.device=cuda", "training.sync_batchnorm=True", f"logging.out_dir={tmp_path}",
    ]  # fmt: skip
    done, steps = torchrun(2, args, tmp_path / "rec", tmp_path)
    assert "on 2 processes (cuda)" in done.stdout
    for i in range(len(steps[0])):
        assert torch.equal(steps[0][i], steps[1][i]), f"ranks differ after step {i + 1}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_training_on_cuda(tiny_config):
    tiny_config.training.precision, tiny_config.training.device = "bf16", "cuda"
    run_dir = run.train(tiny_config)
    state, _, _ = load_checkpoint(run_dir / "model.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_workers_draw_their_own_augmentations_and_repeat_with_the_seed(tiny_data, tmp_path):
    """``data.num_workers=2`` on a memory-mapped dataset with augmentation: every worker draws its
    own angles (no two items of an epoch share one), and a seed gives the same epoch again."""
    x = np.zeros((32, 1, 16, 16), np.float32)
    x[:, :, 4:12, 7:9] = 1.0  # the same bar everywhere: only the augmentation tells items apart
    np.save(tmp_path / "X_train.npy", x)
    config = load_config(
        "configs.config_tiny",
        [
            f"data.data_dir={tmp_path}",
            "data.num_workers=2",
            "data.rotation_augmentation=True",
            "data.batch_size=4",
        ],
    )

    def epoch(seed):
        dset, loader, _, _ = get_datasets_from_config(config, generator=torch.Generator().manual_seed(seed))
        assert isinstance(dset.x, np.memmap)
        return torch.cat([batch[0] for batch in loader])

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    flat = first.flatten(1)
    distances = torch.cdist(flat, flat) + torch.eye(len(flat)) * 1e9
    assert distances.min() > 1e-3  # 32 different rotations, from both workers
