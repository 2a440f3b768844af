import doctest
import itertools
import pathlib
import re
import struct

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from analysis import clustering, metrics, outliers, plots, projection
from analysis.classification import probe_accuracy
from analysis.profiles import export_profiles, profiles_table

ROOT = pathlib.Path(__file__).resolve().parents[1]


def blobs(n_per=40, k=4, d=6, spread=0.2, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10, size=(k, d))
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(scale=spread, size=(len(labels), d)), labels


def test_purity_and_hungarian_accuracy_against_hand_computed_values():
    truth = np.array([0, 0, 0, 1, 1, 2])
    found = np.array([5, 5, 7, 7, 7, 7])
    # cluster 5: {0, 0} -> 2 right; cluster 7: {0, 1, 1, 2} -> majority 1, 2 right
    assert metrics.cluster_purity(truth, found) == pytest.approx(4 / 6)
    # one-to-one: 5 -> 0 (2), 7 -> 1 (2)
    assert metrics.hungarian_accuracy(truth, found) == pytest.approx(4 / 6)
    split = np.arange(6)  # every object its own cluster: purity 1, Hungarian only 3 of 6
    assert metrics.cluster_purity(truth, split) == 1.0
    assert metrics.hungarian_accuracy(truth, split) == pytest.approx(3 / 6)


def test_clustering_scores_match_scikit_learn():
    rng = np.random.default_rng(1)
    truth, found = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    scores = metrics.clustering_scores(truth, found)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(truth, found))
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(truth, found))


@pytest.mark.parametrize("method", ["kmeans", "gmm", "agglomerative", "hdbscan"])
def test_well_separated_clusters_are_found_exactly(method):
    x, y = blobs()
    found = clustering.cluster(x, method, n_clusters=4, pca_components=3 if method == "gmm" else None)
    assert metrics.cluster_purity(y, found) == 1.0
    assert metrics.hungarian_accuracy(y, found) == 1.0


def test_cluster_rejects_bad_input():
    with pytest.raises(ValueError, match="method must be one of"):
        clustering.cluster(np.zeros((5, 2)), "spectral")
    with pytest.raises(ValueError, match=r"non-empty \(n, d\)"):
        clustering.cluster(np.zeros(5))


@pytest.mark.parametrize("method", ["isolation_forest", "lof", "centroid_distance"])
def test_planted_outliers_rank_first(method):
    x, y = blobs(n_per=50, k=3)
    far = np.full((3, x.shape[1]), 60.0) + np.arange(3)[:, None] * 15
    x_all = np.concatenate([x, far])
    clusters = np.concatenate([y, [0, 1, 2]])
    scores = outliers.outlier_scores(x_all, method, clusters=clusters)
    assert set(outliers.rank_outliers(scores, top=3)) == {150, 151, 152}


def test_distance_to_centre_and_centroid_scores_against_direct_computation():
    x, y = blobs(n_per=7, k=3, d=4, seed=2)
    y = np.where(y == 2, -1, y)  # HDBSCAN's noise label is a cluster like any other here
    expected = np.empty(len(x))
    for c in (-1, 0, 1):
        centre = x[y == c].sum(0) / (y == c).sum()
        expected[y == c] = np.sqrt(((x[y == c] - centre) ** 2).sum(1))
    np.testing.assert_allclose(outliers.distance_to_centre(x, y), expected, rtol=1e-12)
    scores = outliers.outlier_scores(x, "centroid_distance", clusters=y)
    for c in (-1, 0, 1):
        np.testing.assert_allclose(scores[y == c], expected[y == c] / np.median(expected[y == c]))
    with pytest.raises(ValueError, match="2 cluster labels for 21 embeddings"):
        outliers.distance_to_centre(x, [0, 1])


def test_rank_outliers_breaks_ties_by_index():
    assert outliers.rank_outliers([1.0, 5.0, 1.0, 5.0, 3.0]).tolist() == [1, 3, 4, 0, 2]
    assert outliers.rank_outliers([1.0, 5.0, 1.0, 5.0, 3.0], top=2).tolist() == [1, 3]


@pytest.mark.parametrize("name", ["analysis.outliers", "analysis.metrics"])
def test_docstring_examples(name):
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(name))
    assert tried > 0 and failures == 0


