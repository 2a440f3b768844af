"""Batched rotation and flip registration of images, on CPU or GPU.

``register(fixed, moving)`` finds, for every pair of a batch, the rotation and flip (and, with
``translation=True``, the shift) that best align ``moving`` to ``fixed``; ``result.apply(x)``
warps a batch with them, differentiably. See ``registration/README.md``.
"""

from registration.brute_force import register_brute_force
from registration.masks import disk_mask
from registration.phase_correlation import phase_correlation
from registration.polar import PolarTransform
from registration.register import RegistrationResult, register, register_rotation_flip
from registration.transform import rotate_flip

__all__ = [
    "PolarTransform",
    "RegistrationResult",
    "disk_mask",
    "phase_correlation",
    "register",
    "register_brute_force",
    "register_rotation_flip",
    "rotate_flip",
]
