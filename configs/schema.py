"""The config tree: every field, its default, its type and its meaning, defined once here.

A config module (``configs/config_*.py``) builds a :class:`Config` and may change any field;
:func:`load_config` imports it, applies ``section.key=value`` overrides from the command line
and validates the result. Unknown keys, wrong types and impossible combinations fail here,
before any data is read or any model built, with a message that names the key.
"""

import dataclasses
import importlib
import pathlib
import types
import typing


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or conflicts with another key."""


@dataclasses.dataclass
class DataConfig:
    data_dir: str = "data/o2_mnist"  # dataset directory holding X_train (and X_test, y_*) files
    batch_size: int = 64  # images per training and validation batch
    num_workers: int = 0  # DataLoader worker processes (0: load in the main process)
    rotation_augmentation: bool = False  # rotate training images by a random angle each time they are seen
    flip_augmentation: bool = False  # mirror training images with probability 0.5
    rescale: str | None = None  # None: data must lie in [0, 1]; "minmax": map the training min/max to [0, 1]
    value_range: list[float] | None = None  # [lo, hi] mapped to [0, 1]; training fills it in for "minmax"
    limit_train: int | None = None  # use only the first N training images (quick runs)
    resize: bool = False  # resize images on load to model.image_size (bilinear, anti-aliased)

    def validate(self):
        _check_choice("data.rescale", self.rescale, (None, "minmax"))
        _check_positive("data.batch_size", self.batch_size)
        if self.batch_size == 1:
            raise ConfigError(
                "data.batch_size must be at least 2 (batch normalisation needs 2 images), got 1"
            )
        if self.value_range is not None:
            if self.rescale != "minmax":
                raise ConfigError("data.value_range is set, so data.rescale must be 'minmax'")
            if len(self.value_range) != 2 or not self.value_range[0] < self.value_range[1]:
                raise ConfigError(f"data.value_range must be [lo, hi] with lo < hi, got {self.value_range}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.limit_train is not None:
            _check_positive("data.limit_train", self.limit_train)


@dataclasses.dataclass
class ModelConfig:
    encoder: str = "o2"  # "o2": e2cnn encoder, invariant to rotations and flips; "vanilla": plain CNN
    in_channels: int = 1  # image channels (checked against the data)
    image_size: int = 32  # image height = width in pixels (checked against the data)
    zdim: int = 32  # latent dimension = embedding size
    group: str = "dihedral"  # o2 encoder: "dihedral" (D_N) or "o2" (continuous O(2))
    n_rotations: int = 8  # o2 encoder, dihedral group: N of D_N
    max_frequency: int = 3  # o2 encoder: band limit of the O(2) fields and of the last layer's irreps
    layer_type: str = "regular"  # o2 encoder: "regular" (D_N), "norm" or "induced_gated" (O(2), paper)
    encoder_channels: list[int] = dataclasses.field(default_factory=lambda: [8, 16, 24, 32])  # per conv layer
    encoder_downsample: list[bool] = dataclasses.field(default_factory=lambda: [True, True, True, False])
    encoder_pooling: str = "after"  # o2 encoder: "after" (blur-pool after the non-linearity) or "strided"
    kernel_size: int = 5  # odd kernel size of the encoder convolutions
    encoder_out: int = 64  # last encoder layer, over the whole map: o2 fields / vanilla channels
    hidden: int = 128  # width of the encoder's MLP head
    decoder_width: int = 128  # decoder channels at its lowest resolution (halved at each upsampling)
    loss: str = "bce"  # "bce" (sigmoid output, data in [0, 1]) or "mse"
    beta: float = 1.0  # weight of the KL term
    align: str = "fourier"  # align reconstructions to inputs before the loss: "fourier", "brute" or "none"
    align_angles: int = 128  # angular samples of the Fourier alignment
    rot_step_deg: float = 10.0  # angle step of the brute-force alignment
    loss_mask: str | None = "disk"  # "disk": loss on the inscribed disk only; None: every pixel
    invariance_weight: float = 0.0  # weight of the term pulling a rotated copy's embedding to the original's
    invariance_fraction: float = 0.25  # share of each batch given a randomly rotated and flipped copy
    invariance_warmup_epochs: float = 1.0  # the invariance weight ramps up linearly over these epochs

    def validate(self):
        _check_choice("model.encoder", self.encoder, ("o2", "vanilla"))
        _check_choice("model.group", self.group, ("dihedral", "o2"))
        _check_choice("model.layer_type", self.layer_type, ("regular", "norm", "induced_gated"))
        _check_choice("model.encoder_pooling", self.encoder_pooling, ("after", "strided"))
        _check_choice("model.loss", self.loss, ("bce", "mse"))
        _check_choice("model.align", self.align, ("fourier", "brute", "none"))
        _check_choice("model.loss_mask", self.loss_mask, ("disk", None))
        for key in (
            "in_channels",
            "image_size",
            "zdim",
            "n_rotations",
            "encoder_out",
            "hidden",
            "decoder_width",
            "align_angles",
        ):
            _check_positive(f"model.{key}", getattr(self, key))
        _check_positive("model.rot_step_deg", self.rot_step_deg)
        if self.beta < 0:
            raise ConfigError(f"model.beta must be >= 0, got {self.beta}")
        for key in ("invariance_weight", "invariance_warmup_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key} must be >= 0, got {getattr(self, key)}")
        if not 0 < self.invariance_fraction <= 1:
            raise ConfigError(f"model.invariance_fraction must be in (0, 1], got {self.invariance_fraction}")
        if len(self.encoder_channels) != len(self.encoder_downsample) or not self.encoder_channels:
            raise ConfigError(
                "model.encoder_channels and model.encoder_downsample need one entry per layer, got "
                f"{self.encoder_channels} and {self.encoder_downsample}"
            )
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"model.kernel_size must be odd, got {self.kernel_size}")
        if self.image_size % 2 or self.image_size < 16:
            raise ConfigError(f"model.image_size must be even and at least 16, got {self.image_size}")
        n_down = sum(self.encoder_downsample)
        if self.image_size % 2**n_down:
            raise ConfigError(
                f"model.image_size {self.image_size} must be divisible by 2 ** {n_down} "
                f"(one factor 2 per True in model.encoder_downsample)"
            )
        if self.encoder == "o2" and self.layer_type == "regular" and self.group != "dihedral":
            raise ConfigError("model.layer_type 'regular' needs model.group 'dihedral'")
        if self.encoder == "o2" and self.layer_type != "regular" and self.group != "o2":
            raise ConfigError(f"model.layer_type {self.layer_type!r} needs model.group 'o2'")
        if self.encoder == "o2" and (
            self.max_frequency < 1
            or (self.group == "dihedral" and self.max_frequency >= self.n_rotations / 2)
        ):
            raise ConfigError(
                "model.max_frequency must be >= 1 and, for group 'dihedral', below model.n_rotations / 2 "
                f"(the 2-D irreps of D_{self.n_rotations}), got {self.max_frequency}"
            )
        if self.encoder == "o2" and self.image_size // 2**n_down < 2:
            raise ConfigError(
                f"model.image_size {self.image_size} with {n_down} pooling steps leaves a 1-pixel map for "
                "the o2 encoder's last layer: use fewer True in model.encoder_downsample"
            )
        if self.align != "none" and self.loss_mask != "disk":
            raise ConfigError("model.align needs model.loss_mask = 'disk' (corners do not survive rotation)")


@dataclasses.dataclass
class TrainingConfig:
    epochs: int = 10  # passes over the training set
    lr: float = 1e-3  # Adam learning rate
    lr_schedule: str | None = None  # None (constant) or "cosine" (decay to 0 over the run)
    weight_decay: float = 0.0  # Adam weight decay
    seed: int = 0  # seeds torch, numpy and random
    device: str = "auto"  # "auto" (CUDA if present), "cpu", "cuda" or "cuda:N"
    validate_every: int = 1  # epochs between validations (and image logging)
    checkpoint_every: int = 1  # epochs between checkpoints
    checkpoint_every_steps: int | None = None  # also checkpoint every N optimizer steps (long epochs)
    grad_clip: float | None = None  # clip the gradient norm to this value (None: no clipping)
    max_steps_per_epoch: int | None = None  # cap the steps of an epoch (quick runs)
    precision: str = "fp32"  # "fp32", or "bf16" (CUDA only: mixed precision, registration in float32)
    sync_batchnorm: bool = False  # under torchrun on GPUs: batch statistics over the global batch

    def validate(self):
        _check_positive("training.epochs", self.epochs)
        _check_positive("training.lr", self.lr)
        _check_choice("training.lr_schedule", self.lr_schedule, (None, "cosine"))
        _check_positive("training.validate_every", self.validate_every)
        _check_positive("training.checkpoint_every", self.checkpoint_every)
        for key in ("checkpoint_every_steps", "grad_clip"):
            if getattr(self, key) is not None:
                _check_positive(f"training.{key}", getattr(self, key))
        if self.max_steps_per_epoch is not None:
            _check_positive("training.max_steps_per_epoch", self.max_steps_per_epoch)
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"training.device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        _check_choice("training.precision", self.precision, ("fp32", "bf16"))


@dataclasses.dataclass
class LoggingConfig:
    wandb_mode: str = "offline"  # "offline" (no account, no network), "online" or "disabled"
    project: str = "o2vae"  # wandb project name
    run_name: str | None = None  # wandb run name (default: wandb's)
    out_dir: str = "."  # runs are written to <out_dir>/wandb/<run>/files/
    n_images: int = 16  # inputs/reconstructions shown at each validation

    def validate(self):
        _check_choice("logging.wandb_mode", self.wandb_mode, ("offline", "online", "disabled"))
        if self.n_images < 0:
            raise ConfigError(f"logging.n_images must be >= 0, got {self.n_images}")


@dataclasses.dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)

    def validate(self):
        """Check every section (types were checked when the tree was built)."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        return self

    def to_dict(self):
        """The config as plain data (dicts, str, numbers, bool, None, lists)."""
        return dataclasses.asdict(self)


