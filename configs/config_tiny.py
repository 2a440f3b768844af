"""A tiny model for tests: 16 px images, few channels, two epochs of a few steps."""

from configs.schema import Config

config = Config()
config.data.data_dir = "data/o2_mnist"
config.data.batch_size = 16
config.model.image_size = 16
config.model.zdim = 4
config.model.encoder_channels = [2, 3]
config.model.encoder_downsample = [True, True]
config.model.kernel_size = 3
config.model.hidden = 16
config.model.decoder_width = 16
config.model.align_angles = 32
config.training.epochs = 2
config.training.max_steps_per_epoch = 3
config.logging.n_images = 4