def test_knn_accuracy_against_a_direct_nearest_neighbour_vote():
    rng = np.random.default_rng(3)
    train, test = rng.normal(size=(60, 3)), rng.normal(size=(25, 3))
    y_train, y_test = (train[:, 0] > 0).astype(int), (test[:, 0] + 0.5 * test[:, 1] > 0).astype(int)
    flipped = rng.random(60) < 0.2  # label noise, so that k matters
    y_train[flipped] = 1 - y_train[flipped]
    d = np.linalg.norm(test[:, None] - train[None], axis=2)
    for k in (1, 3, 7):  # odd k and two classes: no tied votes
        nearest = np.argsort(d, axis=1)[:, :k]
        predicted = (y_train[nearest].mean(1) > 0.5).astype(int)
        assert metrics.knn_accuracy(train, y_train, test, y_test, k=k) == pytest.approx(
            np.mean(predicted == y_test)
        )


def test_probes_score_separable_and_random_labels():
    x, y = blobs(n_per=30, k=3)
    for kind in ("knn", "logistic"):
        result = probe_accuracy(x, y, kind=kind, folds=5)
        assert result["mean"] == 1.0 and result["sd"] == 0.0 and len(result["folds"]) == 5
        assert np.array_equal(np.diag(result["confusion"]), [30, 30, 30])
    shuffled = np.random.default_rng(0).permutation(y)
    assert probe_accuracy(x, shuffled, kind="logistic")["mean"] < 0.6


def test_pca_matches_numpy_svd():
    x, _ = blobs()
    ours = projection.pca(x, 2)
    centred = x - x.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    ref = u[:, :2] * s[:2]
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), atol=1e-8)  # up to the sign of each axis


def test_umap_is_seeded_and_keeps_clusters_apart():
    x, y = blobs(n_per=30, k=3)
    a, b = projection.umap(x, seed=0), projection.umap(x, seed=0)
    np.testing.assert_allclose(a, b)
    assert metrics.cluster_purity(y, clustering.cluster(a, "kmeans", 3)) == 1.0


def test_export_round_trips(tmp_path):
    x, y = blobs(n_per=5, k=2)
    obs = {"image_index": np.arange(10), "label": y, "source": ["a"] * 5 + ["b"] * 5}
    uns = {"config": {"model": {"zdim": 6}}, "run_dir": "somewhere"}
    files = export_profiles(x, tmp_path / "profiles", obs=obs, uns=uns)
    assert [f.suffix for f in files] == [".csv", ".parquet", ".h5ad"]
    table = profiles_table(x, obs)
    pd.testing.assert_frame_equal(pd.read_csv(files[0]), table, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(files[1]), table)
    adata = anndata.read_h5ad(files[2])
    np.testing.assert_allclose(adata.X, x.astype(np.float32))
    assert list(adata.obs["source"]) == obs["source"] and list(adata.obs["label"]) == list(y)
    assert '"zdim": 6' in adata.uns["o2vae"]


def test_export_rejects_mismatched_annotations(tmp_path):
    with pytest.raises(ValueError, match="obs has 3 rows for 4 embeddings"):
        export_profiles(np.zeros((4, 2)), tmp_path / "p", obs={"a": [1, 2, 3]})


def test_plots_write_files_of_the_right_kind(tmp_path):
    x, y = blobs(n_per=10, k=12)  # 12 classes: the legend needs more than the 10 default colours
    images = np.random.default_rng(0).random((len(x), 1, 16, 16))
    points = projection.pca(x)
    paths = {
        "scatter.png": plots.scatter(points, y, title="pca", path=tmp_path / "scatter.png"),
        "scatter.pdf": plots.scatter(points, y, path=tmp_path / "scatter.pdf"),
        "mosaic.png": plots.mosaic(points, images, grid=8, path=tmp_path / "mosaic.png"),
        "clusters.png": plots.cluster_samples(
            images, y, x, n=5, mode="typical", path=tmp_path / "clusters.png"
        ),
        "outliers.png": plots.outlier_gallery(images, x[:, 0], top=10, path=tmp_path / "outliers.png"),
        "knn.png": plots.knn_retrieval(images, x, queries=[0, 50], k=5, path=tmp_path / "knn.png"),
        "recon.png": plots.reconstructions(images[:6], images[6:12], path=tmp_path / "recon.png"),
    }
    for name in paths:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG" if name.endswith("png") else b"%PDF"), name
        assert len(data) > 2000
    legend = paths["scatter.png"].axes[0].get_legend()
    assert len(legend.get_texts()) == 12
    cluster_axes = paths["clusters.png"].axes
    assert len(cluster_axes) == 12 * 5  # a row per cluster, n per row


