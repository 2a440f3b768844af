"""Batched 2-D phase correlation (translation between image pairs)."""

import math

import torch

from registration.checks import check_pair, work_dtype

NORMALIZATIONS = ("phase", None)


def _parabolic_offset(left, centre, right):
    """Sub-sample offset in [-0.5, 0.5] of the vertex of the parabola through three samples."""
    denom = left - 2 * centre + right
    offset = 0.5 * (left - right) / torch.where(denom.abs() > 1e-12, denom, torch.ones_like(denom))
    return torch.where(denom < 0, offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)


def phase_correlation(fixed, moving, subpixel=True, eps=1e-8, upsample=8, normalization="phase"):
    """Translation that best maps each ``moving[i]`` onto ``fixed[i]``, for a whole batch.

    Parameters
    ----------
    fixed, moving : tensor, shape (b, c, h, w)
        Finite image pairs, any float dtype (half precision is computed in float32) and device.
        Channels are combined by summing their cross-power spectra before normalisation.
    subpixel : bool
        Refine each whole-pixel peak: the correlation is evaluated within one pixel of it on a
        grid of ``1 / upsample`` pixel (a matrix DFT, as ``skimage.registration`` does; Guizar-Sicairos
        et al. 2008), and a parabola through the best grid point and its neighbours gives the shift.
    eps : float
        Regulariser of the spectrum normalisation.
    upsample : int
        Grid refinement of ``subpixel``; 1 fits the parabola to the whole-pixel samples.
    normalization : {'phase', None}
        ``'phase'``: the cross-power spectrum is normalised to unit magnitude (phase correlation:
        a sharp peak, insensitive to the images' spectra); None: the plain cross-correlation, whose
        maximum is the shift with the least squared error (for a circular shift), which is more
        precise when ``moving`` was resampled (interpolation changes its fine detail).

    Returns
    -------
    shift : tensor, shape (b, 2)
        ``(dy, dx)`` in pixels, in ``[-h/2, h/2) x [-w/2, w/2)``, such that ``moving``
        shifted by it (content moves ``dy`` rows down, ``dx`` columns right) matches
        ``fixed``; the sign convention of ``skimage.registration.phase_cross_correlation``.
        In the dtype of ``fixed``, as is ``peak``.
    peak : tensor, shape (b,)
        Height of the correlation at the (refined) peak: with ``'phase'``, 1 for an exact circular
        shift and near 0 for unrelated images; with None, the sum of ``fixed`` times shifted ``moving``.

    Notes
    -----
    The normalised cross-power spectrum ``F G* / |F G*|`` of two images related by a
    circular shift is a pure phase ramp, whose inverse transform is a delta at the shift
    (Kuglin & Hines 1975; Reddy & Chatterji 1996). Shifts are circular: content leaving one
    side enters at the other.

    Examples
    --------
    >>> x = torch.rand(2, 1, 16, 16)
    >>> shift, peak = phase_correlation(torch.roll(x, (3, -2), dims=(-2, -1)), x)
    >>> shift.round().tolist()
    [[3.0, -2.0], [3.0, -2.0]]
    """
    check_pair(fixed, moving)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if int(upsample) != upsample or upsample < 1:
        raise ValueError(f"upsample must be a whole number >= 1, got {upsample!r}")
    work = work_dtype(fixed.dtype)
    shift, peak = _phase_correlation(
        fixed.to(work), moving.to(work), subpixel, eps, int(upsample), normalization
    )
    return shift.to(fixed.dtype), peak.to(fixed.dtype)


def _phase_correlation(fixed, moving, subpixel=True, eps=1e-8, upsample=8, normalization="phase"):
    """:func:`phase_correlation` of checked inputs, in their dtype."""
    b, _, h, w = fixed.shape
    cross = (torch.fft.fft2(fixed) * torch.fft.fft2(moving).conj()).sum(1)
    if normalization == "phase":
        cross = cross / (cross.abs() + eps)
    corr = torch.fft.ifft2(cross).real  # (b, h, w)
    flat = corr.reshape(b, -1).argmax(-1)
    size = torch.tensor([h, w], dtype=corr.dtype, device=corr.device)
    shift = torch.stack([flat // w, flat % w], -1).to(corr.dtype)
    shift = (shift + size / 2) % size - size / 2  # wrap to [-n/2, n/2)
    if not subpixel:
        return shift, corr.reshape(b, -1)[torch.arange(b, device=corr.device), flat]
    shift, peak = _refine_peak(cross, shift, upsample)
    return (shift + size / 2) % size - size / 2, peak


def _refine_peak(cross, shift, upsample):
    """Maximum of the inverse DFT of ``cross`` ``(b, h, w)`` within one pixel of ``shift`` ``(b, 2)``.

    The correlation is evaluated on a ``(2 upsample + 1)^2`` grid of ``1 / upsample`` pixel by
    matrix products with the DFT kernels, and a parabola refines its best point along each axis.
    """
    b, h, w = cross.shape
    real = shift.dtype
    rows = torch.arange(b, device=cross.device)
    steps = torch.arange(-upsample, upsample + 1, device=cross.device, dtype=real) / upsample
    y, x = shift[:, :1] + steps, shift[:, 1:] + steps  # (b, n) positions
    one = torch.ones((), dtype=real, device=cross.device)
    fy = torch.fft.fftfreq(h, device=cross.device, dtype=real)
    fx = torch.fft.fftfreq(w, device=cross.device, dtype=real)
    kernel_y = torch.polar(one, 2 * math.pi * y[:, :, None] * fy)  # (b, n, h)
    kernel_x = torch.polar(one, 2 * math.pi * fx[:, None] * x[:, None, :])  # (b, w, n)
    corr = (kernel_y @ cross @ kernel_x).real / (h * w)  # (b, n, n)
    n = corr.shape[-1]
    flat = corr.reshape(b, -1).argmax(-1)
    iy, ix = flat // n, flat % n
    # the parabola needs both neighbours: at the window's edge, keep the grid point
    cy, cx = iy.clamp(1, n - 2), ix.clamp(1, n - 2)
    dy = _parabolic_offset(corr[rows, cy - 1, ix], corr[rows, cy, ix], corr[rows, cy + 1, ix])
    dx = _parabolic_offset(corr[rows, iy, cx - 1], corr[rows, iy, cx], corr[rows, iy, cx + 1])
    dy, dx = torch.where(iy == cy, dy, 0.0), torch.where(ix == cx, dx, 0.0)
    refined = torch.stack([y[rows, iy] + dy / upsample, x[rows, ix] + dx / upsample], -1)
    return refined, corr[rows, iy, ix]
