"""Train an O2-VAE (or a vanilla VAE) from a config module.

    python run.py configs.config_o2mnist [section.key=value ...]
    python run.py --resume RUN_DIR [training.epochs=N]

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
from tqdm.auto import tqdm

from configs.schema import ConfigError, apply_overrides, load_config
from data.datasets import DatasetError, get_datasets_from_config
from models.build import (
    CheckpointError,
    build_model_from_config,
    load_checkpoint,
    load_model,
    load_model_state,
    resolve_checkpoint,
    save_checkpoint,
)

__all__ = ["build_model_from_config", "get_datasets_from_config", "load_model", "train"]


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"training.device is {name!r} but no CUDA GPU is available")
    return torch.device(name)


def seed_everything(seed):
    # the global numpy RNG is legacy, but libraries (and users' augmentations) still draw from it
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)


def get_rng_state(loader_generator):
    """Every random state that training consumes, as tensors and plain data (for checkpoints)."""
    np_state = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
        "loader": loader_generator.get_state(),
    }


def set_rng_state(state, loader_generator):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    loader_generator.set_state(state["loader"])


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


def start_logging(config, resume_dir=None, wandb_id=None):
    """Start wandb (offline by default) and return ``(wandb_run, run_dir)``.

    A new run gets a new directory (never an existing one); a resumed run keeps its own.
    """
    import wandb

    out_dir = pathlib.Path(config.logging.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = os.environ.get("WANDB_MODE", config.logging.wandb_mode)
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
    elif mode == "disabled":  # wandb writes nothing: make our own run directory
        stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
        run_dir = out_dir / "wandb" / f"disabled-run-{stamp}-{secrets.token_hex(4)}" / "files"
        run_dir.mkdir(parents=True)
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


def train_one_epoch(model, loader, optimizer, config, epoch, first_step, total_steps, device, run):
    """One pass over ``loader`` (at most ``training.max_steps_per_epoch`` steps); returns the next step.

    Raises
    ------
    FloatingPointError
        When the loss or the gradient norm is NaN or Inf, before it can reach the weights.
    """
    model.train()
    n_steps = steps_per_epoch(loader, config.training)
    bar = tqdm(loader, total=n_steps, desc=f"epoch {epoch + 1}/{config.training.epochs}", unit="batch")
    step = first_step
    for i, batch in enumerate(bar):
        if i == n_steps:
            break
        lr = learning_rate(config.training, step, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        where = f"at step {step + 1} (epoch {epoch + 1}, batch {i + 1}); try a lower training.lr"
        try:
            out = model(batch[0].to(device))
        except FloatingPointError as e:  # the model's own check of its decoder output
            raise FloatingPointError(f"{e} {where}") from e
        terms = {k: out[k].item() for k in ("loss", "recon", "kl")}
        if not math.isfinite(terms["loss"]):
            raise FloatingPointError(f"the loss is {terms['loss']} {where}")
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(f"the gradient norm is {grad_norm.item()} {where}")
        optimizer.step()
        step += 1
        bar.set_postfix({k: f"{v:.1f}" for k, v in terms.items()})
        run.log(
            {f"train/{k}": v for k, v in terms.items()} | {"lr": lr, "grad_norm": grad_norm.item()}, step=step
        )
    return step


def validate(model, loader_test, config, epoch, step, device, run):
    """Validation losses after ``epoch`` epochs, logged with a grid of aligned reconstructions."""
    valid = evaluate(model, loader_test, device)
    log = {f"valid/{k}": v for k, v in valid.items()} | {"epoch": epoch}
    if config.logging.n_images:
        import wandb

        x_show = next(iter(loader_test))[0][: config.logging.n_images]
        log["valid/reconstructions"] = wandb.Image(
            reconstruction_grid(model, x_show, device), caption="inputs (top), aligned reconstructions"
        )
    run.log(log, step=step)
    terms = ", ".join(f"{k} {v:.2f}" for k, v in valid.items())
    print(f"epoch {epoch}: valid {terms} (nats per image)")
    return valid["loss"]


def train(config, resume_dir=None):
    """Train the model ``config`` describes; returns the run directory.

    With ``resume_dir`` (a run directory), continue from its ``model.pt``. Whatever stops the
    loop (Ctrl-C, an error, a non-finite loss) first saves the current weights to ``model.pt``
    as the start of the interrupted epoch, unless they are not finite: then the last
    checkpoint stays as it was.
    """
    device = pick_device(config.training.device)
    seed_everything(config.training.seed)
    loader_generator = torch.Generator().manual_seed(config.training.seed)
    dset, loader, dset_test, loader_test = get_datasets_from_config(config, generator=loader_generator)
    check_data_fits_model(config, dset)
    if len(loader) == 0:
        raise DatasetError(
            f"{config.data.data_dir}: {len(dset)} training image(s); training needs at least 2"
        )
    config = with_value_range(config, dset.value_range)

    model = build_model_from_config(config).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.training.lr, weight_decay=config.training.weight_decay
    )
    n_steps = steps_per_epoch(loader, config.training)
    total_steps = config.training.epochs * n_steps

    start_epoch, best_valid, wandb_id = 0, float("inf"), None
    if resume_dir is not None:
        state, _, _ = load_checkpoint(resume_dir, device)
        load_model_state(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_valid, wandb_id = state["epoch"], state["best_valid_loss"], state.get("wandb_id")
        set_rng_state(state["rng"], loader_generator)
    run, run_dir = start_logging(config, resume_dir, wandb_id)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"Logging directory is `{_relative(run_dir.parent)}`")  # the original run.bash's line
    print(f"run directory: {run_dir}")
    print(f"model: {config.model.encoder} encoder, {n_params:,} parameters, on {device}")

    def checkpoint(name, epoch):
        rng = get_rng_state(loader_generator)
        save_checkpoint(run_dir / name, model, optimizer, epoch, config, best_valid, rng, wandb_id=run.id)

    epoch = start_epoch
    previous_handler = stop_on_sigterm()
    try:
        for epoch in range(start_epoch, config.training.epochs):
            step = train_one_epoch(
                model, loader, optimizer, config, epoch, epoch * n_steps, total_steps, device, run
            )
            done = epoch + 1
            last = done == config.training.epochs
            if loader_test is not None and (done % config.training.validate_every == 0 or last):
                valid_loss = validate(model, loader_test, config, done, step, device, run)
                if valid_loss < best_valid:
                    best_valid = valid_loss
                    checkpoint("model_best.pt", done)
            if done % config.training.checkpoint_every == 0 or last:
                checkpoint("model.pt", done)
    except BaseException as e:
        save_after_failure(checkpoint, run_dir, epoch, e)
        run.finish(exit_code=1)
        raise
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    accuracy = quality_summary(model, dset, dset_test, device)
    if accuracy is not None:
        run.summary["knn5_test_accuracy"] = accuracy
    run.finish()
    print(f"model saved to {run_dir / 'model.pt'}")
    if accuracy is not None:
        print(f"quality: kNN (k=5) accuracy of test embeddings = {accuracy:.3f}")
    return run_dir


def _relative(path):
    """``path`` relative to the working directory when it lies below it."""
    try:
        return path.resolve().relative_to(pathlib.Path.cwd())
    except ValueError:
        return path


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or ``kill``) during training: handled like Ctrl-C, so the run is saved."""


