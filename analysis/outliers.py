"""Rank objects by how unusual their embedding is."""

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from analysis.checks import as_embeddings

METHODS = ("isolation_forest", "lof", "centroid_distance")


def outlier_scores(embeddings, method="isolation_forest", clusters=None, seed=0, n_neighbors=20):
    """An outlier score per object: higher is more unusual.

    Parameters
    ----------
    embeddings : array, shape (n, d)
    method : {'isolation_forest', 'lof', 'centroid_distance'}
        Isolation forest (negated ``score_samples``), local outlier factor (negated
        ``negative_outlier_factor_``), or the distance to the centre of the object's cluster
        divided by that cluster's median such distance.
    clusters : array of int, shape (n,), optional
        Cluster labels, needed by 'centroid_distance' (one cluster if None).
    seed : int
        Random state of the isolation forest.
    n_neighbors : int
        Neighbourhood size of LOF.

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    x = as_embeddings(embeddings)
    if method == "isolation_forest":
        return -IsolationForest(random_state=seed).fit(x).score_samples(x)
    if method == "lof":
        lof = LocalOutlierFactor(n_neighbors=min(n_neighbors, len(x) - 1)).fit(x)
        return -lof.negative_outlier_factor_
    if method == "centroid_distance":
        clusters = np.zeros(len(x), dtype=int) if clusters is None else np.asarray(clusters)
        d = distance_to_centre(x, clusters)
        scores = np.empty(len(x))
        for c in np.unique(clusters):
            members = clusters == c
            scores[members] = d[members] / max(np.median(d[members]), 1e-12)
        return scores
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def distance_to_centre(embeddings, clusters):
    """Euclidean distance of each object to the mean embedding of its cluster.

    Parameters
    ----------
    embeddings : array, shape (n, d)
    clusters : array, shape (n,)
        Cluster labels; every distinct value (HDBSCAN's noise label -1 included) is one cluster.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)

    Examples
    --------
    >>> distance_to_centre([[0.0], [2.0], [10.0]], [0, 0, 1]).tolist()
    [1.0, 1.0, 0.0]
    """
    x = np.asarray(embeddings, dtype=np.float64)
    clusters = np.asarray(clusters)
    if len(clusters) != len(x):
        raise ValueError(f"{len(clusters)} cluster labels for {len(x)} embeddings")
    d = np.empty(len(x))
    for c in np.unique(clusters):
        members = clusters == c
        d[members] = np.linalg.norm(x[members] - x[members].mean(0), axis=1)
    return d


def rank_outliers(scores, top=None):
    """Indices of objects from the highest score to the lowest (ties in index order).

    Parameters
    ----------
    scores : array, shape (n,)
        Higher is more unusual (e.g. :func:`outlier_scores` or :func:`distance_to_centre`).
    top : int, optional
        Return only the first ``top`` indices.

    Returns
    -------
    numpy.ndarray of int, shape (n,) or (min(top, n),)

    Examples
    --------
    >>> rank_outliers([0.1, 3.0, 0.5, 3.0]).tolist()
    [1, 3, 2, 0]
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    return order if top is None else order[:top]