def _check_choice(key, value, choices):
    if value not in choices:
        raise ConfigError(f"{key} must be one of {choices}, got {value!r}")


def _check_positive(key, value):
    if value <= 0:
        raise ConfigError(f"{key} must be positive, got {value}")


def _type_ok(value, annotation):
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(
            _type_ok(v, typing.get_args(annotation)[0]) for v in value
        )
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation):
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def from_dict(cls, values, prefix=""):
    """Build a config dataclass from nested plain data, checking keys and types.

    Parameters
    ----------
    cls : dataclass type
        E.g. :class:`Config`.
    values : dict
        Nested dict; missing keys take their defaults.
    prefix : str
        Key path used in error messages.

    Raises
    ------
    ConfigError
        For an unknown key or a value of the wrong type.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - fields
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {sorted(prefix + k for k in unknown)}; known: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        key, annotation = prefix + name, hints[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"{key} must be a section (dict), got {value!r}")
            kwargs[name] = from_dict(annotation, value, key + ".")
        elif not _type_ok(value, annotation):
            raise ConfigError(f"{key} must be of type {_type_name(annotation)}, got {value!r}")
        else:
            kwargs[name] = list(value) if isinstance(value, tuple) else value
    return cls(**kwargs)


def _parse_value(text):
    """Parse a command-line value: Python literals (numbers, True, None, lists), else a string."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config, overrides):
    """Return a copy of ``config`` with ``section.key=value`` strings applied and checked."""
    values = config.to_dict()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        *path, leaf = key.strip().split(".")
        node = values
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown config section {part!r} in override {item!r}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"unknown config key {key!r} in override {item!r}; known: {sorted(node)}")
        node[leaf] = _parse_value(text.strip())
    return from_dict(type(config), values).validate()


def presets():
    """Module names of the config presets in ``configs/`` (e.g. ``configs.config_o2mnist``)."""
    folder = pathlib.Path(__file__).parent
    return sorted(f"configs.{path.stem}" for path in folder.glob("config_*.py"))


def load_config(module_name, overrides=()):
    """Import ``module_name`` (e.g. ``configs.config_o2mnist``), apply overrides, validate.

    The module must define ``config``, a :class:`Config`.
    """
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name and not module_name.startswith(f"{e.name}."):
            raise  # a module the config imports is missing, not the config itself
        raise ConfigError(f"no config module {module_name!r}; presets: {', '.join(presets())}") from None
    config = getattr(module, "config", None)
    if not isinstance(config, Config):
        raise ConfigError(
            f"{module.__file__}: must define `config = Config(...)`, found {type(config).__name__}"
        )
    # rebuild from plain data so that assignments made in the module are type-checked too
    return apply_overrides(config, overrides)
