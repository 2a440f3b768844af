"""Load, validate and serve image datasets of single centred objects.

A dataset is a directory holding ``X_train`` (images ``(n, c, h, w)`` or ``(n, h, w)``) and
optionally ``X_test``, ``y_train`` and ``y_test``, each as one of:

- ``.sav``: ``torch.save`` of a tensor or numpy array (the original o2vae format), read with
  ``torch.load(..., weights_only=True)``;
- ``.npy``: memory-mapped, so datasets larger than RAM work;
- ``.npz``: the single array inside it (loaded into memory: zip members cannot be mapped);
- ``.tif`` / ``.tiff``: a multi-page TIFF, one page per image.
"""

import pathlib
import zipfile

import numpy as np
import tifffile
import torch
from torch.utils.data import DataLoader, Dataset

from registration.transform import rotate_flip

EXTENSIONS = (".sav", ".npy", ".npz", ".tif", ".tiff")
# numpy arrays pickled by torch.save need these globals (numeric dtypes only), none of which runs code
_NUMERIC_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)
_NUMPY_SAFE_GLOBALS = [np.ndarray, np.dtype, np._core.multiarray._reconstruct] + [
    type(np.dtype(t)) for t in _NUMERIC_DTYPES
]
_CHUNK = 4096  # images per chunk when scanning arrays that may be memory-mapped


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or holds data of the wrong form."""


def load_array(path):
    """Read one array file, memory-mapping it where the format allows.

    Parameters
    ----------
    path : str or Path
        A ``.sav``, ``.npy``, ``.npz``, ``.tif`` or ``.tiff`` file.

    Returns
    -------
    numpy.ndarray
        The array (a read-only memory map for ``.npy``).

    Raises
    ------
    DatasetError
        If the file is missing, of an unknown format, or holds something other than one array.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".sav":
        try:
            with torch.serialization.safe_globals(_NUMPY_SAFE_GLOBALS):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise DatasetError(
                f"{path}: cannot read as a tensor or numpy array saved with torch.save "
                f"(only plain arrays are loaded, never arbitrary pickled objects): {e}"
            ) from e
        if isinstance(obj, torch.Tensor):
            return obj.numpy()
        if isinstance(obj, np.ndarray) and obj.dtype != object:
            return obj
        raise DatasetError(f"{path}: expected a tensor or numeric numpy array, found {type(obj).__name__}")
    if suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise DatasetError(f"{path}: not a plain numeric .npy array: {e}") from e
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                if len(npz.files) != 1:
                    raise DatasetError(f"{path}: expected exactly one array in the .npz, found {npz.files}")
                return npz[npz.files[0]]
        except (ValueError, zipfile.BadZipFile) as e:
            raise DatasetError(f"{path}: not a plain numeric .npz archive: {e}") from e
    if suffix in (".tif", ".tiff"):
        try:
            return tifffile.imread(path)
        except Exception as e:
            raise DatasetError(f"{path}: cannot read as a TIFF: {e}") from e
    raise DatasetError(f"{path}: unknown file type {suffix!r}, expected one of {EXTENSIONS}")


def find_array_file(data_dir, stem, required=True):
    """Return the single file ``data_dir/stem.<ext>`` with a supported extension.

    Raises
    ------
    DatasetError
        If the file is required and missing, or if several formats of it exist.
    """
    data_dir = pathlib.Path(data_dir)
    found = [data_dir / f"{stem}{ext}" for ext in EXTENSIONS if (data_dir / f"{stem}{ext}").is_file()]
    if len(found) > 1:
        raise DatasetError(f"{data_dir}: several files for {stem!r}: {[p.name for p in found]}; keep one")
    if not found:
        if required:
            if not data_dir.is_dir():
                raise DatasetError(f"{data_dir}: dataset directory not found")
            raise DatasetError(
                f"{data_dir}: no {stem} file, expected one of {[stem + e for e in EXTENSIONS]}"
            )
        return None
    return found[0]


