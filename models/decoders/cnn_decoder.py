"""CNN decoder from a latent vector to an image; its depth follows the image size."""

from torch import nn


def upsampling_plan(image_size, min_start=4):
    """Start size and number of 2x upsamplings: ``start * 2 ** n == image_size``, ``start >= min_start``.

    Examples
    --------
    >>> upsampling_plan(32), upsampling_plan(64), upsampling_plan(48), upsampling_plan(20)
    ((4, 3), (4, 4), (6, 3), (5, 2))
    """
    start, n = image_size, 0
    while start % 2 == 0 and start // 2 >= min_start:
        start, n = start // 2, n + 1
    return start, n


class CNNDecoder(nn.Module):
    """Linear map to a small feature map, then (transposed conv, batch norm, ReLU) 2x upsamplings.

    The widest layers sit at low resolution: channels halve at every upsampling, from ``width``
    down to ``min_width``, so the cost per pixel shrinks as the maps grow.

    Parameters
    ----------
    zdim : int
        Latent dimension.
    out_channels : int
        Image channels.
    image_size : int
        Height = width of the output (16 to 256 px; even).
    width : int
        Channels at the lowest resolution.
    min_width : int
        Fewest channels of a layer.

    Notes
    -----
    The output is unnormalised (logits for a BCE loss, intensities for MSE).
    """

    def __init__(self, zdim, out_channels, image_size, width=128, min_width=16):
        super().__init__()
        self.start, n_up = upsampling_plan(image_size)
        if n_up == 0:
            raise ValueError(f"image size {image_size} cannot be reached by 2x upsamplings from >= 4 px")
        self.width = width
        self.project = nn.Sequential(nn.Linear(zdim, width * self.start**2), nn.ReLU(inplace=True))
        layers, c_in = [], width
        for _ in range(n_up):
            c_out = max(min_width, c_in // 2)
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, z):
        """Decode ``z`` ``(b, zdim)`` to images ``(b, out_channels, image_size, image_size)``."""
        h = self.project(z).view(len(z), self.width, self.start, self.start)
        return self.layers(h)
