"""Rotate, flip and shift batches of images: the one warp used across the repo.

Conventions (shared by `registration`, the data augmentation and the generators)
--------------------------------------------------------------------------------
- Images are ``(b, c, h, w)``; row 0 is displayed at the top.
- The transform is ``shift(rotate(flip(x)))``: first an optional mirror of the
  columns (``x.flip(-1)``), then a rotation by ``angle`` degrees
  **counter-clockwise as displayed** (so 90 degrees equals
  ``torch.rot90(x, 1, dims=(-2, -1))`` and matches ``skimage.transform.rotate``),
  about the image centre ``((h - 1) / 2, (w - 1) / 2)``, then a shift by
  ``(dy, dx)`` pixels (rows down, columns right).
- Pixels that come from outside the image are zero.
"""

import torch
import torch.nn.functional as F

from registration.checks import check_finite, check_images, work_dtype


def _as_batch_vector(value, b, device, dtype, name):
    v = torch.as_tensor(value, device=device, dtype=dtype)
    if v.ndim == 0:
        v = v.expand(b)
    if v.shape != (b,):
        raise ValueError(f"{name} must be a scalar or have shape ({b},), got {tuple(v.shape)}")
    return v


def transform_matrix(angle, flip, shift, size, device=None, dtype=torch.float32):
    """Affine matrices for ``F.affine_grid`` that realise :func:`rotate_flip`.

    Parameters
    ----------
    angle : tensor, shape (b,)
        Counter-clockwise rotation in degrees.
    flip : tensor of bool, shape (b,)
        Mirror the columns before rotating.
    shift : tensor, shape (b, 2) or None
        Shift ``(dy, dx)`` in pixels applied after the rotation.
    size : tuple of int
        ``(h, w)`` of the images.

    Returns
    -------
    theta : tensor, shape (b, 2, 3)
        Maps output coordinates to input coordinates, normalised as in
        ``F.affine_grid(..., align_corners=False)``.
    """
    h, w = size
    b = angle.shape[0]
    rad = torch.deg2rad(angle.to(dtype))
    cos, sin = torch.cos(rad), torch.sin(rad)
    # Inverse rotation in (x right, y down) pixel units, then the optional mirror of x.
    mirror = 1.0 - 2.0 * flip.to(dtype)
    a = torch.stack([torch.stack([mirror * cos, -mirror * sin], -1), torch.stack([sin, cos], -1)], -2)
    # Normalised coordinates scale x by 2/w and y by 2/h, so convert to pixel units and back.
    to_px = torch.tensor([w / 2.0, h / 2.0], device=device, dtype=dtype)
    a = a * (to_px[None, None, :] / to_px[None, :, None])
    if shift is None:
        offset = torch.zeros(b, 2, device=device, dtype=dtype)
    else:
        offset = -(a @ (shift.to(dtype).flip(-1) / to_px)[..., None])[..., 0]  # (dy, dx) -> (x, y)
    return torch.cat([a, offset[..., None]], dim=-1)


def rotate_flip(x, angle, flip=False, shift=None, mode="bilinear"):
    """Rotate (and optionally flip and shift) a batch of images.

    Differentiable with respect to ``x`` (not to the transform parameters).

    Parameters
    ----------
    x : tensor, shape (b, c, h, w)
        Images, finite, any float dtype (half precision is computed in float32), any device.
    angle : float or tensor, shape (b,)
        Counter-clockwise rotation in degrees, per image or one for all.
    flip : bool or tensor of bool, shape (b,)
        Mirror the columns (``x.flip(-1)``) before rotating.
    shift : tensor, shape (b, 2) or (2,), optional
        ``(dy, dx)`` in pixels, applied after the rotation.
    mode : {'bilinear', 'bicubic', 'nearest'}
        Interpolation passed to ``torch.nn.functional.grid_sample``.

    Returns
    -------
    tensor, shape (b, c, h, w)
        The transformed images, in the dtype of ``x``; samples from outside the input are zero.

    Examples
    --------
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> torch.allclose(rotate_flip(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    True
    """
    check_images(x, "x")
    b = x.shape[0]
    work = work_dtype(x.dtype)
    angle = _as_batch_vector(angle, b, x.device, work, "angle")
    check_finite(angle, "angle")
    flip = _as_batch_vector(flip, b, x.device, torch.bool, "flip")
    if shift is not None:
        shift = torch.as_tensor(shift, device=x.device, dtype=work)
        if shift.shape not in ((2,), (b, 2)):
            raise ValueError(f"shift must have shape (2,) or ({b}, 2), got {tuple(shift.shape)}")
        shift = shift.expand(b, 2)
        check_finite(shift, "shift")
    return _warp(x.to(work), angle, flip, shift, mode).to(x.dtype)


def _warp(x, angle, flip, shift=None, mode="bilinear"):
    """:func:`rotate_flip` of checked inputs: ``angle``, ``flip`` (and ``shift``) per image, ``x``'s dtype."""
    b, _, h, w = x.shape
    theta = transform_matrix(angle, flip, shift, (h, w), device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
