"""Batched rotation + flip (+ optional translation) registration by polar phase correlation."""

import dataclasses

import torch

from registration.checks import check_pair, work_dtype
from registration.phase_correlation import _parabolic_offset, _phase_correlation
from registration.polar import cached_polar_transform
from registration.transform import _warp, rotate_flip

# polar samples (or padded spectrum pixels) per chunk of pairs: on the CPU, chunks whose
# intermediates stay in cache run several times faster; on a GPU, chunks bound the memory, so that a
# batch larger than the GPU holds is registered piece by piece instead of failing
CPU_CHUNK_ELEMENTS = 2**20
CUDA_CHUNK_ELEMENTS = 2**26
SPECTRUM_OVERSAMPLE = 4  # zero-padding of the spectra of translation mode


@dataclasses.dataclass
class RegistrationResult:
    """The transform found for each pair, in the convention of :func:`rotate_flip`.

    Attributes
    ----------
    angle : tensor, shape (b,)
        Counter-clockwise rotation of ``moving`` in degrees, in [0, 360).
    flip : tensor of bool, shape (b,)
        Whether ``moving`` is mirrored (columns reversed) before the rotation.
    shift : tensor, shape (b, 2)
        ``(dy, dx)`` in pixels applied after the rotation (zero without ``translation``).
    score : tensor, shape (b,)
        Normalised cross-correlation of ``fixed`` and the aligned ``moving`` inside the
        sampled disk, in [-1, 1] (1: identical up to intensity scale).
    """

    angle: torch.Tensor
    flip: torch.Tensor
    shift: torch.Tensor
    score: torch.Tensor

    def apply(self, x, mode="bilinear"):
        """Warp ``x`` (e.g. ``moving``) by the found transforms with :func:`rotate_flip`, differentiably."""
        return rotate_flip(x, self.angle, self.flip, self.shift, mode=mode)


def _disk_cosine(polar, pf, pm, correlation):
    """Normalise a (ring-weighted, or per-ring) correlation of polar samples by their norms."""
    weights = polar.ring_weights.to(device=pf.device, dtype=pf.dtype)
    if correlation.ndim > 1:  # per channel and ring: weight the rings, sum everything
        correlation = (weights * correlation).sum((1, 2))
    norm2 = (weights[:, None] * pf**2).sum((1, 2, 3)) * (weights[:, None] * pm**2).sum((1, 2, 3))
    return correlation / norm2.sqrt().clamp_min(torch.finfo(pf.dtype).tiny)


def _circular_peak(corr):
    """Best candidate of ``corr`` ``(b, k, n)`` (k circular signals each): ``(k index, position, value)``.

    The position along the circle is refined by a parabola through the peak and its two
    circular neighbours in the same signal.
    """
    b, k, n = corr.shape
    flat = corr.flatten(1).argmax(-1)
    which, idx = flat // n, flat % n
    rows = torch.arange(b, device=corr.device)
    centre = corr[rows, which, idx]
    offset = _parabolic_offset(corr[rows, which, (idx - 1) % n], centre, corr[rows, which, (idx + 1) % n])
    return which, idx + offset, centre


def _upsampled_circular_correlation(spectrum, n, upsample):
    """Inverse rFFT of a correlation spectrum, band-limited interpolated ``upsample`` times."""
    if upsample > 1 and n % 2 == 0:
        # the Nyquist bin becomes an interior frequency with its conjugate twin: halve it
        spectrum = torch.cat([spectrum[..., :-1], spectrum[..., -1:] / 2], -1)
    return torch.fft.irfft(spectrum, n=n * upsample, dim=-1) * upsample


