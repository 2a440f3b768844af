"""Bring each object to one canonical pose before a plain model sees it: the simple alternative to O2-VAE.

Three methods, from cheapest to strongest:

- ``"moments"``: the principal (major) axis of the second moments of each image (intensity
  weighted; for masks, of the mask) is rotated to vertical, then the signs of the third moments
  (skewness) along the two axes fix the remaining 180-degree rotation and mirror, so that a
  given shape always lands in one pose.
- ``"moments+refine"``: then, as in the original o2vae work, each image takes the one of the four
  axis flips (none, columns, rows, both) that best matches the mean aligned image; the mean is
  updated and the step repeated until the mean-squared error stops improving.
- ``"template"``: then every image is registered, over all rotations and flips, to the running
  mean image with :func:`registration.register` (batched), until the mean stops changing: a
  generalised Procrustes alignment.

Transforms are returned in the convention of :func:`registration.rotate_flip`: the aligned image
is ``rotate_flip(x, angle, flip)`` (mirror the columns first, then rotate counter-clockwise).
"""

import dataclasses
import math

import numpy as np
import torch

from registration import register, rotate_flip

METHODS = ("moments", "moments+refine", "template")
# the four axis flips tried by the refinement, as (angle, flip) applied after the current pose
_AXIS_FLIPS = ((0.0, False), (0.0, True), (180.0, True), (180.0, False))  # none, columns, rows, both


@dataclasses.dataclass
class Prealignment:
    """What :func:`prealign` did.

    Attributes
    ----------
    images : tensor or ndarray, shape (n, c, h, w)
        The aligned images: an array for an array input, else a tensor of the input's float
        dtype; float32 for integer or bool input (interpolated masks are not binary).
    angle : tensor, shape (n,)
        Counter-clockwise rotation in degrees, in [0, 360).
    flip : tensor of bool, shape (n,)
        Whether the columns were mirrored before the rotation.
    determined : tensor of bool, shape (n,)
        False where the second moments are (nearly) isotropic, so the principal axis, and the
        moments pose, is undetermined (e.g. a disk); the moments leave such images as they are
        (angle 0, no flip).
    errors : list of float
        Mean squared error of the aligned images to their mean (per pixel), after the moments
        and after each iteration of the refinement or the template alignment.
    iterations : int
        Iterations of the refinement or the template alignment (0 for 'moments').
    """

    images: object
    angle: torch.Tensor
    flip: torch.Tensor
    determined: torch.Tensor
    errors: list
    iterations: int


