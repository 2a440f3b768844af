"""benchmarks/bench_tuning.py: one row per setting, each trained with that setting."""

import pytest

import run
from analysis import scores
from benchmarks import bench_tuning
from data import generate_shapes


@pytest.mark.slow
def test_each_row_trains_its_setting_and_prints_its_scores(tmp_path, capsys, monkeypatch):
    data = tmp_path / "shapes"
    generate_shapes.main(["--n", "96", "--n-test", "48", "--size", "16", "--out", str(data)])
    trained, scored = [], []
    real_train, real_scores = run.train, scores.model_scores
    monkeypatch.setattr(run, "train", lambda config: trained.append(config) or real_train(config))
    monkeypatch.setattr(
        scores, "model_scores", lambda model, *a: scored.append(model.config) or real_scores(model, *a)
    )
    bench_tuning.main(
        ["--preset", "configs.config_tiny", "--set", f"data.data_dir={data}", "--labels", "y"]
        + ["--rows", "preset", "zdim=64", "image_size=32"]
    )
    assert [c.to_dict() for c in scored] == [c.to_dict() for c in trained]  # each row scores its own model
    assert [(c.model.zdim, c.model.image_size, c.data.resize) for c in trained] == [
        (4, 16, False),
        (64, 16, False),
        (4, 32, True),
    ]
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r[0][2:] for r in rows] == ["preset", "zdim=64", "image_size=32"]
    assert (
        rows[2][1]
        == f"`python run.py configs.config_tiny data.data_dir={data} model.image_size=32 data.resize=True`"
    )
    for r in rows:
        error, knn, purity, sensitivity = (float(v.strip(" |")) for v in r[3:])
        assert 0 < error < 1000 and 0 <= knn <= 1 and 0 < purity <= 1 and 0 <= sensitivity < 2
