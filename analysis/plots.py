"""Figures of embeddings and images.

Each function returns the Figure and, given ``path``, also saves it (the extension picks PNG or
PDF). Images are ``(n, c, h, w)`` arrays in [0, 1] (the first channel, or the first three as RGB,
is shown); close figures with ``matplotlib.pyplot.close`` when done.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis.outliers import distance_to_centre, rank_outliers  # noqa: E402
from data.io import atomic_write  # noqa: E402


def save(fig, path=None, dpi=120):
    """Save ``fig`` atomically to ``path`` (PNG or PDF by extension) if a path is given.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path, optional
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
        ``fig``.
    """
    if path is not None:
        fmt = str(path).rsplit(".", 1)[-1]
        atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format=fmt, bbox_inches="tight"))
    return fig


# additive display colours of channels 1, 2, 3, ... (the first three are red, green and blue)
CHANNEL_COLOURS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=np.float64
)


def composite(image):
    """An image ``(c, h, w)`` in [0, 1] as something ``imshow`` draws: grey ``(h, w)`` for one channel,
    else RGB ``(h, w, 3)``, each channel added in its colour of :data:`CHANNEL_COLOURS` and clipped.

    Examples
    --------
    >>> composite(np.ones((2, 1, 1))).tolist()
    [[[1.0, 1.0, 0.0]]]
    """
    image = np.asarray(image, dtype=np.float64)
    if image.shape[0] == 1:
        return image[0]
    if image.shape[0] > len(CHANNEL_COLOURS):
        raise ValueError(f"at most {len(CHANNEL_COLOURS)} channels can be shown, got {image.shape[0]}")
    rgb = np.einsum("chw,ck->hwk", image, CHANNEL_COLOURS[: image.shape[0]])
    return np.clip(rgb, 0.0, 1.0)


def _show(ax, image, title=None):
    """Draw one image ``(c, h, w)`` in [0, 1] (a channel composite, see :func:`composite`) without ticks."""
    ax.imshow(composite(image), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=7)


def image_rows(rows, row_labels=None, titles=None, path=None, size=1.0):
    """Rows of images, one labelled row each.

    Parameters
    ----------
    rows : list of arrays, shapes (n_i, c, h, w)
    row_labels : list of str, optional
        Written left of each row.
    titles : list of lists of str, optional
        A title per image.
    path : str or Path, optional
    size : float
        Inches per image.

    Returns
    -------
    matplotlib.figure.Figure
    """
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
    """2-D projection coloured by label or cluster.

    Parameters
    ----------
    points : array, shape (n, 2)
    labels : array, shape (n,), optional
        Label or cluster per point (one colour each, with a legend that grows a column per 20
        classes); grey points without.
    title : str, optional
    path : str or Path, optional
    s : float
        Marker size.

    Returns
    -------
    matplotlib.figure.Figure
    """
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
    """Embedding projector: the image of an object in every occupied cell of a lattice over the points.

    Parameters
    ----------
    points : array, shape (n, 2)
        2-D projection of the embeddings (e.g. :func:`analysis.projection.umap`).
    images : array, shape (n, c, h, w)
        Images in [0, 1], drawn as channel composites (:func:`composite`).
    grid : int
        The lattice is ``grid x grid`` cells over the points' bounding box; each occupied cell
        shows the object nearest its centre, on black.
    path : str or Path, optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    points, images = np.asarray(points, dtype=np.float64), np.asarray(images)
    lo, hi = points.min(0), points.max(0)
    cell = (points - lo) / np.maximum(hi - lo, 1e-12) * (grid - 1e-9)
    ij = np.floor(cell).astype(int)
    h, w = images.shape[-2:]
    canvas = np.zeros(
        (grid * h, grid * w) + composite(images[0]).shape[2:]
    )  # black, as the crops' background
    for gi, gj in {tuple(v) for v in ij}:
        inside = np.flatnonzero((ij[:, 0] == gi) & (ij[:, 1] == gj))
        best = inside[np.argmin(np.linalg.norm(cell[inside] - (gi + 0.5, gj + 0.5), axis=1))]
        row = grid - 1 - gj  # y grows upwards, as in the scatter plot
        canvas[row * h : (row + 1) * h, gi * w : (gi + 1) * w] = composite(images[best])
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
    """Inputs (top row) above their aligned reconstructions (bottom row).

    Parameters
    ----------
    inputs, recons : arrays, shape (n, c, h, w)
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    return image_rows([np.asarray(inputs), np.asarray(recons)], ["input", "aligned\nrecon."], path=path)


def outlier_gallery(images, scores, top=16, path=None):
    """The ``top`` most unusual objects, titled with their rank and score, most unusual first.

    Parameters
    ----------
    images : array, shape (n, c, h, w)
    scores : array, shape (n,)
        Higher is more unusual; ordered by :func:`analysis.outliers.rank_outliers`.
    top : int
        Number of objects shown, 8 per row.
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
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
    """For each query, a row: the query, then its ``k`` nearest neighbours in embedding space.

    Parameters
    ----------
    images : array, shape (n, c, h, w)
    embeddings : array, shape (n, d)
    queries : sequence of int
        Indices of the query objects.
    k : int
        Neighbours per query (Euclidean, the query itself excluded), titled with their distance.
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
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
    """Bar chart of the relative embedding change per transform, on a log scale.

    Parameters
    ----------
    report : dict
        Transform name -> change, e.g. :func:`analysis.invariance.invariance_report`; bars under
        1e-3 are grey.
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    names, values = list(report), list(report.values())
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(values)), values, color=["0.6" if v < 1e-3 else "C0" for v in values])
    ax.set_xticks(range(len(values)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("relative embedding change")
    fig.tight_layout()
    return save(fig, path)


def latent_traversal(model, embeddings, component=0, steps=9, spread=2.0, path=None):
    """Images decoded along a principal axis of the embeddings.

    Parameters
    ----------
    model : VAE
        Its ``decode`` maps embeddings to images (run in eval mode).
    embeddings : array, shape (n, d)
    component : int
        Principal axis (0: the first).
    steps : int
        Number of images, evenly spaced from the mean - ``spread`` to + ``spread`` standard
        deviations along the axis.
    spread : float
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
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
