"""From microscopy images and label masks (or single-object crops) to a dataset of centred objects.

    python -m data.prepare --images DIR --masks DIR --out DATA_DIR [--size 64] [--scale none|fit|dataset]
    python -m data.prepare --crops DIR [--labels CSV] --out DATA_DIR

Label masks hold one integer per object and 0 for background, as cellpose, StarDist,
CellProfiler and ilastik write them; an image and its mask are paired by file stem (or by a
``--pairs`` CSV with columns ``image``, ``mask`` and optionally ``group``). Each object is
centred on its mask centroid (or intensity-weighted centroid), optionally scaled, cropped to
``size x size`` with anti-aliased resampling, masked, normalised to [0, 1] and assigned to the
train or test split by its source image, so crops of one image never sit on both sides.

Writes ``X_train.npy``, ``X_test.npy`` (memory-mappable float32 ``(n, c, size, size)``),
``y_train.npy``/``y_test.npy`` when a labels CSV gives classes, ``metadata.parquet`` and
``metadata.csv`` (one row per object) and ``prepare.json`` (options, normalisation numbers,
class names, counts per reason an object was dropped, command line and library versions).
"""

import argparse
import collections
import dataclasses
import json
import pathlib
import platform
import sys

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage as ndi
from skimage import filters, io, measure
from tqdm.auto import tqdm

from data.io import atomic_write, file_sha256, prepare_output_dir, save_sample_grid

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
SCALES = ("none", "fit", "dataset")
MASK_MODES = ("intensity", "mask", "both", "none")
CENTRES = ("mask", "intensity")
NORMALISATIONS = ("dataset", "per-object")


class PrepareError(ValueError):
    """The inputs or options of :func:`prepare_dataset` cannot give a dataset."""


@dataclasses.dataclass
class Source:
    """One input: an intensity image and its label mask (None for a single-object crop).

    ``image`` and ``mask`` are file paths, or arrays (``(h, w)`` or ``(c, h, w)`` images, ``(h, w)``
    masks) for callers that hold them in memory.
    """

    name: str
    image: pathlib.Path | np.ndarray
    mask: pathlib.Path | np.ndarray | None = None
    group: str | None = None

    def load(self, channel_axis=None):
        """``(image, mask)``: float64 ``(c, h, w)`` and int64 ``(h, w)`` (by :func:`crop_mask` if absent)."""
        if isinstance(self.image, np.ndarray):
            image = check_image(self.image if self.image.ndim == 3 else self.image[None], self.name)
        else:
            image = read_image(self.image, channel_axis)
        if self.mask is None:
            return image, crop_mask(image)
        if isinstance(self.mask, np.ndarray):
            return image, check_mask(self.mask, image.shape[1:], self.name)
        return image, read_mask(self.mask, image.shape[1:])


def find_sources(images=None, masks=None, crops=None, pairs=None):
    """The inputs, paired: ``images`` with ``masks`` by file stem, rows of a ``pairs`` CSV, or ``crops``.

    Returns
    -------
    list of Source
        Sorted by name. Images without a mask are reported as :class:`PrepareError`.
    """
    if sum(x is not None for x in (images, crops, pairs)) != 1:
        raise PrepareError("give exactly one of --images with --masks, --pairs or --crops")
    if pairs is not None:
        pairs = pathlib.Path(pairs)
        table = pd.read_csv(pairs)
        missing = {"image", "mask"} - set(table.columns)
        if missing:
            raise PrepareError(f"{pairs}: needs columns 'image' and 'mask', lacks {sorted(missing)}")
        resolve = lambda p: p if pathlib.Path(p).is_absolute() else pairs.parent / p  # noqa: E731
        return [
            Source(
                str(r.image),  # as the CSV names it: files of one name in two folders stay apart
                pathlib.Path(resolve(r.image)),
                pathlib.Path(resolve(r.mask)),
                str(r.group) if "group" in table.columns else None,
            )
            for r in table.itertuples()
        ]
    if crops is not None:
        return [Source(p.name, p) for p in _image_files(crops)]
    if masks is None:
        raise PrepareError("--images needs --masks (or use --pairs)")
    by_stem = {p.stem: p for p in _image_files(masks)}
    unpaired = [p.name for p in _image_files(images) if p.stem not in by_stem]
    if unpaired:
        raise PrepareError(f"{masks}: no mask with the same stem for {unpaired[:5]} ({len(unpaired)} images)")
    return [Source(p.name, p, by_stem[p.stem]) for p in _image_files(images)]


