"""Train an O2-VAE (or a vanilla VAE) from a config module.

    python run.py configs.config_o2mnist [section.key=value ...]
    python run.py --resume RUN_DIR [training.epochs=N]
    torchrun --nproc_per_node=N run.py configs.config_o2mnist [...]   (data-parallel, README "Scaling up")

Writes ``<logging.out_dir>/wandb/<run>/files/``: ``model.pt`` (every
``training.checkpoint_every`` epochs, at the end, and when training stops on Ctrl-C or an
error), ``model_best.pt`` (lowest validation loss) and wandb's logs (offline by default: no
account, no network).
From Python: ``run.get_datasets_from_config``, ``run.build_model_from_config``, ``run.load_model``.
"""

import argparse
import dataclasses
import datetime
import math
import os
import pathlib
import random
import secrets
import signal
import sys
import threading

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

import allocator
import distributed
from configs.schema import ConfigError, apply_overrides, load_config
from data.datasets import DatasetError, get_datasets_from_config
from models._e2cnn_compat import is_derived_buffer
from models.build import (
    CheckpointError,
    DamagedCheckpointError,
    build_model_from_config,
    load_checkpoint,
    load_model,
    load_model_state,
    previous_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)

__all__ = ["build_model_from_config", "get_datasets_from_config", "load_model", "train"]


def pick_device(name, world=distributed.ONE_PROCESS):
    """The device of ``training.device``; under torchrun, a CUDA process uses the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"training.device is {name!r} but no CUDA GPU is available")
    if name.startswith("cuda") and world.distributed:
        return torch.device("cuda", world.local_rank)
    return torch.device(name)


def check_training_device(training, device, world):
    """Raise ConfigError for the settings that need CUDA (or torchrun) when they do not have it."""
    if training.precision == "bf16" and device.type != "cuda":
        raise ConfigError(
            "training.precision='bf16' is for CUDA GPUs; on the CPU training stays in float32 "
            "(set training.precision='fp32')"
        )
    if training.sync_batchnorm and world.distributed and device.type != "cuda":
        raise ConfigError(
            "training.sync_batchnorm=True needs CUDA GPUs (torch's SyncBatchNorm does not run on the "
            "CPU); on the CPU each process normalises its own share of the batch"
        )


def seed_everything(seed):
    # the global numpy RNG is legacy, but libraries (and users' augmentations) still draw from it
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)


def get_rng_state(loader_state):
    """Every random state that training consumes, as tensors and plain data (for checkpoints).

    ``loader_state`` is the shuffling generator's state at the start of the current epoch: a
    resumed run replays that epoch's order up to where it stopped.
    """
    np_state = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
        "loader": loader_state,
    }


def set_global_rng_state(state):
    """Restore the torch, CUDA, numpy and Python random states of :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def check_data_fits_model(config, dset):
    """Raise ConfigError naming the key when the images do not match ``config.model``."""
    _, c, h, _ = dset.x.shape
    if h != config.model.image_size and not config.data.resize:
        raise ConfigError(
            f"model.image_size is {config.model.image_size} but {config.data.data_dir} has {h}x{h} images "
            "(set data.resize=True to resize them on load)"
        )
    if c != config.model.in_channels:
        raise ConfigError(
            f"model.in_channels is {config.model.in_channels} but {config.data.data_dir} has {c} channels"
        )


class NoLogging:
    """Where a run logs with logging disabled, and processes other than rank 0 under torchrun: nowhere."""

    id = None

    def __init__(self):
        self.summary = {}

    def log(self, *args, **kwargs):
        pass

    def finish(self, *args, **kwargs):
        pass