def _best_rotation_flip(pf, pm, weights, upsample, ignore_ring_means=False):
    """Best angle and flip between polar samples ``pf``, ``pm`` ``(b, c, n_radii, n_angles)``.

    Returns ``angle`` (degrees), ``flip`` and the ring-weighted correlation at the peak.
    """
    n_angles = pf.shape[-1]
    ff, fm = torch.fft.rfft(pf, dim=-1), torch.fft.rfft(pm, dim=-1)
    if ignore_ring_means:  # compare only how each ring varies with the angle
        ff = torch.cat([torch.zeros_like(ff[..., :1]), ff[..., 1:]], -1)
    # With F = a + ib (fixed, ring-weighted) and M = c + id (moving), summed over channels and rings:
    # sum F conj(M) = (ac + bd) + i(bc - ad) correlates with moving rotated (Pf(t) Pm(t - s)),
    # sum F M = (ac - bd) + i(ad + bc) with moving mirrored (Pf(t) Pm(u - t)).
    # Four real products are cheaper than two complex ones.
    f = torch.view_as_real(ff * weights[:, None])
    m = torch.view_as_real(fm)
    a, b, c, d = f[..., 0], f[..., 1], m[..., 0], m[..., 1]
    ac, bd, bc, ad = ((x * y).sum((1, 2)) for x, y in ((a, c), (b, d), (b, c), (a, d)))
    rotated, mirrored = torch.complex(ac + bd, bc - ad), torch.complex(ac - bd, ad + bc)
    corr = _upsampled_circular_correlation(torch.stack([rotated, mirrored], 1), n_angles, upsample)
    which, position, peak = _circular_peak(corr)
    flip = which == 1
    # mirrored candidates peak at u = 180 + alpha, see PolarTransform's notes
    angle = (position * (360.0 / corr.shape[-1]) - 180.0 * flip) % 360.0
    return angle, flip, peak


def register_rotation_flip(fixed, moving, n_angles=360, n_radii=None, radius=None, upsample=4):
    """Rotation and flip that best align each ``moving[i]`` to ``fixed[i]`` (no translation).

    All pairs and all candidate angles are scored at once: both batches are resampled on
    one cached polar grid, and the correlation for every rotation comes from one FFT along
    the angle axis (``moving`` rotated) and, for the mirrored candidates, from the product
    instead of the conjugate product of the same spectra (a mirror reverses the angle axis).
    Rings are weighted by their radius, so the score is the image-plane correlation inside
    the disk. The best angle is refined below one bin by band-limited upsampling of the
    correlation and a parabola through its peak.

    Parameters
    ----------
    fixed, moving : tensor, shape (b, c, h, w)
        Finite image pairs, any float dtype (half precision is computed in float32), CPU or CUDA.
    n_angles : int
        Angular samples of the polar grid (360: one-degree bins before refinement).
    n_radii, radius : optional
        Radial sampling, see :class:`registration.polar.PolarTransform`.
    upsample : int
        Interpolation factor of the correlation along the angle.

    Returns
    -------
    RegistrationResult
        With zero ``shift``; in the dtype of ``fixed`` (float16 rounds angles to 0.25 degree above
        256 degrees, bfloat16 to 2 degrees).
    """
    check_pair(fixed, moving)
    dtype, work = fixed.dtype, work_dtype(fixed.dtype)
    polar = cached_polar_transform(tuple(fixed.shape[-2:]), n_angles, n_radii, radius)
    weights = polar.ring_weights.to(device=fixed.device, dtype=work)
    chunk = _chunk_size(fixed, fixed.shape[1] * polar.n_radii * polar.n_angles)
    results = []
    for start in range(0, len(fixed), chunk):  # half precision is cast chunk by chunk, not whole
        pf = polar._sample(fixed[start : start + chunk].to(work))
        pm = polar._sample(moving[start : start + chunk].to(work))
        angle, flip, peak = _best_rotation_flip(pf, pm, weights, upsample)
        results.append((angle, flip, _disk_cosine(polar, pf, pm, peak)))
    angle, flip, score = (torch.cat(r) for r in zip(*results, strict=True))
    zero = torch.zeros(len(angle), 2, dtype=dtype, device=angle.device)
    return RegistrationResult(angle.to(dtype), flip, zero, score.to(dtype))


