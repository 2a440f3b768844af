"""Load, validate and serve image datasets of single centred objects.

A dataset is a directory holding ``X_train`` (images ``(n, c, h, w)`` or ``(n, h, w)``) and
optionally ``X_test``, ``y_train`` and ``y_test``, each as one of:

- ``.sav``: ``torch.save`` of a tensor or numpy array (the original o2vae format), read with
  ``torch.load(..., weights_only=True)``;
- ``.npy``: memory-mapped, so datasets larger than RAM work;
- ``.npz``: the single array inside it (loaded into memory: zip members cannot be mapped);
- ``.tif`` / ``.tiff``: a multi-page TIFF, one page per image.
"""

import json
import pathlib
import signal
import zipfile

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from data.io import file_sha256
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
_TORCH_INTEGER_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_CHUNK = 4096  # images per chunk when scanning arrays that may be memory-mapped
MAX_CHANNELS = 32  # more channels than this, and than images, is taken for a (c, n, h, w) array


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
            return _tensor_to_numpy(obj, path)
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
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return _tiff_as_images(series.asarray(), series.axes, path)
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"{path}: cannot read as a TIFF: {e}") from e
    raise DatasetError(f"{path}: unknown file type {suffix!r}, expected one of {EXTENSIONS}")


def _tensor_to_numpy(t, path):
    """A tensor from a ``.sav`` as a numpy array (detached; dtypes numpy lacks, e.g. bfloat16, as float32)."""
    t = t.detach()
    if t.is_complex() or not (t.is_floating_point() or t.dtype in _TORCH_INTEGER_DTYPES):
        raise DatasetError(f"{path}: expected a real numeric tensor, got dtype {t.dtype}")
    if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.float()  # bfloat16 and float8 have no numpy dtype; float32 holds their values exactly
    return t.numpy()


def _tiff_as_images(x, axes, path):
    """Order a TIFF series as ``(n, c, h, w)`` (or ``(n, h, w)``) using tifffile's axis names.

    'S' (samples, e.g. RGB) and 'C' are channels, 'Y' and 'X' the image, any other named axis
    ('I', 'Q', 'Z', 'T', ...) indexes images. Unnamed 4-D series ('QQYX', as written by
    ``tifffile.imwrite`` without metadata) are taken as ``(n, c, h, w)``.
    """
    channel_axes = [i for i, a in enumerate(axes) if a in "SC"]
    if len(channel_axes) > 1:
        raise DatasetError(f"{path}: TIFF has several channel axes ({axes!r}); merge them into one")
    if "Y" not in axes or "X" not in axes:
        raise DatasetError(f"{path}: TIFF series has no Y and X axes (axes {axes!r})")
    if not channel_axes:
        return x
    image_axes = [i for i, a in enumerate(axes) if a not in "SCYX"]
    if len(image_axes) > 1:
        raise DatasetError(
            f"{path}: TIFF axes {axes!r} have several image axes besides the channels; "
            "keep one (one image per object)"
        )
    order = image_axes + channel_axes + [axes.index("Y"), axes.index("X")]
    x = np.transpose(x, order)
    return x if image_axes else x[None]


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
    if c > MAX_CHANNELS and c > n:
        raise DatasetError(
            f"{path}: shape {x.shape} reads as {n} images of {c} channels; if it is (c, n, h, w), "
            "images must be (n, c, h, w): use np.moveaxis(x, 0, 1)"
        )
    if h != w:
        if c == h and w in (1, 3, 4):
            raise DatasetError(
                f"{path}: shape {x.shape} looks like channel-last images (n, h, w, c); images must be "
                "(n, c, h, w): use np.moveaxis(x, -1, 1)"
            )
        raise DatasetError(f"{path}: images must be square, got height {h} and width {w} (shape {x.shape})")
    if h % 2:
        raise DatasetError(
            f"{path}: image size must be even, got {h}x{w}; pad by one pixel, "
            "e.g. np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)))"
        )
    return x, _scan_range(x, path)


