"""The MEFs layout of the original repository: extraction script and preset, on a small look-alike tarball."""

import os
import pathlib
import subprocess
import tarfile

import numpy as np
import torch

import run
from configs.schema import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data" / "mefs" / "unzip_mefs.bash"


def unzip(folder):
    env = os.environ | {"MEFS_DIR": str(folder)}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)


def look_alike_tarball(folder, n_train=40, n_test=12):
    """``mefs_scaled.tar.gz`` laid out as the original: ``scaled/cell/{X,y}_{train,test}.sav``, 128 px."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128] - 63.5
    staging = folder / "staging" / "scaled" / "cell"
    staging.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        a, b = rng.uniform(20, 50, (2, n, 1, 1))
        masks = ((yy / a) ** 2 + (xx / b) ** 2 <= 1).astype(np.float32)[:, None]
        torch.save(torch.from_numpy(masks), staging / f"X_{split}.sav")
        torch.save(torch.from_numpy((a > b).astype(np.int64).ravel()), staging / f"y_{split}.sav")
    with tarfile.open(folder / "mefs_scaled.tar.gz", "w:gz") as tar:
        tar.add(folder / "staging" / "scaled", arcname="scaled")


def test_without_a_tarball_the_script_says_where_the_data_come_from(tmp_path):
    result = unzip(tmp_path)
    assert result.returncode == 1
    assert "no MEFs tarball" in result.stderr and "Zenodo record 7388245" in result.stderr


def test_script_extracts_and_checks_and_the_preset_trains(tmp_path):
    look_alike_tarball(tmp_path)
    result = unzip(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "scaled/cell: valid" in result.stdout
    assert "train: 40 images, 1 channel(s), 128x128 px" in result.stdout
    data_dir = tmp_path / "scaled" / "cell"
    config = load_config(
        "configs.config_mefs",
        [
            f"data.data_dir={data_dir}",
            "data.batch_size=8",
            "training.epochs=1",
            "training.max_steps_per_epoch=2",
            f"logging.out_dir={tmp_path}",
            "logging.wandb_mode=disabled",
        ],
    )
    model = run.load_model(run.train(config))
    _, loader, _, _ = run.get_datasets_from_config(model.config)
    assert next(iter(loader))[0].shape == (8, 1, 64, 64)  # resized from 128 px on load


def test_a_broken_dataset_in_the_tarball_fails_the_check(tmp_path):
    look_alike_tarball(tmp_path)
    staging = tmp_path / "staging" / "scaled" / "cell"
    torch.save(torch.zeros(40, 1, 128, 100), staging / "X_train.sav")  # not square
    with tarfile.open(tmp_path / "mefs_scaled.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "staging" / "scaled", arcname="scaled")
    result = unzip(tmp_path)
    assert result.returncode == 1 and "must be square" in result.stderr


def test_tarball_members_outside_the_folder_are_not_written(tmp_path):
    look_alike_tarball(tmp_path)
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(tmp_path / "mefs_scaled.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "staging" / "scaled", arcname="scaled")
        tar.add(evil, arcname="../escaped.txt")
    unzip(tmp_path)
    assert not (tmp_path.parent / "escaped.txt").exists()