def _image_files(folder):
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise PrepareError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PrepareError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path, channel_axis=None):
    """An intensity image file as float64 ``(c, h, w)``.

    A 3-D TIFF needs ``channel_axis``; PNG and JPEG colour images have their channels last.
    """
    x = tifffile.imread(path) if path.suffix.lower() in (".tif", ".tiff") else io.imread(path)
    if x.ndim == 3 and channel_axis is None and path.suffix.lower() not in (".tif", ".tiff"):
        channel_axis = -1
    if x.ndim == 2:
        x = x[None]
    elif x.ndim == 3 and channel_axis is not None:
        x = np.moveaxis(x, channel_axis, 0)
    else:
        raise PrepareError(
            f"{path}: image of shape {x.shape}; expected 2-D, or 3-D with --channel-axis naming the channels"
        )
    return check_image(x, path)


def check_image(x, name):
    """``x`` ``(c, h, w)`` as float64, or :class:`PrepareError` naming ``name`` (wrong dtype, NaN, Inf)."""
    if x.dtype.kind not in "fiub":
        raise PrepareError(f"{name}: image dtype {x.dtype} is not numeric")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise PrepareError(f"{name}: image holds NaN or Inf")
    return x


def read_mask(path, shape):
    """A label mask file ``(h, w)`` of integers (0 = background) for an image of ``shape`` ``(h, w)``."""
    m = tifffile.imread(path) if path.suffix.lower() in (".tif", ".tiff") else io.imread(path)
    return check_mask(m, shape, path)


def check_mask(m, shape, name):
    """``m`` as int64, or :class:`PrepareError` naming ``name`` (not integers, wrong shape, empty)."""
    if m.dtype.kind == "f" and np.array_equal(m, np.round(m)):
        m = m.astype(np.int64)
    if m.dtype.kind not in "iub":
        raise PrepareError(f"{name}: a label mask must hold integers, got dtype {m.dtype}")
    if m.shape != shape:
        raise PrepareError(f"{name}: mask shape {m.shape} differs from its image's {shape}")
    if not m.any():
        raise PrepareError(f"{name}: the mask is empty (no object labels)")
    return m.astype(np.int64)


def crop_mask(image):
    """The object of a single-object crop: Otsu threshold of the smoothed channel sum, largest component."""
    total = filters.gaussian(image.sum(0), sigma=1)
    if total.max() <= total.min():
        raise PrepareError("the crop is uniform: no object to find")
    components = measure.label(total > filters.threshold_otsu(total))
    largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
    return ndi.binary_fill_holes(components == largest).astype(np.int64)


@dataclasses.dataclass
class Obj:
    """One object of a source: where it is and how big."""

    source: Source
    label: int
    area: int
    bbox: tuple
    centroid: tuple
    extent: float  # diameter of the smallest disk centred on the centroid that holds the object
    touches_border: bool


def measure_objects(source, mask, image=None, centre="mask"):
    """Every labelled object of ``mask`` as :class:`Obj` (centroid intensity-weighted if asked)."""
    objects = []
    weights = None if image is None else image.sum(0)
    h, w = mask.shape
    for p in measure.regionprops(mask):
        coords = p.coords.astype(np.float64)
        if centre == "intensity":
            wts = weights[p.coords[:, 0], p.coords[:, 1]]
            if wts.sum() <= 0:
                raise PrepareError(
                    f"{source.image}: object {p.label} has no intensity to weight its centroid"
                )
            centroid = (wts[:, None] * coords).sum(0) / wts.sum()
        else:
            centroid = coords.mean(0)
        r0, c0, r1, c1 = p.bbox
        # pixel centres lie 0.5 px inside the object's edge: add it so the disk holds whole pixels
        extent = 2 * (np.sqrt(((coords - centroid) ** 2).sum(1)).max() + 0.5)
        touches = r0 == 0 or c0 == 0 or r1 == h or c1 == w
        objects.append(Obj(source, p.label, int(p.area), p.bbox, tuple(centroid), float(extent), touches))
    return objects