def start_logging(config, resume_dir=None, wandb_id=None):
    """Start wandb (offline by default) and return ``(wandb_run, run_dir)``.

    A new run gets a new directory (never an existing one); a resumed run keeps its own. With
    logging disabled wandb is not used at all (:class:`NoLogging`; nor imported).
    """
    out_dir = pathlib.Path(config.logging.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = os.environ.get("WANDB_MODE", config.logging.wandb_mode)
    if mode == "disabled":  # our own run directory, where wandb would have made one
        if resume_dir is not None:
            return NoLogging(), pathlib.Path(resume_dir)
        stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
        run_dir = out_dir / "wandb" / f"disabled-run-{stamp}-{secrets.token_hex(4)}" / "files"
        run_dir.mkdir(parents=True)
        return NoLogging(), run_dir
    import wandb

    run = wandb.init(
        project=config.logging.project,
        name=config.logging.run_name,
        config=config.to_dict(),
        dir=str(out_dir),
        mode=mode,
        id=wandb_id,
        resume="allow" if wandb_id else None,
    )
    if resume_dir is not None:
        run_dir = pathlib.Path(resume_dir)
    else:
        run_dir = pathlib.Path(run.dir)
        if (run_dir / "model.pt").exists():
            raise FileExistsError(f"{run_dir} already holds a model.pt; refusing to overwrite it")
    return run, run_dir


@torch.no_grad()
def evaluate(model, loader, device):
    """Mean loss terms over a loader, in eval mode (deterministic: z = mu)."""
    model.eval()
    totals, n = {"loss": 0.0, "recon": 0.0, "kl": 0.0}, 0
    for batch in loader:
        x = batch[0]
        out = model(x.to(device))
        for k in totals:
            totals[k] += out[k].item() * len(x)
        n += len(x)
    model.train()
    return {k: v / n for k, v in totals.items()}


@torch.no_grad()
def reconstruction_grid(model, x, device):
    """Inputs (top row) above their aligned reconstructions (bottom row), as one image in [0, 1]."""
    model.eval()
    recon = model.reconstruct(x.to(device), align=model.align != "none").cpu().clamp(0, 1)
    model.train()
    top, bottom = (torch.cat(list(t[:, 0]), dim=1) for t in (x, recon))
    return torch.cat([top, bottom], dim=0).numpy()


def split_embeddings(model, dset, dset_test, device=None, max_train=10000):
    """Embeddings and labels of the first ``max_train`` training images (unaugmented) and of the test set.

    Returns ``(emb_train, y_train, emb_test, y_test)`` as numpy arrays (labels None when absent).
    """
    import utils

    n = min(len(dset), max_train)
    emb_train = utils.get_model_embeddings_from_tensors(model, dset.x[:n], device=device)
    emb_test = utils.get_model_embeddings_from_tensors(model, dset_test.x, device=device)
    y_train = None if dset.y is None else dset.y[:n]
    return emb_train, y_train, emb_test, dset_test.y


def quality_summary(model, dset, dset_test, device):
    """kNN (k=5) accuracy of test embeddings against training embeddings, or None without labels."""
    from analysis.metrics import knn_accuracy

    if dset_test is None or dset.y is None or dset_test.y is None:
        return None
    return knn_accuracy(*split_embeddings(model, dset, dset_test, device), k=5)


def with_value_range(config, value_range):
    """``config`` with ``data.value_range`` filled in, for 'minmax' data (it is saved with the model)."""
    if config.data.rescale != "minmax":
        return config
    data = dataclasses.replace(config.data, value_range=[float(v) for v in value_range])
    return dataclasses.replace(config, data=data)


def steps_per_epoch(loader, training):
    """Optimizer steps in one epoch: the loader's batches, capped by ``training.max_steps_per_epoch``."""
    if training.max_steps_per_epoch is None:
        return len(loader)
    return min(len(loader), training.max_steps_per_epoch)


def learning_rate(training, step, total_steps):
    """Learning rate of optimizer step ``step`` (from 0): constant, or a cosine from ``training.lr`` to 0.

    A closed form of the step, so a resumed run follows the same curve, and a run resumed with
    more ``training.epochs`` follows the curve of the new total from where it stands.
    """
    if training.lr_schedule == "cosine":
        return training.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return training.lr


def invariance_weight(model_config, step, steps_per_epoch):
    """Weight of the invariance term at optimizer step ``step`` (from 0): a linear ramp to its value.

    Over the first ``model.invariance_warmup_epochs`` epochs the weight grows from
    ``1 / warmup_steps`` of ``model.invariance_weight`` to all of it, so the first steps learn to
    reconstruct before they learn to ignore orientation (BENCHMARKS.md, "Invariance").
    """
    warmup_steps = model_config.invariance_warmup_epochs * steps_per_epoch
    if warmup_steps <= 0:
        return model_config.invariance_weight
    return model_config.invariance_weight * min(1.0, (step + 1) / warmup_steps)


def batch_norm_statistics(model):
    """Copies of the model's buffers that training updates (batch-norm statistics), to restore."""
    parameters = {name for name, _ in model.named_parameters()}
    persistent = model.state_dict(keep_vars=True)
    return [(t, t.detach().clone()) for name, t in persistent.items() if name not in parameters]


def restore(statistics):
    with torch.no_grad():
        for tensor, saved in statistics:
            tensor.copy_(saved)


def train_step(model, optimizer, x, lr, grad_clip, precision="fp32"):
    """One optimizer step on images ``x``; returns the loss terms and the gradient norm (before clipping).

    ``model`` may be a :class:`~torch.nn.parallel.DistributedDataParallel` wrapper, whose backward
    pass averages the gradients over the processes. With ``precision='bf16'`` the forward pass
    runs under CUDA autocast (bfloat16; the model keeps its registration in float32).

    Raises
    ------
    FloatingPointError
        When the loss or the gradient norm is NaN or Inf, before it can reach the weights.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(x.device.type, torch.bfloat16, enabled=precision == "bf16"):
        out = model(x)
    terms = {k: out[k].item() for k in ("loss", "recon", "kl")}
    if getattr(model, "module", model).invariance_weight:
        terms["invariance"] = out["invariance"].item()
    optimizer.zero_grad(set_to_none=True)
    # backward before the loss check: under torchrun every process must take part in the gradient
    # averaging, and a NaN loss in one of them then makes the averaged gradient NaN in all
    out["loss"].backward()
    if not math.isfinite(terms["loss"]):
        raise FloatingPointError(f"the loss is {terms['loss']}")
    parameters = [p for p in model.parameters() if p.grad is not None]
    if grad_clip is None:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    if not torch.isfinite(grad_norm):
        raise FloatingPointError(f"the gradient norm is {grad_norm.item()}")
    optimizer.step()
    return terms, grad_norm.item()


def validate(model, loader_test, config, epoch, step, device, run):
    """Validation losses after ``epoch`` epochs, logged with a grid of aligned reconstructions."""
    valid = evaluate(model, loader_test, device)
    log = {f"valid/{k}": v for k, v in valid.items()} | {"epoch": epoch}
    if config.logging.n_images and not isinstance(run, NoLogging):
        import wandb

        x_show = next(iter(loader_test))[0][: config.logging.n_images]
        log["valid/reconstructions"] = wandb.Image(
            reconstruction_grid(model, x_show, device), caption="inputs (top), aligned reconstructions"
        )
    run.log(log, step=step)
    terms = ", ".join(f"{k} {v:.2f}" for k, v in valid.items())
    print(f"epoch {epoch}: valid {terms} (nats per image)")
    return valid["loss"]


def train(config, resume_dir=None, world=distributed.ONE_PROCESS):
    """Train the model ``config`` describes; returns the run directory.

    With ``resume_dir`` (a run directory), continue from its ``model.pt`` (or its
    ``model.prev.pt`` when ``model.pt`` is damaged) exactly where it stopped: same data order,
    same random draws, so the result equals an uninterrupted run. ``model.pt`` is written every
    ``training.checkpoint_every`` epochs, every ``training.checkpoint_every_steps`` steps, at the
    end, and when something stops the loop (Ctrl-C, SIGTERM, an error, a non-finite loss): then
    it holds the last good state, the weights before the failing step.

    Under torchrun (``world`` from :func:`distributed.join`), each process trains a
    DistributedDataParallel copy on its share of every batch (``data.batch_size`` is the global
    batch); rank 0 alone logs, validates, saves and reports (and returns the run directory; the
    others return None). Each process seeds its random draws from the step
    (:func:`distributed.rank_seed`), so a resumed run continues exactly here too.
    """
    device = pick_device(config.training.device, world)
    check_training_device(config.training, device, world)
    allocator.keep_freed_memory()  # every step reuses the last one's pages (see allocator.py)
    seed = config.training.seed
    seed_everything(seed)
    loader_generator = torch.Generator().manual_seed(seed)
    pin_memory = device.type == "cuda"
    dset, loader, dset_test, loader_test = get_datasets_from_config(
        config, generator=loader_generator, pin_memory=pin_memory
    )
    if world.distributed:
        loader = distributed.sharded_loader(
            dset, world, config.data.batch_size, seed, config.data.num_workers, pin_memory, loader_generator
        )
    check_data_fits_model(config, dset)
    if len(loader) == 0:
        raise DatasetError(
            f"{config.data.data_dir}: {len(dset)} training image(s); training needs at least {2 * world.size}"
        )
    config = with_value_range(config, dset.value_range)

    model = build_model_from_config(config).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.training.lr, weight_decay=config.training.weight_decay
    )
    n_steps = steps_per_epoch(loader, config.training)
    total_steps = config.training.epochs * n_steps

    start_epoch, start_batch, best_valid, wandb_id, resumed_rng = 0, 0, float("inf"), None, None
    if resume_dir is not None:
        state, _ = load_for_resume_in_turn(resume_dir, world)
        load_model_state(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, start_batch = state["epoch"], state.get("batch", 0)
        best_valid, wandb_id, resumed_rng = state["best_valid_loss"], state.get("wandb_id"), state["rng"]
        if start_batch and state.get("world_size", 1) != world.size:
            raise CheckpointError(
                f"{resume_dir}: stopped within an epoch by {state.get('world_size', 1)} process(es); resume "
                f"it with as many (here {world.size}), or from a checkpoint at the end of an epoch"
            )
        loader_generator.set_state(resumed_rng["loader"])
    net = wrap_for_processes(model, config.training, device, world)
    run, run_dir = start_logging(config, resume_dir, wandb_id) if world.is_main else (NoLogging(), None)
    if world.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        on = f"{world.size} processes ({device.type})" if world.distributed else device
        print(f"Logging directory is `{_relative(run_dir.parent)}`")  # the original run.bash's line
        print(f"run directory: {run_dir}")
        print(f"model: {config.model.encoder} encoder, {n_params:,} parameters, on {on}")

    # where training stands (whole epochs, batches of the next, random states there): what a
    # checkpoint records; it moves only once a step has changed the weights
    where = {"epoch": start_epoch, "batch": start_batch, "rng": None}

    def checkpoint(name):
        if world.is_main:
            save_checkpoint(
                run_dir / name, model, optimizer, where["epoch"], config, best_valid, where["rng"],
                wandb_id=run.id, batch=where["batch"], keep_previous=name == "model.pt",
                world_size=world.size,
            )  # fmt: skip

    def agree(signum):
        return distributed.agree_on_signal(world, signum)

    every_steps = config.training.checkpoint_every_steps
    stop, batches = StopOnSignal(), None
    try:
        with stop:
            for epoch in range(start_epoch, config.training.epochs):
                if world.distributed:  # the data order and the workers' draws follow from the epoch
                    loader.batch_sampler.sampler.set_epoch(epoch)
                    loader_generator.manual_seed(distributed.rank_seed(seed, world.rank, epoch))
                epoch_start = loader_generator.get_state()
                batches = iter(loader)
                first = start_batch if epoch == start_epoch else 0
                for _ in range(first):  # a resumed epoch: the same order, up to where it stopped
                    next(batches)
                if resumed_rng is not None and not world.distributed:
                    set_global_rng_state(resumed_rng)
                resumed_rng = None
                where.update(epoch=epoch, batch=first, rng=get_rng_state(epoch_start))
                desc = f"epoch {epoch + 1}/{config.training.epochs}"
                bar = tqdm(total=n_steps, initial=first, desc=desc, unit="batch", disable=not world.is_main)
                for i in range(first, n_steps):
                    step = epoch * n_steps + i
                    lr = learning_rate(config.training, step, total_steps)
                    model.invariance_weight = invariance_weight(config.model, step, n_steps)
                    if world.distributed:
                        seed_everything(distributed.rank_seed(seed, world.rank, epoch, i))
                    x = next(batches)[0].to(device, non_blocking=pin_memory)
                    stop.in_step = True  # a signal now waits for the step's end (see StopOnSignal)
                    statistics = batch_norm_statistics(model)
                    try:
                        terms, grad_norm = train_step(
                            net, optimizer, x, lr, config.training.grad_clip, config.training.precision
                        )
                    except BaseException as e:
                        restore(statistics)  # the forward pass updated them: back to before the step
                        if not isinstance(e, FloatingPointError):
                            raise
                        images = loader.batch_sampler.batches[i]
                        raise FloatingPointError(
                            f"{e} at step {step + 1} (epoch {epoch + 1}, batch {i + 1}; training images "
                            f"{images}); try a lower training.lr (now {lr:.3g}) or set training.grad_clip"
                        ) from e
                    where.update(batch=i + 1, rng=get_rng_state(epoch_start))
                    stop.in_step = False
                    bar.update()
                    bar.set_postfix({k: f"{v:.1f}" for k, v in terms.items()})
                    run.log(
                        {f"train/{k}": v for k, v in terms.items()} | {"lr": lr, "grad_norm": grad_norm},
                        step=step + 1,
                    )
                    stop.check(agree)
                    if every_steps and (step + 1) % every_steps == 0:
                        checkpoint("model.pt")
                bar.close()
                done = epoch + 1
                last = done == config.training.epochs
                valid_loss = None
                validating = done % config.training.validate_every == 0 or last
                if world.is_main and loader_test is not None and validating:
                    valid_loss = validate(model, loader_test, config, done, done * n_steps, device, run)
                    if not world.distributed:  # under torchrun the next step's check stops all
                        stop.check()
                where.update(epoch=done, batch=0, rng=get_rng_state(loader_generator.get_state()))
                if valid_loss is not None and valid_loss < best_valid:
                    best_valid = valid_loss
                    checkpoint("model_best.pt")
                if done % config.training.checkpoint_every == 0 or last:
                    checkpoint("model.pt")
    except BaseException as e:
        # end the loader's worker processes now: the traceback keeps this frame, and with it the
        # iterator, alive until exit, where multiprocessing would wait forever for workers that
        # ignore its SIGTERM (ignore_stop_signals)
        batches = None  # noqa: F841
        if world.is_main:
            save_after_failure(checkpoint, run_dir, where, e)
        run.finish(exit_code=1)
        raise
    if not world.is_main:
        return None
    accuracy = quality_summary(model, dset, dset_test, device)
    if accuracy is not None:
        run.summary["knn5_test_accuracy"] = accuracy
    run.finish()
    print(f"model saved to {run_dir / 'model.pt'}")
    if accuracy is not None:
        print(f"quality: kNN (k=5) accuracy of test embeddings = {accuracy:.3f}")
    return run_dir


def wrap_for_processes(model, training, device, world):
    """``model`` as it trains: itself in one process, a DistributedDataParallel copy under torchrun.

    With ``training.sync_batchnorm`` (CUDA), torch's batch-norm layers, e2cnn's ``InnerBatchNorm``
    among them, normalise over the global batch; e2cnn's norm-based batch norms (of the irreps
    and induced layers) have no synchronised form and stay per process. Otherwise every process
    normalises its own share, as is usual with DistributedDataParallel.

    Every forward pass starts from rank 0's batch-norm statistics (DistributedDataParallel's
    ``broadcast_buffers``): e2cnn's norm batch norms divide by their running statistics in
    training too, so the processes must agree on them, and a resumed run, which loads rank 0's,
    continues exactly. e2cnn's filter-basis buffers are left out of that broadcast, with
    DistributedDataParallel's own (provisional) ignore list: they follow from the architecture,
    and their order among the model's buffers changes with Python's string hashing, which
    differs between processes, so a broadcast by position would scramble them.
    """
    if not world.distributed:
        return model
    if training.sync_batchnorm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    derived = [name for name, _ in model.named_buffers() if is_derived_buffer(name)]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, derived)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _relative(path):
    """``path`` relative to the working directory when it lies below it."""
    try:
        return path.resolve().relative_to(pathlib.Path.cwd())
    except ValueError:
        return path


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or ``kill``) during training: handled like Ctrl-C, so the run is saved."""


