"""Profile a dataset with a trained model: ``python -m analysis RUN_DIR --data DATA_DIR --out OUT_DIR``.

Writes to OUT_DIR: profiles (``profiles.h5ad``, ``profiles.parquet``, ``profiles.csv``: one row
per image with its label, metadata, cluster and outlier score, then the embedding), a UMAP
scatter and image mosaic, sample grids per cluster, a gallery of the top outliers, nearest-
neighbour retrievals, a latent traversal along the first principal axis, the invariance report
(table and plot) and ``report.md`` with the metrics.
"""

import argparse
import pathlib
import sys

import numpy as np

from analysis import clustering, metrics, outliers, plots, projection
from analysis.classification import probe_accuracy
from analysis.invariance import invariance_report
from analysis.profiles import export_profiles, extract_embeddings, model_provenance


def split_metadata(data_dir, split, n):
    """The 1-D per-image arrays of ``meta_<split>.npz`` (e.g. source, object id, true angle)."""
    path = pathlib.Path(data_dir) / f"meta_{split}.npz"
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as meta:
        return {k: meta[k] for k in meta.files if meta[k].ndim == 1 and len(meta[k]) == n}


def analyse(run_dir, data_dir, out_dir, split="test", n_clusters=None, max_images=5000, seed=0):
    """Run the whole analysis; returns the path of ``report.md``."""
    import run
    from data.datasets import ImageDataset, load_dataset

    out_dir = pathlib.Path(out_dir)
    model = run.load_model(run_dir)
    arrays = load_dataset(data_dir, rescale=model.config.data.rescale)
    if arrays[f"X_{split}"] is None:
        split = "train"
    x, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
    n = min(len(x), max_images)
    x, y = x[:n], None if y is None else np.asarray(y[:n])
    dset = ImageDataset(x, y, value_range=arrays["value_range"])
    images = np.stack([dset[i][0].numpy() for i in range(n)])
    print(f"embedding {n} {split} images of {data_dir} with {run_dir}")
    emb = extract_embeddings(model, dset)

    k = n_clusters or (len(np.unique(y)) if y is not None else 10)
    found = clustering.cluster(emb, "kmeans", n_clusters=k, seed=seed)
    scores = outliers.outlier_scores(emb, "isolation_forest", seed=seed)
    obs = {"image_index": np.arange(n)} | split_metadata(data_dir, split, len(arrays[f"X_{split}"]))
    obs = {key: value[:n] for key, value in obs.items()}
    if y is not None:
        obs["label"] = y
    obs |= {"cluster": found, "outlier_score": scores}
    export_profiles(emb, out_dir / "profiles", obs=obs, uns=model_provenance(model, run_dir))

    points = projection.umap(emb, seed=seed)
    colour = y if y is not None else found
    plots.scatter(points, colour, title="UMAP of embeddings", path=out_dir / "umap.png")
    plots.mosaic(points, images, grid=24, path=out_dir / "umap_mosaic.png", title="UMAP mosaic")
    plots.cluster_samples(images, found, emb, n=10, mode="typical", path=out_dir / "clusters_typical.png")
    plots.cluster_samples(
        images, found, emb, n=10, mode="random", seed=seed, path=out_dir / "clusters_random.png"
    )
    plots.outlier_gallery(images, scores, top=24, path=out_dir / "outliers.png")
    plots.knn_retrieval(images, emb, queries=np.arange(min(6, n)), k=8, path=out_dir / "knn_retrieval.png")
    plots.latent_traversal(model, emb, component=0, path=out_dir / "latent_traversal.png")
    report = invariance_report(model, images[: min(n, 500)], seed=seed)
    plots.invariance_plot(report, path=out_dir / "invariance.png")

    lines = [
        f"# Analysis of {data_dir} ({split}, {n} images)",
        "",
        f"Model: `{run_dir}` ({model.config.model.encoder} encoder, zdim {model.config.model.zdim}).",
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
    lines += ["", "![UMAP](umap.png)", "![mosaic](umap_mosaic.png)", "![clusters](clusters_typical.png)", ""]
    lines += ["## Outliers (isolation forest)", "", "![outliers](outliers.png)", ""]
    lines += ["## Invariance (relative embedding change)", "", "| transform | change |", "|---|---|"]
    lines += [f"| {name} | {value:.2e} |" for name, value in report.items()]
    lines += ["", "![invariance](invariance.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    print(f"wrote {out_dir}: profiles (.h5ad, .parquet, .csv), figures and report.md")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("run_dir", help="run directory (or model.pt) of a trained model")
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--out", required=True, help="output directory (must be new or empty)")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--n-clusters", type=int, default=None, help="default: number of labels, else 10")
    parser.add_argument("--max-images", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    if out.is_dir() and any(out.iterdir()):
        sys.exit(f"error: {out} already holds files; choose a new output directory")
    out.mkdir(parents=True, exist_ok=True)
    return analyse(args.run_dir, args.data, out, args.split, args.n_clusters, args.max_images, args.seed)


if __name__ == "__main__":
    main()
