"""The O2-VAE paper's reference encoder on O2-MNIST, for comparison with the original work.

Continuous O(2) with band limit 3, induced gated norm non-linearities, 6 steerable conv layers
with field multiplicities [6, 9, 12, 12, 19, 25], pooling after layers 2 and 4; as in the paper the
last layer (25 fields) is the one made invariant and reduced to one vector per image (there: a
5x5 kernel and a spatial max; here: a kernel over the whole remaining 9x9 map). Kernel sizes follow
this repo's convention (an even first kernel, then 5x5) so that 90-degree rotations and flips stay
exact. Same data, latent size, decoder, loss and schedule as configs/config_o2mnist.py, without its
invariance term (the paper has none; its encoder is already close to invariant at every angle).
"""

from configs.config_o2mnist import config as _default
from configs.schema import Config, from_dict

config = from_dict(Config, _default.to_dict())  # a copy: never edit another preset in place
config.model.group = "o2"
config.model.max_frequency = 3
config.model.layer_type = "induced_gated"
config.model.encoder_channels = [6, 9, 12, 12, 19]
config.model.encoder_downsample = [False, True, False, True, False]
config.model.encoder_out = 25
config.model.kernel_size = 5
config.model.invariance_weight = 0.0
