"""benchmarks/bench_training.py: ``score`` gives a saved model the figures ``quality`` gave it."""

import re
import shutil

import pytest

import run
from benchmarks import bench_training
from data import generate_o2mnist


@pytest.mark.slow
def test_score_of_a_saved_run_repeats_the_quality_row(tmp_path, capsys, monkeypatch):
    data = tmp_path / "o2_mnist"
    generate_o2mnist.main(["--n", "300", "--n-test", "100", "--out", str(data)])
    kept = tmp_path / "kept"
    real_train = run.train

    def train_and_keep(config):  # quality trains in a temporary folder: keep a copy of the run
        run_dir = real_train(config)
        shutil.copytree(run_dir, kept)
        return run_dir

    monkeypatch.setattr(run, "train", train_and_keep)
    overrides = [f"data.data_dir={data}", "data.limit_train=200", "training.epochs=1", "data.batch_size=32"]
    bench_training.main(["quality", "--presets", "default", *(a for o in overrides for a in ("--set", o))])
    bench_training.main(["score", str(kept)])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    quality_row, score_row = (r for r in rows if r[1] == "1")  # the two data rows (epochs column)
    assert quality_row[0] == "| default" and score_row[0] == f"| {kept}"
    assert score_row[2] == quality_row[2] == "200"  # the run's own data: limit_train from its checkpoint
    assert score_row[3] == "-" and re.fullmatch(r"\d+\.\d", quality_row[3])  # minutes
    assert score_row[4:] == quality_row[4:]  # kNN, kNN 6=9, purity, sensitivity: the same model's
    knn, _, purity, sensitivity = (float(v.strip(" |")) for v in quality_row[4:])
    assert 0.1 < knn <= 1 and 0.1 < purity <= 1 and 0 < sensitivity < 2


def test_score_refuses_a_model_of_another_dataset(tiny_config):
    run_dir = run.train(tiny_config)  # O2-shapes: its metadata has no MNIST indices
    with pytest.raises(SystemExit, match="is not O2-MNIST"):
        bench_training.main(["score", str(run_dir)])