def _scan_range(x, path):
    """Min and max of ``x`` in chunks, raising on NaN/Inf (works on memory maps)."""
    lo, hi = np.inf, -np.inf
    for start in range(0, len(x), _CHUNK):
        chunk = np.asarray(x[start : start + _CHUNK])
        if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
            bad = start + int(np.argwhere(~np.isfinite(chunk))[0][0])
            raise DatasetError(f"{path}: image {bad} contains NaN or Inf values")
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    return lo, hi


def validate_images(x, path):
    """Check an image array and return it with shape ``(n, c, h, w)``.

    Parameters
    ----------
    x : numpy.ndarray
        Images ``(n, h, w)`` (a channel axis is added) or ``(n, c, h, w)``.
    path : str or Path
        Named in error messages.

    Returns
    -------
    x : numpy.ndarray, shape (n, c, h, w)
        A view of the input (memory maps stay memory maps).
    value_range : tuple of float
        Minimum and maximum value.

    Raises
    ------
    DatasetError
        Wrong number of dimensions or dtype, empty, non-square or odd-sized images, NaN or Inf.
    """
    if x.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: images must be numeric, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DatasetError(f"{path}: images must have shape (n, c, h, w) or (n, h, w), got {x.shape}")
    n, c, h, w = x.shape
    if n == 0 or c == 0 or h == 0:
        raise DatasetError(f"{path}: empty image array of shape {x.shape}")
    if h != w:
        raise DatasetError(f"{path}: images must be square, got height {h} and width {w} (shape {x.shape})")
    if h % 2:
        raise DatasetError(
            f"{path}: image size must be even, got {h}x{w}; pad by one pixel, "
            "e.g. np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)))"
        )
    return x, _scan_range(x, path)


def load_dataset(data_dir, rescale=None):
    """Load and validate every array of a dataset directory.

    Parameters
    ----------
    data_dir : str or Path
        Directory with ``X_train`` and optionally ``X_test``, ``y_train``, ``y_test``.
    rescale : {None, 'minmax'}
        None: images must already lie in [0, 1]. 'minmax': map the training set's
        ``[min, max]`` linearly to [0, 1] (the test set uses the same map).

    Returns
    -------
    dict
        ``X_train``, ``X_test``, ``y_train``, ``y_test`` (None where absent) and
        ``value_range``, the ``(lo, hi)`` that maps to [0, 1].
    """
    if rescale not in (None, "minmax"):
        raise DatasetError(f"rescale must be None or 'minmax', got {rescale!r}")
    out = {}
    sizes = {}
    ranges = {}
    for split in ("train", "test"):
        x_path = find_array_file(data_dir, f"X_{split}", required=split == "train")
        y_path = find_array_file(data_dir, f"y_{split}", required=False)
        if x_path is None:
            if y_path is not None:
                raise DatasetError(f"{y_path}: labels given but no X_{split} images")
            out[f"X_{split}"] = out[f"y_{split}"] = None
            continue
        x, ranges[split] = validate_images(load_array(x_path), x_path)
        sizes[split] = (x.shape[1:], x_path)
        out[f"X_{split}"] = x
        out[f"y_{split}"] = None if y_path is None else _validate_labels(load_array(y_path), len(x), y_path)
    if "test" in sizes and sizes["test"][0] != sizes["train"][0]:
        raise DatasetError(
            f"{sizes['test'][1]}: test images have shape (c, h, w) = {sizes['test'][0]}, "
            f"but training images {sizes['train'][1]} have {sizes['train'][0]}"
        )
    if rescale == "minmax":
        lo, hi = ranges["train"]
        if hi <= lo:
            raise DatasetError(f"{sizes['train'][1]}: all values equal {lo}; cannot rescale to [0, 1]")
        out["value_range"] = (lo, hi)
    else:
        for split, (lo, hi) in ranges.items():
            if lo < 0 or hi > 1:
                raise DatasetError(
                    f"{sizes[split][1]}: values lie in [{lo:g}, {hi:g}] but must lie in [0, 1] "
                    "(the loss needs it); rescale the data or set data.rescale = 'minmax' in the config"
                )
        out["value_range"] = (0.0, 1.0)
    return out


