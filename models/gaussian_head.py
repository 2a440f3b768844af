"""What both encoders share: checks of their layer plan and input, and the head that outputs the posterior."""

import torch
from torch import nn


def check_layer_plan(image_size, channels, downsample):
    """Size of the map after the downsamplings (``image_size / 2 ** sum(downsample)``).

    Raises ValueError unless every layer has a downsampling flag and the size halves exactly.
    """
    if len(channels) != len(downsample) or not channels:
        raise ValueError(f"channels and downsample need one entry per layer, got {channels}, {downsample}")
    if image_size % 2 ** sum(downsample):
        raise ValueError(
            f"image size {image_size} must be divisible by 2 ** {sum(downsample)} (the pooling steps)"
        )
    return image_size // 2 ** sum(downsample)


def check_images(x, in_channels, image_size, training):
    """Raise a clear error unless ``x`` is a float batch ``(b, in_channels, image_size, image_size)``.

    In training mode a batch needs at least 2 images: batch normalisation estimates its statistics
    from the batch.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"the encoder expects a float tensor of images, got {kind}")
    if x.ndim != 4 or tuple(x.shape[1:]) != (in_channels, image_size, image_size):
        raise ValueError(
            f"the encoder expects images of shape (b, {in_channels}, {image_size}, {image_size}), "
            f"got {tuple(x.shape)}"
        )
    if training and len(x) < 2:
        raise ValueError(
            f"a batch of {len(x)} image(s) in training mode: batch normalisation needs at least 2 "
            "(call model.eval() to embed single images)"
        )


class GaussianHead(nn.Module):
    """MLP from the encoder's feature vector to the mean and log-variance of a diagonal Gaussian posterior."""

    def __init__(self, n_features, zdim, hidden=128):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 2 * zdim),
        )

    def forward(self, features):
        """Return ``(mu, logvar)``, each ``(b, zdim)``, from ``features`` ``(b, n_features)``."""
        mu, logvar = self.mlp(features).chunk(2, dim=1)
        return mu, logvar