def load_dataset(data_dir, rescale=None, value_range=None):
    """Load and validate every array of a dataset directory.

    Parameters
    ----------
    data_dir : str or Path
        Directory with ``X_train`` and optionally ``X_test``, ``y_train``, ``y_test``.
    rescale : {None, 'minmax'}
        None: images must already lie in [0, 1]. 'minmax': map ``value_range`` linearly to [0, 1].
    value_range : tuple of float, optional
        With 'minmax', the ``(lo, hi)`` to map, e.g. the one a model was trained with
        (``model.config.data.value_range``). Default: the training set's min and max.
        Every split must lie inside it.

    Returns
    -------
    dict
        ``X_train``, ``X_test``, ``y_train``, ``y_test`` (None where absent) and
        ``value_range``, the ``(lo, hi)`` that maps to [0, 1].
    """
    if rescale not in (None, "minmax"):
        raise DatasetError(f"rescale must be None or 'minmax', got {rescale!r}")
    if value_range is not None and rescale != "minmax":
        raise DatasetError("a value_range is given, so rescale must be 'minmax'")
    verify_prepared_files(data_dir)
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
        out[f"y_{split}"] = None if y_path is None else validate_labels(load_array(y_path), len(x), y_path)
    if "test" in sizes and sizes["test"][0] != sizes["train"][0]:
        raise DatasetError(
            f"{sizes['test'][1]}: test images have shape (c, h, w) = {sizes['test'][0]}, "
            f"but training images {sizes['train'][1]} have {sizes['train'][0]}"
        )
    if rescale == "minmax" and value_range is None:
        value_range = ranges["train"]
        if value_range[1] <= value_range[0]:
            raise DatasetError(f"{sizes['train'][1]}: all values equal {value_range[0]}; cannot rescale")
    lo, hi = (0.0, 1.0) if rescale is None else (float(v) for v in value_range)
    for split, (split_lo, split_hi) in ranges.items():
        if split_lo < lo or split_hi > hi:
            where = (
                "[0, 1] (the loss needs it)"
                if rescale is None
                else f"the range [{lo:g}, {hi:g}] mapped to [0, 1]"
            )
            fix = "set data.rescale = 'minmax' in the config" if rescale is None else "give data inside it"
            raise DatasetError(
                f"{sizes[split][1]}: values lie in [{split_lo:g}, {split_hi:g}] but must lie in {where}; "
                f"rescale the data or {fix}"
            )
    out["value_range"] = (lo, hi)
    return out


def verify_prepared_files(data_dir):
    """Check the files of a ``data.prepare`` dataset against the sha256 digests in its ``prepare.json``.

    Datasets without a ``prepare.json`` (or written before it recorded digests) are not checked.

    Raises
    ------
    DatasetError
        When a recorded file is missing, truncated or altered: names it and gives the command
        that re-creates the dataset.
    """
    record = pathlib.Path(data_dir) / "prepare.json"
    if not record.is_file():
        return
    try:
        summary = json.loads(record.read_text())
        files = summary.get("files", {})
    except (ValueError, AttributeError) as e:
        raise DatasetError(f"{record}: not a readable prepare.json ({e})") from e
    redo = " ".join(summary.get("command") or []) or f"python -m data.prepare with the options in {record}"
    for name, expected in files.items():
        path = record.with_name(name)
        if not path.is_file():
            raise DatasetError(f"{path}: missing, but {record.name} lists it; re-create the dataset: {redo}")
        if file_sha256(path) != expected:
            raise DatasetError(
                f"{path}: its sha256 differs from the one {record.name} recorded when data.prepare wrote it: "
                f"the file was truncated or altered since; re-create the dataset (in a new folder, or with "
                f"--overwrite): {redo}"
            )


