"""Does orientation invariance pay off, on which data, at what cost? Nine representations compared.

    .venv/bin/python benchmarks/bench_representations.py --quick            # minutes, 3 seeds
    .venv/bin/python benchmarks/bench_representations.py --full             # see BENCHMARKS.md
    .venv/bin/python benchmarks/bench_representations.py --quick --data-dir my_data   # also your data

Methods (embedding size = the VAE's latent size where that applies):

1. ``o2vae``: the O2-VAE default preset (configs.config_o2mnist; config_shapes, config_nuclei);
2. ``o2vae_paper``: the paper's continuous-O(2) encoder (configs.config_o2mnist_paper's encoder on
   every dataset); it trains at 1/20 to 1/40 of the default's speed, so it gets a smaller budget:
   the same epochs over the first ``Scale.paper_images / epochs`` training images (column
   ``train_images``);
3. ``vanilla``: plain CNN VAE, unaligned loss (configs.config_o2mnist_vanilla's encoder);
4. ``vanilla_aug``: the same, trained with random rotations and flips;
5. ``vanilla_prealigned_moments``: the vanilla VAE on ``prealign(x, "moments+refine")`` images;
6. ``vanilla_prealigned_template``: the vanilla VAE on ``prealign(x, "template")`` images;
7. ``pca``: PCA of the pixels;
8. ``pca_prealigned``: PCA of template-prealigned pixels;
9. ``handcrafted``: :func:`analysis.features.handcrafted_features`, standardised.

Every method fits on the same training images; learned methods train for the same epochs
(``run.train``, seeded). Prealignment methods prealign every set of images they embed (the
pipeline is prealign-then-embed), each set on its own: the training set, the evaluation set and
each set of rotated views of the invariance measure.

Metrics, on the evaluation images (the test split; for the unlabelled nuclei, every crop):
``orientation_sensitivity`` (:func:`analysis.invariance.orientation_sensitivity`: two random
orientations of each source, distance over the median distance between objects; methods that are
not a model are wrapped by :class:`EmbedAdapter` so that the same code measures them), kNN (k=5)
and logistic probe accuracy (5-fold CV, :func:`analysis.classification.probe_accuracy`), KMeans
purity, ARI and NMI at the true number of classes, and for the nuclei the fraction of crops whose
nearest neighbour comes from the same source image (``same_source_nn``, with its chance level);
``fit_s`` (training, prealignment of the training set, feature extraction) and
``embed_10k_s`` (time to embed ``timing_n`` images, scaled to 10,000).

Writes ``results.csv`` (one row per dataset, method and seed), ``results.md`` (mean +/- sd over
seeds) and ``umap_<dataset>.png`` (one UMAP per method, seed 0, coloured by class or source) to
``--out`` (default ``logs/bench_representations``).
"""

import argparse
import dataclasses
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = (
    "o2vae",
    "o2vae_paper",
    "vanilla",
    "vanilla_aug",
    "vanilla_prealigned_moments",
    "vanilla_prealigned_template",
    "pca",
    "pca_prealigned",
    "handcrafted",
)
VAE_METHODS = METHODS[:6]
PREALIGN = {
    "vanilla_prealigned_moments": "moments+refine",
    "vanilla_prealigned_template": "template",
    "pca_prealigned": "template",
}
# the paper's encoder (configs/config_o2mnist_paper.py), applied to every dataset's preset
PAPER_ENCODER = [
    "model.encoder=o2",
    "model.group=o2",
    "model.max_frequency=3",
    "model.layer_type=induced_gated",
    "model.encoder_channels=[6, 9, 12, 12, 19]",
    "model.encoder_downsample=[False, True, False, True, False]",
    "model.encoder_out=25",
    "model.kernel_size=5",
]
# the vanilla encoder and loss (configs/config_o2mnist_vanilla.py)
VANILLA_ENCODER = [
    "model.encoder=vanilla",
    "model.encoder_channels=[32, 64, 96, 128]",
    "model.encoder_downsample=[True, True, True, False]",
    "model.kernel_size=3",
    "model.align=none",
]
PRESETS = {
    "o2mnist": "configs.config_o2mnist",
    "shapes": "configs.config_shapes",
    "nuclei": "configs.config_nuclei",
}