def prealign(x, method="moments", max_iter=30, tol=1e-4, min_anisotropy=0.01, n_angles=360):
    """Rotate and flip each image into a canonical pose.

    Parameters
    ----------
    x : tensor or ndarray, shape (n, c, h, w)
        Centred objects (masks or grey or multi-channel images) with non-negative values; the
        channels are summed for the moments.
    method : {'moments', 'moments+refine', 'template'}
        See the module notes.
    max_iter : int
        Most iterations of the refinement or the template alignment.
    tol : float
        Stop when the error improves by less than this fraction ('moments+refine'), or when the
        mean image changes by less than this fraction of its norm ('template').
    min_anisotropy : float
        Below this ``(l1 - l2) / (l1 + l2)`` of the second-moment eigenvalues the principal axis
        is taken as undetermined.
    n_angles : int
        Angular samples of the registration ('template').

    Returns
    -------
    Prealignment

    Raises
    ------
    ValueError
        For an unknown method, a wrong shape, an empty batch, NaN or Inf, or an image without
        positive values (the message names the image).

    Examples
    --------
    >>> bar = torch.zeros(1, 1, 16, 16)
    >>> bar[0, 0, 7:9, 2:14] = 1.0  # horizontal
    >>> result = prealign(bar)
    >>> round(float(result.angle[0])) % 180
    90
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    images = _check_images(x)
    angle, flip, determined = moments_pose(images, min_anisotropy)
    aligned = rotate_flip(images, angle, flip)
    errors, iterations = [_spread(aligned)], 0
    if method == "moments+refine":
        aligned, angle, flip, errors, iterations = _refine_flips(aligned, angle, flip, max_iter, tol)
    elif method == "template":
        aligned, angle, flip, errors, iterations = _template(
            images, aligned, angle, flip, max_iter, tol, n_angles
        )
    # rotated masks take values between 0 and 1: integer and bool inputs come back as float32
    keep = x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point() else torch.float32
    out = aligned.numpy() if isinstance(x, np.ndarray) else aligned.to(keep)
    return Prealignment(out, angle % 360.0, flip, determined, errors, iterations)


def moments_pose(images, min_anisotropy=0.01):
    """The (angle, flip) that put each image's major axis vertical, its heavier ends up and right.

    The second moments give the major axis; rotating it to vertical leaves a 180-degree rotation
    and a mirror free, fixed by the third moments: the skewness along the vertical axis made
    positive (heavier tail up) by a 180-degree rotation if needed, then the skewness along the
    horizontal axis made positive (heavier tail right) by mirroring the columns.

    Parameters
    ----------
    images : tensor, shape (n, c, h, w)
        Non-negative, each with a positive sum.
    min_anisotropy : float
        See :func:`prealign`.

    Returns
    -------
    angle : tensor (n,)
    flip : tensor of bool (n,)
    determined : tensor of bool (n,)
    """
    n, _, h, w = images.shape
    weights = images.to(torch.float64).sum(1)  # (n, h, w)
    weights = weights / weights.sum((1, 2), keepdim=True)
    xs = torch.arange(w, dtype=torch.float64) - (w - 1) / 2  # right
    ys = (h - 1) / 2 - torch.arange(h, dtype=torch.float64)  # up, as displayed
    x_bar = (weights.sum(1) * xs).sum(1)
    y_bar = (weights.sum(2) * ys).sum(1)
    dx = xs[None, None, :] - x_bar[:, None, None]
    dy = ys[None, :, None] - y_bar[:, None, None]
    mu20, mu02, mu11 = ((weights * m).sum((1, 2)) for m in (dx * dx, dy * dy, dx * dy))
    spread = torch.sqrt((mu20 - mu02) ** 2 + 4 * mu11**2)
    determined = spread > min_anisotropy * (mu20 + mu02)
    major = 0.5 * torch.atan2(2 * mu11, mu20 - mu02)  # counter-clockwise from the x axis
    rad = torch.where(determined, math.pi / 2 - major, torch.zeros_like(major))
    # coordinates after rotating counter-clockwise by rad: the third moments there
    rx = dx * torch.cos(rad)[:, None, None] - dy * torch.sin(rad)[:, None, None]
    ry = dx * torch.sin(rad)[:, None, None] + dy * torch.cos(rad)[:, None, None]
    skew_y, skew_x = (weights * ry**3).sum((1, 2)), (weights * rx**3).sum((1, 2))
    upside_down = (skew_y < 0) & determined  # without an axis there is no pose to complete
    rad = rad + math.pi * upside_down
    skew_x = torch.where(upside_down, -skew_x, skew_x)
    flip = (skew_x < 0) & determined
    # mirroring after the rotation equals rotating the other way after mirroring
    angle = torch.rad2deg(torch.where(flip, -rad, rad)) % 360.0
    return angle.to(torch.float32), flip, determined


def compose(outer_angle, outer_flip, inner_angle, inner_flip):
    """(angle, flip) of applying the transform ``inner`` and then ``outer`` (rotate_flip convention).

    ``R(a2) M^f2 R(a1) M^f1 = R(a2 + (-1)^f2 a1) M^(f1 xor f2)``, since a mirror reverses rotations.
    """
    sign = 1.0 - 2.0 * torch.as_tensor(outer_flip, dtype=torch.float32)
    return (outer_angle + sign * inner_angle) % 360.0, torch.as_tensor(outer_flip) ^ inner_flip


def _check_images(x):
    if not isinstance(x, (torch.Tensor, np.ndarray)):
        raise TypeError(f"images must be a tensor or numpy array, got {type(x).__name__}")
    images = torch.as_tensor(x).detach().cpu().to(torch.float32)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, c, h, w), got {tuple(images.shape)}")
    if len(images) == 0 or images[0].numel() == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")
    bad = ~torch.isfinite(images).flatten(1).all(1)
    if bad.any():
        raise ValueError(f"image {int(bad.nonzero()[0, 0])} contains NaN or Inf")
    if (images < 0).any():
        raise ValueError(f"image {int((images < 0).flatten(1).any(1).nonzero()[0, 0])} has negative values")
    empty = images.flatten(1).sum(1) <= 0
    if empty.any():
        raise ValueError(f"image {int(empty.nonzero()[0, 0])} has no positive value: nothing to align")
    return images


def _spread(aligned):
    """Mean squared error per pixel of the images to their mean."""
    return float(((aligned - aligned.mean(0)) ** 2).mean())


def _refine_flips(aligned, angle, flip, max_iter, tol):
    """Give each image the axis flip closest to the mean aligned image, until the error stops improving."""
    n = len(aligned)
    errors, rows = [_spread(aligned)], torch.arange(n)
    for _ in range(max_iter):
        mean = aligned.mean(0)
        candidates = torch.stack([aligned, aligned.flip(-1), aligned.flip(-2), aligned.flip(-2, -1)])
        choice = ((candidates - mean) ** 2).flatten(2).mean(2).argmin(0)
        aligned = candidates[choice, rows]
        outer_angle = torch.tensor([a for a, _ in _AXIS_FLIPS])[choice]
        outer_flip = torch.tensor([f for _, f in _AXIS_FLIPS])[choice]
        angle, flip = compose(outer_angle, outer_flip, angle, flip)
        errors.append(_spread(aligned))
        if (choice == 0).all() or errors[-1] > errors[-2] * (1 - tol):
            break
    return aligned, angle, flip, errors, len(errors) - 1


def _template(images, aligned, angle, flip, max_iter, tol, n_angles):
    """Register every image to the running mean (rotation and flip) until the mean stops changing."""
    mean = aligned.mean(0)
    errors = [_spread(aligned)]
    for _ in range(max_iter):
        result = register(mean.expand_as(images), images, n_angles=n_angles)
        angle, flip = result.angle, result.flip
        aligned = result.apply(images)
        new_mean = aligned.mean(0)
        errors.append(_spread(aligned))
        change = float((new_mean - mean).norm() / mean.norm().clamp_min(1e-12))
        mean = new_mean
        if change < tol:
            break
    return aligned, angle, flip, errors, len(errors) - 1