def shown_objects(fig, n_objects):
    """Indices of the objects a figure of :func:`index_images` shows, row by row."""
    return [
        round(float(ax.get_images()[0].get_array()[0, 0]) * n_objects) for ax in fig.axes if ax.get_images()
    ]


def index_images(n):
    """Image ``i`` is constant ``i / n``: a figure's pixels tell which objects it shows."""
    return np.broadcast_to((np.arange(n) / n)[:, None, None, None], (n, 1, 4, 4)).copy()


def test_cluster_samples_and_outlier_gallery_show_the_right_objects():
    x, y = blobs(n_per=9, k=3, d=5, spread=1.0, seed=4)
    images = index_images(len(x))
    shown = {}
    for mode in ("typical", "top"):
        fig = plots.cluster_samples(images, y, x, n=4, mode=mode)
        shown[mode] = shown_objects(fig, len(x))
        expected = []
        for c in range(3):
            members = np.flatnonzero(y == c)
            d = np.linalg.norm(x[members] - x[members].mean(0), axis=1)  # to the cluster's centre
            expected += list(members[np.argsort(d if mode == "typical" else -d, kind="stable")[:4]])
        assert shown[mode] == expected, mode
    random_rows = shown_objects(plots.cluster_samples(images, y, n=4, mode="random", seed=1), len(x))
    assert [y[i] for i in random_rows] == [0] * 4 + [1] * 4 + [2] * 4 and len(set(random_rows)) == 12
    with pytest.raises(ValueError, match="mode must be"):
        plots.cluster_samples(images, y, x, mode="central")

    scores = np.round(np.random.default_rng(0).random(len(x)), 1)  # many tied scores
    gallery = plots.outlier_gallery(images, scores, top=10)
    order = sorted(range(len(x)), key=lambda i: (-scores[i], i))[:10]  # highest first, ties by index
    assert shown_objects(gallery, len(x)) == order
    titles = [ax.get_title() for ax in gallery.axes if ax.get_images()]
    assert titles == [f"#{rank} ({scores[i]:.2f})" for rank, i in enumerate(order)]


def readme_analysis_figures():
    """The figure files that the README's Analysis section promises."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Analysis\n") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"`(\w+\.png)`", section)


def png_size(path):
    """Width and height from a PNG's header (and a check that it is one)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def best_one_to_one_matches(table):
    """Most objects on the diagonal over every one-to-one matching of rows to columns (brute force)."""
    n = max(table.shape)
    square = np.zeros((n, n), dtype=int)
    square[: table.shape[0], : table.shape[1]] = table
    return max(square[np.arange(n), list(perm)].sum() for perm in itertools.permutations(range(n)))


def report_numbers(text):
    """``name -> value`` of the ``- name: value`` lines of report.md."""
    return dict(re.findall(r"^- (\w+): (-?[0-9.]+)$", text, flags=re.M))


