"""Build a VAE from a config, and save/load self-describing checkpoints."""

import hashlib
import io
import os
import pathlib
import platform
import shutil
import warnings

import numpy as np
import torch

from configs.schema import Config, ConfigError, from_dict
from data.io import atomic_write
from models._e2cnn_compat import is_derived_buffer
from models.decoders.cnn_decoder import CNNDecoder
from models.encoders_o2.o2_encoder import O2Encoder
from models.encoders_vanilla.cnn_encoder import CNNEncoder
from models.vae import VAE

CHECKPOINT_FORMAT = 2  # 2: encoders end with a whole-map layer
# Config keys added after checkpoints of this format were first written, with the value that
# reproduces the behaviour of the code before the key existed (not today's default).
PRETRAINED_DIR = pathlib.Path(__file__).resolve().parents[1] / "pretrained"
KEYS_ADDED_LATER = {
    "model.encoder_pooling": "after",
    "data.value_range": None,
    "data.resize": False,
    "model.invariance_weight": 0.0,
    "model.invariance_fraction": 0.25,
    "model.invariance_warmup_epochs": 1.0,
    "training.checkpoint_every_steps": None,
    "training.grad_clip": None,
    "training.precision": "fp32",
    "training.sync_batchnorm": False,
}


class CheckpointError(ValueError):
    """A file is not a readable o2vae checkpoint, or does not fit the model of its config."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file is truncated, altered or unreadable (its previous one may still be good)."""


def build_model_from_config(config):
    """The :class:`~models.vae.VAE` that ``config.model`` describes (freshly initialised).

    The config is checked first (keys, types and values, as for a config module), so a config
    built or edited in Python fails with the name of the wrong key. The model keeps it as
    ``model.config``.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a configs.schema.Config, got {type(config).__name__}")
    config = from_dict(Config, config.to_dict()).validate()
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
        encoder = O2Encoder(m.in_channels, m.image_size, m.zdim, **o2, encoder_out=m.encoder_out, **shared)
    else:
        encoder = CNNEncoder(m.in_channels, m.image_size, m.zdim, encoder_out=m.encoder_out, **shared)
    decoder = CNNDecoder(m.zdim, m.in_channels, m.image_size, width=m.decoder_width)
    model = VAE(
        encoder,
        decoder,
        m.image_size,
        loss=m.loss,
        beta=m.beta,
        align=m.align,
        rot_step_deg=m.rot_step_deg,
        align_angles=m.align_angles,
        loss_mask=m.loss_mask,
        invariance_weight=m.invariance_weight,
        invariance_fraction=m.invariance_fraction,
    )
    model.config = config
    # train mode drops e2cnn's cached filters, so model.state_dict() has the keys checkpoints store
    return model.train()


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
    expected = model.state_dict().keys()
    # checkpoints written before the derived e2cnn buffers were left out hold them: they must
    # equal the ones rebuilt from the architecture, which are used
    rebuilt = dict(model.named_buffers())
    for key in state.keys() - expected:
        if is_derived_buffer(key) and key in rebuilt:
            stored, built = state[key].to(rebuilt[key]), rebuilt[key]
            same = (
                torch.allclose(stored, built, atol=1e-6)
                if built.is_floating_point()
                else torch.equal(stored, built)
            )
            if not same:
                raise CheckpointError(f"stored e2cnn buffer {key} differs from the one this code builds")
    model.load_state_dict({k: v for k, v in state.items() if k in expected or not is_derived_buffer(k)})


def machine_name():
    """The CPU model and core count of this machine (from /proc/cpuinfo where there is one)."""
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu} ({os.cpu_count()} cores)"


def library_versions():
    """Versions of Python and the libraries a checkpoint depends on, as plain strings."""
    import e2cnn

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    return {name: str(v) for name, v in (versions | {"e2cnn": e2cnn.__version__}).items()}


def save_checkpoint(
    path, model, optimizer, epoch, config, best_valid_loss, rng_state, wandb_id=None, batch=0,
    keep_previous=False, world_size=1,
):  # fmt: skip
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    The file holds only tensors and plain data, so :func:`load_checkpoint` reads it with
    ``torch.load(weights_only=True)``. ``config`` is stored whole, every field, and
    ``"checksum"`` is the :func:`content_checksum` of everything else, verified on loading.

    Parameters
    ----------
    epoch, batch : int
        Where training stands: ``epoch`` whole epochs done, and ``batch`` batches of the next.
    keep_previous : bool
        Keep the file being replaced as ``<stem>.prev.pt`` (a hard link, so ``path`` exists at
        every moment), the fallback when ``path`` is found damaged.
    world_size : int
        Processes that trained it (torchrun); a run stopped within an epoch resumes with as many.

    Raises
    ------
    FloatingPointError
        If a weight is NaN or Inf: such a model is never written over a checkpoint.
    """
    weights = model_state(model)
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # weights, or batch-norm statistics
        raise FloatingPointError(f"not saving {path}: weights {bad[:3]} hold NaN or Inf")
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": weights,
        # the key the original o2vae's README loads (model.load_state_dict(saved["state_dict"])); the
        # same dict, so torch.save stores the tensors once
        "state_dict": weights,
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "batch": batch,
        "world_size": world_size,
        "config": config.to_dict(),
        "best_valid_loss": best_valid_loss,
        "rng": rng_state,
        "wandb_id": wandb_id,
        "versions": library_versions(),
        "machine": machine_name(),  # where it was trained (model cards quote it)
    }
    state["checksum"] = content_checksum(state)
    path = pathlib.Path(path)
    if keep_previous and path.is_file():
        previous = previous_checkpoint(path)
        atomic_write(previous, lambda tmp: _link_or_copy(path, tmp))
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _link_or_copy(source, target):
    target.unlink()
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, target)


