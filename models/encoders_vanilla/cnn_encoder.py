"""Plain CNN encoder: the baseline whose embedding changes when the input is rotated or flipped."""

from torch import nn

from models.gaussian_head import GaussianHead, check_images, check_layer_plan


class CNNEncoder(nn.Module):
    """Strided convolutions, one over the whole remaining map, and an MLP to ``(mu, logvar)``.

    Parameters
    ----------
    in_channels : int
        Image channels.
    image_size : int
        Height = width of the images; must be divisible by ``2 ** sum(downsample)``.
    zdim : int
        Latent dimension.
    channels : list of int
        Output channels of each convolution layer.
    downsample : list of bool
        Whether each layer has stride 2.
    kernel_size : int
        Odd kernel size.
    encoder_out : int
        Channels of the last layer, whose kernel covers the whole remaining map.
    hidden : int
        Width of the MLP head.
    """

    def __init__(
        self,
        in_channels,
        image_size,
        zdim,
        channels=(32, 64, 96, 128),
        downsample=(True, True, True, False),
        kernel_size=3,
        encoder_out=64,
        hidden=128,
    ):
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        map_size = check_layer_plan(image_size, channels, downsample)
        layers, c_in = [], in_channels
        for c_out, down in zip(channels, downsample, strict=True):
            layers += [
                nn.Conv2d(
                    c_in, c_out, kernel_size, stride=2 if down else 1, padding=kernel_size // 2, bias=False
                ),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        # a kernel over the whole remaining map, written as the linear layer it is
        layers += [
            nn.Flatten(),
            nn.Linear(c_in * map_size**2, encoder_out, bias=False),
            nn.BatchNorm1d(encoder_out),
            nn.ReLU(inplace=True),
        ]
        self.features = nn.Sequential(*layers)
        self.head = GaussianHead(encoder_out, zdim, hidden)

    def forward(self, x):
        """Return ``(mu, logvar)`` of the posterior, each ``(b, zdim)``."""
        check_images(x, self.in_channels, self.image_size, self.training)
        return self.head(self.features(x))
