"""Batched 2-D phase correlation (translation between image pairs)."""

import torch


def _parabolic_offset(left, centre, right):
    """Sub-sample offset in [-0.5, 0.5] of the vertex of the parabola through three samples."""
    denom = left - 2 * centre + right
    offset = 0.5 * (left - right) / torch.where(denom.abs() > 1e-12, denom, torch.ones_like(denom))
    return torch.where(denom < 0, offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)


def phase_correlation(fixed, moving, subpixel=True, eps=1e-8):
    """Translation that best maps each ``moving[i]`` onto ``fixed[i]``, for a whole batch.

    Parameters
    ----------
    fixed, moving : tensor, shape (b, c, h, w)
        Image pairs, any float dtype and device. Channels are combined by summing their
        cross-power spectra before normalisation.
    subpixel : bool
        Refine each peak with a parabola along rows and along columns.
    eps : float
        Regulariser of the spectrum normalisation.

    Returns
    -------
    shift : tensor, shape (b, 2)
        ``(dy, dx)`` in pixels, in ``[-h/2, h/2) x [-w/2, w/2)``, such that ``moving``
        shifted by it (content moves ``dy`` rows down, ``dx`` columns right) matches
        ``fixed``; the sign convention of ``skimage.registration.phase_cross_correlation``.
    peak : tensor, shape (b,)
        Height of the phase-correlation peak (1 for an exact circular shift, near 0 for
        unrelated images).

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
    if fixed.ndim != 4 or fixed.shape != moving.shape:
        raise ValueError(
            f"fixed and moving must both be (b, c, h, w) of one shape, got {tuple(fixed.shape)} and "
            f"{tuple(moving.shape)}"
        )
    b, _, h, w = fixed.shape
    cross = (torch.fft.fft2(fixed) * torch.fft.fft2(moving).conj()).sum(1)
    corr = torch.fft.ifft2(cross / (cross.abs() + eps)).real  # (b, h, w)
    flat = corr.reshape(b, -1).argmax(-1)
    iy, ix = flat // w, flat % w
    peak = corr[torch.arange(b), iy, ix]
    shift = torch.stack([iy, ix], -1).to(corr.dtype)
    if subpixel:
        rows = torch.arange(b)
        dy = _parabolic_offset(corr[rows, (iy - 1) % h, ix], peak, corr[rows, (iy + 1) % h, ix])
        dx = _parabolic_offset(corr[rows, iy, (ix - 1) % w], peak, corr[rows, iy, (ix + 1) % w])
        shift = shift + torch.stack([dy, dx], -1)
    size = torch.tensor([h, w], dtype=corr.dtype, device=corr.device)
    shift = (shift + size / 2) % size - size / 2  # wrap to [-n/2, n/2)
    return shift, peak