def extract_crop(image, object_mask, centroid, factor, size):
    """``image`` ``(c, h, w)`` and the object's mask sampled on a ``size x size`` grid around ``centroid``.

    Output pixel ``(r, c)`` samples the source at ``centroid + ((r, c) - (size - 1) / 2) / factor``
    (bilinear). When shrinking (``factor < 1``), the source is first blurred with a Gaussian of
    ``sigma = (1 / factor - 1) / 2`` pixels, the anti-aliasing rule of ``skimage.transform.rescale``.

    Returns
    -------
    crop : numpy.ndarray, shape (c, size, size)
    inside : numpy.ndarray of bool, shape (size, size)
        Where the object's mask is (its bilinear sample > 0.5).
    """
    centre = (size - 1) / 2
    offsets = (np.arange(size) - centre) / factor
    rows, cols = centroid[0] + offsets[:, None], centroid[1] + offsets[None, :]
    # a window of the source around the object, wide enough for the blur, keeps the work local
    margin = int(np.ceil(3 * max((1 / factor - 1) / 2, 0))) + 2
    r0 = max(int(np.floor(rows.min())) - margin, 0)
    r1 = min(int(np.ceil(rows.max())) + margin + 1, image.shape[1])
    c0 = max(int(np.floor(cols.min())) - margin, 0)
    c1 = min(int(np.ceil(cols.max())) + margin + 1, image.shape[2])
    window = image[:, r0:r1, c0:c1]
    mask_window = object_mask[r0:r1, c0:c1].astype(np.float64)
    if factor < 1:
        sigma = (1 / factor - 1) / 2
        window = np.stack([ndi.gaussian_filter(ch, sigma, mode="nearest") for ch in window])
        mask_window = ndi.gaussian_filter(mask_window, sigma, mode="nearest")
    grid = np.broadcast_arrays(rows - r0, cols - c0)
    crop = np.stack([ndi.map_coordinates(ch, grid, order=1, mode="constant", cval=0.0) for ch in window])
    inside = ndi.map_coordinates(mask_window, grid, order=1, mode="constant", cval=0.0) > 0.5
    return crop, inside


def scale_factors(objects, scale, size, fill, fill_percentile):
    """The scale factor of each object: 1 ('none'), its own ('fit') or one for all ('dataset').

    'fit' scales each object so that its extent (the diameter of the smallest disk centred on
    its centroid that holds it) is ``fill * size``; 'dataset' scales all objects by one factor
    so that the extent at percentile ``fill_percentile`` of the dataset is ``fill * size``.
    """
    extents = np.array([o.extent for o in objects])
    if scale == "none":
        return np.ones(len(objects))
    if scale == "fit":
        return fill * size / extents
    if scale == "dataset":
        return np.full(len(objects), fill * size / np.percentile(extents, fill_percentile))
    raise PrepareError(f"scale must be one of {SCALES}, got {scale!r}")


def normalise(crops, insides, rule, percentiles):
    """Map intensities to [0, 1] (clipped) by percentiles of object pixels, per channel (float32).

    'dataset': one ``(lo, hi)`` per channel over every object pixel of every crop; 'per-object':
    each crop's own. Returns the crops and the ``(lo, hi)`` used (per channel for 'dataset').
    """

    def scale(crop, lo, hi):
        lo, span = lo.astype(np.float32)[:, None, None], np.maximum(hi - lo, 1e-12).astype(np.float32)
        return np.clip((crop - lo) / span[:, None, None], 0, 1)

    if rule == "dataset":
        pixels = np.concatenate([c[:, m] for c, m in zip(crops, insides, strict=True)], axis=1)
        lo, hi = np.percentile(pixels, percentiles, axis=1)
        return [scale(c, lo, hi) for c in crops], {"lo": lo.tolist(), "hi": hi.tolist()}
    if rule == "per-object":
        return [
            scale(c, *np.percentile(c[:, m], percentiles, axis=1))
            for c, m in zip(crops, insides, strict=True)
        ], None
    raise PrepareError(f"normalise must be one of {NORMALISATIONS}, got {rule!r}")


