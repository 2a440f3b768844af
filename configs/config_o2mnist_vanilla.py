"""Non-invariant baseline on O2-MNIST: a plain CNN encoder and a plain (unaligned) VAE loss.

Same data, latent size, decoder, KL weight and schedule as configs/config_o2mnist.py, without its
invariance term.
"""

from configs.config_o2mnist import config as _default
from configs.schema import Config, from_dict

config = from_dict(Config, _default.to_dict())  # a copy: never edit another preset in place
config.model.encoder = "vanilla"
config.model.encoder_channels = [32, 64, 96, 128]  # plain channels per conv layer
config.model.encoder_downsample = [True, True, True, False]
config.model.kernel_size = 3
config.model.align = "none"
config.model.invariance_weight = 0.0