def _spectrum_polar(x, n_angles, oversample=SPECTRUM_OVERSAMPLE):
    """Polar samples of the centred magnitude spectrum of ``x`` up to half the Nyquist frequency.

    Zero-padding ``oversample`` times makes the spectrum smooth enough on its pixel grid to
    be resampled; an odd crop puts the zero frequency on a pixel centre.
    """
    h, w = x.shape[-2:]
    n = oversample * max(h, w)
    mag = torch.fft.fftshift(torch.fft.fft2(x, s=(n, n)).abs(), dim=(-2, -1))
    quarter = n // 4
    mag = mag[..., n // 2 - quarter : n // 2 + quarter + 1, n // 2 - quarter : n // 2 + quarter + 1]
    polar = cached_polar_transform(tuple(mag.shape[-2:]), n_angles)
    return polar._sample(mag), polar.ring_weights.to(device=x.device, dtype=mag.dtype)


def _chunk_size(x, elements_per_pair):
    budget = CUDA_CHUNK_ELEMENTS if x.is_cuda else CPU_CHUNK_ELEMENTS
    return max(1, budget // elements_per_pair)


def register(fixed, moving, translation=False, n_angles=360, n_radii=None, radius=None, upsample=4):
    """Find the rotation, flip (and optionally translation) aligning each ``moving[i]`` to ``fixed[i]``.

    Parameters
    ----------
    fixed, moving : tensor, shape (b, c, h, w)
        Finite image pairs, any float dtype (see :func:`register_rotation_flip`), CPU or CUDA;
        centred objects unless ``translation``.
    translation : bool
        Also find a shift, for objects that are not centred (Reddy & Chatterji 1996): the
        rotation and flip come from the magnitude spectra, which do not change under
        translation; the shift then comes from the cross-correlation of ``fixed`` and the
        rotated ``moving`` (:func:`phase_correlation` with ``normalization=None``), and the
        180-degree ambiguity of the spectra is resolved by aligning both candidates and keeping
        the higher ``score``. This takes 8.6x the time of the default at 32 px and 13.9x at
        64 px (batch 512, 2-core CPU, ``benchmarks/bench_registration.py --translation``).
        Shifts are found modulo the image size (circular), so keep objects well inside the frame.
    n_angles, n_radii, radius, upsample
        See :func:`register_rotation_flip`.

    Returns
    -------
    RegistrationResult
        ``result.apply(moving)`` is the aligned ``moving``.

    Examples
    --------
    >>> x = torch.rand(8, 1, 32, 32)
    >>> moving = rotate_flip(x, torch.full((8,), 90.0), flip=True)
    >>> result = register(x, moving)
    >>> # the inverse of "mirror, then rotate by 90" is again "mirror, then rotate by 90"
    >>> result.angle.round().tolist() == [90.0] * 8, result.flip.all().item()
    (True, True)
    """
    kwargs = dict(n_angles=n_angles, n_radii=n_radii, radius=radius, upsample=upsample)
    if not translation:
        return register_rotation_flip(fixed, moving, **kwargs)
    check_pair(fixed, moving)
    dtype, work = fixed.dtype, work_dtype(fixed.dtype)
    polar = cached_polar_transform(tuple(fixed.shape[-2:]), n_angles, n_radii, radius)
    chunk = _chunk_size(fixed, fixed.shape[1] * (SPECTRUM_OVERSAMPLE * max(fixed.shape[-2:])) ** 2)
    results = [
        _register_translation(
            fixed[start : start + chunk].to(work), moving[start : start + chunk].to(work), polar, upsample
        )
        for start in range(0, len(fixed), chunk)
    ]
    angle, flip, shift, score = (torch.cat(r) for r in zip(*results, strict=True))
    return RegistrationResult(angle.to(dtype), flip, shift.to(dtype), score.to(dtype))


def _register_translation(fixed, moving, polar, upsample):
    """Angle, flip, shift and score of :func:`register` with ``translation``, for checked inputs."""
    n_angles = polar.n_angles
    (sf, weights), (sm, _) = _spectrum_polar(fixed, n_angles), _spectrum_polar(moving, n_angles)
    angle, flip, _ = _best_rotation_flip(sf, sm, weights, upsample, ignore_ring_means=True)
    # a magnitude spectrum is symmetric about its centre, so the angle is known up to 180 degrees:
    # align both candidates (rotation, then the shift of the largest cross-correlation, i.e. of the
    # least squared error: more precise than phase correlation once moving is resampled) and keep the
    # higher score
    b = len(fixed)
    angle, flip = torch.cat([angle, (angle + 180.0) % 360.0]), flip.repeat(2)
    moving2 = moving.repeat(2, 1, 1, 1)
    shift, _ = _phase_correlation(fixed.repeat(2, 1, 1, 1), _warp(moving2, angle, flip), normalization=None)
    pf, pa = polar._sample(fixed).repeat(2, 1, 1, 1), polar._sample(_warp(moving2, angle, flip, shift))
    score = _disk_cosine(polar, pf, pa, (pf * pa).sum(-1))
    pick = torch.where(score[:b] >= score[b:], 0, b) + torch.arange(b, device=score.device)
    return angle[pick], flip[pick], shift[pick], score[pick]