def read_label_table(path):
    """Rows of a labels CSV keyed by file name: ``file``, optional ``label`` and metadata columns."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise PrepareError(f"{path}: labels CSV not found")
    table = pd.read_csv(path)
    if "file" not in table.columns:
        raise PrepareError(f"{path}: needs a 'file' column naming each image, has {list(table.columns)}")
    table["file"] = [pathlib.Path(f).name for f in table["file"]]
    if table["file"].duplicated().any():
        raise PrepareError(
            f"{path}: file names listed twice: {table['file'][table['file'].duplicated()].tolist()[:5]}"
        )
    return table.set_index("file")


def split_groups(groups, test_fraction, seed):
    """Boolean ``is_test`` per object: ``round(fraction * n_groups)`` whole groups form the test split."""
    unique = sorted(set(groups))
    n_test = int(round(test_fraction * len(unique)))
    if test_fraction > 0 and len(unique) > 1:
        n_test = min(max(n_test, 1), len(unique) - 1)
    chosen = set(np.random.default_rng(seed).permutation(unique)[:n_test].tolist())
    return np.array([g in chosen for g in groups])


def collect_objects(
    sources,
    table=None,
    channel_axis=None,
    centre="mask",
    keep_border=False,
    min_area=None,
    max_area=None,
    progress=True,
):
    """Measure every object of every source and keep those that pass the filters.

    A source that cannot be read or checked (or is missing from the labels ``table``) is
    reported on stderr and counted as a 'bad file'; objects touching the image border (unless
    ``keep_border``, and never for single-object crops) and outside ``[min_area, max_area]`` are
    counted by reason.

    Returns
    -------
    objects : list of Obj
    dropped : collections.Counter
        Reason -> count.
    """
    objects, dropped, bad_files = [], collections.Counter(), []
    n_channels = None
    for source in tqdm(sources, desc="measuring", unit="image", disable=not progress):
        try:
            image, mask = source.load(channel_axis)
            n_channels = len(image) if n_channels is None else n_channels
            if len(image) != n_channels:
                raise PrepareError(
                    f"{source.name}: {len(image)} channel(s), but the first image has {n_channels}"
                )
            found = measure_objects(source, mask, image, centre)
        except Exception as e:  # a bad file is reported and skipped, never fatal on its own
            reason = str(e) if isinstance(e, PrepareError) else f"{source.image}: unreadable ({e})"
            print(f"skipped {source.name}: {reason}", file=sys.stderr)
            dropped["bad file"] += 1
            bad_files.append(reason if reason.startswith(str(source.name)) else f"{source.name}: {reason}")
            continue
        if table is not None and source.name not in table.index:
            print(f"skipped {source.name}: not in the labels CSV", file=sys.stderr)
            dropped["bad file"] += 1
            continue
        for o in found:
            if o.touches_border and source.mask is not None and not keep_border:
                dropped["touches the image border"] += 1
            elif min_area is not None and o.area < min_area:
                dropped["smaller than min_area"] += 1
            elif max_area is not None and o.area > max_area:
                dropped["larger than max_area"] += 1
            else:
                objects.append(o)
    if not objects:
        why = (
            f"; bad files: {'; '.join(bad_files[:3])}" + (" ..." if len(bad_files) > 3 else "")
            if bad_files
            else ""
        )
        if dropped["touches the image border"]:
            why += " (--keep-border keeps objects that touch the border)"
        raise PrepareError(f"no usable object in {len(sources)} input(s); dropped: {dict(dropped)}{why}")
    return objects, dropped


def crop_objects(objects, factors, size, channel_axis=None, clip=False, dropped=None, progress=True):
    """Crop each object at its scale factor (:func:`extract_crop`); objects that do not fit are dropped.

    An object fits when its extent times its factor is at most ``size`` (it lies in the crop's
    inscribed disk, the part that survives rotation); with ``clip`` it is kept anyway.
    Reasons are counted in ``dropped`` (a Counter).

    Returns
    -------
    crops : list of float32 arrays (c, size, size)
    insides : list of bool arrays (size, size)
    kept : list of Obj
    kept_factors : list of float
    """
    dropped = collections.Counter() if dropped is None else dropped
    crops, insides, kept, kept_factors = [], [], [], []
    by_source = {}
    for o, f in zip(objects, factors, strict=True):
        by_source.setdefault(id(o.source), []).append((o, f))
    for members in tqdm(by_source.values(), desc="cropping", unit="image", disable=not progress):
        image, mask = members[0][0].source.load(channel_axis)
        for o, f in members:
            if o.extent * f > size and not clip:
                dropped["larger than the crop's disk"] += 1
                continue
            crop, inside = extract_crop(image, mask == o.label, o.centroid, f, size)
            if not inside.any():
                dropped["vanishes at this scale"] += 1
                continue
            crops.append(crop.astype(np.float32))
            insides.append(inside)
            kept.append(o)
            kept_factors.append(f)
    if not kept:
        raise PrepareError(
            f"no object fits the crop; dropped: {dict(dropped)} (try --scale fit or a larger --size)"
        )
    return crops, insides, kept, kept_factors


def prepare_dataset(
    out,
    images=None,
    masks=None,
    crops=None,
    pairs=None,
    labels=None,
    size=64,
    centre="mask",
    scale="none",
    fill=0.8,
    fill_percentile=95.0,
    clip=False,
    mask_mode="intensity",
    keep_border=False,
    min_area=None,
    max_area=None,
    channel_axis=None,
    normalisation="dataset",
    percentiles=(0.5, 99.5),
    test_fraction=0.2,
    group_column=None,
    seed=0,
    overwrite=False,
    progress=True,
    command=None,
):
    """Write a dataset of centred single-object crops from label masks or crops (see the module notes).

    Parameters
    ----------
    out : str or Path
        Output dataset directory (new or empty unless ``overwrite``).
    images, masks : str or Path, optional
        Folders of intensity images and of label masks, paired by file stem.
    crops : str or Path, optional
        A folder of single-object images instead; each object is found by an Otsu threshold.
    pairs : str or Path, optional
        A CSV with columns ``image``, ``mask`` (and ``group``) instead of ``images``/``masks``.
    labels : str or Path, optional
        A CSV with a ``file`` column (image file name), an optional ``label`` column (class:
        text or integers, stored as ``y_*.npy`` with the names in ``prepare.json``) and any
        metadata columns, copied to every object of that file.
    size : int
        Even crop size in pixels.
    centre : {'mask', 'intensity'}
        Centre on the mask centroid or the intensity-weighted centroid.
    scale : {'none', 'fit', 'dataset'}
        Keep the pixel size, scale each object to ``fill`` of the crop, or scale all objects by
        one factor so that the object extent at ``fill_percentile`` is ``fill`` of the crop.
    clip : bool
        Keep objects that do not fit in the crop's inscribed disk (clipped) instead of dropping them.
    mask_mode : {'intensity', 'mask', 'both', 'none'}
        Intensity with other pixels zeroed, the binary mask, both (mask as the last channel), or
        the raw crop.
    keep_border : bool
        Keep objects touching the image border (always kept for ``crops``).
    min_area, max_area : int, optional
        Object area limits in source pixels.
    channel_axis : int, optional
        Channel axis of 3-D TIFF images.
    normalisation : {'dataset', 'per-object'}
        Percentiles ``percentiles`` of object pixels, per channel, over the dataset or per object.
    test_fraction : float
        Fraction of source images (or groups) that form the test split.
    group_column : str, optional
        A column of the labels CSV whose values group objects for the split (e.g. a well).
    seed : int
        Seed of the split.
    overwrite : bool
        Replace the files of a non-empty ``out``.
    progress : bool
        Show progress bars.
    command : list of str, optional
        The command line, recorded in ``prepare.json`` (``python -m data.prepare`` gives it).

    Returns
    -------
    dict
        The summary written to ``prepare.json``.
    """
    _check_options(
        size, centre, scale, mask_mode, normalisation, fill, test_fraction, fill_percentile, percentiles,
        min_area, max_area,
    )  # fmt: skip
    sources = find_sources(images, masks, crops, pairs)
    table = None if labels is None else read_label_table(labels)
    if group_column is not None and (table is None or group_column not in table.columns):
        raise PrepareError(f"--group-column {group_column!r} must be a column of the labels CSV")
    out = prepare_output_dir(out, overwrite)
    objects, dropped = collect_objects(
        sources, table, channel_axis, centre, keep_border, min_area, max_area, progress
    )
    factors = scale_factors(objects, scale, size, fill, fill_percentile)
    crops_out, insides, kept, kept_factors = crop_objects(
        objects, factors, size, channel_axis, clip, dropped, progress
    )
    crops_out, norm = normalise(crops_out, insides, normalisation, percentiles)
    x = np.stack([apply_mask_mode(c, m, mask_mode) for c, m in zip(crops_out, insides, strict=True)])

    meta = object_table(kept, kept_factors, table)
    if group_column is None and "group" in meta.columns:  # the group column of a pairs CSV
        group_column = "group"
    groups = meta[group_column].astype(str).tolist() if group_column else meta["source_image"].tolist()
    meta.insert(0, "split", np.where(split_groups(groups, test_fraction, seed), "test", "train"))
    classes = None
    if table is not None and "label" in table.columns:
        labels_ = meta["label"]
        numeric = pd.api.types.is_integer_dtype(labels_)  # integer classes keep their numeric order
        classes, y = np.unique(labels_.to_numpy() if numeric else labels_.astype(str), return_inverse=True)
        meta["label_id"] = y
    meta.insert(1, "index_in_split", meta.groupby("split").cumcount())
    summary = {
        "n_objects": {
            "train": int((meta["split"] == "train").sum()),
            "test": int((meta["split"] == "test").sum()),
        },
        "dropped": dict(dropped),
        "classes": None if classes is None else [str(c) for c in classes],
        "normalisation": {"rule": normalisation, "percentiles": list(percentiles), "values": norm},
        "options": {
            "size": size,
            "centre": centre,
            "scale": scale,
            "fill": fill,
            "fill_percentile": fill_percentile,
            "clip": clip,
            "mask_mode": mask_mode,
            "keep_border": keep_border,
            "min_area": min_area,
            "max_area": max_area,
            "channel_axis": channel_axis,
            "test_fraction": test_fraction,
            "group_column": group_column,
            "seed": seed,
            "inputs": {
                k: None if v is None else str(v)
                for k, v in dict(images=images, masks=masks, crops=crops, pairs=pairs, labels=labels).items()
            },
        },
        "command": command,
        "versions": _versions(),
    }
    return write_dataset(out, x, meta, summary)


def _check_options(
    size, centre, scale, mask_mode, normalisation, fill, test_fraction, fill_percentile, percentiles,
    min_area, max_area,
):  # fmt: skip
    for name, value, choices in (
        ("centre", centre, CENTRES),
        ("scale", scale, SCALES),
        ("mask_mode", mask_mode, MASK_MODES),
        ("normalisation", normalisation, NORMALISATIONS),
    ):
        if value not in choices:
            raise PrepareError(f"{name} must be one of {choices}, got {value!r}")
    if size % 2 or size < 16:
        raise PrepareError(f"size must be even and at least 16, got {size}")
    if not 0 < fill <= 1:
        raise PrepareError(f"fill must lie in (0, 1], got {fill}")
    if not 0 <= test_fraction < 1:
        raise PrepareError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    if not 0 <= fill_percentile <= 100:
        raise PrepareError(f"fill_percentile must lie in [0, 100], got {fill_percentile}")
    lo, hi = percentiles
    if not 0 <= lo < hi <= 100:
        raise PrepareError(f"percentiles must be (lo, hi) with 0 <= lo < hi <= 100, got {tuple(percentiles)}")
    for name, value in (("min_area", min_area), ("max_area", max_area)):
        if value is not None and value < 0:
            raise PrepareError(f"{name} must be >= 0 pixels, got {value}")
    if min_area is not None and max_area is not None and min_area > max_area:
        raise PrepareError(f"min_area {min_area} is above max_area {max_area}: no object could be kept")


def apply_mask_mode(crop, inside, mode):
    """The crop as stored for ``mode`` (see :func:`prepare_dataset`)."""
    if mode == "intensity":
        return np.where(inside, crop, np.float32(0))
    if mode == "mask":
        return inside[None].astype(np.float32)
    if mode == "both":
        return np.concatenate([np.where(inside, crop, np.float32(0)), inside[None].astype(np.float32)])
    return crop


def object_table(objects, factors, table=None):
    """A metadata row per object: source, id, centroid, bounding box, area, extent, scale, CSV columns."""
    rows = []
    for o, f in zip(objects, factors, strict=True):
        row = {
            "source_image": o.source.name,
            "object_id": o.label,
            "centroid_row": o.centroid[0],
            "centroid_col": o.centroid[1],
            "bbox_min_row": o.bbox[0],
            "bbox_min_col": o.bbox[1],
            "bbox_max_row": o.bbox[2],
            "bbox_max_col": o.bbox[3],
            "area": o.area,
            "extent": o.extent,
            "scale_factor": float(f),
        }
        if o.source.group is not None:
            row["group"] = o.source.group
        if table is not None:
            row |= table.loc[o.source.name].to_dict()
        rows.append(row)
    return pd.DataFrame(rows)


def _versions():
    import skimage

    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-image": skimage.__version__}


def _save_npy(path, array):
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a path
            np.save(f, array)

    atomic_write(path, write)


def write_dataset(out, x, meta, summary):
    """Write a prepared dataset: ``X_*.npy``, ``y_*.npy``, metadata, ``prepare.json`` and ``samples.png``.

    Parameters
    ----------
    out : Path
        An existing output directory.
    x : numpy.ndarray, shape (n, c, size, size)
        Crops in [0, 1], in the row order of ``meta``.
    meta : pandas.DataFrame
        One row per crop with a ``split`` column ('train' or 'test') and, for labelled data, a
        ``label_id`` column.
    summary : dict
        Plain data for ``prepare.json``, to which the sha256 of every file written is added
        (``"files"``: name -> digest; :func:`data.datasets.load_dataset` checks them).

    Returns
    -------
    dict
        ``summary`` with the digests, as written to ``prepare.json``.
    """
    for split in ("train", "test"):
        rows = (meta["split"] == split).to_numpy()
        if not rows.any():
            continue
        _save_npy(out / f"X_{split}.npy", x[rows].astype(np.float32, copy=False))
        if "label_id" in meta.columns:
            _save_npy(out / f"y_{split}.npy", meta.loc[rows, "label_id"].to_numpy(np.int64))
    atomic_write(out / "metadata.parquet", lambda p: meta.to_parquet(p, index=False))
    atomic_write(out / "metadata.csv", lambda p: meta.to_csv(p, index=False))
    written = sorted(f for pattern in ("X_*.npy", "y_*.npy", "metadata.*") for f in out.glob(pattern))
    summary = summary | {"files": {f.name: file_sha256(f) for f in written}}  # checked on every load
    atomic_write(out / "prepare.json", lambda p: pathlib.Path(p).write_text(json.dumps(summary, indent=2)))
    save_sample_grid(out / "samples.png", x, title=f"{out.name}: first crops")
    counts = {split: int((meta["split"] == split).sum()) for split in ("train", "test")}
    print(f"wrote {counts['train']} train and {counts['test']} test objects {x.shape[1:]} to {out}")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    inputs = parser.add_argument_group("inputs (images + masks, pairs, or crops)")
    inputs.add_argument("--images", help="folder of intensity images (TIFF, PNG)")
    inputs.add_argument("--masks", help="folder of label masks, paired with --images by file stem")
    inputs.add_argument("--pairs", help="CSV with columns image, mask (and group)")
    inputs.add_argument("--crops", help="folder of single-object images")
    inputs.add_argument("--labels", help="CSV: file, label (class) and metadata columns")
    inputs.add_argument("--channel-axis", type=int, default=None, help="channel axis of 3-D TIFF images")
    parser.add_argument("--out", required=True, help="output dataset directory (new or empty)")
    parser.add_argument("--size", type=int, default=64, help="crop size in pixels (even, default 64)")
    parser.add_argument("--centre", choices=CENTRES, default="mask")
    parser.add_argument("--scale", choices=SCALES, default="none")
    parser.add_argument(
        "--fill", type=float, default=0.8, help="object extent / crop size for --scale fit|dataset"
    )
    parser.add_argument("--fill-percentile", type=float, default=95.0, help="for --scale dataset")
    parser.add_argument("--clip", action="store_true", help="keep objects larger than the crop, clipped")
    parser.add_argument("--mask-mode", choices=MASK_MODES, default="intensity")
    parser.add_argument("--keep-border", action="store_true", help="keep objects touching the image border")
    parser.add_argument("--min-area", type=int, default=None)
    parser.add_argument("--max-area", type=int, default=None)
    parser.add_argument("--normalise", choices=NORMALISATIONS, default="dataset", dest="normalisation")
    parser.add_argument("--percentiles", type=float, nargs=2, default=(0.5, 99.5), metavar=("LO", "HI"))
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument(
        "--group-column", default=None, help="labels CSV column grouping objects for the split"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty --out")
    args = parser.parse_args(argv)
    options = vars(args)
    options["percentiles"] = tuple(options["percentiles"])
    options["command"] = [sys.executable, "-m", "data.prepare", *(sys.argv[1:] if argv is None else argv)]
    try:
        return prepare_dataset(**options)
    except (PrepareError, FileExistsError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
