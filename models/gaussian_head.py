"""What both encoders share: the check of their layer plan and the head that outputs the posterior."""

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
