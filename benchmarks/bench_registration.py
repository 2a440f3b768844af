"""Speed and accuracy of rotation + flip registration: ours vs scikit-image vs brute force.

Usage: python benchmarks/bench_registration.py [--sizes 32 64 128] [--batches 64 512 4096]
                                               [--device cpu] [--reference-pairs 256] [--translation]

For each image size and batch size the same random pairs (``moving = rotate_flip(fixed,
angle, flip)`` of random smooth asymmetric objects) are registered by

1. ours: ``registration.register`` (batched polar phase correlation, 360 angles, 4x refinement);
2. scikit-image, one pair at a time: ``warp_polar`` (360 angles) of fixed, moving and mirrored
   moving, then ``phase_cross_correlation`` (upsample_factor 4) of each polar pair; the
   candidate with the smaller error wins;
3. brute force: ``register_brute_force`` on a 1-degree grid x 2 flips (batched ``grid_sample``).

Ours is timed as the mean of repeated calls over at least one second. The two references are
timed once on at most ``--reference-pairs`` pairs of each batch (their cost per pair does not
depend on the batch) and their pairs/second extrapolated. Prints a Markdown
table: pairs/second, speed ratios, median and 95th-percentile angle error (degrees), flip
accuracy, and our aligned residual relative to brute force's (1.00: as good).

With ``--translation``, the same objects are also shifted (up to ``size / 12`` pixels each way)
and ``register(..., translation=True)`` is timed against the default ``register`` on the same
batch: both alternately, three times each for at least a second, the fastest of each kept, so
their ratio comes from one run under one load. Prints its cost relative to the default and its
angle, flip and shift accuracy on the shifted pairs.
"""

import argparse
import pathlib
import sys
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.registration import phase_cross_correlation
from skimage.transform import warp_polar

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from models.build import machine_name  # noqa: E402
from registration import disk_mask, register, register_brute_force, rotate_flip  # noqa: E402

N_ANGLES = 360


