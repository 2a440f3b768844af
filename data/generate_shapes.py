"""Build O2-shapes: synthetic cell-like objects in 6 shape classes, at random orientation.

Classes differ in shape, never in orientation:
0 round, 1 elongated, 2 triangular, 3 spiky (protrusions), 4 kidney (bean), 5 two-lobed.
Each object gets a random size, aspect jitter, smooth boundary noise and a smooth random
texture, and is rendered *analytically* at a random continuous angle and flip (no resampling
of a rasterised image), anti-aliased by 3x3 supersampling. The transform follows the
convention of ``registration/transform.py``: the stored image equals
``rotate_flip(upright, angle, flip)``, with ``angle`` and ``flip`` saved in ``meta_<split>.npz``.

Usage: python data/generate_shapes.py [--n 20000] [--n-test 4000] [--size 64] [--seed 0]
                                      [--out data/o2_shapes]
"""

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from data.cli import add_output_arguments, image_size  # noqa: E402
from data.io import prepare_output_dir, save_sample_grid, save_split  # noqa: E402

CLASSES = ("round", "elongated", "triangular", "spiky", "kidney", "two-lobed")
SUPERSAMPLE = 3
N_TEXTURE_BLOBS = 6
N_NOISE_HARMONICS = 4


def _wrap(phi):
    return (phi + np.pi) % (2 * np.pi) - np.pi


def boundary_radius(cls, phi, p):
    """Radius of the upright object's boundary at polar angle ``phi`` (unit mean radius).

    ``p`` holds the per-object random parameters (arrays broadcast against ``phi``).
    """
    if cls == 0:  # round
        r = np.ones_like(phi)
    elif cls == 1:  # elongated: ellipse with axis ratio 1.8-2.6 (major axis along x)
        a, b = np.sqrt(p["aspect"]), 1 / np.sqrt(p["aspect"])
        r = a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
    elif cls == 2:  # triangular, rounded corners
        r = 1 + p["depth"] * np.cos(3 * phi)
    elif cls == 3:  # spiky: narrow protrusions at irregular angles
        bumps = np.exp(-(_wrap(phi[..., None] - p["spike_angles"]) ** 2) / (2 * 0.12**2))
        r = 0.85 + p["spike_height"] * bumps.sum(-1)
    elif cls == 4:  # kidney: ellipse with a notch on one long side
        a, b = 1.25, 0.8
        ell = a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
        r = ell * (1 - p["notch"] * np.exp(-(_wrap(phi - np.pi / 2) ** 2) / (2 * 0.35**2)))
    elif cls == 5:  # two-lobed: union of two discs on the x axis (star-shaped about the centre)
        d, rad = p["lobe_offset"], p["lobe_radius"]
        # distance to the boundary of a disc of radius rad centred at (+-d, 0) along direction phi
        c = np.abs(np.cos(phi))
        r = d * c + np.sqrt(np.maximum(rad**2 - (d * np.sin(phi)) ** 2, 0))
    else:
        raise ValueError(f"unknown class {cls}")
    return r


def random_params(cls, rng):
    """Random shape, size, noise and texture parameters of one object of class ``cls``."""
    p = {
        "radius": rng.uniform(10.0, 15.0),  # mean radius in pixels at size 64
        "stretch": rng.uniform(0.9, 1.1),  # aspect jitter shared by all classes
        "noise_amp": rng.uniform(0, 0.04, N_NOISE_HARMONICS) / np.arange(1, N_NOISE_HARMONICS + 1),
        "noise_phase": rng.uniform(0, 2 * np.pi, N_NOISE_HARMONICS),
        "blob_xy": rng.uniform(-0.8, 0.8, (N_TEXTURE_BLOBS, 2)),
        "blob_amp": rng.uniform(-0.25, 0.35, N_TEXTURE_BLOBS),
        "blob_width": rng.uniform(0.15, 0.4, N_TEXTURE_BLOBS),
        "brightness": rng.uniform(0.55, 0.85),
    }
    if cls == 1:
        p["aspect"] = rng.uniform(1.8, 2.6)
    elif cls == 2:
        p["depth"] = rng.uniform(0.18, 0.26)
    elif cls == 3:
        k = rng.integers(5, 9)
        p["spike_angles"] = np.sort(rng.uniform(0, 2 * np.pi, k))
        p["spike_height"] = rng.uniform(0.35, 0.55)
    elif cls == 4:
        p["notch"] = rng.uniform(0.3, 0.45)
    elif cls == 5:
        p["lobe_offset"] = rng.uniform(0.5, 0.68)
        p["lobe_radius"] = rng.uniform(0.75, 0.9)
    return p


