"""Validate a dataset directory and print what it holds: ``python -m data.summary DATA_DIR``."""

import argparse

import numpy as np

from data.datasets import DatasetError, load_dataset


def summarize(data_dir, rescale=None):
    """Return a few lines describing the dataset at ``data_dir`` (raises DatasetError if invalid)."""
    data = load_dataset(data_dir, rescale=rescale)
    lines = [f"dataset {data_dir}: valid"]
    for split in ("train", "test"):
        x, y = data[f"X_{split}"], data[f"y_{split}"]
        if x is None:
            lines.append(f"  {split}: none")
            continue
        n, c, h, w = x.shape
        size_mb = x.size * x.dtype.itemsize / 1e6
        if y is None:
            labels = "unlabelled"
        else:
            values, counts = np.unique(y, return_counts=True)
            labels = (
                f"{len(values)} classes, counts {dict(zip(values.tolist(), counts.tolist(), strict=True))}"
            )
        lines.append(
            f"  {split}: {n} images, {c} channel(s), {h}x{w} px, {x.dtype} ({size_mb:.1f} MB); {labels}"
        )
    lo, hi = data["value_range"]
    lines.append(f"  values mapped from [{lo:g}, {hi:g}] to [0, 1]")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--rescale", choices=["minmax"], default=None)
    args = parser.parse_args(argv)
    try:
        print(summarize(args.data_dir, args.rescale))
    except DatasetError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
