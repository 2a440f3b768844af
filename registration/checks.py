"""Input checks and the working precision shared by the public functions of ``registration``."""

import torch


def work_dtype(dtype):
    """The dtype to compute in: float32 for half precision (too coarse, and no CPU FFT), else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def check_finite(x, name):
    """Raise ``ValueError`` naming the first entry ``name[i]`` of ``x`` that holds NaN or Inf."""
    x = x.detach()
    # a sum is finite only if every term is (barring overflow), and is far cheaper than isfinite
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).reshape(len(x), -1).any(1).nonzero()[0, 0].item()
        raise ValueError(f"{name}[{bad}] contains NaN or Inf")


def _check_batch_type(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (b, c, h, w), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a float dtype, got {x.dtype}")
    if 0 in x.shape[1:]:
        raise ValueError(f"{name} has empty images or no channels: shape {tuple(x.shape)}")


def check_images(x, name):
    """Raise a clear error naming ``name`` unless ``x`` is a non-empty finite float batch ``(b, c, h, w)``."""
    _check_batch_type(x, name)
    if x.shape[0] == 0:
        raise ValueError(f"empty batch: {name} has 0 images")
    check_finite(x, name)


def check_pair(fixed, moving):
    """Raise a clear error unless ``fixed`` and ``moving`` are finite float batches of one shape."""
    for name, x in (("fixed", fixed), ("moving", moving)):
        _check_batch_type(x, name)
    if fixed.shape != moving.shape:
        raise ValueError(
            f"fixed and moving must have the same shape, got {tuple(fixed.shape)} and {tuple(moving.shape)}"
        )
    if fixed.shape[0] == 0:
        raise ValueError("empty batch: fixed and moving have 0 images")
    for name, x in (("fixed", fixed), ("moving", moving)):
        check_finite(x, name)