def _wobble(phi, p):
    """Smooth multiplicative boundary noise: a few low harmonics of random phase."""
    k = np.arange(1, N_NOISE_HARMONICS + 1)
    return 1 + (p["noise_amp"] * np.cos(k * phi[..., None] + p["noise_phase"])).sum(-1)


def _object_coords(t, angle, flip, scale, stretch):
    """Object coordinates ``(u, v)`` of output positions ``t`` (pixel units about the centre)."""
    y, x = np.meshgrid(t, t, indexing="ij")  # x right, y down
    rad = np.deg2rad(angle)
    u = np.cos(rad) * x - np.sin(rad) * y  # inverse rotation ...
    v = np.sin(rad) * x + np.cos(rad) * y
    if flip:  # ... then the mirror of x
        u = -u
    return u / (scale * stretch), v * stretch / scale


def render(cls, p, angle, flip, size):
    """Render one object, rotated counter-clockwise by ``angle`` degrees after an optional flip.

    Returns a float32 ``(size, size)`` image in [0, 1]: the texture (smooth, so sampled at
    pixel centres) times the fraction of each pixel inside the boundary (supersampled).
    """
    centre = (size - 1) / 2
    scale = p["radius"] * (size / 64)
    # shrink the rare object that would reach beyond 90 % of the inscribed disk (rotations would cut it)
    phi = np.linspace(-np.pi, np.pi, 721)
    r_max = (boundary_radius(cls, phi, p) * _wobble(phi, p)).max() * max(p["stretch"], 1 / p["stretch"])
    scale = min(scale, 0.9 * (size / 2) / r_max)
    t_fine = (np.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5 - centre
    u, v = _object_coords(t_fine, angle, flip, scale, p["stretch"])
    rho, phi = np.hypot(u, v), np.arctan2(-v, u)  # phi counter-clockwise as displayed
    inside = (rho <= boundary_radius(cls, phi, p) * _wobble(phi, p)).astype(np.float32)
    coverage = inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean((1, 3))
    u, v = _object_coords(np.arange(size) - centre, angle, flip, scale, p["stretch"])
    d2 = (u[..., None] - p["blob_xy"][:, 0]) ** 2 + (v[..., None] - p["blob_xy"][:, 1]) ** 2
    texture = p["brightness"] + (p["blob_amp"] * np.exp(-d2 / (2 * p["blob_width"] ** 2))).sum(-1)
    return (coverage * np.clip(texture, 0.1, 1.0)).astype(np.float32)


def make_shapes(n, rng, size=64):
    """Generate ``n`` objects with balanced classes.

    Returns
    -------
    images : float32 array (n, 1, size, size)
    labels, angle, flip : arrays (n,)
    """
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    angle = rng.uniform(0, 360, n)
    flip = rng.random(n) < 0.5
    images = np.empty((n, 1, size, size), dtype=np.float32)
    for i, cls in enumerate(labels):
        images[i, 0] = render(cls, random_params(cls, rng), angle[i], flip[i], size)
    return images, labels, angle, flip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="training images")
    parser.add_argument("--n-test", type=int, default=None, help="test images (default: n / 5)")
    parser.add_argument("--size", type=image_size, default=64, help="image size in pixels (even)")
    add_output_arguments(parser, pathlib.Path(__file__).parent / "o2_shapes")
    args = parser.parse_args(argv)
    n_test = args.n // 5 if args.n_test is None else args.n_test
    out = prepare_output_dir(args.out, args.overwrite)
    rng = np.random.default_rng(args.seed)
    for split, n in (("train", args.n), ("test", n_test)):
        images, labels, angle, flip = make_shapes(n, rng, args.size)
        save_split(out, split, images, labels, {"angle": angle, "flip": flip})
        print(f"wrote {n} {split} images {images.shape[1:]} ({len(CLASSES)} classes) to {out}")
    names = [CLASSES[c] for c in labels]
    save_sample_grid(out / "samples.png", images, names, title="O2-shapes (test)")
    return out


if __name__ == "__main__":
    main()
