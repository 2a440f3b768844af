"""O2-VAE on the MEFs masks of the original o2vae repository (128 px, resized to 64 px on load).

Get the data first: see data/mefs/README.md (bash data/mefs/unzip_mefs.bash). As in the
original MEFs config, training images are randomly rotated and flipped each time they are seen.
The 64 px layer plan is the nuclei preset's; the latent is larger for the richer set.
"""

from configs.schema import Config

config = Config()
config.data.data_dir = "data/mefs/scaled/cell"
config.data.batch_size = 128
config.data.resize = True
config.data.rotation_augmentation = True
config.data.flip_augmentation = True
config.model.image_size = 64
config.model.zdim = 64
config.model.encoder_channels = [2, 4, 6, 8, 8]
config.model.encoder_downsample = [True, True, True, True, False]
config.training.epochs = 20
config.training.lr = 1e-3
config.training.lr_schedule = "cosine"
config.training.validate_every = 2
config.training.checkpoint_every = 2
