"""benchmarks/bench_training.py: ``score`` repeats ``quality``; ``speed`` counts page faults."""

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


@pytest.mark.slow
def test_speed_counts_the_page_faults_that_kept_memory_avoids(capsys):
    """The speed rows' fault column: vanilla at 64 px maps its activations afresh each step by default."""
    faults = {}
    for mode in ("keep", "system"):
        flag = ["--system-malloc"] if mode == "system" else []
        bench_training.main(
            ["speed", "--presets", "vanilla", "--sizes", "64", "--batches", "64", "--steps", "4", *flag]
        )
        out = capsys.readouterr().out
        assert ("glibc's own thresholds" in out) == (mode == "system")
        (row,) = [line.split(" | ") for line in out.splitlines() if line.startswith("| vanilla")]
        assert row[1:3] == ["64", "64"] and float(row[3]) > 0
        faults[mode] = float(row[5].replace(",", ""))
    print(f"page faults per step: {faults}")
    assert faults["system"] > 3 * faults["keep"]  # 4.5-20x in runs while writing this test
