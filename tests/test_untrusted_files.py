"""Files from elsewhere never run code: a crafted pickle is refused by every loader of user files."""

import pytest
import torch

import run
from data.datasets import DatasetError, load_dataset
from models.build import CheckpointError


class CreatesMarker:
    """Unpickling this calls ``open(path, "w")``: the marker file appears if a loader unpickles it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def payload(tmp_path):
    marker = tmp_path / "code_ran"
    return marker, {"format": 2, "config": {}, "model": {}, "x": CreatesMarker(marker)}


def test_the_payload_is_real(tmp_path, payload):
    marker, obj = payload
    torch.save(obj, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)  # what an unsafe loader would do
    assert marker.exists()


def test_a_crafted_sav_dataset_is_refused(tmp_path, payload):
    marker, obj = payload
    data = tmp_path / "data"
    data.mkdir()
    torch.save(obj, data / "X_train.sav")
    with pytest.raises(DatasetError, match="X_train.sav"):
        load_dataset(data)
    assert not marker.exists()


def test_a_crafted_checkpoint_is_refused_by_load_model_and_resume(tmp_path, payload):
    marker, obj = payload
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save(obj, run_dir / "model.pt")
    with pytest.raises(CheckpointError, match="model.pt: not a readable o2vae checkpoint"):
        run.load_model(run_dir)
    with pytest.raises(SystemExit, match="error: .*model.pt: not a readable o2vae checkpoint"):
        run.main(["--resume", str(run_dir)])
    assert not marker.exists()