@dataclasses.dataclass
class Scale:
    """Sizes of one benchmark scale."""

    size: int  # image size of O2-shapes and the nuclei (O2-MNIST is always 32 px)
    n_train: int  # training images of O2-MNIST and O2-shapes (the nuclei have 228)
    n_eval: int  # evaluation images of O2-MNIST and O2-shapes (test split; the nuclei: all 285)
    epochs: int  # O2-MNIST and O2-shapes
    nuclei_epochs: int
    batch_size: int  # O2-MNIST and O2-shapes (the nuclei: their preset's 32)
    paper_images: dict  # image size -> image-passes (images x epochs) of the paper encoder
    n_sources: int  # objects of the orientation sensitivity
    timing_n: int  # images embedded for the timing (scaled to 10,000)
    seeds: int
    prealign_iter: int  # max_iter of the refinement and template prealignment


SCALES = {
    "quick": Scale(
        size=32,
        n_train=300,
        n_eval=200,
        epochs=4,
        nuclei_epochs=4,
        batch_size=64,
        paper_images={32: 200},
        n_sources=60,
        timing_n=60,
        seeds=3,
        prealign_iter=10,
    ),
    "full": Scale(
        size=64,
        n_train=3000,
        n_eval=1000,
        epochs=5,
        nuclei_epochs=30,
        batch_size=64,
        paper_images={32: 2000, 64: 600},
        n_sources=300,
        timing_n=300,
        seeds=1,
        prealign_iter=10,
    ),
}
# O2-MNIST at the full scale: more images (it is 32 px, 4x cheaper per image than 64 px)
FULL_O2MNIST_TRAIN = 5000


@dataclasses.dataclass
class Dataset:
    """Images in [0, 1] as float32 arrays (n, c, h, w)."""

    name: str
    preset: str
    x_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray | None  # classes, or None
    groups: np.ndarray | None  # source image of each evaluation image (nuclei), or None
    sources: np.ndarray  # objects for the orientation sensitivity
    threshold: object  # object mask of the hand-crafted features
    epochs: int
    y_train: np.ndarray | None = None


class EmbedAdapter(torch.nn.Module):
    """Any function of images ``(n, c, h, w)`` in [0, 1] -> ``(n, d)``, shaped like a model.

    ``utils.get_model_embeddings_from_tensors`` (and so :mod:`analysis.invariance`) embeds with
    ``model.embed`` in eval mode; ``config`` None means the images are used as they are.
    """

    config = None

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # gives the device

    def embed(self, x):
        return torch.as_tensor(np.asarray(self.fn(x.cpu()), dtype=np.float32))


# ---------------------------------------------------------------- data


def _load(path):
    from data.datasets import load_array

    return load_array(path)


def load_split(path, split):
    """``(images, labels)`` of one split of a dataset directory (labels None where absent)."""
    from data.datasets import load_dataset

    d = load_dataset(path)
    if d[f"X_{split}"] is None:
        raise FileNotFoundError(f"{path} has no X_{split}")
    return d[f"X_{split}"], d[f"y_{split}"]


def _first(x, n):
    return np.asarray(x[:n], dtype=np.float32)


def load_o2mnist(scale, cache):
    from benchmarks.bench_training import upright_test_digits

    src = ROOT / "data" / "o2_mnist"
    if not (src / "X_train.sav").exists() and not (src / "X_train.npy").exists():
        src = cache / "o2_mnist"
        if not (src / "X_train.sav").exists():
            from data import generate_o2mnist

            generate_o2mnist.main(["--out", str(src)])
    x_train, y_train = load_split(src, "train")
    x_test, y_test = load_split(src, "test")
    n_train = FULL_O2MNIST_TRAIN if scale is SCALES["full"] else scale.n_train
    return Dataset(
        "o2mnist",
        PRESETS["o2mnist"],
        _first(x_train, n_train),
        _first(x_test, scale.n_eval),
        np.asarray(y_test[: scale.n_eval]),
        None,
        upright_test_digits(src, scale.n_sources),
        "otsu",
        scale.epochs,
        y_train=np.asarray(y_train[:n_train]),
    )


