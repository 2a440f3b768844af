"""The O2 encoder exported to plain PyTorch gives the e2cnn encoder's embeddings."""

import numpy as np
import pytest
import torch
from e2cnn import nn as enn
from torch import nn

import utils
from configs.schema import load_config
from models.build import build_model_from_config
from models.export import OnTensors, export_encoder


def trained_looking_model(config_name, overrides=(), steps=3):
    """A model whose batch-norm statistics are not the identity (forward passes in train mode)."""
    torch.manual_seed(0)
    model = build_model_from_config(load_config(config_name, list(overrides)))
    size, c = model.config.model.image_size, model.config.model.in_channels
    with torch.no_grad():
        for _ in range(steps):
            model(torch.rand(16, c, size, size) * 2)
    return model.eval()


@pytest.mark.parametrize(
    "overrides, max_wrapped",
    [
        ((), 3),  # regular D8 layers, then the norm last layer, whose modules e2cnn cannot export
        (("model.encoder_pooling=strided",), 3),
        (("model.group=o2", "model.layer_type=induced_gated"), None),  # the paper's layer: all wrapped
        (("model.group=o2", "model.layer_type=norm"), None),
    ],
)
def test_exported_encoder_gives_the_same_posterior(overrides, max_wrapped):
    model = trained_looking_model("configs.config_tiny", overrides)
    exported = export_encoder(model.encoder)
    x = torch.rand(10, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        mu_exported, logvar_exported = exported(x)
    print(f"largest difference: {(mu - mu_exported).abs().max():.1e} (mu up to {mu.abs().max():.2f})")
    torch.testing.assert_close(mu_exported, mu, rtol=1e-5, atol=1e-6)  # measured: <1e-7
    torch.testing.assert_close(logvar_exported, logvar, rtol=1e-5, atol=1e-6)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in exported.features)  # folded into the convolutions
    # e2cnn code runs only where e2cnn has no export, wrapped
    assert not any(isinstance(m, enn.EquivariantModule) for m in exported.features)
    if max_wrapped is not None:
        assert sum(isinstance(m, OnTensors) for m in exported.features) <= max_wrapped
    assert sum(isinstance(m, nn.Conv2d) for m in exported.features) >= 3  # convolutions and pooling


def test_the_export_is_a_copy_and_checks_its_input():
    model = trained_looking_model("configs.config_tiny")
    exported = export_encoder(model.encoder)
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        before = exported(x)[0].clone()
        for p in model.encoder.parameters():
            p.add_(1.0)
        assert torch.equal(exported(x)[0], before)
    assert model.encoder.training is False  # left as it was
    with pytest.raises(ValueError, match=r"expects images of shape \(b, 1, 16, 16\), got \(4, 1, 20, 20\)"):
        exported(torch.rand(4, 1, 20, 20))


def test_vanilla_encoders_are_already_plain_pytorch():
    model = trained_looking_model("configs.config_tiny", ["model.encoder=vanilla"])
    assert export_encoder(model.encoder) is model.encoder


def test_embedding_functions_use_the_export_and_agree_with_e2cnn(tmp_path):
    model = trained_looking_model("configs.config_tiny")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((50, 1, 16, 16), dtype=np.float32))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    exported = utils.get_model_embeddings_from_tensors(model, x, batch_size=16, progress=False)
    e2cnn = utils.get_model_embeddings_from_tensors(model, x, batch_size=16, progress=False, export=False)
    with torch.no_grad():
        direct = np.concatenate(
            [model.embed(torch.from_numpy(np.array(x[i : i + 16]))) for i in range(0, 50, 16)]
        )
    np.testing.assert_array_equal(e2cnn, direct)  # export=False: the e2cnn modules themselves
    np.testing.assert_allclose(exported, direct, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(exported, direct)  # a different computation: it really ran the export
