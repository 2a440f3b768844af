"""The default O2-VAE plus the invariance term: half the orientation sensitivity, a little slower.

The D8 encoder is exact for the 8 grid symmetries only; between them its embedding moves with the
angle. Here a randomly rotated and flipped copy of a quarter of each batch goes through the same
encoder pass, and the squared distance of its posterior mean to the original's is added to the
loss with weight 10 (ramped up over the first epoch; ``model.invariance_weight`` in
models/vae.py). On O2-MNIST (20k images, 6 epochs, two seeds) the orientation sensitivity falls
from 0.093 to 0.042-0.043 at a kNN accuracy 0.010-0.014 lower (BENCHMARKS.md, "Invariance term").
"""

from configs.config_o2mnist import config as _default
from configs.schema import Config, from_dict

config = from_dict(Config, _default.to_dict())  # a copy: never edit another preset in place
config.model.invariance_weight = 10.0