def load_shapes(scale, cache):
    from data import generate_shapes

    src = cache / f"o2_shapes_{scale.size}_{scale.n_train}_{scale.n_eval}"
    if not (src / "X_train.sav").exists():
        args = ["--n", str(scale.n_train), "--n-test", str(scale.n_eval), "--size", str(scale.size)]
        generate_shapes.main([*args, "--out", str(src), "--overwrite"])
    x_train, y_train = load_split(src, "train")
    x_test, y_test = load_split(src, "test")
    x_eval = _first(x_test, scale.n_eval)
    return Dataset(
        "shapes",
        PRESETS["shapes"],
        _first(x_train, scale.n_train),
        x_eval,
        np.asarray(y_test[: scale.n_eval]),
        None,
        x_eval[: scale.n_sources],
        "otsu",
        scale.epochs,
        y_train=np.asarray(y_train[: scale.n_train]),
    )


def load_nuclei(scale, cache):
    import pandas as pd

    from data import generate_nuclei

    src = ROOT / "data" / "nuclei"
    if not (src / "X_train.npy").exists() or _load(src / "X_train.npy").shape[-1] != scale.size:
        src = cache / f"nuclei_{scale.size}"
        if not (src / "X_train.npy").exists():
            generate_nuclei.main(["--size", str(scale.size), "--out", str(src), "--overwrite"])
    meta = pd.read_parquet(src / "metadata.parquet")
    x_train, x_test = (np.asarray(_load(src / f"X_{s}.npy"), dtype=np.float32) for s in ("train", "test"))
    groups = []
    for split in ("train", "test"):
        rows = meta[meta["split"] == split].sort_values("index_in_split")
        groups.append(rows["source"].astype(str).to_numpy())
    x_eval = np.concatenate([x_train, x_test])
    return Dataset(
        "nuclei",
        PRESETS["nuclei"],
        x_train,
        x_eval,
        None,
        np.concatenate(groups),
        x_eval[: scale.n_sources],
        0.0,  # data.prepare zeroes the background
        scale.nuclei_epochs,
    )


def load_directory(path, scale):
    """A dataset directory given on the command line: its test split (or training set) is evaluated."""
    path = pathlib.Path(path)
    x_train, y_train = load_split(path, "train")
    try:
        x_test, y_test = load_split(path, "test")
    except FileNotFoundError:
        x_test, y_test = x_train, y_train
    x_train = _first(x_train, scale.n_train)
    x_eval = _first(x_test, scale.n_eval)
    if x_train.min() < 0 or x_train.max() > 1:
        raise ValueError(f"{path}: this benchmark needs images in [0, 1]")
    preset = PRESETS["o2mnist"] if x_train.shape[-1] == 32 else PRESETS["shapes"]
    return Dataset(
        path.name,
        preset,
        x_train,
        x_eval,
        None if y_test is None else np.asarray(y_test[: scale.n_eval]),
        None,
        x_eval[: scale.n_sources],
        "otsu",
        scale.epochs,
        y_train=None if y_train is None else np.asarray(y_train[: scale.n_train]),
    )


def write_npy_dataset(directory, x_train, x_test):
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "X_train.npy", np.ascontiguousarray(x_train, dtype=np.float32))
    np.save(directory / "X_test.npy", np.ascontiguousarray(x_test, dtype=np.float32))
    return directory


# ---------------------------------------------------------------- methods


def prealigned(x, method, scale):
    from prealignment import prealign

    kwargs = {} if method == "moments" else {"max_iter": scale.prealign_iter}
    images = prealign(torch.from_numpy(np.array(x, dtype=np.float32)), method, **kwargs).images
    return images.clamp(0.0, 1.0).numpy()


