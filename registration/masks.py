"""Pixel masks in the conventions of ``registration/transform.py``."""

import torch


def disk_mask(h, w, radius=None, device=None, dtype=torch.float32):
    """1 on pixels whose centre lies inside the centred disk (default: the inscribed one), else 0.

    Parameters
    ----------
    h, w : int
        Image size.
    radius : float, optional
        Radius in pixels about the centre ``((h - 1) / 2, (w - 1) / 2)`` (default ``min(h, w) / 2``).
    device, dtype
        Of the returned mask.

    Returns
    -------
    tensor, shape (h, w)
    """
    radius = min(h, w) / 2 if radius is None else radius
    yy = torch.arange(h, device=device, dtype=dtype)[:, None] - (h - 1) / 2
    xx = torch.arange(w, device=device, dtype=dtype)[None, :] - (w - 1) / 2
    return (yy**2 + xx**2 <= radius**2).to(dtype)
