"""Profile a dataset with a trained model: ``python -m analysis RUN_DIR --data DATA_DIR --out OUT_DIR``.

Writes to OUT_DIR: profiles (``profiles.h5ad``, ``profiles.parquet``, ``profiles.csv``: one row
per image with its label, metadata, cluster and outlier score, then the embedding), a UMAP
scatter and image mosaic, sample grids per cluster, a gallery of the top outliers, nearest-
neighbour retrievals, a latent traversal along the first principal axis, the invariance report
(table and plot) and ``report.md`` with the metrics; with ``--explorer``, ``explorer.html``, an
interactive page of the profiles and their images (``analysis.explorer``).

The images are read in the model's training value range (``data.value_range`` of a model
trained with ``data.rescale = 'minmax'``), whatever the range of the data given: the same
stored value always gives the same embedding.
"""

import argparse
import pathlib
import sys

import numpy as np
import torch

from analysis import clustering, metrics, outliers, plots, projection
from analysis.classification import probe_accuracy
from analysis.explorer import write_explorer
from analysis.invariance import invariance_report
from analysis.profiles import export_profiles, model_provenance
from data.datasets import split_metadata


def load_images(model, data_dir, split="test", max_images=5000):
    """The first images of a dataset split in the model's input scale [0, 1], with their labels.

    Parameters
    ----------
    model : VAE
        A trained model (``run.load_model``); its training value range
        (``utils.model_value_range``) is mapped to [0, 1], never the data's own min and max.
    data_dir : str or Path
        Dataset directory (see ``data.datasets.load_dataset``).
    split : {'test', 'train'}
        The split to read; 'train' when the dataset has no test split.
    max_images : int
        Read at most this many images (the first ones).

    Returns
    -------
    images : numpy.ndarray of float32, shape (n, c, h, w)
        ``(x - lo) / (hi - lo)`` of the stored images ``x`` (``data.datasets.to_model_input``), at
        their stored size (``utils.get_model_embeddings_from_tensors`` resizes them for models
        trained with ``data.resize``).
    labels : numpy.ndarray of int64, shape (n,), or None
    split : str
        The split read.
    n_split : int
        Number of images in the whole split.

    Raises
    ------
    data.datasets.DatasetError
        If the data does not lie in the model's value range, or is not a valid dataset.
    ValueError
        If the model uses ``data.rescale = 'minmax'`` but holds no ``data.value_range``.
    """
    import utils
    from analysis.scores import load_for_model
    from data.datasets import to_model_input

    value_range = utils.model_value_range(model)  # raises for a 'minmax' model without a range
    arrays = load_for_model(model, data_dir)
    if arrays[f"X_{split}"] is None:
        split = "train"
    x, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
    n = min(len(x), max_images)
    images = to_model_input(torch.from_numpy(np.array(x[:n], dtype=np.float32)), value_range).numpy()
    return images, None if y is None else np.asarray(y[:n]), split, len(x)