def smooth_objects(n, size, seed):
    """Random smooth asymmetric objects inside a disk of radius 0.4 * size."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random((n, 1, size, size)), sigma=(0, 0, size / 32, size / 32))
    return torch.from_numpy(x * disk_mask(size, size, 0.4 * size).numpy()).float()


def skimage_register(fixed, moving):
    """Angle (degrees, counter-clockwise) and flip per pair with scikit-image, one pair at a time."""
    angles, flips = [], []
    for f, m in zip(fixed[:, 0].numpy(), moving[:, 0].numpy(), strict=True):
        radius = f.shape[0] / 2
        centre = ((f.shape[0] - 1) / 2, (f.shape[1] - 1) / 2)
        shape = (N_ANGLES, int(np.ceil(radius)))
        pf = warp_polar(f, center=centre, radius=radius, output_shape=shape, order=1)
        best = None
        for flip, img in ((False, m), (True, m[:, ::-1])):
            pm = warp_polar(img, center=centre, radius=radius, output_shape=shape, order=1)
            shift, error, _ = phase_cross_correlation(pf, pm, upsample_factor=4, normalization=None)
            if best is None or error < best[0]:
                # skimage's polar angle runs clockwise: a shift of s rows is a rotation by -s bins
                best = (error, (-shift[0] * 360.0 / N_ANGLES) % 360.0, flip)
        angles.append(best[1])
        flips.append(best[2])
    return torch.tensor(angles, dtype=torch.float32), torch.tensor(flips)


def timed(fn, *args, min_seconds=0.0, **kwargs):
    """Result of ``fn`` and its mean time per call, repeating it until ``min_seconds`` have passed."""
    calls, start = 0, time.perf_counter()
    while True:
        out = fn(*args, **kwargs)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return out, elapsed / calls


def angle_error(a, b):
    return ((a - b + 180.0) % 360.0 - 180.0).abs()


def residual(fixed, moving, angle, flip):
    mask = disk_mask(*fixed.shape[-2:])
    return ((rotate_flip(moving, angle, flip) - fixed) * mask).pow(2).sum((1, 2, 3))


def run(size, batch, device, reference_pairs, seed=0):
    fixed = smooth_objects(batch, size, seed)
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(batch, generator=g) * 360.0
    flip = torch.rand(batch, generator=g) < 0.5
    moving = rotate_flip(fixed, angle, flip)
    want_angle, want_flip = torch.where(flip, angle, -angle) % 360.0, flip
    f_dev, m_dev = fixed.to(device), moving.to(device)
    register(f_dev[:2], m_dev[:2])  # warm-up: grid cache, FFT plans
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # small batches take milliseconds: repeat them for a stable mean
    ours, t_ours = timed(lambda: (register(f_dev, m_dev), sync())[0], min_seconds=1.0)
    ours_angle, ours_flip = ours.angle.cpu().float(), ours.flip.cpu()
    k = min(batch, reference_pairs)
    (sk_angle, sk_flip), t_sk = timed(skimage_register, fixed[:k], moving[:k])
    brute, t_brute = timed(register_brute_force, f_dev[:k], m_dev[:k], step_deg=1.0)
    rate = {"ours": batch / t_ours, "skimage": k / t_sk, "brute": k / t_brute}
    err = angle_error(ours_angle, want_angle)
    sk_err = angle_error(sk_angle, want_angle[:k])
    brute_res = residual(fixed[:k], moving[:k], brute.angle.cpu(), brute.flip.cpu())
    ours_res = residual(fixed[:k], moving[:k], ours_angle[:k], ours_flip[:k])
    return {
        "size": size,
        "batch": batch,
        "ours": rate["ours"],
        "skimage": rate["skimage"],
        "brute": rate["brute"],
        "x_skimage": rate["ours"] / rate["skimage"],
        "x_brute": rate["ours"] / rate["brute"],
        "median": err.median().item(),
        "p95": err.quantile(0.95).item(),
        "flip": (ours_flip == want_flip).float().mean().item(),
        "sk_median": sk_err.median().item(),
        "sk_flip": (sk_flip == want_flip[:k]).float().mean().item(),
        "res_vs_brute": (ours_res.sum() / brute_res.sum()).item(),
    }


def undo_shift(angle, flip, shift):
    """Shift ``(dy, dx)`` of the transform that undoes ``rotate_flip(., angle, flip, shift)``.

    With ``(angle, flip)`` the undoing rotation and flip, it is ``-(its linear part applied to shift)``.
    """
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad), torch.sin(rad)
    dy, dx = shift.unbind(-1)
    dx = torch.where(flip, -dx, dx)
    return -torch.stack([dy * cos - dx * sin, dx * cos + dy * sin], -1)


def run_translation(size, batch, device, seed=0, rounds=3):
    fixed = smooth_objects(batch, size, seed)
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(batch, generator=g) * 360.0
    flip = torch.rand(batch, generator=g) < 0.5
    shift = (torch.rand(batch, 2, generator=g) * 2 - 1) * size / 12
    moving = rotate_flip(fixed, angle, flip, shift)
    want_angle, want_flip = torch.where(flip, angle, -angle) % 360.0, flip
    f_dev, m_dev = fixed.to(device), moving.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def call(translation):
        result = register(f_dev, m_dev, translation=translation)
        sync()
        return result

    for translation in (False, True):
        register(f_dev[:2], m_dev[:2], translation=translation)  # warm-up: grid caches, FFT plans
    times = {False: [], True: []}
    for translation in (False, True) * rounds:
        out, t = timed(call, translation, min_seconds=1.0)
        times[translation].append(t)
    t_default, t_translation = min(times[False]), min(times[True])  # out: the last translation=True
    err = angle_error(out.angle.cpu().float(), want_angle)
    shift_err = (out.shift.cpu().float() - undo_shift(want_angle, want_flip, shift)).norm(dim=-1)
    return {
        "size": size,
        "batch": batch,
        "default": batch / t_default,
        "translation": batch / t_translation,
        "cost": t_translation / t_default,
        "median": err.median().item(),
        "p95": err.quantile(0.95).item(),
        "flip": (out.flip.cpu() == want_flip).float().mean().item(),
        "shift_median": shift_err.median().item(),
        "shift_p95": shift_err.quantile(0.95).item(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 512, 4096])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference-pairs", type=int, default=256)
    parser.add_argument(
        "--translation", action="store_true", help="time translation=True against the default instead"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine_name()
    print(f"device: {device} ({name}), torch threads: {torch.get_num_threads()}, torch {torch.__version__}\n")
    if args.translation:
        print(
            "| size | batch | default pairs/s | translation pairs/s | translation cost (x default) "
            "| median err (deg) | p95 err (deg) | flip acc | median shift err (px) | p95 shift err (px) |"
        )
        print("|" + "---|" * 10)
        for size in args.sizes:
            for batch in args.batches:
                r = run_translation(size, batch, device)
                print(
                    f"| {r['size']} | {r['batch']} | {r['default']:,.0f} | {r['translation']:,.0f} "
                    f"| {r['cost']:.1f}x | {r['median']:.3f} | {r['p95']:.3f} | {r['flip']:.3f} "
                    f"| {r['shift_median']:.3f} | {r['shift_p95']:.3f} |",
                    flush=True,
                )
        return
    print(
        "| size | batch | ours pairs/s | skimage pairs/s | brute pairs/s | ours/skimage | ours/brute "
        "| median err (deg) | p95 err (deg) | flip acc | skimage median err | skimage flip acc "
        "| residual ours/brute |"
    )
    print("|" + "---|" * 13)
    for size in args.sizes:
        for batch in args.batches:
            r = run(size, batch, device, args.reference_pairs)
            print(
                f"| {r['size']} | {r['batch']} | {r['ours']:,.0f} | {r['skimage']:,.0f} | {r['brute']:,.0f} "
                f"| {r['x_skimage']:.0f}x | {r['x_brute']:.0f}x | {r['median']:.3f} | {r['p95']:.3f} "
                f"| {r['flip']:.3f} | {r['sk_median']:.3f} | {r['sk_flip']:.3f} | {r['res_vs_brute']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
