"""Crash safety of training: step checkpoints, exact resume, damaged files, signals, numerical faults."""

import ast
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import run
from configs.schema import apply_overrides, load_config
from data.datasets import WorkerLoader, get_datasets_from_config, ignore_stop_signals
from models.build import CheckpointError, content_checksum, load_checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_config(tiny_config):
    # augmentation and the invariance term draw random numbers at every step: resuming must restore them
    return apply_overrides(
        tiny_config,
        [
            "data.rotation_augmentation=True",
            "data.flip_augmentation=True",
            "model.invariance_weight=1.0",
            "training.lr_schedule=cosine",
        ],
    )


def weights_and_optimizer(path):
    state = torch.load(path, weights_only=True)
    return state["model"], state["optimizer"]["state"], (state["epoch"], state["batch"])


def assert_same_training_state(path_a, path_b):
    (wa, oa, pa), (wb, ob, pb) = weights_and_optimizer(path_a), weights_and_optimizer(path_b)
    assert pa == pb
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key  # bitwise
    for a, b in zip(oa.values(), ob.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("every_steps", [2, 4])
def test_a_step_checkpoint_resumes_mid_epoch_bitwise(tiny_config, monkeypatch, every_steps):
    config = apply_overrides(
        tiny_config, ["training.epochs=3", f"training.checkpoint_every_steps={every_steps}"]
    )
    straight = run.train(config)
    snapshots = []
    save = run.save_checkpoint

    def save_and_keep(path, *args, batch=0, **kwargs):
        save(path, *args, batch=batch, **kwargs)
        if path.name == "model.pt" and batch:
            snapshots.append(path.read_bytes())

    monkeypatch.setattr(run, "save_checkpoint", save_and_keep)
    second = run.train(config)
    monkeypatch.undo()
    assert len(snapshots) >= 2  # 3 steps per epoch: some step checkpoints fall inside an epoch
    for snapshot in snapshots:
        (second / "model.pt").write_bytes(snapshot)  # as if the run had died after that checkpoint
        state = torch.load(second / "model.pt", weights_only=True)
        assert 0 < state["batch"] <= 3  # 3: the epoch's steps done, its validation not yet
        assert run.main(["--resume", str(second)]) == second
        assert_same_training_state(straight / "model.pt", second / "model.pt")


def test_ctrl_c_finishes_the_step_then_saves_and_resumes_bitwise(tiny_config, monkeypatch):
    import models.vae

    config = apply_overrides(tiny_config, ["training.epochs=3", "training.validate_every=5"])
    straight = run.train(config)
    forward, calls = models.vae.VAE.forward, {"n": 0}

    def ctrl_c_during_fifth_step(self, x):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, batch 2: the signal arrives mid-step
            os.kill(os.getpid(), signal.SIGINT)
        return forward(self, x)

    monkeypatch.setattr(models.vae.VAE, "forward", ctrl_c_during_fifth_step)
    # Ctrl-C as in a terminal, even when pytest was started in the background (`&` ignores SIGINT,
    # and training leaves an ignored signal ignored: the next test)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run.train(config)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # training restored it
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    (run_dir,) = [d for d in pathlib.Path(config.logging.out_dir).glob("wandb/*/files") if d != straight]
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert (state["epoch"], state["batch"]) == (1, 2)  # the step it was in was finished
    run.main(["--resume", str(run_dir)])
    assert_same_training_state(straight / "model.pt", run_dir / "model.pt")


def test_a_non_finite_loss_names_exactly_the_images_of_its_batch(tiny_config, monkeypatch):
    import models.vae

    forward, seen = models.vae.VAE.forward, []

    def nan_at_fourth_step(self, x):
        out = forward(self, x)
        if self.training:
            seen.append(x.clone())
            if len(seen) == 4:
                out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(models.vae.VAE, "forward", nan_at_fourth_step)
    overrides = ["training.epochs=2", "data.rotation_augmentation=False", "data.flip_augmentation=False"]
    config = apply_overrides(tiny_config, [*overrides, "training.checkpoint_every_steps=1"])
    with pytest.raises(FloatingPointError) as error:
        run.train(config)
    message = str(error.value)
    assert message.startswith("the loss is nan at step 4 (epoch 2, batch 1; training images [")
    assert "try a lower training.lr (now 0.0005) or set training.grad_clip" in message  # cosine, step 4 of 6
    indices = ast.literal_eval(re.search(r"training images (\[[0-9, ]+\])", message).group(1))
    dset = get_datasets_from_config(config)[0]
    expected = torch.stack([dset[i][0] for i in indices])
    assert torch.equal(expected, seen[3])  # the named images are the batch, in its order
    (saved,) = pathlib.Path(config.logging.out_dir).glob("wandb/*/files/model.pt")
    state = torch.load(saved, weights_only=True)
    assert (state["epoch"], state["batch"]) == (1, 0)  # the last good state: before the failing step
    # ... exactly: the failed forward pass's batch-norm updates are undone, so the state saved
    # equals the checkpoint of the step before (kept as model.prev.pt)
    before = torch.load(saved.with_name("model.prev.pt"), weights_only=True)
    assert (before["epoch"], before["batch"]) == (1, 0)  # the end of epoch 1
    assert any("running_mean" in k for k in state["model"])
    for key, value in before["model"].items():
        assert torch.equal(value, state["model"][key]), key


def test_grad_clip_clips_the_gradient_norm_and_reports_the_unclipped_one(tiny_config):
    config = load_config("configs.config_tiny")
    x = torch.rand(16, 1, 16, 16)
    norms = {}
    for clip in (None, 1e-3):
        torch.manual_seed(0)
        model = run.build_model_from_config(config)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keep the weights: compare the gradients
        _, norms[clip] = run.train_step(model, optimizer, x, 0.0, clip)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
        if clip is None:
            assert total == pytest.approx(norms[None], rel=1e-5)
        else:
            assert total == pytest.approx(clip, rel=1e-4)
    assert norms[1e-3] == pytest.approx(norms[None], rel=1e-6) and norms[None] > 1e-2


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # altered: a weight changed and saved again, the stored checksum left as it was
        state = torch.load(path, weights_only=True)
        name = next(k for k, v in state["model"].items() if v.is_floating_point())
        state["model"][name].add_(1e-3)
        torch.save(state, path)


@pytest.mark.parametrize("how", ["truncated", "altered"])
def test_a_damaged_model_pt_is_named_and_resume_falls_back_to_the_previous_one(tiny_config, how, capsys):
    config = apply_overrides(tiny_config, ["training.epochs=2", "training.checkpoint_every_steps=2"])
    run_dir = run.train(config)
    previous = run_dir / "model.prev.pt"
    assert previous.is_file()  # the checkpoint that the last one replaced
    prev_state = torch.load(previous, weights_only=True)
    # steps 2, 4, 6 of 6 (3 per epoch) and the end of epoch 2: the last step's checkpoint is kept
    assert (prev_state["epoch"], prev_state["batch"]) == (1, 3)
    damage(run_dir / "model.pt", how)
    reason = {
        "truncated": "not a readable o2vae checkpoint: truncated",
        "altered": "does not match the checksum",
    }[how]
    with pytest.raises(CheckpointError, match=f"model.pt: .*{reason}.*kept as .*model.prev.pt") as error:
        run.load_model(run_dir)
    assert "run.load_model(" in str(error.value)
    damaged_bytes = (run_dir / "model.pt").read_bytes()
    capsys.readouterr()
    assert run.main(["--resume", str(run_dir)]) == run_dir
    stderr = capsys.readouterr().err
    assert f"resuming from {previous} (1 epoch(s) and 3 batch(es) of the next done)" in stderr
    (aside,) = run_dir.glob("model.pt.damaged-*")
    assert aside.read_bytes() == damaged_bytes  # the damaged file is kept, never deleted
    state, _, _ = load_checkpoint(run_dir)
    assert (state["epoch"], state["batch"]) == (2, 0)
    straight = run.train(config)
    assert_same_training_state(straight / "model.pt", run_dir / "model.pt")


def test_checkpoints_carry_a_checksum_of_their_content(tiny_config):
    run_dir = run.train(apply_overrides(tiny_config, ["training.epochs=1"]))
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert state["checksum"] == content_checksum(state)
    other = dict(state, epoch=state["epoch"] + 1)
    assert content_checksum(other) != state["checksum"]  # plain values count
    weights = dict(state["model"])
    name = next(k for k, v in weights.items() if v.dim() > 1)
    weights[name] = weights[name].clone().flatten()  # same bytes, another shape
    assert content_checksum(dict(state, model=weights)) != state["checksum"]


@pytest.mark.slow
def test_sigkill_at_random_points_always_leaves_a_checkpoint_that_resumes_bitwise(tiny_data, tmp_path):
    """Kill a real training process (SIGKILL: no handler runs) at random moments, resume each time."""
    common = [f"data.data_dir={tiny_data}", "logging.wandb_mode=disabled", "training.epochs=20",
              "training.checkpoint_every_steps=1", "data.rotation_augmentation=True",
              "model.invariance_weight=1.0", "training.lr_schedule=cosine"]  # fmt: skip
    env = os.environ | {"TQDM_DISABLE": "1"}

    def start(args):
        return subprocess.Popen(
            [sys.executable, "run.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    straight = start(["configs.config_tiny", *common, f"logging.out_dir={tmp_path / 'straight'}"])
    assert straight.wait(timeout=300) == 0, straight.communicate()[1]
    (straight_dir,) = (tmp_path / "straight").glob("wandb/*/files")

    def last_write():
        files = list((tmp_path / "killed").glob("wandb/*/files/model.pt"))
        return files[0].stat().st_mtime_ns if files else None

    rng = random.Random(0)
    killed_at = []
    process = start(["configs.config_tiny", *common, f"logging.out_dir={tmp_path / 'killed'}"])
    for _ in range(4):
        before, deadline = last_write(), time.monotonic() + 120
        while last_write() == before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # training is under way once this process has written a checkpoint
        time.sleep(rng.uniform(0.0, 0.3))  # then anywhere: in a step, a validation, a checkpoint write
        if process.poll() is not None:
            break  # it finished before this kill
        process.kill()
        process.wait()
        (run_dir,) = (tmp_path / "killed").glob("wandb/*/files")
        state, _, _ = load_checkpoint(run_dir)  # loadable every time
        killed_at.append((state["epoch"], state["batch"]))
        process = start(["--resume", str(run_dir)])
    assert process.wait(timeout=300) == 0, process.communicate()[1]
    print("killed with these (epoch, batch) saved:", killed_at)
    assert len(set(killed_at)) >= 2  # killed at different steps
    assert_same_training_state(straight_dir / "model.pt", run_dir / "model.pt")


def test_only_a_damaged_model_pt_falls_back_to_the_previous_one(tiny_config):
    config = apply_overrides(tiny_config, ["training.epochs=2"])
    run_dir = run.train(config)
    state = torch.load(run_dir / "model.pt", weights_only=True)
    del state["config"]["model"]["hidden"]  # readable and intact, but not a config this code knows
    state["checksum"] = content_checksum(state)
    torch.save(state, run_dir / "model.pt")
    with pytest.raises(SystemExit, match="its config lacks the key"):
        run.main(["--resume", str(run_dir)])
    assert not list(run_dir.glob("model.pt.damaged-*"))  # nothing moved aside, no silent step back


def test_a_second_signal_waits_for_the_step_in_progress_and_ignored_signals_stay_ignored():
    stop = run.StopOnSignal()
    stop._handle(signal.SIGINT, None)
    stop.in_step = True
    stop._handle(signal.SIGINT, None)  # a second Ctrl-C inside a step: no half-applied update
    with pytest.raises(KeyboardInterrupt):
        stop.check()
    stop.in_step = False
    with pytest.raises(run.Terminated):
        stop._handle(signal.SIGTERM, None)  # outside a step: at once
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with run.StopOnSignal():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # e.g. started with nohup or &
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_to_the_whole_process_group_with_loader_workers_saves_and_resumes(tiny_data, tmp_path):
    """A scheduler (Slurm) or a terminal signals every process of the job, DataLoader workers too.

    The workers ignore it (the main process saves, then ends them); this once hung at exit, when
    the stopped epoch's loader iterator outlived training and multiprocessing, exiting, waited for
    workers that ignore its SIGTERM. The process must exit within the timeout, every time."""
    out = tmp_path / "runs"
    command = [sys.executable, "run.py", "configs.config_tiny", f"data.data_dir={tiny_data}",
               f"logging.out_dir={out}", "logging.wandb_mode=disabled", "training.epochs=300",
               "data.num_workers=2", "data.rotation_augmentation=True"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, env=os.environ | {"TQDM_DISABLE": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("wandb/*/files/model.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated (SIGTERM): saved" in stderr and "Traceback" not in stderr
    (run_dir,) = out.glob("wandb/*/files")
    state, _, _ = load_checkpoint(run_dir)
    assert run.main(["--resume", str(run_dir), f"training.epochs={state['epoch'] + 1}"]) == run_dir


WORKER_START_MASK = None


def record_start_mask_then_ignore(worker_id):
    global WORKER_START_MASK
    WORKER_START_MASK = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    ignore_stop_signals(worker_id)


class SignalStateOfWorker(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        blocked_now = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        ignored = signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        return torch.tensor([signal.SIGTERM in WORKER_START_MASK, signal.SIGTERM in blocked_now, ignored])


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks on this system")
@pytest.mark.parametrize("loader_class", [WorkerLoader, torch.utils.data.DataLoader])
def test_loader_workers_start_with_stop_signals_held_until_they_ignore_them(loader_class):
    loader = loader_class(
        SignalStateOfWorker(), batch_size=2, num_workers=1, worker_init_fn=record_start_mask_then_ignore
    )
    held_at_start, held_later, ignored = next(iter(loader))[0].tolist()
    assert held_at_start == (loader_class is WorkerLoader)  # a plain DataLoader leaves a gap
    assert not held_later and ignored
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # this process: as before