def paper_train(dset, scale, batch_size):
    """Training images of the paper encoder: its image-pass budget over the epochs, at least one batch."""
    budget = scale.paper_images[dset.x_train.shape[-1]] // dset.epochs
    return int(min(len(dset.x_train), max(batch_size, budget)))


def train_vae(method, dset, scale, seed, data_dir, work):
    """Train one VAE with ``run.train``; returns the model."""
    import run
    from configs.schema import load_config

    size = dset.x_train.shape[-1]
    epochs = dset.epochs
    overrides = [
        f"data.data_dir={data_dir}",
        "data.limit_train=None",
        f"model.image_size={size}",
        f"model.in_channels={dset.x_train.shape[1]}",
        f"training.epochs={epochs}",
        f"training.validate_every={epochs}",
        f"training.checkpoint_every={epochs}",
        f"training.seed={seed}",
        "training.device=cpu",
        "logging.wandb_mode=disabled",
        "logging.n_images=0",
        f"logging.out_dir={work / 'runs'}",
    ]
    if dset.name != "nuclei":
        overrides.append(f"data.batch_size={scale.batch_size}")
    preset = dset.preset
    if method == "o2vae_paper":
        if dset.name == "o2mnist":
            preset = "configs.config_o2mnist_paper"
        else:
            overrides += PAPER_ENCODER
        batch = scale.batch_size if dset.name != "nuclei" else load_config(preset).data.batch_size
        overrides.append(f"data.limit_train={paper_train(dset, scale, batch)}")
    elif method.startswith("vanilla"):
        if dset.name == "o2mnist":
            preset = "configs.config_o2mnist_vanilla"
        else:
            overrides += VANILLA_ENCODER
        augment = method == "vanilla_aug"
        overrides += [f"data.rotation_augmentation={augment}", f"data.flip_augmentation={augment}"]
    config = load_config(preset, overrides)
    return run.load_model(run.train(config), device="cpu")


def fit_method(method, dset, scale, seed, work, cache):
    """Fit ``method`` on the training images; returns ``(embed_fn, model_or_None, fit_seconds)``."""
    import utils

    start = time.perf_counter()
    extra = 0.0
    if method in VAE_METHODS:
        if method in PREALIGN:
            kind = PREALIGN[method]
            key = (dset.name, kind)
            if (
                key not in cache
            ):  # prealignment is deterministic: once per dataset, its time counted each time
                t0 = time.perf_counter()
                x_train = prealigned(dset.x_train, kind, scale)
                x_test = prealigned(dset.x_eval[:2], kind, scale)
                seconds = time.perf_counter() - t0
                cache[key] = (write_npy_dataset(work / f"{dset.name}_{kind}", x_train, x_test), seconds)
            data_dir, extra = cache[key]
            start = time.perf_counter()
        else:
            data_dir = cache[(dset.name, "raw")]
        model = train_vae(method, dset, scale, seed, data_dir, work)

        def vae_embed(x):
            return utils.get_model_embeddings_from_tensors(
                model, np.asarray(x, dtype=np.float32), progress=False, rescale=False
            )

        if method in PREALIGN:
            kind = PREALIGN[method]
            return (
                (lambda x: vae_embed(prealigned(x, kind, scale))),
                None,
                time.perf_counter() - start + extra,
            )
        return vae_embed, model, time.perf_counter() - start
    if method in ("pca", "pca_prealigned"):
        from sklearn.decomposition import PCA

        from configs.schema import load_config

        zdim = load_config(dset.preset).model.zdim
        prep = (lambda x: prealigned(x, "template", scale)) if method == "pca_prealigned" else np.asarray
        x_train = prep(dset.x_train).reshape(len(dset.x_train), -1)
        pca = PCA(n_components=zdim, random_state=seed).fit(x_train)

        def pca_embed(x):
            x = prep(x)
            return pca.transform(np.asarray(x).reshape(len(x), -1))

        return pca_embed, None, time.perf_counter() - start
    if method == "handcrafted":
        from sklearn.preprocessing import StandardScaler

        from analysis.features import handcrafted_features

        features, _ = handcrafted_features(dset.x_train, threshold=dset.threshold)
        scaler = StandardScaler().fit(features)

        def features_embed(x):
            values, _ = handcrafted_features(x, threshold=dset.threshold)
            return np.nan_to_num(scaler.transform(values))  # NaN (rare Haralick): the training mean

        return features_embed, None, time.perf_counter() - start
    raise ValueError(f"unknown method {method!r}")


