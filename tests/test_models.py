import numpy as np
import pytest
import torch
import torch.nn.functional as F
from e2cnn import gspaces

from configs.schema import Config, apply_overrides, load_config
from data import generate_shapes
from models.build import build_model_from_config, load_model, save_checkpoint
from models.decoders.cnn_decoder import CNNDecoder
from models.encoders_o2.o2_encoder import InnerBatchNorm, O2Encoder, WholeMapConv
from models.encoders_vanilla.cnn_encoder import CNNEncoder
from models.vae import VAE
from registration import disk_mask, rotate_flip

TINY = dict(channels=(2, 3), downsample=(True, True), kernel_size=3, hidden=16)


def objects(n=6, size=16, channels=1, seed=0):
    images, *_ = generate_shapes.make_shapes(n, np.random.default_rng(seed), size=size)
    return torch.from_numpy(images).repeat(1, channels, 1, 1)


def relative_change(a, b):
    return ((a - b).norm(dim=1) / b.norm(dim=1)).max().item()


O2_VARIANTS = [
    dict(group="dihedral", n_rotations=8, layer_type="regular"),
    dict(group="dihedral", n_rotations=8, layer_type="regular", pooling="strided"),
    dict(group="o2", layer_type="norm"),
    dict(group="o2", layer_type="induced_gated"),
    dict(group="o2", layer_type="induced_gated", pooling="strided"),
]


@pytest.mark.parametrize(
    "variant", O2_VARIANTS, ids=lambda v: f"{v['layer_type']}-{v.get('pooling', 'after')}"
)
def test_o2_encoder_is_invariant_to_grid_symmetries(variant):
    torch.manual_seed(0)
    enc = O2Encoder(2, 16, zdim=5, **variant, **TINY).eval()
    x = objects(channels=2)
    with torch.no_grad():
        mu, logvar = enc(x)
        assert mu.shape == logvar.shape == (6, 5)
        for k in (1, 2, 3):
            assert relative_change(enc(torch.rot90(x, k, dims=(-2, -1)))[0], mu) < 1e-4
        assert relative_change(enc(x.flip(-1))[0], mu) < 1e-4
        assert relative_change(enc(x.flip(-2))[0], mu) < 1e-4


@pytest.mark.parametrize("training", [True, False])
def test_whole_map_conv_matches_e2cnn_convolution(training):
    import e2cnn.nn as enn

    gs = gspaces.FlipRot2dOnR2(N=8)
    in_type = enn.FieldType(gs, 3 * [gs.regular_repr])
    out_type = enn.FieldType(gs, 5 * [gs.regular_repr])
    torch.manual_seed(0)
    ours = WholeMapConv(in_type, out_type, kernel_size=5)
    reference = enn.R2Conv(in_type, out_type, kernel_size=5, padding=0)
    reference.load_state_dict(ours.state_dict())
    ours.train(training), reference.train(training)
    x = enn.GeometricTensor(torch.randn(4, in_type.size, 5, 5), in_type)
    torch.testing.assert_close(ours(x).tensor, reference(x).tensor, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expects 5x5 maps, got \\(7, 7\\)"):
        ours(enn.GeometricTensor(torch.randn(1, in_type.size, 7, 7), in_type))


@pytest.mark.parametrize("fields", ["regular", "mixed sizes"])
def test_inner_batch_norm_matches_e2cnns(fields, monkeypatch):
    import e2cnn.nn as enn

    gs = gspaces.FlipRot2dOnR2(N=8)
    regular, trivial = gs.regular_repr, gs.trivial_repr
    reprs = 3 * [regular] if fields == "regular" else [regular, trivial, regular]
    field_type = enn.FieldType(gs, reprs)
    torch.manual_seed(0)
    ours, reference = InnerBatchNorm(field_type), enn.InnerBatchNorm(field_type)
    for module in (ours, reference):  # non-trivial affine parameters, so a misplaced channel shows
        for param in module.parameters():
            param.data = torch.linspace(0.5, 1.5, param.numel()).reshape(param.shape)
    x = torch.randn(6, field_type.size, 7, 7) * torch.linspace(0.5, 3.0, field_type.size)[:, None, None]
    x_ours, x_reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn_like(x)
    e2cnn_forward, e2cnn_calls = enn.InnerBatchNorm.forward, []
    monkeypatch.setattr(
        enn.InnerBatchNorm, "forward", lambda self, x: e2cnn_calls.append(self) or e2cnn_forward(self, x)
    )
    for _ in range(2):  # two training steps: the running statistics update too
        out_ours = ours(enn.GeometricTensor(x_ours, field_type)).tensor
        out_reference = reference(enn.GeometricTensor(x_reference, field_type)).tensor
        torch.testing.assert_close(out_ours, out_reference, rtol=1e-6, atol=1e-6)
        (out_ours * upstream).sum().backward(), (out_reference * upstream).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_reference.grad, rtol=1e-6, atol=1e-6)
    # one field size: ours never falls back to e2cnn's forward; mixed sizes: it does
    assert sum(module is ours for module in e2cnn_calls) == (0 if fields == "regular" else 2)
    for (name, a), (_, b) in zip(ours.state_dict().items(), reference.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)
    ours.eval(), reference.eval()
    torch.testing.assert_close(
        ours(enn.GeometricTensor(x, field_type)).tensor, reference(enn.GeometricTensor(x, field_type)).tensor
    )
    with pytest.raises(ValueError, match="expects fields of type"):
        ours(enn.GeometricTensor(x[:, :16], enn.FieldType(gs, [gs.regular_repr])))