def test_cli_writes_every_promised_file(tmp_path, monkeypatch):
    import run
    import utils
    from analysis.__main__ import main
    from configs.schema import load_config
    from data import generate_shapes
    from data.datasets import load_dataset

    monkeypatch.delenv("WANDB_MODE", raising=False)
    data = tmp_path / "shapes"
    generate_shapes.main(["--n", "96", "--n-test", "48", "--size", "16", "--out", str(data)])
    overrides = [f"data.data_dir={data}", f"logging.out_dir={tmp_path}", "logging.wandb_mode=disabled"]
    run_dir = run.train(load_config("configs.config_tiny", overrides))
    out = tmp_path / "analysis"
    report = main([str(run_dir), "--data", str(data), "--out", str(out)])
    expected = [
        "profiles.h5ad",
        "profiles.parquet",
        "profiles.csv",
        "umap.png",
        "umap_mosaic.png",
        "clusters_typical.png",
        "clusters_random.png",
        "outliers.png",
        "knn_retrieval.png",
        "invariance.png",
    ]
    for name in expected:
        assert (out / name).stat().st_size > 500, name
    table = pd.read_parquet(out / "profiles.parquet")
    assert len(table) == 48 and {"label", "cluster", "outlier_score", "angle", "flip", "z0"} <= set(
        table.columns
    )
    text = report.read_text()
    assert "purity" in text and "logistic probe accuracy" in text and "| rot90 |" in text

    # every figure the README promises: a real PNG, shown in report.md
    figures = readme_analysis_figures()
    assert set(expected) - set(figures) == {"profiles.h5ad", "profiles.parquet", "profiles.csv"}
    assert "latent_traversal.png" in figures
    for name in figures:
        assert (out / name).stat().st_size > 5000, name
        width, height = png_size(out / name)
        assert width >= 200 and height >= 100, (name, width, height)
        assert f"]({name})" in text, name

    # the profiles: the test images in order, their labels, and their embeddings by the one embedding function
    arrays = load_dataset(data)
    np.testing.assert_array_equal(table["image_index"], np.arange(48))
    np.testing.assert_array_equal(table["label"], arrays["y_test"])
    z = table[[f"z{i}" for i in range(4)]].to_numpy()
    assert list(table.columns[-4:]) == ["z0", "z1", "z2", "z3"]
    expected_z = utils.get_model_embeddings_from_tensors(
        run.load_model(run_dir), arrays["X_test"], progress=False
    )
    np.testing.assert_allclose(z, expected_z, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table["cluster"], clustering.cluster(z, "kmeans", n_clusters=6, seed=0))

    # the report's clustering scores, recomputed from the profiles without analysis.metrics
    counts = pd.crosstab(table["cluster"], table["label"]).to_numpy()
    assert counts.shape == (6, 6)
    numbers = report_numbers(text)
    assert numbers["purity"] == f"{counts.max(axis=1).sum() / 48:.3f}"
    assert numbers["hungarian_accuracy"] == f"{best_one_to_one_matches(counts) / 48:.3f}"
    assert numbers["ari"] == f"{adjusted_rand_score(table['label'], table['cluster']):.3f}"
    assert numbers["nmi"] == f"{normalized_mutual_info_score(table['label'], table['cluster']):.3f}"
    with pytest.raises(SystemExit, match="already holds files"):
        main([str(run_dir), "--data", str(data), "--out", str(out)])


def test_cli_reads_data_in_the_models_value_range_not_its_own(tmp_path):
    """A 'minmax' model trained on [0, 255] embeds data holding only 0..100 as x / 255, not x / max(x)."""
    import run
    from analysis.__main__ import load_images, main
    from configs.schema import load_config
    from data.datasets import DatasetError
    from data.generate_shapes import make_shapes
    from models.build import save_checkpoint

    config = load_config("configs.config_tiny", ["data.rescale=minmax", "data.value_range=[0.0, 255.0]"])
    torch.manual_seed(0)
    model = run.build_model_from_config(config)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_checkpoint(run_dir / "model.pt", model, torch.optim.Adam(model.parameters()), 1, config, None, {})
    model = run.load_model(run_dir)
    assert model.config.data.value_range == [0.0, 255.0]

    data = tmp_path / "dim_data"  # no labels, values 0 .. 100 only
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 30)):
        np.save(data / f"X_{split}.npy", np.round(make_shapes(n, rng, size=16)[0] * 100.0))
    stored = np.load(data / "X_test.npy")
    assert stored.min() == 0 and 90 < stored.max() <= 100

    images, labels, split, n_split = load_images(model, data)
    assert (split, n_split, labels) == ("test", 30, None)
    np.testing.assert_allclose(images, stored / 255.0, rtol=1e-6)

    import matplotlib.pyplot as plt

    open_figures = set(plt.get_fignums())
    out = tmp_path / "analysis"
    report = main([str(run_dir), "--data", str(data), "--out", str(out), "--n-clusters", "3"])
    assert set(plt.get_fignums()) == open_figures  # every figure closed once saved
    table = pd.read_parquet(out / "profiles.parquet")
    z = table[[f"z{i}" for i in range(4)]].to_numpy()
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(stored / 255.0).float())[0].numpy()
        own_range = model.encoder(torch.from_numpy(stored / stored.max()).float())[0].numpy()
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(own_range - expected).max() > 1e-3  # the data's own range gives other embeddings
    text = report.read_text()
    assert "Stored values [0, 255]" in text and "no labels; cluster sizes" in text
    assert "label" not in table.columns

    np.save(data / "X_test.npy", stored * 3.0)  # outside the model's range: refused, not rescaled
    with pytest.raises(DatasetError, match=r"must lie in the range \[0, 255\]"):
        load_images(model, data)


