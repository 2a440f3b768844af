"""Default O2-VAE on O2-MNIST: a D8 regular-field encoder, Fourier-aligned BCE loss, invariance term.

The encoder was chosen by measured speed and embedding quality (BENCHMARKS.md, "Choosing the
default encoder"): a first layer of one field keeps the full-resolution maps cheap, and the
whole-map last layer with irrep norms carries most of the quality and invariance. The D8 encoder
is exact on the 8 grid symmetries only; the invariance term (``model.invariance_weight``, see
models/vae.py) teaches it the angles in between, halving its orientation sensitivity. The
training recipe (KL weight 0.25, batches of 64, learning rate 4e-3) was chosen on the same
benchmark (BENCHMARKS.md, "Training recipe").

Sized to train on a 2-core CPU in a few minutes (20k training images, 6 epochs).
Build the data first: python data/generate_o2mnist.py
"""

from configs.schema import Config

config = Config()
config.data.data_dir = "data/o2_mnist"
config.data.batch_size = 64
config.data.limit_train = 20000
config.model.encoder = "o2"
config.model.image_size = 32
config.model.zdim = 32
config.model.encoder_channels = [1, 4, 6]  # D8 regular-field multiplicities (x16 channels)
config.model.encoder_downsample = [True, True, True]  # 32 px -> 5x5 map, then the whole-map layer
config.model.encoder_out = 64  # last-layer fields -> 64 x (1 + max_frequency) = 256 invariants
config.model.beta = 0.25  # a lighter KL term: kNN +0.03 to +0.06 at 10k images x 3 epochs (BENCHMARKS.md)
config.model.invariance_weight = 10.0  # a rotated copy's embedding pulled to its original's
config.training.epochs = 6
config.training.lr = 4e-3
config.training.lr_schedule = "cosine"
