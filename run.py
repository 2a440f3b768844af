"""Train an O2-VAE (or a vanilla VAE) from a config module.

    python run.py configs.config_o2mnist [section.key=value ...]
    python run.py --resume RUN_DIR [training.epochs=N]

Writes ``<logging.out_dir>/wandb/<run>/files/``: ``model.pt`` (every
``training.checkpoint_every`` epochs, at the end and on Ctrl-C), ``model_best.pt`` (lowest
validation loss) and wandb's logs (offline by default: no account, no network).
From Python: ``run.get_datasets_from_config``, ``run.build_model_from_config``, ``run.load_model``.
"""

import argparse
import datetime
import os
import pathlib
import random
import secrets
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from configs.schema import ConfigError, apply_overrides, load_config
from data.datasets import DatasetError, ImageDataset, get_datasets_from_config
from models.build import (
    CheckpointError,
    build_model_from_config,
    load_checkpoint,
    load_model,
    load_model_state,
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
    if h != config.model.image_size:
        raise ConfigError(
            f"model.image_size is {config.model.image_size} but {config.data.data_dir} has {h}x{h} images"
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
    for x, _ in loader:
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

    Returns ``(emb_train, y_train, emb_test, y_test)`` as numpy arrays.
    """
    from torch.utils.data import DataLoader

    import utils

    n = min(len(dset), max_train)
    plain_train = ImageDataset(dset.x[:n], dset.y[:n], value_range=dset.value_range)
    emb_train, y_train = utils.get_model_embeddings_from_loader(
        model, DataLoader(plain_train, batch_size=256), return_labels=True, device=device
    )
    emb_test, y_test = utils.get_model_embeddings_from_loader(
        model, DataLoader(dset_test, batch_size=256), return_labels=True, device=device
    )
    return emb_train, y_train, emb_test, y_test


def quality_summary(model, dset, dset_test, device):
    """kNN (k=5) accuracy of test embeddings against training embeddings, or None without labels."""
    from analysis.metrics import knn_accuracy

    if dset_test is None or dset.y is None or dset_test.y is None:
        return None
    return knn_accuracy(*split_embeddings(model, dset, dset_test, device), k=5)


def train(config, resume_dir=None):
    """Train the model ``config`` describes; returns the run directory."""
    device = pick_device(config.training.device)
    seed_everything(config.training.seed)
    loader_generator = torch.Generator().manual_seed(config.training.seed)
    dset, loader, dset_test, loader_test = get_datasets_from_config(config, generator=loader_generator)
    check_data_fits_model(config, dset)

    model = build_model_from_config(config).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.training.lr, weight_decay=config.training.weight_decay
    )
    steps_per_epoch = len(loader)
    if config.training.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.training.max_steps_per_epoch)
    scheduler = None
    if config.training.lr_schedule == "cosine":
        total = config.training.epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)

    start_epoch, best_valid, wandb_id = 0, float("inf"), None
    if resume_dir is not None:
        state, _, _ = load_checkpoint(resume_dir, device)
        load_model_state(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_valid, wandb_id = state["epoch"], state["best_valid_loss"], state.get("wandb_id")
        set_rng_state(state["rng"], loader_generator)
    run, run_dir = start_logging(config, resume_dir, wandb_id)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"run directory: {run_dir}")
    print(f"model: {config.model.encoder} encoder, {n_params:,} parameters, on {device}")

    def checkpoint(path, epoch):
        rng = get_rng_state(loader_generator)
        save_checkpoint(path, model, optimizer, scheduler, epoch, config, best_valid, rng, wandb_id=run.id)

    epoch, step = start_epoch, start_epoch * steps_per_epoch
    try:
        for epoch in range(start_epoch, config.training.epochs):
            model.train()
            bar = tqdm(
                loader,
                total=steps_per_epoch,
                desc=f"epoch {epoch + 1}/{config.training.epochs}",
                unit="batch",
            )
            for i, (x, _) in enumerate(bar):
                if i == steps_per_epoch:
                    break
                out = model(x.to(device))
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                terms = {k: out[k].item() for k in ("loss", "recon", "kl")}
                bar.set_postfix({k: f"{v:.1f}" for k, v in terms.items()})
                run.log(
                    {f"train/{k}": v for k, v in terms.items()} | {"lr": optimizer.param_groups[0]["lr"]},
                    step=step,
                )
            done = epoch + 1
            if loader_test is not None and (
                done % config.training.validate_every == 0 or done == config.training.epochs
            ):
                valid = evaluate(model, loader_test, device)
                log = {f"valid/{k}": v for k, v in valid.items()} | {"epoch": done}
                if config.logging.n_images:
                    import wandb

                    x_show = next(iter(loader_test))[0][: config.logging.n_images]
                    log["valid/reconstructions"] = wandb.Image(
                        reconstruction_grid(model, x_show, device),
                        caption="inputs (top), aligned reconstructions",
                    )
                run.log(log, step=step)
                terms = ", ".join(f"{k} {v:.2f}" for k, v in valid.items())
                print(f"epoch {done}: valid {terms} (nats per image)")
                if valid["loss"] < best_valid:
                    best_valid = valid["loss"]
                    checkpoint(run_dir / "model_best.pt", done)
            if done % config.training.checkpoint_every == 0 or done == config.training.epochs:
                checkpoint(run_dir / "model.pt", done)
    except KeyboardInterrupt:
        checkpoint(run_dir / "model.pt", epoch)
        print(f"\ninterrupted: saved {run_dir / 'model.pt'} (resume with: python run.py --resume {run_dir})")
        run.finish()
        raise
    accuracy = quality_summary(model, dset, dset_test, device)
    if accuracy is not None:
        run.summary["knn5_test_accuracy"] = accuracy
    run.finish()
    print(f"model saved to {run_dir / 'model.pt'}")
    if accuracy is not None:
        print(f"quality: kNN (k=5) accuracy of test embeddings = {accuracy:.3f}")
    return run_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train an O2-VAE from a config module.")
    parser.add_argument("config", nargs="?", help="config module, e.g. configs.config_o2mnist")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    args = parser.parse_args(argv)
    try:
        if args.resume:
            overrides = ([args.config] if args.config else []) + args.overrides
            _, saved, _ = load_checkpoint(args.resume)
            config = apply_overrides(saved, overrides)
            if config.model != saved.model or config.data != saved.data:
                raise ConfigError("--resume may change training and logging settings only, not model or data")
            return train(config, resume_dir=args.resume)
        if not args.config:
            parser.error("give a config module (e.g. configs.config_o2mnist) or --resume RUN_DIR")
        return train(load_config(args.config, args.overrides))
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError, FileExistsError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