def previous_checkpoint(path):
    """Where :func:`save_checkpoint` keeps the checkpoint that ``path`` replaced: ``<stem>.prev.pt``."""
    path = pathlib.Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def content_checksum(state):
    """sha256 of a checkpoint's content: every tensor's dtype, shape and bytes, and every plain value.

    Computed over the loaded objects rather than the file's bytes (``torch.save`` output is not
    byte-stable), with dict keys in sorted order; the ``"checksum"`` entry itself is left out.
    """
    digest = hashlib.sha256()

    def feed(value, top=False):
        if isinstance(value, torch.Tensor):
            digest.update(f"tensor {value.dtype} {tuple(value.shape)}:".encode())
            flat = value.detach().cpu().contiguous().reshape(-1)  # a 0-d tensor cannot be viewed as bytes
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            keys = sorted((key for key in value if not (top and key == "checksum")), key=repr)
            digest.update(f"dict {len(keys)}:".encode())
            for key in keys:
                feed(key)
                feed(value[key])
        elif isinstance(value, list | tuple):
            digest.update(f"{type(value).__name__} {len(value)}:".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"{type(value).__name__} {value!r};".encode())

    feed(state, top=True)
    return digest.hexdigest()


def resolve_checkpoint(path_or_run_dir):
    """The checkpoint file a path names (a :class:`pathlib.Path`).

    ``path_or_run_dir`` is a checkpoint file, a run directory (its ``model.pt``), or a shipped
    pretrained model: ``pretrained/<name>`` or ``<name>`` (``pretrained/<name>.pt`` in the
    repository).
    """
    path = pathlib.Path(path_or_run_dir)
    if path.is_dir():
        path = path / "model.pt"
    elif not path.exists() and path.suffix == "":
        candidates = [path.with_suffix(".pt")]
        if path.parent in (pathlib.Path("."), pathlib.Path("pretrained")):  # a name, from any folder
            candidates.append(PRETRAINED_DIR / f"{path.name}.pt")
        path = next((c for c in candidates if c.is_file()), path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint (expected a model.pt file, a run directory holding one, or a pretrained "
            f"model name: {', '.join(sorted(p.stem for p in PRETRAINED_DIR.glob('*.pt'))) or 'none shipped'})"
        )
    return path


def verify_checksum(path, digest):
    """Compare the sha256 ``digest`` of ``path`` with the one in ``<path>.sha256`` if that file exists.

    Raises
    ------
    CheckpointError
        When the checksum differs: the file is damaged or not the one its card describes.
    """
    path = pathlib.Path(path)
    recorded = path.with_name(path.name + ".sha256")
    if not recorded.is_file():
        return
    expected = recorded.read_text().split()[0]
    if digest != expected:
        raise CheckpointError(
            f"{path}: sha256 {digest} differs from {expected} recorded in {recorded.name}: the file is "
            "damaged or replaced; restore it from the repository (git checkout -- pretrained/)"
        )


def load_checkpoint(path_or_run_dir, device="cpu"):
    """Read a checkpoint safely (``weights_only=True``); returns ``(state, config, path)``.

    The file is read once: ``state["sha256"]`` is the sha256 of the bytes loaded (checked against
    a ``<file>.sha256`` next to it, as shipped models have), and the content checksum that
    :func:`save_checkpoint` stores is verified.

    Raises
    ------
    CheckpointError
        When the file is truncated, altered or not a checkpoint; the message names the previous
        checkpoint (``<stem>.prev.pt``) when one is kept.
    """
    path = resolve_checkpoint(path_or_run_dir)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    verify_checksum(path, digest)
    try:
        state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as e:
        raise DamagedCheckpointError(
            f"{path}: not a readable o2vae checkpoint: truncated, damaged, or holding objects other than "
            f"tensors and plain data, which are never unpickled ({e}){_previous_hint(path)}"
        ) from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "config" not in state:
        raise CheckpointError(f"{path}: not an o2vae checkpoint of format {CHECKPOINT_FORMAT}")
    if "checksum" in state and content_checksum(state) != state["checksum"]:  # older files have none
        raise DamagedCheckpointError(
            f"{path}: its content does not match the checksum stored in it: the file was altered or "
            f"damaged after it was written{_previous_hint(path)}"
        )
    _warn_on_other_versions(path, state.get("versions", {}))
    try:
        config = from_dict(Config, _fill_keys_added_later(path, state["config"])).validate()
    except ConfigError as e:
        raise CheckpointError(f"{path}: its config does not fit this code: {e}") from e
    state["sha256"] = digest
    return state, config, path


def _previous_hint(path):
    previous = previous_checkpoint(path)
    if not previous.is_file():
        return ""
    return (
        f". The previous checkpoint is kept as {previous}: `python run.py --resume` falls back to it, "
        f"or load it with run.load_model('{previous}')"
    )


def _fill_keys_added_later(path, saved):
    """``saved`` config with the keys of :data:`KEYS_ADDED_LATER` it lacks; any other missing key fails.

    Filling a missing key with today's default would silently build another model the day that
    default changes, so only keys whose historical value is known are filled, with a warning.
    """
    missing = sorted(_leaf_keys(Config().to_dict()) - _leaf_keys(saved))
    unknown = [key for key in missing if key not in KEYS_ADDED_LATER]
    if unknown:
        raise CheckpointError(f"{path}: its config lacks the key(s) {unknown}; it was not saved by this code")
    filled = {section: dict(values) for section, values in saved.items()}
    for key in missing:
        section, name = key.split(".")
        filled[section][name] = KEYS_ADDED_LATER[key]
        warnings.warn(
            f"{path}: saved before config key {key} existed; using {KEYS_ADDED_LATER[key]!r}, "
            "the behaviour of the code that saved it",
            stacklevel=3,
        )
    return filled


def _leaf_keys(config_dict):
    return {f"{section}.{name}" for section, values in config_dict.items() for name in values}


def _warn_on_other_versions(path, saved):
    now = library_versions()
    changed = {
        name: (saved.get(name, "unknown"), now[name])
        for name in ("torch", "e2cnn", "numpy")
        if saved.get(name) != now[name]
    }
    if changed:
        listed = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in changed.items())
        warnings.warn(
            f"{path}: saved with other library versions ({listed}); embeddings may differ slightly",
            stacklevel=3,
        )


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
        In eval mode; ``model.config`` holds the run's :class:`~configs.schema.Config`,
        ``model.checkpoint_path`` and ``model.checkpoint_sha256`` the file it was read from.
    """
    device = torch.device(device or "cpu")
    state, config, path = load_checkpoint(path_or_run_dir, device)
    model = build_model_from_config(config)
    try:
        load_model_state(model, state["model"])
    except (RuntimeError, CheckpointError) as e:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes: {e}") from e
    model.config = config
    model.checkpoint_path, model.checkpoint_sha256 = str(path), state["sha256"]  # for provenance
    return model.to(device).eval()
