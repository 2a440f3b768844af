"""The fastest O2-VAE preset: the default with strided downsampling.

Each downsampling layer blurs its input and convolves with stride 2 instead of pooling its output
(``model.encoder_pooling = "strided"``, see models/encoders_o2/o2_encoder.py): a quarter of the
convolution work. Strided sampling makes the embedding change more between two arbitrary
orientations of one object; the default's invariance term, which this preset keeps, brings that
back near the default's level. It trains faster than the default and scores a little lower
(BENCHMARKS.md has the figures); 90-degree rotations and flips stay exact.
"""

from configs.config_o2mnist import config as _default
from configs.schema import Config, from_dict

config = from_dict(Config, _default.to_dict())  # a copy: never edit another preset in place
config.model.encoder_pooling = "strided"
