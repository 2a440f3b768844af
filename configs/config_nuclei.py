"""O2-VAE on the real nuclei crops (64x64, ~230 training images).

Build the data first: python data/generate_nuclei.py. With so few images, random rotations and
flips of the training set (free for an invariant encoder) make each epoch see new views.
"""

from configs.schema import Config

config = Config()
config.data.data_dir = "data/nuclei"
config.data.batch_size = 32
config.data.rotation_augmentation = True
config.data.flip_augmentation = True
config.model.image_size = 64
config.model.zdim = 16
config.model.encoder_channels = [2, 4, 6, 8, 8]
config.model.encoder_downsample = [True, True, True, True, False]
config.training.epochs = 60
config.training.lr = 1e-3
config.training.lr_schedule = "cosine"
config.training.validate_every = 10
config.training.checkpoint_every = 10