class StopOnSignal:
    """While training: Ctrl-C or SIGTERM lets the current step finish, then stops training.

    A second signal stops at once, except inside a step (``in_step``: from the forward pass to
    the bookkeeping after the optimizer step), which always finishes, so that a saved checkpoint
    never holds half an update. Stopping raises :class:`KeyboardInterrupt` (Ctrl-C) or
    :class:`Terminated` (SIGTERM), which the training loop answers by saving the run. Python
    handles signals in the main thread only, so elsewhere the handlers stay as they are; a signal
    that the process was started to ignore (``nohup``, ``&`` in scripts) stays ignored.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received, self.previous, self.in_step = None, {}, False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        if self.received is not None and not self.in_step:  # asked twice: do not wait
            raise self._error(signum)
        self.received = signum
        # os.write, not print: a print here could re-enter a print that the signal interrupted
        os.write(sys.stderr.fileno(), b"\nstopping after this step (again to stop at once)\n")

    def check(self, agree=None):
        """Raise the stop asked for by a signal, if any (call between steps).

        ``agree`` maps this process's signal (or None) to the one to act on, the same in every
        process (:func:`distributed.agree_on_signal`).
        """
        if agree is not None:
            self.received = agree(self.received)
        if self.received is not None:
            raise self._error(self.received)

    @staticmethod
    def _error(signum):
        return Terminated(f"signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt()


def save_after_failure(checkpoint, run_dir, where, error):
    """Save the run where it stands (the weights before any failed step), and say how to resume."""
    if isinstance(error, Terminated):
        what = "terminated (SIGTERM)"
    elif isinstance(error, KeyboardInterrupt):
        what = "interrupted"
    else:
        what = f"stopped by {type(error).__name__}"
    if where["rng"] is None:  # stopped before the first step: nothing new to save
        return
    try:
        checkpoint("model.pt")
    except FloatingPointError as save_error:  # never write NaN weights over a good checkpoint
        print(
            f"\n{what}: {save_error}; {run_dir / 'model.pt'} keeps the last good checkpoint", file=sys.stderr
        )
        return
    print(
        f"\n{what}: saved {run_dir / 'model.pt'} with {where['epoch']} epoch(s) and {where['batch']} "
        f"batch(es) of the next done (resume with: python run.py --resume {run_dir})",
        file=sys.stderr,
    )


def load_for_resume(run_dir, device="cpu"):
    """``(state, config)`` of the checkpoint to resume from: ``model.pt``, or ``model.prev.pt`` if damaged.

    A damaged ``model.pt`` is kept, renamed ``model.pt.damaged-<random>`` (so that the next checkpoint
    does not push the good previous one out), and the fallback is announced.
    """
    path = pathlib.Path(run_dir) / "model.pt"
    previous = previous_checkpoint(path)
    if not path.is_file() and previous.is_file():  # damaged and moved aside by an earlier call
        return load_checkpoint(previous, device)[:2]
    try:
        return load_checkpoint(path, device)[:2]
    except DamagedCheckpointError as damaged:
        if not previous.is_file():
            raise
        state, config, _ = load_checkpoint(previous, device)
        aside = path.with_name(f"model.pt.damaged-{secrets.token_hex(3)}")
        os.replace(path, aside)
        print(
            f"warning: {damaged}\nresuming from {previous} ({state['epoch']} epoch(s) and "
            f"{state.get('batch', 0)} batch(es) of the next done); the damaged file is kept as {aside.name}",
            file=sys.stderr,
        )
        return state, config


def load_for_resume_in_turn(run_dir, world):
    """:func:`load_for_resume`'s ``(state, config)``, rank 0 first: it may fall back to
    ``model.prev.pt`` and move the damaged ``model.pt`` aside, after which every other process
    loads the same file."""
    if not world.is_main:
        distributed.barrier(world)
    loaded = load_for_resume(run_dir)  # on the CPU: random states must stay there
    if world.is_main:
        distributed.barrier(world)
    return loaded


def resume_run_dir(path):
    """The run directory to resume from ``path``: a run directory, or its ``model.pt``."""
    path = pathlib.Path(path)
    if path.is_dir() and previous_checkpoint(path / "model.pt").is_file():
        return path  # its model.pt may be missing or damaged: load_for_resume falls back
    checkpoint = resolve_checkpoint(path)
    if checkpoint.name != "model.pt":
        raise CheckpointError(
            f"{checkpoint}: --resume continues a run from its model.pt (give the run directory); resuming "
            f"from {checkpoint.name} would overwrite that run's later model.pt. Copy {checkpoint.name} "
            "into a new directory as model.pt to continue from it"
        )
    return checkpoint.parent


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train an O2-VAE from a config module.")
    parser.add_argument("config", nargs="?", help="config module, e.g. configs.config_o2mnist")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR (or its model.pt)"
    )
    args = parser.parse_args(argv)
    if not args.resume and not args.config:
        parser.error("give a config module (e.g. configs.config_o2mnist) or --resume RUN_DIR")
    world = distributed.join()  # under torchrun: this process's rank; otherwise one process
    try:
        if args.resume:
            run_dir = resume_run_dir(args.resume)
            overrides = ([args.config] if args.config else []) + args.overrides
            _, saved = load_for_resume_in_turn(run_dir, world)
            config = apply_overrides(saved, overrides)
            if config.model != saved.model or config.data != saved.data:
                raise ConfigError("--resume may change training and logging settings only, not model or data")
            run_dir = train(config, resume_dir=run_dir, world=world)
        else:
            run_dir = train(load_config(args.config, args.overrides), world=world)
        distributed.finish_together(world)
        return run_dir
    except Terminated:
        sys.exit(128 + signal.SIGTERM)  # the run was saved; exit as a process killed by SIGTERM would
    except (
        ConfigError,
        DatasetError,
        CheckpointError,
        FileNotFoundError,
        FileExistsError,
        FloatingPointError,
    ) as e:
        sys.exit(f"error: {e}")
    finally:
        distributed.leave(world)


if __name__ == "__main__":
    main()
