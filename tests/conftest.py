"""Fixtures shared by the training tests: a tiny dataset of shapes and the tiny config on it."""

import pytest

from configs.schema import load_config
from data import generate_shapes


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_shapes")
    generate_shapes.main(["--n", "96", "--n-test", "32", "--size", "16", "--out", str(out), "--overwrite"])
    return out


@pytest.fixture
def tiny_config(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return load_config(
        "configs.config_tiny",
        [f"data.data_dir={tiny_data}", f"logging.out_dir={tmp_path}", "logging.wandb_mode=disabled"],
    )
