"""Time and peak memory of ``data.prepare`` on synthetic label images.

    python benchmarks/bench_prepare.py [--images 100] [--objects 100] [--image-size 1024] [--size 64]

Writes ``--images`` TIFF images of ``--image-size`` pixels, each with ``--objects`` ellipses and
their label mask, into a temporary folder, then runs ``python -m data.prepare`` on them in a
child process and reports its wall time and peak resident memory (the child's ``ru_maxrss``).
Goal (issue 11): 10,000 objects from 100 images of 1024 x 1024 in under 1 minute, under 2 GB.
"""

import argparse
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import tifffile
from skimage import draw

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_label_images(folder, n_images, n_objects, size, seed=0):
    """``n_images`` images and masks with ``n_objects`` non-overlapping ellipses each, on a grid."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    per_side = int(np.ceil(np.sqrt(n_objects)))
    step = size / per_side
    for i in range(n_images):
        image = rng.normal(100, 10, (size, size)).clip(0).astype(np.uint16)
        mask = np.zeros((size, size), np.uint16)
        for k in range(n_objects):
            r, c = (np.divmod(k, per_side)[0] + 0.5) * step, (k % per_side + 0.5) * step
            a, b = rng.uniform(0.1, 0.25, 2) * step  # diameters up to half the step: all fit in 64 px
            rr, cc = draw.ellipse(r, c, a, b, (size, size), rotation=rng.uniform(0, np.pi))
            mask[rr, cc] = k + 1
            image[rr, cc] += rng.integers(500, 3000, dtype=np.uint16)
        tifffile.imwrite(folder / "images" / f"img{i:03d}.tif", image)
        tifffile.imwrite(folder / "masks" / f"img{i:03d}.tif", mask)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        start = time.perf_counter()
        write_label_images(folder, args.images, args.objects, args.image_size)
        print(f"wrote {args.images} images of {args.image_size} px in {time.perf_counter() - start:.1f} s")
        command = [
            sys.executable, "-m", "data.prepare", "--images", str(folder / "images"),
            "--masks", str(folder / "masks"), "--out", str(folder / "out"), "--size", str(args.size),
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True)
        seconds = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # kB on Linux
    n = args.images * args.objects
    print(
        f"data.prepare: {n} objects from {args.images} images of {args.image_size} px: {seconds:.1f} s "
        f"({n / seconds:.0f} objects/s), peak RSS {peak_gb:.2f} GB"
    )


if __name__ == "__main__":
    main()