def _validate_labels(y, n_images, path):
    y = np.asarray(y)
    if y.ndim != 1:
        raise DatasetError(f"{path}: labels must be one-dimensional, got shape {y.shape}")
    if len(y) != n_images:
        raise DatasetError(f"{path}: {len(y)} labels for {n_images} images")
    return y


class ImageDataset(Dataset):
    """Images (and labels), with optional random rotation and flip on the fly.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, c, h, w)
        Images; may be a memory map (read one item at a time).
    y : numpy.ndarray, shape (n,), optional
        Labels; items get label -1 when absent.
    rotate : bool
        Rotate each item by a uniformly random angle in [0, 360) degrees (bilinear).
    flip : bool
        Mirror each item with probability 0.5.
    value_range : tuple of float
        ``(lo, hi)`` mapped linearly to [0, 1].

    Notes
    -----
    Items are ``(image, label)`` with ``image`` a float32 tensor ``(c, h, w)``.
    The augmentation is :func:`registration.transform.rotate_flip`, so what lies
    outside the inscribed disk of a rotated image is cut off and filled with zeros.
    """

    def __init__(self, x, y=None, rotate=False, flip=False, value_range=(0.0, 1.0)):
        self.x, self.y = x, y
        self.rotate, self.flip = rotate, flip
        self.value_range = value_range
        self.lo, self.scale = value_range[0], value_range[1] - value_range[0]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = torch.from_numpy(np.array(self.x[i], dtype=np.float32))
        if self.lo != 0.0 or self.scale != 1.0:
            img = (img - self.lo) / self.scale
        if self.rotate or self.flip:
            angle = float(torch.rand(()) * 360.0) if self.rotate else 0.0
            flip = bool(torch.rand(()) < 0.5) if self.flip else False
            img = self.augment(img, angle, flip)
        label = -1 if self.y is None else int(self.y[i])
        return img, label

    @staticmethod
    def augment(img, angle, flip):
        """Flip (optionally) then rotate one image ``(c, h, w)`` counter-clockwise by ``angle`` degrees."""
        return rotate_flip(img[None], angle, flip)[0]


def get_datasets_from_config(config, generator=None):
    """Build the datasets and loaders that a config describes.

    Parameters
    ----------
    config : object
        With a ``data`` section holding ``data_dir``, ``batch_size``, ``num_workers``,
        ``rotation_augmentation``, ``flip_augmentation``, ``rescale`` and ``limit_train``.
    generator : torch.Generator, optional
        Drives the shuffling of the training loader (save its state to resume exactly).

    Returns
    -------
    dset, loader, dset_test, loader_test
        Training set and loader (shuffled, augmented as configured) and test set and loader
        (not shuffled, not augmented); the test pair is ``None`` when there is no ``X_test``.
    """
    cfg = config.data
    arrays = load_dataset(cfg.data_dir, rescale=cfg.rescale)
    x, y = arrays["X_train"], arrays["y_train"]
    if cfg.limit_train is not None:
        x, y = x[: cfg.limit_train], None if y is None else y[: cfg.limit_train]
    dset = ImageDataset(
        x,
        y,
        rotate=cfg.rotation_augmentation,
        flip=cfg.flip_augmentation,
        value_range=arrays["value_range"],
    )
    loader = DataLoader(
        dset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, generator=generator
    )
    if arrays["X_test"] is None:
        return dset, loader, None, None
    dset_test = ImageDataset(arrays["X_test"], arrays["y_test"], value_range=arrays["value_range"])
    loader_test = DataLoader(dset_test, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)
    return dset, loader, dset_test, loader_test
