"""Batched 2-D phase correlation (translation between image pairs)."""

import math

import torch

from registration.checks import check_pair, work_dtype


def _parabolic_offset(left, centre, right):
    """Sub-sample offset in [-0.5, 0.5] of the vertex of the parabola through three samples."""
    denom = left - 2 * centre + right
    offset = 0.5 * (left - right) / torch.where(denom.abs() > 1e-12, denom, torch.ones_like(denom))
    return torch.where(denom < 0, offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)


def _dirichlet_offset(left, centre, right, n):
    """Sub-sample offset in [-0.5, 0.5] of a phase-correlation peak, from its larger neighbour.

    A circular shift by ``k + d`` (whole ``k``, ``|d| <= 1/2``) of an ``n``-periodic signal makes
    the phase correlation the Dirichlet kernel ``D(m) = sin(pi (m - d)) / (n sin(pi (m - d) / n))``
    about ``k``; the ratio ``r = D(1) / D(0) = sin(a d) / sin(a (1 - d))``, ``a = pi / n``, of the
    larger neighbour to the peak gives ``tan(a d) = r sin(a) / (1 + r cos(a))`` (for large ``n``,
    ``d = r / (1 + r)``: Foroosh, Zerubia & Berthod 2002).
    """
    right_side = right >= left
    side = torch.where(right_side, right, left)
    ratio = torch.where(centre > 0, side / torch.where(centre > 0, centre, 1.0), 0.0).clamp(0.0, 1.0)
    a = math.pi / n
    offset = torch.atan2(ratio * math.sin(a), 1.0 + ratio * math.cos(a)) / a
    return torch.where(right_side, offset, -offset)


def phase_correlation(fixed, moving, subpixel=True, eps=1e-8):
    """Translation that best maps each ``moving[i]`` onto ``fixed[i]``, for a whole batch.

    Parameters
    ----------
    fixed, moving : tensor, shape (b, c, h, w)
        Finite image pairs, any float dtype (half precision is computed in float32) and device.
        Channels are combined by summing their cross-power spectra before normalisation.
    subpixel : bool
        Refine each peak along rows and along columns from the larger of its two neighbours
        (exact for a circular sub-pixel shift, see Notes).
    eps : float
        Regulariser of the spectrum normalisation.

    Returns
    -------
    shift : tensor, shape (b, 2)
        ``(dy, dx)`` in pixels, in ``[-h/2, h/2) x [-w/2, w/2)``, such that ``moving``
        shifted by it (content moves ``dy`` rows down, ``dx`` columns right) matches
        ``fixed``; the sign convention of ``skimage.registration.phase_cross_correlation``.
        In the dtype of ``fixed``, as is ``peak``.
    peak : tensor, shape (b,)
        Height of the phase-correlation peak (1 for an exact circular shift, near 0 for
        unrelated images).

    Notes
    -----
    The normalised cross-power spectrum ``F G* / |F G*|`` of two images related by a
    circular shift is a pure phase ramp, whose inverse transform is a delta at the shift
    (Kuglin & Hines 1975; Reddy & Chatterji 1996), or, for a sub-pixel shift, a Dirichlet
    kernel about it, whose peak follows from the ratio of two samples (exact for odd sizes;
    at even sizes the real Nyquist frequency of a real image leaves an error of up to 0.02 px).
    Shifts are circular: content leaving one side enters at the other.

    Examples
    --------
    >>> x = torch.rand(2, 1, 16, 16)
    >>> shift, peak = phase_correlation(torch.roll(x, (3, -2), dims=(-2, -1)), x)
    >>> shift.round().tolist()
    [[3.0, -2.0], [3.0, -2.0]]
    """
    check_pair(fixed, moving)
    work = work_dtype(fixed.dtype)
    shift, peak = _phase_correlation(fixed.to(work), moving.to(work), subpixel, eps)
    return shift.to(fixed.dtype), peak.to(fixed.dtype)


def _phase_correlation(fixed, moving, subpixel=True, eps=1e-8):
    """:func:`phase_correlation` of checked inputs, in their dtype."""
    b, _, h, w = fixed.shape
    cross = (torch.fft.fft2(fixed) * torch.fft.fft2(moving).conj()).sum(1)
    corr = torch.fft.ifft2(cross / (cross.abs() + eps)).real  # (b, h, w)
    flat = corr.reshape(b, -1).argmax(-1)
    iy, ix = flat // w, flat % w
    rows = torch.arange(b, device=corr.device)
    peak = corr[rows, iy, ix]
    shift = torch.stack([iy, ix], -1).to(corr.dtype)
    if subpixel:
        dy = _dirichlet_offset(corr[rows, (iy - 1) % h, ix], peak, corr[rows, (iy + 1) % h, ix], h)
        dx = _dirichlet_offset(corr[rows, iy, (ix - 1) % w], peak, corr[rows, iy, (ix + 1) % w], w)
        shift = shift + torch.stack([dy, dx], -1)
    size = torch.tensor([h, w], dtype=corr.dtype, device=corr.device)
    shift = (shift + size / 2) % size - size / 2  # wrap to [-n/2, n/2)
    return shift, peak