def _raise_terminated(signum, frame):
    raise Terminated(f"signal {signum}")


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


def stop_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` while training; returns the handler it replaces.

    Python handles signals in the main thread only, so elsewhere (None returned) SIGTERM keeps
    its handler.
    """
    if not _in_main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def save_after_failure(checkpoint, run_dir, epoch, error):
    """Save the current weights as the start of the interrupted ``epoch``, and say how to resume."""
    if isinstance(error, Terminated):
        what = "terminated (SIGTERM)"
    elif isinstance(error, KeyboardInterrupt):
        what = "interrupted"
    else:
        what = f"stopped by {type(error).__name__}"
    try:
        checkpoint("model.pt", epoch)
    except FloatingPointError as save_error:  # never write NaN weights over a good checkpoint
        print(
            f"\n{what}: {save_error}; {run_dir / 'model.pt'} keeps the last good checkpoint", file=sys.stderr
        )
        return
    print(
        f"\n{what}: saved {run_dir / 'model.pt'} at the start of epoch {epoch + 1} "
        f"(resume with: python run.py --resume {run_dir})",
        file=sys.stderr,
    )


def resume_run_dir(path):
    """The run directory to resume from ``path``: a run directory, or its ``model.pt``."""
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
    try:
        if args.resume:
            run_dir = resume_run_dir(args.resume)
            overrides = ([args.config] if args.config else []) + args.overrides
            _, saved, _ = load_checkpoint(run_dir)
            config = apply_overrides(saved, overrides)
            if config.model != saved.model or config.data != saved.data:
                raise ConfigError("--resume may change training and logging settings only, not model or data")
            return train(config, resume_dir=run_dir)
        if not args.config:
            parser.error("give a config module (e.g. configs.config_o2mnist) or --resume RUN_DIR")
        return train(load_config(args.config, args.overrides))
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


if __name__ == "__main__":
    main()
