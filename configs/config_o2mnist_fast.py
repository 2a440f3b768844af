"""The default O2-VAE with strided downsampling: 1.2-1.8x the training speed, less invariant.

Each downsampling layer blurs its input and convolves with stride 2 instead of pooling its output
(``model.encoder_pooling = "strided"``, see models/encoders_o2/o2_encoder.py): a quarter of the
convolution work. On O2-MNIST it trains at 0.6-0.9x the speed of the vanilla VAE with about the
same kNN accuracy as the default, but its embedding changes more between two arbitrary
orientations of one object (BENCHMARKS.md); 90-degree rotations and flips stay exact.
"""

from configs.config_o2mnist import config as _default
from configs.schema import Config, from_dict

config = from_dict(Config, _default.to_dict())  # a copy: never edit another preset in place
config.model.encoder_pooling = "strided"
