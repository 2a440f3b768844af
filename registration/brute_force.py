"""Reference registration: try every angle of a grid, both flips, keep the best."""

import torch

from registration.checks import check_pair, work_dtype
from registration.masks import disk_mask
from registration.register import RegistrationResult
from registration.transform import _warp


def register_brute_force(fixed, moving, step_deg=1.0, radius=None, max_elements=2**24):
    """Exhaustive rotation + flip search: the slow, simple reference for :func:`register`.

    Every ``moving[i]`` is warped (bilinear ``grid_sample``) by every angle of
    ``0, step_deg, 2 step_deg, ...`` without and with a flip, in batches of at most
    ``max_elements`` values, and the candidate with the least squared error to ``fixed[i]``
    inside the disk wins.

    Parameters
    ----------
    fixed, moving : tensor, shape (b, c, h, w)
        Finite image pairs, any float dtype (half precision is computed in float32).
    step_deg : float
        Angular step of the grid, in degrees.
    radius : float, optional
        Radius of the compared disk (default: inscribed).
    max_elements : int
        Bound on the size of one batch of warped candidates (memory).

    Returns
    -------
    RegistrationResult
        ``score`` is the normalised cross-correlation inside the disk; in the dtype of ``fixed``.
    """
    check_pair(fixed, moving)
    dtype, work = fixed.dtype, work_dtype(fixed.dtype)
    fixed, moving = fixed.to(work), moving.to(work)
    b, c, h, w = fixed.shape
    angles = torch.arange(0.0, 360.0, step_deg, dtype=fixed.dtype, device=fixed.device)
    cand_angle = angles.repeat(2)
    cand_flip = torch.arange(2 * len(angles), device=fixed.device) >= len(angles)
    mask = disk_mask(h, w, radius, fixed.device, fixed.dtype)
    fixed_m = fixed * mask
    best_err = torch.full((b,), torch.inf, dtype=fixed.dtype, device=fixed.device)
    best = torch.zeros(b, dtype=torch.long, device=fixed.device)
    best_score = torch.zeros(b, dtype=fixed.dtype, device=fixed.device)
    chunk = max(1, max_elements // (b * c * h * w))
    for start in range(0, len(cand_angle), chunk):
        a, f = cand_angle[start : start + chunk], cand_flip[start : start + chunk]
        k = len(a)
        warped = _warp(moving.repeat_interleave(k, 0), a.repeat(b), f.repeat(b)).reshape(b, k, c, h, w)
        warped = warped * mask
        err = ((warped - fixed_m[:, None]) ** 2).sum((2, 3, 4))  # (b, k)
        corr = (warped * fixed_m[:, None]).sum((2, 3, 4))
        norm = ((warped**2).sum((2, 3, 4)) * (fixed_m**2).sum((1, 2, 3))[:, None]).sqrt()
        err_min, idx = err.min(1)
        better = err_min < best_err
        best_err = torch.where(better, err_min, best_err)
        best = torch.where(better, idx + start, best)
        rows = torch.arange(b, device=fixed.device)
        best_score = torch.where(better, corr[rows, idx] / norm[rows, idx].clamp_min(1e-30), best_score)
    zero = torch.zeros(b, 2, dtype=dtype, device=fixed.device)
    return RegistrationResult(cand_angle[best].to(dtype), cand_flip[best], zero, best_score.to(dtype))
