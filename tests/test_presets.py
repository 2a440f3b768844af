"""Every preset in configs/ builds; the O2 presets are invariant to the pixel grid's symmetries and
have the parameter counts BENCHMARKS.md states."""

import pathlib
import re

import numpy as np
import pytest
import torch

from configs.schema import load_config
from data import generate_shapes
from models.build import build_model_from_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in ROOT.glob("configs/config_*.py"))
O2_PRESETS = [p for p in PRESETS if load_config(f"configs.{p}").model.encoder == "o2"]

# (encoder, decoder, total) parameters, counted as run.py prints them (every parameter, e2cnn's
# frozen batch-norm eps included); the same figures as the table in BENCHMARKS.md
PARAMETERS = {
    "config_mefs": (115_103, 309_649, 424_752),
    "config_nuclei": (102_719, 211_345, 314_064),
    "config_o2mnist": (76_519, 239_985, 316_504),
    "config_o2mnist_fast": (76_519, 239_985, 316_504),
    "config_o2mnist_full": (76_519, 239_985, 316_504),
    "config_o2mnist_paper": (298_894, 239_985, 538_879),
    "config_o2mnist_vanilla": (333_280, 239_985, 573_265),
    "config_shapes": (102_719, 211_345, 314_064),
    "config_tiny": (20_242, 9_681, 29_923),
}
# Largest relative embedding change under the 8 grid symmetries, measured at random init: 3.3e-07
# to 7.9e-07 (paper preset); a 1-pixel shift of the same images changes it by 6.7e-04 or more
GRID_TOLERANCE = 1e-5


def count(module):
    return sum(p.numel() for p in module.parameters())


def grid_symmetries(x):
    """The 8 symmetries of the pixel grid: rotations by k * 90 degrees, with and without a flip."""
    return [torch.rot90(y, k, dims=(-2, -1)) for y in (x, x.flip(-1)) for k in range(4)]


def relative_change(a, b):
    return ((a - b).norm(dim=-1) / b.norm(dim=-1)).max().item()


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_validates_and_builds_its_model(preset):
    config = load_config(f"configs.{preset}")
    mu, _ = (
        build_model_from_config(config)
        .eval()
        .encode(torch.rand(2, config.model.in_channels, config.model.image_size, config.model.image_size))
    )
    assert mu.shape == (2, config.model.zdim)


def test_every_preset_has_its_parameter_count():
    assert sorted(PARAMETERS) == PRESETS, (
        "a preset was added or removed: update PARAMETERS here and the table in BENCHMARKS.md"
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_parameter_counts(preset):
    model = build_model_from_config(load_config(f"configs.{preset}"))
    counts = (count(model.encoder), count(model.decoder), count(model))
    assert preset in PARAMETERS, f"{preset} has {counts} parameters: add them here and to BENCHMARKS.md"
    assert counts == PARAMETERS[preset]


def benchmarks_parameter_table():
    """Rows of the parameter table in BENCHMARKS.md: {preset module: (encoder, decoder, total)}."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    rows = re.findall(r"^\| (`configs/config_\w+\.py`(?:, `configs/config_\w+\.py`)*) \|(.*)\|$", text, re.M)
    table = {}
    for presets, numbers in rows:
        values = tuple(int(n.strip().replace(",", "")) for n in numbers.split("|"))
        for preset in re.findall(r"config_\w+", presets):
            table[preset] = values
    return table


def test_benchmarks_states_the_parameter_counts():
    assert benchmarks_parameter_table() == PARAMETERS


@pytest.mark.parametrize("preset", O2_PRESETS)
def test_o2_preset_embedding_is_invariant_to_grid_symmetries(preset):
    config = load_config(f"configs.{preset}")
    size, channels = config.model.image_size, config.model.in_channels
    torch.manual_seed(0)
    model = build_model_from_config(config).eval()
    images, *_ = generate_shapes.make_shapes(6, np.random.default_rng(0), size=size)
    x = torch.from_numpy(images).repeat(1, channels, 1, 1)
    with torch.no_grad():
        emb = model.embed(torch.cat(grid_symmetries(x))).reshape(8, len(x), -1)
        shifted = model.embed(torch.roll(x, 1, dims=-1))
    assert [relative_change(e, emb[0]) for e in emb[1:]] == pytest.approx([0.0] * 7, abs=GRID_TOLERANCE)
    # the check can see a one-pixel error: shifting the images changes every embedding far more,
    # and different images have different embeddings
    assert ((shifted - emb[0]).norm(dim=1) / emb[0].norm(dim=1)).min() > 10 * GRID_TOLERANCE
    distances = torch.cdist(emb[0], emb[0]) + torch.diag(torch.full((len(x),), torch.inf))
    assert (distances.min(1).values / emb[0].norm(dim=1)).min() > 100 * GRID_TOLERANCE
