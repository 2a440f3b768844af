"""Polar resampling of image batches with one cached sampling grid."""

import functools
import math

import torch
import torch.nn.functional as F

from registration.checks import check_images, work_dtype


class PolarTransform:
    """Resample images ``(b, c, h, w)`` on a polar grid ``(b, c, n_radii, n_angles)``.

    Parameters
    ----------
    size : tuple of int
        ``(h, w)`` of the images.
    n_angles : int
        Samples along the circle; angle ``j`` is ``j * 360 / n_angles`` degrees,
        counter-clockwise as displayed, starting at the positive column axis.
    n_radii : int, optional
        Samples along the radius (default: ``ceil(radius)``, one per pixel).
    radius : float, optional
        Radius of the sampled disk in pixels (default: the inscribed radius ``min(h, w) / 2``;
        what lies outside it does not stay in the image under rotation).

    Notes
    -----
    Pixel ``(i, j)`` has its centre at row ``i``, column ``j``; the polar centre is the image
    centre ``((h - 1) / 2, (w - 1) / 2)``. Radius ``k`` is ``(k + 0.5) * radius / n_radii``
    (midpoints, so each sample stands for a ring of equal width); sample ``(k, j)`` lies at
    row ``cy - r_k sin(theta_j)``, column ``cx + r_k cos(theta_j)``. Interpolation is bilinear
    (``grid_sample``), zero outside the image. The grid is built once per device and dtype.

    A counter-clockwise rotation of the image by ``alpha`` is a circular shift of the angle axis
    by ``+alpha``; mirroring the columns maps angle ``theta`` to ``180 - theta``.

    Examples
    --------
    >>> polar = PolarTransform((32, 32), n_angles=90)
    >>> polar(torch.rand(4, 1, 32, 32)).shape
    torch.Size([4, 1, 16, 90])
    """

    def __init__(self, size, n_angles=360, n_radii=None, radius=None):
        self.h, self.w = size
        self.radius = min(self.h, self.w) / 2 if radius is None else float(radius)
        self.n_angles = int(n_angles)
        self.n_radii = math.ceil(self.radius) if n_radii is None else int(n_radii)
        if self.n_angles < 4 or self.n_radii < 1 or self.radius <= 0:
            raise ValueError(
                f"need n_angles >= 4, n_radii >= 1 and radius > 0, got {n_angles}, {n_radii}, {radius}"
            )
        self.radii = (torch.arange(self.n_radii, dtype=torch.float64) + 0.5) * self.radius / self.n_radii
        self.angles = torch.arange(self.n_angles, dtype=torch.float64) * (2 * math.pi / self.n_angles)
        self._grids = {}

    @property
    def ring_weights(self):
        """Area of the image plane that each polar sample stands for, per radius (pixels^2)."""
        return self.radii * (self.radius / self.n_radii) * (2 * math.pi / self.n_angles)

    def grid(self, device, dtype):
        """The sampling grid ``(1, n_radii, n_angles, 2)`` in ``grid_sample`` coordinates."""
        key = (torch.device(device), dtype)
        if key not in self._grids:
            r, t = self.radii[:, None], self.angles[None, :]
            col = (self.w - 1) / 2 + r * torch.cos(t)
            row = (self.h - 1) / 2 - r * torch.sin(t)
            # align_corners=False: pixel centre i sits at (2 i + 1) / n - 1
            xy = torch.stack([(2 * col + 1) / self.w - 1, (2 * row + 1) / self.h - 1], dim=-1)
            self._grids[key] = xy[None].to(device=device, dtype=dtype)
        return self._grids[key]

    def __call__(self, x):
        """Polar samples ``(b, c, n_radii, n_angles)`` of finite images ``x`` ``(b, c, h, w)``.

        Any float dtype: half precision is sampled in float32 and returned in its own dtype.
        """
        check_images(x, "x")
        if x.shape[-2:] != (self.h, self.w):
            raise ValueError(f"expected images (b, c, {self.h}, {self.w}), got shape {tuple(x.shape)}")
        return self._sample(x.to(work_dtype(x.dtype))).to(x.dtype)

    def _sample(self, x):
        """Polar samples of checked images, in their dtype."""
        grid = self.grid(x.device, x.dtype).expand(x.shape[0], -1, -1, -1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@functools.lru_cache(maxsize=32)
def cached_polar_transform(size, n_angles, n_radii=None, radius=None):
    """One shared :class:`PolarTransform` per (size, n_angles, n_radii, radius)."""
    return PolarTransform(size, n_angles, n_radii, radius)
