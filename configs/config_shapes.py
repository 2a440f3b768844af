"""O2-VAE on O2-shapes (64x64, 6 labelled shape classes at random orientations).

Build the data first: python data/generate_shapes.py --n 20000
"""

from configs.schema import Config

config = Config()
config.data.data_dir = "data/o2_shapes"
config.data.batch_size = 128
config.model.image_size = 64
config.model.zdim = 16
config.model.encoder_channels = [2, 4, 6, 8, 8]
config.model.encoder_downsample = [True, True, True, True, False]
config.training.epochs = 5
config.training.lr = 2e-3
config.training.lr_schedule = "cosine"