@pytest.mark.parametrize("first_layer", [True, False])
def test_strided_pooling_equals_pooling_the_convolution(first_layer):
    # 'strided' blurs the input and convolves with stride 2; pooling after the convolution
    # (before any non-linearity) must give the same map away from the zero-padded border
    import e2cnn.nn as enn

    torch.manual_seed(0)
    gs = gspaces.FlipRot2dOnR2(N=8)
    in_type = enn.FieldType(gs, [gs.trivial_repr] if first_layer else 2 * [gs.regular_repr])
    out_type = enn.FieldType(gs, 3 * [gs.regular_repr])
    k, size = (4, 32) if first_layer else (5, 33)
    conv = enn.R2Conv(in_type, out_type, kernel_size=k, padding=k // 2)
    strided = enn.R2Conv(in_type, out_type, kernel_size=k, padding=k // 2, stride=2)
    strided.load_state_dict(conv.state_dict())
    blur = enn.PointwiseAvgPoolAntialiased(in_type, sigma=0.66, stride=1)
    pool = enn.PointwiseAvgPoolAntialiased(out_type, sigma=0.66, stride=2)
    x = enn.GeometricTensor(torch.randn(2, in_type.size, size, size), in_type)
    with torch.no_grad():
        expected = pool(conv(x)).tensor
        got = strided(blur(x)).tensor
    assert got.shape == expected.shape == (2, out_type.size, 17, 17)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # all but the outermost ring
    torch.testing.assert_close(got[inner], expected[inner], atol=1e-5, rtol=1e-4)


def test_strided_encoder_blurs_before_each_stride_2_convolution():
    import e2cnn.nn as enn

    layers = list(O2Encoder(1, 16, zdim=4, pooling="strided", **TINY).features.children())
    strided = [i for i, m in enumerate(layers) if isinstance(m, enn.R2Conv) and m.stride == 2]
    assert len(strided) == 2  # one per downsampling layer
    for i in strided:
        blur = layers[i - 1]
        assert isinstance(blur, enn.PointwiseAvgPoolAntialiased) and blur.stride == (1, 1)
    pools = [m for m in layers if isinstance(m, enn.PointwiseAvgPoolAntialiased)]
    assert len(pools) == 2  # no pooling left after the non-linearities


def test_vanilla_encoder_is_not_invariant():
    torch.manual_seed(0)
    enc = CNNEncoder(1, 16, zdim=5, channels=(8, 16), downsample=(True, True)).eval()
    x = objects()
    with torch.no_grad():
        assert relative_change(enc(torch.rot90(x, 1, dims=(-2, -1)))[0], enc(x)[0]) > 1e-2


def test_o2_encoder_rejects_sizes_that_break_exactness():
    with pytest.raises(ValueError, match="divisible by 2 \\*\\* 2"):
        O2Encoder(1, 18, zdim=4, **TINY)
    with pytest.raises(ValueError, match="needs group 'dihedral'"):
        O2Encoder(1, 16, zdim=4, group="o2", layer_type="regular", **TINY)
    with pytest.raises(ValueError, match="pooling must be 'after' or 'strided', got 'max'"):
        O2Encoder(1, 16, zdim=4, pooling="max", **TINY)


@pytest.mark.parametrize("size, channels", [(16, 1), (32, 3), (48, 2), (64, 1), (256, 1)])
def test_decoder_shapes_follow_the_image_size(size, channels):
    dec = CNNDecoder(zdim=4, out_channels=channels, image_size=size, width=32)
    assert dec(torch.zeros(2, 4)).shape == (2, channels, size, size)
    widths = [m.out_channels for m in dec.layers if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == sorted(widths, reverse=True)  # widest at low resolution


def tiny_vae(encoder="o2", align="fourier", loss="bce", size=16, pooling="after"):
    config = Config()
    m = config.model
    m.encoder, m.align, m.loss, m.image_size, m.zdim = encoder, align, loss, size, 4
    m.encoder_pooling = pooling
    m.encoder_channels, m.encoder_downsample, m.kernel_size, m.hidden = [2, 3], [True, True], 3, 16
    m.decoder_width, m.align_angles = 16, 64
    torch.manual_seed(0)
    return build_model_from_config(config.validate()), config


@pytest.mark.parametrize("encoder, pooling", [("o2", "after"), ("o2", "strided"), ("vanilla", "after")])
@pytest.mark.parametrize("align", ["fourier", "brute", "none"])
def test_vae_loss_and_gradients_reach_every_parameter(encoder, pooling, align):
    model, _ = tiny_vae(encoder, align, pooling=pooling)
    model.rot_step_deg = 45.0
    x = objects()
    out = model(x)
    assert out["out"].shape == x.shape and out["loss"].ndim == 0
    assert torch.isclose(out["loss"], out["recon"] + model.beta * out["kl"])
    out["loss"].backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]  # e2cnn: frozen eps
    for name, p in trainable:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    # every parameter learns: an encoder cut off from the loss (all-zero gradients) must fail here
    no_gradient = [name for name, p in trainable if not p.grad.abs().sum() > 0]
    assert not no_gradient, no_gradient
    assert any(name.startswith("encoder.") for name, _ in trainable)


class FixedPosterior(torch.nn.Module):
    """A stub encoder: the same known ``(mu, logvar)`` whatever the images."""

    def __init__(self, mu, logvar):
        super().__init__()
        self.mu, self.logvar = torch.nn.Parameter(mu.clone()), torch.nn.Parameter(logvar.clone())

    def forward(self, x):
        return self.mu, self.logvar


MU = np.array([[0.5, -1.0, 0.0, 2.0], [-0.3, 0.7, 1.5, -2.0], [0.0, 0.0, 0.0, 0.0]])
LOGVAR = np.array([[0.0, -1.0, 0.5, -2.0], [1.0, 0.2, -0.7, 0.0], [0.0, 0.0, 0.0, 0.0]])


def numpy_disk(size):
    """The inscribed disk: pixels whose centre is at most size / 2 from the image centre."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return (np.hypot(yy, xx) <= size / 2).astype(np.float64)


@pytest.mark.parametrize("loss, mask", [("bce", "disk"), ("mse", "disk"), ("bce", None), ("mse", None)])
def test_vae_loss_terms_match_their_closed_forms(loss, mask):
    """Unaligned loss with a stub encoder: KL and masked reconstruction computed independently."""
    config = Config()
    m = config.model
    m.align, m.loss, m.loss_mask, m.beta, m.image_size, m.zdim = "none", loss, mask, 0.37, 16, 4
    m.encoder_channels, m.encoder_downsample, m.kernel_size, m.hidden = [2, 3], [True, True], 3, 16
    m.decoder_width = 16
    torch.manual_seed(0)
    model = build_model_from_config(config.validate())
    model.encoder = FixedPosterior(
        torch.tensor(MU, dtype=torch.float32), torch.tensor(LOGVAR, dtype=torch.float32)
    )
    model.eval()  # z = mu: the reconstruction term is deterministic
    x = objects(n=3)
    out = model(x)

    # KL(N(mu, exp(logvar)) || N(0, 1)), summed over the latent, averaged over the batch
    kl = np.mean(np.sum(0.5 * (np.exp(LOGVAR) + MU**2 - 1 - LOGVAR), axis=1))
    assert kl > 1  # the last row (the prior itself) contributes 0; the others do not
    np.testing.assert_allclose(out["kl"].item(), kl, rtol=1e-6)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.tensor(MU), torch.tensor(np.exp(0.5 * LOGVAR))),
        torch.distributions.Normal(0.0, 1.0),
    )
    np.testing.assert_allclose(out["kl"].item(), reference.sum(1).mean().item(), rtol=1e-6)

    with torch.no_grad():
        decoded = model.decoder(torch.tensor(MU, dtype=torch.float32)).double()
    torch.testing.assert_close(out["out"].double(), decoded)  # align='none': the decoder output itself
    target = x.double()
    if loss == "bce":
        per_pixel = F.binary_cross_entropy(torch.sigmoid(decoded), target, reduction="none")
    else:
        per_pixel = (decoded - target) ** 2
    weights = torch.from_numpy(numpy_disk(16) if mask == "disk" else np.ones((16, 16)))
    recon = (per_pixel * weights).sum((1, 2, 3)).mean().item()
    if mask == "disk":  # the corners count for something, so leaving them in would be seen
        assert (per_pixel * (1 - weights)).sum((1, 2, 3)).mean().item() > 1e-3 * recon
    np.testing.assert_allclose(out["recon"].item(), recon, rtol=1e-5)
    np.testing.assert_allclose(out["loss"].item(), recon + 0.37 * kl, rtol=1e-5)

    # gradient of the KL term with respect to the posterior: mu and (exp(logvar) - 1) / 2 per image
    model.zero_grad()
    (out["loss"] - out["recon"]).backward()
    np.testing.assert_allclose(model.encoder.mu.grad.numpy(), 0.37 * MU / 3, rtol=1e-5, atol=1e-7)
    expected = 0.37 * 0.5 * (np.exp(LOGVAR) - 1) / 3
    np.testing.assert_allclose(model.encoder.logvar.grad.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_training_mode_samples_z_from_the_posterior():
    """In training mode z = mu + exp(logvar / 2) * noise: check mean and spread of many samples."""
    model, _ = tiny_vae(align="none")
    n = 20000
    mu = torch.tensor([[1.5, -2.0, 0.0, 0.3]]).repeat(n, 1)
    logvar = torch.tensor([[0.0, -2.0, 1.0, -4.0]]).repeat(n, 1)
    model.encoder = FixedPosterior(mu, logvar)
    seen = {}

    class RecordingDecoder(torch.nn.Module):
        def forward(self, z):
            seen["z"] = z.detach()
            return torch.zeros(len(z), 1, 16, 16)

    model.decoder = RecordingDecoder()
    torch.manual_seed(0)
    model.train()(torch.zeros(n, 1, 16, 16))
    z = seen["z"]
    std = torch.exp(0.5 * logvar[0])
    # standard errors: std / sqrt(n) for the mean, std / sqrt(2n) for the spread; 5 of them allowed
    torch.testing.assert_close(z.mean(0), mu[0], atol=5 * std.max().item() / n**0.5, rtol=0)
    torch.testing.assert_close(z.std(0), std, rtol=5 / (2 * n) ** 0.5, atol=0)
    model.eval()(torch.zeros(n, 1, 16, 16))
    assert torch.equal(seen["z"], mu)  # eval mode: the posterior mean


def test_embeddings_from_utils_are_the_encoders_posterior_mean():
    import utils

    config = load_config("configs.config_tiny")
    assert config.data.rescale is None  # identity input range: utils must feed the images unchanged
    torch.manual_seed(0)
    model = build_model_from_config(config)
    with torch.no_grad():  # batch-norm running statistics away from their initial (0, 1)
        for _ in range(5):
            model.encoder(objects(n=8, seed=3) * 0.5 + 0.4)
    x = objects(n=11, seed=2)
    labels = torch.arange(11) % 3
    model.train()
    got = utils.get_model_embeddings_from_tensors(model, x, batch_size=4, progress=False)
    from_numpy = utils.get_model_embeddings_from_tensors(model, x.numpy(), batch_size=5, progress=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, labels), batch_size=3)
    from_loader, got_labels = utils.get_model_embeddings_from_loader(
        model, loader, return_labels=True, progress=False
    )
    assert model.training  # the caller's mode is restored
    with torch.no_grad():
        expected = model.eval().encoder(x)[0]
        in_training_mode = model.train().encoder(x)[0]  # (updates the running statistics: last)
    assert got.shape == (11, config.model.zdim)
    for emb in (got, from_numpy, from_loader):
        torch.testing.assert_close(torch.from_numpy(emb), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_labels, labels.numpy())
    # what the comparison can see: batch statistics instead of running ones change the embedding
    assert (in_training_mode - expected).abs().max() > 1e-2


def test_embeddings_from_utils_map_the_minmax_range_first():
    import utils

    config = apply_overrides(
        load_config("configs.config_tiny"), ["data.rescale=minmax", "data.value_range=[-2.0, 6.0]"]
    )
    torch.manual_seed(0)
    model = build_model_from_config(config).eval()
    x = objects(n=5, seed=2)
    stored = x * 8.0 - 2.0  # the data as stored, in the model's training range [-2, 6]
    got = utils.get_model_embeddings_from_tensors(model, stored, batch_size=2, progress=False)
    with torch.no_grad():
        expected = model.encoder(x)[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        assert (model.encoder(stored)[0] - expected).abs().max() > 1e-2


def test_embed_decode_reconstruct_shapes():
    model, _ = tiny_vae()
    model.eval()
    x = objects()
    with torch.no_grad():
        assert model.embed(x).shape == (6, 4)
        img = model.decode(torch.zeros(3, 4))
        assert img.shape == (3, 1, 16, 16) and 0 <= img.min() and img.max() <= 1
        assert model.reconstruct(x, align=True).shape == x.shape


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_aligned_loss_equals_best_brute_force_alignment(loss):
    """Decoder output = the input rotated and flipped: the aligned loss finds the undoing transform."""
    model, _ = tiny_vae(loss=loss, size=32)
    model.align_angles = Config().model.align_angles  # the default resolution
    x = objects(n=8, size=32, seed=1)
    g = torch.Generator().manual_seed(1)
    angle, flip = torch.rand(8, generator=g) * 360, torch.rand(8, generator=g) < 0.5
    target = rotate_flip(x, angle, flip, mode="bicubic").clamp(0.01, 0.99)
    out = torch.logit(target) if loss == "bce" else target
    aligned = model.reconstruction_loss(model.find_alignment(x, out).apply(out), x)
    # brute force: the loss of every candidate on a 1-degree grid x 2 flips, keep the least
    angles = torch.arange(0.0, 360.0, 1.0)
    best = torch.full((8,), torch.inf)
    for f in (False, True):
        for a in angles:
            best = torch.minimum(best, model.reconstruction_loss(rotate_flip(out, a.expand(8), f), x))
    unaligned = model.reconstruction_loss(out, x)
    assert (unaligned > 1.5 * best).any()
    # Registration maximises the polar correlation, not the pixel loss, so near a perfect fit (MSE
    # here: ~3 % of the unaligned loss) the two optima differ by interpolation error. Measured
    # against what alignment gains, the Fourier loss is within 1 % of the brute-force optimum.
    assert (aligned - best <= 0.01 * (unaligned - best)).all()
    assert (aligned >= best - 0.01 * (unaligned - best)).all()
    if loss == "bce":
        assert (aligned <= 1.01 * best).all()


def test_aligned_loss_ignores_pixels_outside_the_disk():
    model, _ = tiny_vae(align="fourier")
    x = objects()
    out = torch.zeros_like(x)
    corner_changed = out.clone()
    corner_changed[..., 0, 0] = 50.0
    assert torch.allclose(model.reconstruction_loss(out, x), model.reconstruction_loss(corner_changed, x))
    assert model.pixel_mask.sum() == disk_mask(16, 16).sum()


@pytest.mark.parametrize("pooling", ["after", "strided"])
def test_checkpoint_round_trip_gives_identical_embeddings(tmp_path, pooling):
    model, config = tiny_vae(pooling=pooling)
    model.eval()
    optimizer = torch.optim.Adam(model.parameters())
    save_checkpoint(tmp_path / "model.pt", model, optimizer, 3, config, 1.0, {})
    loaded = load_model(tmp_path)
    x = objects()
    with torch.no_grad():
        assert torch.equal(loaded.embed(x), model.embed(x))
    assert loaded.config == config and not loaded.training


def test_checkpoint_saved_before_encoder_pooling_existed_loads_as_after(tmp_path):
    model, config = tiny_vae()
    save_checkpoint(tmp_path / "model.pt", model, torch.optim.Adam(model.parameters()), 1, config, 1.0, {})
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    del state["config"]["model"]["encoder_pooling"]
    del state["checksum"]  # as files of that time: no content checksum either
    torch.save(state, tmp_path / "model.pt")
    loaded = load_model(tmp_path)
    assert loaded.config.model.encoder_pooling == "after"
    x = objects()
    with torch.no_grad():
        assert torch.equal(loaded.embed(x), model.eval().embed(x))


def test_checkpoint_from_another_config_is_refused(tmp_path):
    model, config = tiny_vae()
    other, _ = tiny_vae(encoder="vanilla")
    save_checkpoint(tmp_path / "model.pt", other, torch.optim.Adam(other.parameters()), 1, config, 1.0, {})
    from models.build import CheckpointError

    with pytest.raises(CheckpointError, match="model.pt: weights do not fit the model its config describes"):
        load_model(tmp_path / "model.pt")


def test_load_model_refuses_missing_and_foreign_files(tmp_path):
    from models.build import CheckpointError

    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_model(tmp_path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="not an o2vae checkpoint"):
        load_model(tmp_path)


def test_vae_rejects_alignment_without_the_disk_mask():
    with pytest.raises(ValueError, match="needs loss_mask='disk'"):
        VAE(torch.nn.Identity(), torch.nn.Identity(), 16, align="fourier", loss_mask=None)


def test_invariance_term_pairs_each_copy_with_its_original(monkeypatch):
    import models.vae

    model, _ = tiny_vae()
    model.invariance_weight, model.invariance_fraction = 2.0, 0.5
    x = torch.rand(8, 1, 16, 16)
    seen = {}
    encode = model.encode

    def spy(batch):
        seen["batch"] = batch
        return encode(batch)

    monkeypatch.setattr(model, "encode", spy)
    torch.manual_seed(1)
    out = model(x)
    copies = seen["batch"][8:]
    assert copies.shape == (4, 1, 16, 16)  # half of the batch, after the originals
    torch.manual_seed(1)  # the same draws: angles, then flips
    angle, flip = torch.rand(4) * 360.0, torch.rand(4) < 0.5
    assert torch.equal(copies, models.vae.rotate_flip(x[:4], angle, flip, mode="bicubic"))
    # the term: squared distance of each copy's posterior mean to its own original's
    model.encode = encode
    mu = model.encode(seen["batch"])[0]
    assert torch.allclose(out["invariance"], ((mu[:4] - mu[8:]) ** 2).sum(1).mean(), rtol=1e-3)
    # copies that are the originals themselves: the term vanishes exactly, whatever the batch statistics
    monkeypatch.setattr(models.vae, "rotate_flip", lambda images, *args, **kwargs: images.clone())
    assert model(x)["invariance"].item() == 0.0
    assert torch.allclose(out["loss"], out["recon"] + model.beta * out["kl"] + 2.0 * out["invariance"])


def test_invariance_term_is_off_in_eval_mode_and_with_no_weight():
    model, _ = tiny_vae()
    x = torch.rand(8, 1, 16, 16)
    assert model(x)["invariance"].item() == 0.0  # weight 0 (the default)
    model.invariance_weight = 5.0
    assert model(x)["invariance"].item() > 0.0
    model.eval()
    out = model(x)
    assert out["invariance"].item() == 0.0 and torch.equal(out["loss"], out["recon"] + out["kl"])
