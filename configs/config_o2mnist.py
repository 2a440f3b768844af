"""Default O2-VAE on O2-MNIST: a D8 regular-field encoder, Fourier-aligned BCE loss.

Sized to train on a 2-core CPU in a few minutes (20k training images, 6 epochs).
Build the data first: python data/generate_o2mnist.py
"""

from configs.schema import Config

config = Config()
config.data.data_dir = "data/o2_mnist"
config.data.batch_size = 128
config.data.limit_train = 20000
config.model.encoder = "o2"
config.model.image_size = 32
config.model.zdim = 32
config.model.encoder_channels = [2, 4, 6, 8]  # D8 regular-field multiplicities (x16 channels)
config.training.epochs = 6
config.training.lr = 2e-3
config.training.lr_schedule = "cosine"
