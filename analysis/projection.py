"""2-D projections of embeddings: PCA and UMAP, with fixed seeds."""

import warnings

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from analysis.checks import as_embeddings


def pca(embeddings, n_components=2, seed=0):
    """Principal-component coordinates.

    Parameters
    ----------
    embeddings : array, shape (n, d)
    n_components : int
    seed : int
        Random state of scikit-learn's PCA (used by its randomised solver).

    Returns
    -------
    numpy.ndarray, shape (n, n_components)
    """
    return PCA(n_components=n_components, random_state=seed).fit_transform(as_embeddings(embeddings))


def umap(embeddings, n_neighbors=15, min_dist=0.1, seed=0):
    """UMAP coordinates (umap-learn), reproducible for a given seed.

    Parameters
    ----------
    embeddings : array, shape (n, d)
    n_neighbors : int
        Neighbourhood size (at most ``n - 1``).
    min_dist : float
    seed : int

    Returns
    -------
    numpy.ndarray of float32, shape (n, 2)

    Notes
    -----
    The nearest neighbours are computed exactly with scikit-learn and handed to UMAP, which
    skips its own approximate search, whose numba compilation costs about a minute per process.
    """
    import umap as umap_learn

    x = as_embeddings(embeddings).astype(np.float32)
    if len(x) < 4:  # its spectral initialisation needs more objects than 2 components + 1
        raise ValueError(f"embeddings: UMAP needs at least 4 objects, got {len(x)}")
    k = min(n_neighbors, len(x) - 1)
    distances, indices = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
    reducer = umap_learn.UMAP(
        n_neighbors=k, min_dist=min_dist, random_state=seed, precomputed_knn=(indices, distances, None)
    )
    with warnings.catch_warnings():  # both say what is intended: one thread (seeded), no .transform
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        warnings.filterwarnings("ignore", message="precomputed_knn", category=UserWarning)
        return reducer.fit_transform(x)