class FlattenEmbedding(torch.nn.Module):
    """A 'model' whose embedding is the image itself: every change can be computed by hand."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

    def embed(self, x):
        return x.flatten(1)


def test_grid_symmetry_change_against_direct_computation():
    from analysis.invariance import grid_symmetry_change, invariance_report

    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    report = grid_symmetry_change(FlattenEmbedding(), x)
    base = x.reshape(5, -1)
    for name, transformed in [
        # rot90 and rot270 move this embedding by the same amount, so only one is checked
        ("rot90", np.rot90(x, 1, axes=(-2, -1))),
        ("rot180", np.rot90(x, 2, axes=(-2, -1))),
        ("flip + rot0", x[..., ::-1]),
        ("flip + rot270", np.rot90(x[..., ::-1], 3, axes=(-2, -1))),
    ]:
        change = np.linalg.norm(transformed.reshape(5, -1) - base, axis=1) / np.linalg.norm(base, axis=1)
        assert report[name] == pytest.approx(change.max(), rel=1e-5)
    assert len(report) == 7
    full = invariance_report(FlattenEmbedding(), x)
    assert {k: full[k] for k in report} == pytest.approx(report)
    assert 0 < full["random rotation + flip"] and 0 < full["orientation sensitivity"]


class RecordingEmbedding(FlattenEmbedding):
    """:class:`FlattenEmbedding` of a model trained with 'minmax' on [0, 255], recording what it embeds."""

    def __init__(self):
        from configs.schema import load_config

        super().__init__()
        self.config = load_config(
            "configs.config_tiny", ["data.rescale=minmax", "data.value_range=[0.0, 255.0]"]
        )
        self.seen = []

    def embed(self, x):
        self.seen.append(x.clone())
        return super().embed(x)


def test_invariance_embeds_images_in_0_1_as_they_are_for_minmax_models():
    from analysis.invariance import grid_symmetry_change, invariance_report, orientation_sensitivity

    x = np.random.default_rng(1).random((6, 1, 8, 8)).astype(np.float32)
    for measure in (grid_symmetry_change, invariance_report, orientation_sensitivity):
        model = RecordingEmbedding()
        measure(model, x, batch_size=4)
        assert len(model.seen) > 1
        assert all(0.0 <= float(b.min()) and float(b.max()) <= 1.0 for b in model.seen), measure.__name__
        assert float(max(b.max() for b in model.seen)) > 0.9  # not divided by 255 again
        if measure is not orientation_sensitivity:  # the originals are embedded first, unchanged
            np.testing.assert_array_equal(torch.cat(model.seen[:2]).numpy(), x)


def test_channel_composites_add_each_channel_in_its_colour():
    rng = np.random.default_rng(0)
    two = rng.random((2, 5, 5))
    rgb = plots.composite(two)
    np.testing.assert_allclose(rgb[..., 0], two[0])
    np.testing.assert_allclose(rgb[..., 1], two[1])
    assert (rgb[..., 2] == 0).all()
    four = rng.random((4, 5, 5))  # the 4th channel is magenta: added to red and blue, then clipped
    expected = np.stack([four[0] + four[3], four[1], four[2] + four[3]], -1).clip(0, 1)
    np.testing.assert_allclose(plots.composite(four), expected)
    np.testing.assert_array_equal(plots.composite(two[:1]), two[0])
    with pytest.raises(ValueError, match="at most 6 channels"):
        plots.composite(rng.random((7, 5, 5)))
    figure = plots.mosaic(rng.random((10, 2)), rng.random((10, 2, 8, 8)), grid=4)
    assert figure.axes[0].images[0].get_array().shape == (32, 32, 3)
