"""Encoders, decoders and the VAE. Importing the package makes e2cnn usable (see _e2cnn_compat)."""

from models import _e2cnn_compat

_e2cnn_compat.apply()
