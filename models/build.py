"""Build a VAE from a config, and save/load self-describing checkpoints."""

import pathlib
import platform

import numpy as np
import torch

from configs.schema import Config, from_dict
from data.io import atomic_write
from models.decoders.cnn_decoder import CNNDecoder
from models.encoders_o2.o2_encoder import O2Encoder
from models.encoders_vanilla.cnn_encoder import CNNEncoder
from models.vae import VAE

CHECKPOINT_FORMAT = 2  # 2: encoders end with a whole-map layer


class CheckpointError(ValueError):
    """A file is not a readable o2vae checkpoint, or does not fit the model of its config."""


def build_model_from_config(config):
    """The :class:`~models.vae.VAE` that ``config.model`` describes (freshly initialised)."""
    m = config.model
    shared = dict(
        channels=m.encoder_channels,
        downsample=m.encoder_downsample,
        kernel_size=m.kernel_size,
        hidden=m.hidden,
    )
    if m.encoder == "o2":
        o2 = dict(
            group=m.group,
            n_rotations=m.n_rotations,
            max_frequency=m.max_frequency,
            layer_type=m.layer_type,
            pooling=m.encoder_pooling,
        )
        encoder = O2Encoder(m.in_channels, m.image_size, m.zdim, **o2, out_fields=m.encoder_out, **shared)
    else:
        encoder = CNNEncoder(m.in_channels, m.image_size, m.zdim, out_channels=m.encoder_out, **shared)
    decoder = CNNDecoder(m.zdim, m.in_channels, m.image_size, width=m.decoder_width)
    return VAE(
        encoder,
        decoder,
        m.image_size,
        loss=m.loss,
        beta=m.beta,
        align=m.align,
        rot_step_deg=m.rot_step_deg,
        align_angles=m.align_angles,
        mask=m.loss_mask,
    )


def model_state(model):
    """``model.state_dict()`` without e2cnn's cached filters, which exist only in eval mode.

    ``R2Conv`` stores its expanded ``filter`` and ``expanded_bias`` as buffers in eval mode and
    drops them in train mode; they derive from the weights, so checkpoints leave them out.
    """
    import e2cnn.nn as enn

    derived = {
        f"{name}.{buffer}"
        for name, module in model.named_modules()
        if isinstance(module, enn.R2Conv)
        for buffer in ("filter", "expanded_bias")
    }
    return {k: v for k, v in model.state_dict().items() if k not in derived}


def load_model_state(model, state):
    """Load a :func:`model_state` into ``model`` (left in train mode; ``.eval()`` rebuilds the filters)."""
    model.train()  # drops the cached filters, so the keys match
    model.load_state_dict(state)


def library_versions():
    """Versions of Python and the libraries a checkpoint depends on, as plain strings."""
    import e2cnn

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    return {name: str(v) for name, v in (versions | {"e2cnn": e2cnn.__version__}).items()}


def save_checkpoint(
    path, model, optimizer, scheduler, epoch, config, best_valid_loss, rng_state, wandb_id=None
):
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    The file holds only tensors and plain data, so :func:`load_checkpoint` reads it with
    ``torch.load(weights_only=True)``.
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "epoch": epoch,
        "config": config.to_dict(),
        "best_valid_loss": best_valid_loss,
        "rng": rng_state,
        "wandb_id": wandb_id,
        "versions": library_versions(),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def resolve_checkpoint(path_or_run_dir):
    """``model.pt`` inside a run directory, or the file itself."""
    path = pathlib.Path(path_or_run_dir)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint (expected a model.pt file or a run directory holding one)"
        )
    return path


def load_checkpoint(path_or_run_dir, device="cpu"):
    """Read a checkpoint safely (``weights_only=True``); returns ``(state, config, path)``."""
    path = resolve_checkpoint(path_or_run_dir)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path}: not a readable o2vae checkpoint (only tensors and plain data are loaded): {e}"
        ) from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "config" not in state:
        raise CheckpointError(f"{path}: not an o2vae checkpoint of format {CHECKPOINT_FORMAT}")
    return state, from_dict(Config, state["config"]).validate(), path


def load_model(path_or_run_dir, device=None):
    """Rebuild a trained model from its checkpoint alone (no config file needed).

    Parameters
    ----------
    path_or_run_dir : str or Path
        A ``model.pt`` / ``model_best.pt`` file, or a run directory holding ``model.pt``.
    device : str or torch.device, optional
        Where to put the model (default: CPU).

    Returns
    -------
    VAE
        In eval mode; ``model.config`` holds the run's :class:`~configs.schema.Config`.
    """
    device = torch.device(device or "cpu")
    state, config, path = load_checkpoint(path_or_run_dir, device)
    model = build_model_from_config(config)
    try:
        load_model_state(model, state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes: {e}") from e
    model.config = config
    return model.to(device).eval()
