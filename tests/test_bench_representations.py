"""benchmarks/bench_representations.py: the quick scale end to end, and its small parts."""

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import bench_representations as bench


def test_adapter_measures_a_function_like_a_model():
    """The orientation sensitivity of a non-model method goes through the same code as a model's."""
    from analysis.invariance import orientation_sensitivity
    from registration import disk_mask

    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.2, 1.0, 20).view(-1, 1, 1, 1)  # objects differ in brightness
    sources = torch.rand(20, 1, 16, 16, generator=g) * scale * disk_mask(16, 16, radius=5)

    def total(x):  # invariant to rotations up to interpolation: the image's sum
        return x.flatten(1).sum(1, keepdim=True).numpy()

    def pixels(x):
        return x.flatten(1).numpy()

    invariant = orientation_sensitivity(bench.EmbedAdapter(total), sources, batch_size=20)
    raw = orientation_sensitivity(bench.EmbedAdapter(pixels), sources, batch_size=20)
    assert invariant["relative_distance"] < 0.3 < raw["relative_distance"]


def test_same_source_nn_and_its_chance_level():
    emb = np.array([[0.0], [0.1], [5.0], [5.1]])
    fraction, chance = bench.same_source_nn(emb, np.array(["a", "a", "b", "b"]))
    assert fraction == 1.0 and chance == pytest.approx(1 / 3)
    fraction, _ = bench.same_source_nn(emb, np.array(["a", "b", "a", "b"]))
    assert fraction == 0.0


def test_markdown_table_has_mean_and_sd_over_seeds():
    rows = [
        {
            "dataset": "d",
            "method": m,
            "seed": s,
            "train_images": 10,
            "dim": 2,
            "knn": 0.5 + s / 10,
            "fit_s": 1.0,
        }
        for m in ("a", "b")
        for s in range(3)
    ]
    table = bench.markdown_table(pd.DataFrame(rows).reindex(columns=bench.COLUMNS))
    assert "| a | 10 | 2 | 0.600 +/- 0.100 |" in table
    assert "logistic" not in table  # columns without values are left out


@pytest.mark.slow
def test_quick_benchmark_runs_whole_and_the_o2vae_is_more_invariant_than_vanilla_and_pca(tmp_path):
    """The whole quick scale, as documented (9 methods x 3 datasets x 3 seeds; BENCHMARKS.md has
    its time): files written and read back, every metric filled in, and on every dataset the
    O2-VAE's mean orientation sensitivity below the vanilla VAE's and below PCA's on raw pixels."""
    bench.main(["--quick", "--out", str(tmp_path)])
    frame = pd.read_csv(tmp_path / "results.csv")
    assert list(frame.columns) == list(bench.COLUMNS)
    assert len(frame) == 3 * len(bench.METHODS) * 3
    assert set(frame["dataset"]) == {"o2mnist", "shapes", "nuclei"} and set(frame["seed"]) == {0, 1, 2}
    labelled = frame[frame["dataset"] != "nuclei"]
    metrics = ["orientation_sensitivity", "knn", "logistic", "purity", "fit_s", "embed_10k_s"]
    assert labelled[metrics].notna().all().all()
    assert frame.loc[frame["dataset"] == "nuclei", "same_source_nn"].notna().all()
    sens = frame.groupby(["dataset", "method"])["orientation_sensitivity"].mean().unstack()
    assert (sens["o2vae"] < sens["vanilla"]).all() and (sens["o2vae"] < sens["pca"]).all()
    table = (tmp_path / "results.md").read_text()
    assert table.count("| o2vae | ") == 3 and "+/-" in table
    for name in ("o2mnist", "shapes", "nuclei"):
        assert (tmp_path / f"umap_{name}.png").stat().st_size > 10_000