def analyse(
    run_dir, data_dir, out_dir, split="test", n_clusters=None, max_images=5000, seed=0, explorer=False
):
    """Run the whole analysis of one dataset split with one trained model.

    Parameters
    ----------
    run_dir : str or Path
        Run directory (or ``model.pt``) of a trained model.
    data_dir : str or Path
        Dataset directory; its values must lie in the model's training value range.
    out_dir : str or Path
        Where the profiles, figures and ``report.md`` are written.
    split : {'test', 'train'}
        Split to analyse ('train' when the dataset has no test split).
    n_clusters : int, optional
        KMeans clusters (default: the number of labels, else 10).
    max_images : int
        Analyse the first ``max_images`` images only.
    seed : int
        Seed of clustering, outlier scores, UMAP and the invariance report.
    explorer : bool
        Also write ``explorer.html``, the interactive page of :func:`analysis.explorer.write_explorer`
        (UMAP and PCA, coloured by label, cluster, outlier score or any metadata column).

    Returns
    -------
    pathlib.Path
        The path of ``report.md``.
    """
    import matplotlib.pyplot as plt

    import run
    import utils

    out_dir = pathlib.Path(out_dir)
    model = run.load_model(run_dir)
    images, y, split, n_split = load_images(model, data_dir, split, max_images)
    n = len(images)
    print(f"embedding {n} {split} images of {data_dir} with {run_dir}")
    emb = utils.get_model_embeddings_from_tensors(model, images, rescale=False)

    k = n_clusters or (len(np.unique(y)) if y is not None else 10)
    found = clustering.cluster(emb, "kmeans", n_clusters=k, seed=seed)
    scores = outliers.outlier_scores(emb, "isolation_forest", seed=seed)
    obs = {"image_index": np.arange(n)} | split_metadata(data_dir, split, n_split)
    obs = {key: value[:n] for key, value in obs.items()}
    if y is not None:
        obs["label"] = y
    obs |= {"cluster": found, "outlier_score": scores}
    export_profiles(emb, out_dir / "profiles", obs=obs, uns=model_provenance(model, run_dir))

    points = projection.umap(emb, seed=seed)
    if explorer:
        ids = obs["image_index"]
        if "source_image" in obs and "object_id" in obs:  # data.prepare's datasets: label per image
            ids = [
                f"{image}:{label}" for image, label in zip(obs["source_image"], obs["object_id"], strict=True)
            ]
        columns = {key: value for key, value in obs.items() if key != "image_index"}
        layouts = {"UMAP": points, "PCA": projection.pca(emb)}
        write_explorer(out_dir / "explorer.html", emb, images, ids, columns, layouts, seed=seed)
    colour = y if y is not None else found
    figures = [
        plots.scatter(points, colour, title="UMAP of embeddings", path=out_dir / "umap.png"),
        plots.mosaic(points, images, grid=24, path=out_dir / "umap_mosaic.png", title="UMAP mosaic"),
        plots.cluster_samples(
            images, found, emb, n=10, mode="typical", path=out_dir / "clusters_typical.png"
        ),
        plots.cluster_samples(
            images, found, emb, n=10, mode="random", seed=seed, path=out_dir / "clusters_random.png"
        ),
        plots.outlier_gallery(images, scores, top=24, path=out_dir / "outliers.png"),
        plots.knn_retrieval(
            images, emb, queries=np.arange(min(6, n)), k=8, path=out_dir / "knn_retrieval.png"
        ),
        plots.latent_traversal(model, emb, component=0, path=out_dir / "latent_traversal.png"),
    ]
    report = invariance_report(model, images[: min(n, 500)], seed=seed)
    figures.append(plots.invariance_plot(report, path=out_dir / "invariance.png"))
    for fig in figures:  # saved; pyplot would keep them open for the life of the process
        plt.close(fig)

    lo, hi = utils.model_value_range(model)
    lines = [
        f"# Analysis of {data_dir} ({split}, {n} images)",
        "",
        f"Model: `{run_dir}` ({model.config.model.encoder} encoder, zdim {model.config.model.zdim}).",
        f"Stored values [{lo:g}, {hi:g}] (the model's training range) are mapped to [0, 1].",
        "",
        f"## Clusters (KMeans, k = {k})",
        "",
    ]
    if y is not None:
        for name, value in metrics.clustering_scores(y, found).items():
            lines.append(f"- {name}: {value:.3f}")
        for kind in ("knn", "logistic"):
            probe = probe_accuracy(emb, y, kind=kind, seed=seed)
            lines.append(f"- {kind} probe accuracy (5-fold): {probe['mean']:.3f} +/- {probe['sd']:.3f}")
    else:
        sizes = np.bincount(found)
        lines.append(f"- no labels; cluster sizes: {sizes.tolist()}")
    lines += ["", "![UMAP](umap.png)", "![mosaic](umap_mosaic.png)", ""]
    lines += ["Members nearest each cluster's centre, then random members:", ""]
    lines += ["![typical members](clusters_typical.png)", "![random members](clusters_random.png)", ""]
    lines += ["## Outliers (isolation forest)", "", "![outliers](outliers.png)", ""]
    lines += ["## Nearest neighbours in embedding space", "", "![retrievals](knn_retrieval.png)", ""]
    lines += ["## Latent traversal (first principal axis)", "", "![traversal](latent_traversal.png)", ""]
    lines += ["## Invariance (relative embedding change)", "", "| transform | change |", "|---|---|"]
    lines += [f"| {name} | {value:.2e} |" for name, value in report.items()]
    lines += ["", "![invariance](invariance.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    print(f"wrote {out_dir}: profiles (.h5ad, .parquet, .csv), figures and report.md")
    return path


def main(argv=None):
    """Command line: ``python -m analysis RUN_DIR --data DATA_DIR --out OUT_DIR``; see :func:`analyse`."""
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument(
        "run_dir", help="run directory or model.pt of a trained model, or a shipped one: pretrained/o2mnist"
    )
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--out", required=True, help="output directory (must be new or empty)")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--n-clusters", type=int, default=None, help="default: number of labels, else 10")
    parser.add_argument("--max-images", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--explorer", action="store_true", help="also write explorer.html, an interactive page (offline)"
    )
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    if out.is_dir() and any(out.iterdir()):
        sys.exit(f"error: {out} already holds files; choose a new output directory")
    out.mkdir(parents=True, exist_ok=True)
    return analyse(
        args.run_dir, args.data, out, args.split, args.n_clusters, args.max_images, args.seed, args.explorer
    )


if __name__ == "__main__":
    main()
