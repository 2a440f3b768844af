"""Rank objects by how unusual their embedding is."""

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

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
    x = np.asarray(embeddings, dtype=np.float64)
    if method == "isolation_forest":
        return -IsolationForest(random_state=seed).fit(x).score_samples(x)
    if method == "lof":
        lof = LocalOutlierFactor(n_neighbors=min(n_neighbors, len(x) - 1)).fit(x)
        return -lof.negative_outlier_factor_
    if method == "centroid_distance":
        clusters = np.zeros(len(x), dtype=int) if clusters is None else np.asarray(clusters)
        scores = np.empty(len(x))
        for c in np.unique(clusters):
            members = clusters == c
            d = np.linalg.norm(x[members] - x[members].mean(0), axis=1)
            scores[members] = d / max(np.median(d), 1e-12)
        return scores
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def rank_outliers(scores, top=None):
    """Indices of objects from most to least unusual (the first ``top`` only if given)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    return order if top is None else order[:top]