def validate_labels(y, n_images, path):
    """Check labels and return them as an int64 array ``(n,)``.

    Raises
    ------
    DatasetError
        Unless ``y`` is one-dimensional with ``n_images`` finite, integer-valued numbers.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise DatasetError(f"{path}: labels must be one-dimensional, got shape {y.shape}")
    if len(y) != n_images:
        raise DatasetError(f"{path}: {len(y)} labels for {n_images} images")
    if y.dtype.kind not in "iub" and y.dtype.kind != "f":
        raise DatasetError(
            f"{path}: labels must be integers, got dtype {y.dtype}; map class names to integers, "
            "e.g. names, y = np.unique(y, return_inverse=True)"
        )
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            raise DatasetError(
                f"{path}: labels must be finite whole numbers, label {bad[0]} is {y[bad[0]]} "
                f"({len(bad)} such labels)"
            )
    return y.astype(np.int64)


def to_model_input(x, value_range=(0.0, 1.0), size=None):
    """Images ``(b, c, h, w)`` as a model sees them: ``value_range`` mapped to [0, 1], resized to ``size``.

    The one place where stored images become model input (datasets and ``utils`` both use it).
    Resizing is bilinear with anti-aliasing when shrinking (``torch.nn.functional.interpolate``),
    so values stay in [0, 1].
    """
    lo, hi = value_range
    if (lo, hi) != (0.0, 1.0):
        x = (x - lo) / (hi - lo)
    if size is not None and x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class ImageDataset(Dataset):
    """Images (and labels), with optional random rotation and flip on the fly.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, c, h, w)
        Images; may be a memory map (read one item at a time).
    y : numpy.ndarray, shape (n,), optional
        Integer labels (see :func:`validate_labels`); None for a dataset without labels.
    rotate : bool
        Rotate each item by a uniformly random angle in [0, 360) degrees (bilinear).
    flip : bool
        Mirror each item with probability 0.5.
    value_range : tuple of float
        ``(lo, hi)`` mapped linearly to [0, 1].
    size : int, optional
        Resize each image to ``size x size`` (see :func:`to_model_input`).

    Notes
    -----
    Items are ``(image, label)``, or ``(image,)`` when there are no labels, with ``image`` a
    float32 tensor ``(c, h, w)``; batches of a DataLoader are then ``[images, labels]`` or
    ``[images]``, so ``images = batch[0]`` either way.
    The augmentation is :func:`registration.transform.rotate_flip`, so what lies
    outside the inscribed disk of a rotated image is cut off and filled with zeros.
    """

    def __init__(self, x, y=None, rotate=False, flip=False, value_range=(0.0, 1.0), size=None):
        self.x, self.y = x, y
        self.rotate, self.flip = rotate, flip
        self.value_range, self.size = value_range, size

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = to_model_input(
            torch.from_numpy(np.array(self.x[i], dtype=np.float32))[None], self.value_range, self.size
        )[0]
        if self.rotate or self.flip:
            angle = float(torch.rand(()) * 360.0) if self.rotate else 0.0
            flip = bool(torch.rand(()) < 0.5) if self.flip else False
            img = self.augment(img, angle, flip)
        return (img,) if self.y is None else (img, int(self.y[i]))

    @staticmethod
    def augment(img, angle, flip):
        """Flip (optionally) then rotate one image ``(c, h, w)`` counter-clockwise by ``angle`` degrees."""
        return rotate_flip(img[None], angle, flip)[0]


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def ignore_stop_signals(worker_id):
    """Make a DataLoader worker ignore Ctrl-C and SIGTERM: training stops (and saves) in the main
    process, which ends the workers itself; a terminal's Ctrl-C or a scheduler's SIGTERM reaches
    every process of the group, and a worker dying first would break the step being saved.
    A :class:`WorkerLoader` starts its workers with the two signals held back: they are released
    here, once ignored, so one that came in between is dropped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class WorkerLoader(DataLoader):
    """A DataLoader whose worker processes never die of Ctrl-C or SIGTERM.

    Its workers run :func:`ignore_stop_signals` first (its ``worker_init_fn`` unless given
    another). A worker ignores the two signals only from then on; a group-wide signal in
    the instant before would kill it, and training would stop with "DataLoader worker is killed
    by signal" instead of saving (seen once in 14 group-wide SIGTERMs). So the signals are held
    back (blocked) in this process while the workers start, which they inherit, and this process
    receives any that came meanwhile right after.
    """

    def __init__(self, *args, worker_init_fn=ignore_stop_signals, **kwargs):
        super().__init__(*args, worker_init_fn=worker_init_fn, **kwargs)

    def __iter__(self):
        if not self.num_workers or not hasattr(signal, "pthread_sigmask"):
            return super().__iter__()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class RecordingBatchSampler(BatchSampler):
    """A :class:`~torch.utils.data.BatchSampler` that keeps the indices of the batches it has yielded.

    ``batches[i]`` holds the dataset indices of batch ``i`` of the current pass (a new pass starts
    a new list), so training can name the images of a batch that failed. The order is the one of
    ``DataLoader(shuffle=True)`` with the same generator.
    """

    def __iter__(self):
        self.batches = []
        for batch in super().__iter__():
            self.batches.append(batch)
            yield batch


