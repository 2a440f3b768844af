"""Prealignment: rotate and flip centred objects into one canonical pose (moments, flip refinement,
template registration), for users who want to try a plain model on aligned images before the
O2-VAE. See ``prealignment/README.md``."""

from prealignment.canonical import METHODS, Prealignment, compose, moments_pose, prealign

__all__ = ["METHODS", "Prealignment", "compose", "moments_pose", "prealign"]
