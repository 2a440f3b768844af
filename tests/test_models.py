import numpy as np
import pytest
import torch
from e2cnn import gspaces

from configs.schema import Config
from data import generate_shapes
from models.build import build_model_from_config, load_model, save_checkpoint
from models.decoders.cnn_decoder import CNNDecoder
from models.encoders_o2.o2_encoder import O2Encoder, WholeMapConv
from models.encoders_vanilla.cnn_encoder import CNNEncoder
from models.vae import VAE
from registration import rotate_flip
from registration.brute_force import disk_mask

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
    save_checkpoint(tmp_path / "model.pt", model, optimizer, None, 3, config, 1.0, {})
    loaded = load_model(tmp_path)
    x = objects()
    with torch.no_grad():
        assert torch.equal(loaded.embed(x), model.embed(x))
    assert loaded.config == config and not loaded.training


def test_checkpoint_saved_before_encoder_pooling_existed_loads_as_after(tmp_path):
    model, config = tiny_vae()
    save_checkpoint(
        tmp_path / "model.pt", model, torch.optim.Adam(model.parameters()), None, 1, config, 1.0, {}
    )
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    del state["config"]["model"]["encoder_pooling"]
    torch.save(state, tmp_path / "model.pt")
    loaded = load_model(tmp_path)
    assert loaded.config.model.encoder_pooling == "after"
    x = objects()
    with torch.no_grad():
        assert torch.equal(loaded.embed(x), model.eval().embed(x))


def test_checkpoint_from_another_config_is_refused(tmp_path):
    model, config = tiny_vae()
    other, _ = tiny_vae(encoder="vanilla")
    save_checkpoint(
        tmp_path / "model.pt", other, torch.optim.Adam(other.parameters()), None, 1, config, 1.0, {}
    )
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
    with pytest.raises(ValueError, match="needs mask='disk'"):
        VAE(torch.nn.Identity(), torch.nn.Identity(), 16, align="fourier", mask=None)
