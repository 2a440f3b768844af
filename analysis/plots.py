"""Figures of embeddings and images. Each function returns the Figure and, given ``path``,
also saves it (the extension picks PNG or PDF)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis.outliers import distance_to_centre, rank_outliers  # noqa: E402
from data.io import atomic_write  # noqa: E402


def save(fig, path=None, dpi=120):
    """Save ``fig`` atomically to ``path`` (PNG or PDF by extension) if a path is given."""
    if path is not None:
        fmt = str(path).rsplit(".", 1)[-1]
        atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format=fmt, bbox_inches="tight"))
    return fig


def _show(ax, image, title=None):
    image = np.asarray(image)
    ax.imshow(image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=7)


def image_rows(rows, row_labels=None, titles=None, path=None, size=1.0):
    """Rows of images ``[(n_i, c, h, w), ...]``, one labelled row each."""
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(ncols * size, len(rows) * size * 1.1), squeeze=False)
    for i, row in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            if j < len(row):
                _show(ax, row[j], None if titles is None else titles[i][j])
            else:
                ax.axis("off")
        if row_labels is not None:
            axes[i, 0].set_ylabel(str(row_labels[i]), rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def scatter(points, labels=None, title=None, path=None, s=4):
    """2-D projection coloured by label or cluster; the legend grows columns past 10 classes."""
    points = np.asarray(points)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=s, color="0.3", linewidths=0)
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        cmap = plt.get_cmap(
            "tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "nipy_spectral"
        )
        for k, c in enumerate(classes):
            color = cmap(k if len(classes) <= 20 else k / max(len(classes) - 1, 1))
            ax.scatter(*points[labels == c].T, s=s, color=color, label=str(c), linewidths=0)
        ax.legend(
            markerscale=3,
            fontsize=7,
            ncol=int(np.ceil(len(classes) / 20)),
            loc="upper left",
            bbox_to_anchor=(1, 1),
        )
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


def mosaic(points, images, grid=20, path=None, title=None):
    """Embedding projector: on a ``grid x grid`` lattice over the 2-D points, the image of the
    object nearest to each occupied cell's centre is drawn there."""
    points, images = np.asarray(points, dtype=np.float64), np.asarray(images)
    lo, hi = points.min(0), points.max(0)
    cell = (points - lo) / np.maximum(hi - lo, 1e-12) * (grid - 1e-9)
    ij = np.floor(cell).astype(int)
    h, w = images.shape[-2:]
    canvas = np.zeros((grid * h, grid * w))  # black, like the background of the crops
    for gi, gj in {tuple(v) for v in ij}:
        inside = np.flatnonzero((ij[:, 0] == gi) & (ij[:, 1] == gj))
        best = inside[np.argmin(np.linalg.norm(cell[inside] - (gi + 0.5, gj + 0.5), axis=1))]
        row = grid - 1 - gj  # y grows upwards, as in the scatter plot
        canvas[row * h : (row + 1) * h, gi * w : (gi + 1) * w] = images[best, 0]
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return save(fig, path)


def cluster_samples(images, clusters, embeddings=None, n=8, mode="random", seed=0, path=None):
    """A row of sample images per cluster.

    Parameters
    ----------
    images : array, shape (n_objects, c, h, w)
        Images in [0, 1].
    clusters : array, shape (n_objects,)
        Cluster label of each object.
    embeddings : array, shape (n_objects, d), optional
        Needed by 'typical' and 'top'.
    n : int
        Images per row.
    mode : {'random', 'typical', 'top'}
        'random' members; 'typical': nearest the cluster centre; 'top': farthest from it, i.e. the
        cluster's most atypical members (distances from :func:`analysis.outliers.distance_to_centre`).
    seed : int
        Seed of 'random'.
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if mode not in ("random", "typical", "top"):
        raise ValueError(f"mode must be 'random', 'typical' or 'top', got {mode!r}")
    clusters = np.asarray(clusters)
    rng = np.random.default_rng(seed)
    d = None if mode == "random" else distance_to_centre(embeddings, clusters)
    rows, labels = [], []
    for c in np.unique(clusters):
        members = np.flatnonzero(clusters == c)
        if mode == "random":
            chosen = rng.permutation(members)[:n]
        else:
            chosen = members[rank_outliers(-d[members] if mode == "typical" else d[members], top=n)]
        rows.append(np.asarray(images)[chosen])
        labels.append(f"cluster {c}\n(n={len(members)})")
    return image_rows(rows, labels, path=path)


def reconstructions(inputs, recons, path=None):
    """Inputs (top row) above their aligned reconstructions (bottom row)."""
    return image_rows([np.asarray(inputs), np.asarray(recons)], ["input", "aligned\nrecon."], path=path)


def outlier_gallery(images, scores, top=16, path=None):
    """The ``top`` most unusual objects, titled with their score, most unusual first.

    The order is :func:`analysis.outliers.rank_outliers` of ``scores`` (higher is more unusual).
    """
    order = rank_outliers(scores, top=top)
    ncols = min(8, top)
    rows = [np.asarray(images)[order[i : i + ncols]] for i in range(0, len(order), ncols)]
    titles = [
        [f"#{i + j} ({scores[k]:.2f})" for j, k in enumerate(order[i : i + ncols])]
        for i in range(0, len(order), ncols)
    ]
    return image_rows(rows, titles=titles, path=path)


def knn_retrieval(images, embeddings, queries, k=7, path=None):
    """For each query index: the query, then its ``k`` nearest neighbours in embedding space."""
    emb = np.asarray(embeddings)
    rows, titles = [], []
    for q in queries:
        d = np.linalg.norm(emb - emb[q], axis=1)
        d[q] = np.inf
        neighbours = np.argsort(d)[:k]
        rows.append(np.asarray(images)[[q, *neighbours]])
        titles.append(["query"] + [f"{d[i]:.2f}" for i in neighbours])
    return image_rows(rows, titles=titles, path=path)


def invariance_plot(report, path=None):
    """Bar chart of relative embedding change per transform (see analysis.invariance.invariance_report)."""
    names, values = list(report), list(report.values())
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(values)), values, color=["0.6" if v < 1e-3 else "C0" for v in values])
    ax.set_xticks(range(len(values)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("relative embedding change")
    fig.tight_layout()
    return save(fig, path)


def latent_traversal(model, embeddings, component=0, steps=9, spread=2.0, path=None):
    """Images decoded along a principal axis of the embeddings, from -spread to +spread s.d."""
    import torch
    from sklearn.decomposition import PCA

    emb = np.asarray(embeddings, dtype=np.float32)
    p = PCA(n_components=component + 1).fit(emb)
    axis, sd = p.components_[component], np.sqrt(p.explained_variance_[component])
    offsets = np.linspace(-spread, spread, steps) * sd
    z = emb.mean(0) + offsets[:, None] * axis
    model.eval()
    with torch.no_grad():
        decoded = model.decode(torch.from_numpy(z.astype(np.float32))).cpu().numpy()
    titles = [[f"{o / sd:+.1f} sd" for o in offsets]]
    return image_rows([decoded], [f"PC {component + 1}"], titles=titles, path=path)