def split_metadata(data_dir, split, n):
    """Per-image metadata of a split: ``metadata.parquet`` (``data.prepare``) or ``meta_<split>.npz``.

    Parameters
    ----------
    data_dir : str or Path
    split : {'train', 'test'}
    n : int
        Number of images of the split; arrays of another length or shape are left out.

    Returns
    -------
    dict
        Name -> array of length ``n`` (e.g. source image, object id, centroid, true angle);
        empty if the dataset has neither file.
    """
    data_dir = pathlib.Path(data_dir)
    if (data_dir / "metadata.parquet").is_file():
        import pandas as pd

        table = pd.read_parquet(data_dir / "metadata.parquet")
        rows = table[table["split"] == split].sort_values("index_in_split")
        columns = rows.drop(columns=["split", "index_in_split"])
        return {k: columns[k].to_numpy() for k in columns.columns} if len(rows) == n else {}
    path = data_dir / f"meta_{split}.npz"
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as meta:
        return {k: meta[k] for k in meta.files if meta[k].ndim == 1 and len(meta[k]) == n}


def get_datasets_from_config(config, generator=None, pin_memory=False):
    """Build the datasets and loaders that a config describes.

    Parameters
    ----------
    config : object
        With a ``data`` section holding ``data_dir``, ``batch_size``, ``num_workers``,
        ``rotation_augmentation``, ``flip_augmentation``, ``rescale``, ``value_range`` (the
        training set's range is used when it is None), ``resize`` (to ``config.model.image_size``)
        and ``limit_train``.
    generator : torch.Generator, optional
        Drives the shuffling of the training loader (save its state to resume exactly).
    pin_memory : bool
        Load batches into page-locked memory (faster copies to a CUDA GPU).

    Returns
    -------
    dset, loader, dset_test, loader_test
        Training set and loader (shuffled, augmented as configured) and test set and loader
        (not shuffled, not augmented); the test pair is ``None`` when there is no ``X_test``.
        When the training set leaves a last batch of one image, the training loader drops it
        (batch normalisation needs two); shuffling makes it a different image each epoch.
        The test loader keeps every image (evaluation runs in eval mode).
    """
    cfg = config.data
    arrays = load_dataset(cfg.data_dir, rescale=cfg.rescale, value_range=cfg.value_range)
    x, y = arrays["X_train"], arrays["y_train"]
    if cfg.limit_train is not None:
        x, y = x[: cfg.limit_train], None if y is None else y[: cfg.limit_train]
    size = config.model.image_size if cfg.resize else None
    dset = ImageDataset(
        x,
        y,
        rotate=cfg.rotation_augmentation,
        flip=cfg.flip_augmentation,
        value_range=arrays["value_range"],
        size=size,
    )
    # a last batch of one image cannot be batch-normalised: drop it (a different image each epoch)
    drop_last = len(dset) % cfg.batch_size == 1
    batches = RecordingBatchSampler(RandomSampler(dset, generator=generator), cfg.batch_size, drop_last)
    loader = WorkerLoader(
        dset,
        batch_sampler=batches,
        num_workers=cfg.num_workers,
        pin_memory=pin_memory,
        generator=generator,
    )
    if arrays["X_test"] is None:
        return dset, loader, None, None
    dset_test = ImageDataset(arrays["X_test"], arrays["y_test"], value_range=arrays["value_range"], size=size)
    loader_test = WorkerLoader(
        dset_test,
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        pin_memory=pin_memory,
    )
    return dset, loader, dset_test, loader_test