# ---------------------------------------------------------------- metrics


def same_source_nn(embeddings, groups):
    """Fraction of objects whose nearest other object comes from the same source, and its chance level."""
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=2).fit(embeddings).kneighbors(embeddings)
    fraction = float(np.mean(groups[idx[:, 1]] == groups))
    _, counts = np.unique(groups, return_counts=True)
    chance = float((counts * (counts - 1)).sum() / (len(groups) * (len(groups) - 1)))
    return fraction, chance


def evaluate(method, dset, scale, seed, embed, model, fit_s):
    from analysis.classification import probe_accuracy
    from analysis.clustering import cluster
    from analysis.invariance import orientation_sensitivity
    from analysis.metrics import clustering_scores

    row = {"dataset": dset.name, "method": method, "seed": seed, "fit_s": fit_s}
    emb = np.asarray(embed(dset.x_eval), dtype=np.float64)
    row["dim"] = emb.shape[1]
    probe_model = model if model is not None else EmbedAdapter(embed)
    sens = orientation_sensitivity(probe_model, dset.sources, seed=seed, batch_size=len(dset.sources))
    row["orientation_sensitivity"] = sens["relative_distance"]
    if dset.y_eval is not None:
        row["knn"] = probe_accuracy(emb, dset.y_eval, "knn", seed=seed)["mean"]
        row["logistic"] = probe_accuracy(emb, dset.y_eval, "logistic", seed=seed)["mean"]
        k = len(np.unique(dset.y_eval))
        scores = clustering_scores(dset.y_eval, cluster(emb, "kmeans", k, seed=seed))
        row.update(purity=scores["purity"], ari=scores["ari"], nmi=scores["nmi"])
    if dset.groups is not None:
        row["same_source_nn"], row["same_source_chance"] = same_source_nn(emb, dset.groups)
    reps = -(-scale.timing_n // len(dset.x_eval))
    x_time = np.concatenate([dset.x_eval] * reps)[: scale.timing_n]
    start = time.perf_counter()
    embed(x_time)
    row["embed_10k_s"] = (time.perf_counter() - start) * 10000 / len(x_time)
    return row, emb


# ---------------------------------------------------------------- outputs

COLUMNS = (
    "dataset",
    "method",
    "seed",
    "train_images",
    "dim",
    "orientation_sensitivity",
    "knn",
    "logistic",
    "purity",
    "ari",
    "nmi",
    "same_source_nn",
    "same_source_chance",
    "fit_s",
    "embed_10k_s",
)
TABLE_COLUMNS = (
    ("orientation_sensitivity", "orientation sensitivity", 3),
    ("knn", "kNN acc (k=5)", 3),
    ("logistic", "logistic acc", 3),
    ("purity", "KMeans purity", 3),
    ("ari", "ARI", 3),
    ("nmi", "NMI", 3),
    ("same_source_nn", "NN same source", 3),
    ("fit_s", "fit (s)", 0),
    ("embed_10k_s", "embed 10k (s)", 1),
)


def markdown_table(frame):
    """One row per dataset and method, mean +/- sd over seeds (sd only with several seeds)."""
    lines = []
    for name, rows in frame.groupby("dataset", sort=False):
        cols = [c for c in TABLE_COLUMNS if c[0] in rows and rows[c[0]].notna().any()]
        n_seeds = rows["seed"].nunique()
        lines += [
            f"**{name}** ({n_seeds} seed{'s' if n_seeds > 1 else ''}"
            + (
                f"; NN same source by chance: {rows['same_source_chance'].iloc[0]:.3f}"
                if "same_source_chance" in rows and rows["same_source_chance"].notna().any()
                else ""
            )
            + ")",
            "",
            "| method | train images | dim | " + " | ".join(c[1] for c in cols) + " |",
            "|---|---|---|" + "---|" * len(cols),
        ]
        for method, m in rows.groupby("method", sort=False):
            cells = []
            for key, _, digits in cols:
                v = m[key].to_numpy(dtype=float)
                cell = f"{v.mean():.{digits}f}"
                if n_seeds > 1:
                    cell += f" +/- {v.std(ddof=1):.{digits}f}"
                cells.append(cell)
            head = f"| {method} | {int(m['train_images'].iloc[0])} | {int(m['dim'].iloc[0])} | "
            lines.append(head + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def umap_figure(embeddings, colours, title, path):
    import matplotlib.pyplot as plt

    from analysis.plots import save
    from analysis.projection import umap

    n = len(embeddings)
    cols = 3
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    classes = np.unique(colours)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, (method, emb) in zip(axes.flat, embeddings.items(), strict=False):
        points = umap(emb, seed=0)
        for k, c in enumerate(classes):
            ax.scatter(*points[colours == c].T, s=3, color=cmap(k % cmap.N), label=str(c), linewidths=0)
        ax.set_title(method, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(markerscale=3, fontsize=6, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------- main


def run_benchmark(scale_name, datasets, methods, seeds, out, data_dirs=(), work=None):
    import pandas as pd

    scale = SCALES[scale_name]
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        work = pathlib.Path(tmp)
        cache_dir = out / "data_cache"
        loaders = {"o2mnist": load_o2mnist, "shapes": load_shapes, "nuclei": load_nuclei}
        dsets = [loaders[name](scale, cache_dir) for name in datasets]
        dsets += [load_directory(path, scale) for path in data_dirs]
        rows = []
        csv = out / "results.csv"
        for dset in dsets:
            cache = {(dset.name, "raw"): write_npy_dataset(work / dset.name, dset.x_train, dset.x_eval[:2])}
            figure = {}
            for seed in range(seeds):
                for method in methods:
                    print(f"[{time.strftime('%H:%M:%S')}] {dset.name} {method} seed {seed}", flush=True)
                    embed, model, fit_s = fit_method(method, dset, scale, seed, work, cache)
                    row, emb = evaluate(method, dset, scale, seed, embed, model, fit_s)
                    row["train_images"] = len(dset.x_train)
                    if method == "o2vae_paper":
                        batch = 32 if dset.name == "nuclei" else scale.batch_size
                        row["train_images"] = paper_train(dset, scale, batch)
                    rows.append(row)
                    print(
                        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True
                    )
                    if seed == 0:
                        figure[method] = emb
                    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
                    frame.to_csv(csv, index=False)
            colours = dset.y_eval if dset.y_eval is not None else dset.groups
            if colours is None:
                colours = np.zeros(len(dset.x_eval), dtype=int)
            umap_figure(
                figure, colours, f"{dset.name}: UMAP per method (seed 0)", out / f"umap_{dset.name}.png"
            )
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    frame.to_csv(csv, index=False)
    (out / "results.md").write_text(markdown_table(frame))
    return frame


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--quick", action="store_true", help="small images and epochs, 3 seeds")
    group.add_argument("--full", action="store_true", help="the documented full scale (BENCHMARKS.md)")
    parser.add_argument(
        "--datasets",
        nargs="*",
        default=["o2mnist", "shapes", "nuclei"],
        choices=["o2mnist", "shapes", "nuclei"],
    )
    parser.add_argument(
        "--data-dir", nargs="*", default=[], help="more dataset directories, images in [0, 1]"
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the scale's)")
    parser.add_argument("--out", default=str(ROOT / "logs" / "bench_representations"))
    args = parser.parse_args(argv)
    scale = "quick" if args.quick else "full"
    seeds = SCALES[scale].seeds if args.seeds is None else args.seeds
    torch.set_num_threads(max(1, torch.get_num_threads()))
    frame = run_benchmark(scale, args.datasets, args.methods, seeds, args.out, args.data_dir)
    print(markdown_table(frame))
    return frame


if __name__ == "__main__":
    main()
