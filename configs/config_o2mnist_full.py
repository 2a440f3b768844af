"""The default O2-VAE trained on all 60k O2-MNIST images: the 30-minute run on a 2-core CPU.

Same model as configs/config_o2mnist.py; more data and epochs for better embeddings
(BENCHMARKS.md has the time and the scores).
"""

from configs.config_o2mnist import config as _default
from configs.schema import Config, from_dict

config = from_dict(Config, _default.to_dict())  # a copy: never edit another preset in place
config.data.limit_train = None
config.training.epochs = 15
config.training.validate_every = 5
config.training.checkpoint_every = 5
