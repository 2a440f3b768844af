"""Batched rotation and flip registration of images (CPU or GPU)."""

from registration.transform import rotate_flip

__all__ = ["rotate_flip"]
