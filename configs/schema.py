"""The config tree: every field, its default, its type and its meaning, defined once here.

A config module (``configs/config_*.py``) builds a :class:`Config` and may change any field;
:func:`load_config` imports it, applies ``section.key=value`` overrides from the command line
and validates the result. Unknown keys, wrong types and impossible combinations fail here,
before any data is read or any model built, with a message that names the key.
"""

import dataclasses
import importlib
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

    def validate(self):
        _check_choice("data.rescale", self.rescale, (None, "minmax"))
        _check_positive("data.batch_size", self.batch_size)
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclasses.dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)

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


def load_config(module_name, overrides=()):
    """Import ``module_name`` (e.g. ``configs.config_o2mnist``), apply overrides, validate.

    The module must define ``config``, a :class:`Config`.
    """
    module = importlib.import_module(module_name)
    config = getattr(module, "config", None)
    if not isinstance(config, Config):
        raise ConfigError(
            f"{module.__file__}: must define `config = Config(...)`, found {type(config).__name__}"
        )
    # rebuild from plain data so that assignments made in the module are type-checked too
    return apply_overrides(config, overrides)
