"""Scores of a representation against known labels: kNN accuracy and clustering agreement."""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from analysis.checks import as_embeddings, as_labels, check_count
from analysis.classification import make_probe


def knn_accuracy(train_embeddings, train_labels, test_embeddings, test_labels, k=5):
    """Accuracy on the test set of a k-nearest-neighbour classifier fit on the training embeddings.

    The classifier is :func:`analysis.classification.make_probe` ``("knn", k)``, the one the
    cross-validated kNN probe uses.

    Parameters
    ----------
    train_embeddings : array, shape (n_train, d)
    train_labels : array, shape (n_train,)
    test_embeddings : array, shape (n_test, d)
    test_labels : array, shape (n_test,)
    k : int
        Number of neighbours.

    Returns
    -------
    float
        Fraction of test objects whose predicted label is their own.

    Examples
    --------
    >>> knn_accuracy([[0.0], [1.0], [10.0], [11.0]], [0, 0, 1, 1], [[0.5], [10.5]], [0, 1], k=1)
    1.0
    """
    train = as_embeddings(train_embeddings, "train_embeddings")
    test = as_embeddings(test_embeddings, "test_embeddings")
    if train.shape[1] != test.shape[1]:
        raise ValueError(
            "train_embeddings and test_embeddings must have the same width, got "
            f"{train.shape[1]} and {test.shape[1]}"
        )
    train_labels = as_labels(train_labels, len(train), "train_labels")
    test_labels = as_labels(test_labels, len(test), "test_labels")
    check_count(k, "k", at_most=len(train))
    knn = make_probe("knn", k).fit(train, train_labels)
    return float(knn.score(test, test_labels))


def _contingency(labels_true, labels_cluster):
    """Counts of objects per (cluster, true label): rows are clusters, columns labels."""
    _, t = np.unique(labels_true, return_inverse=True)
    _, c = np.unique(labels_cluster, return_inverse=True)
    table = np.zeros((c.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(table, (c, t), 1)
    return table


def cluster_purity(labels_true, labels_cluster):
    """Fraction of objects whose cluster's majority label is their own label.

    Parameters
    ----------
    labels_true, labels_cluster : arrays, shape (n,)

    Returns
    -------
    float

    Examples
    --------
    >>> cluster_purity([0, 0, 1, 1], [5, 5, 5, 7])
    0.75
    """
    table = _contingency(labels_true, labels_cluster)
    return float(table.max(axis=1).sum() / table.sum())


def hungarian_accuracy(labels_true, labels_cluster):
    """Accuracy under the best one-to-one matching of clusters to labels (Hungarian algorithm).

    Unlike purity, it does not reward splitting a class into many clusters.

    Parameters
    ----------
    labels_true, labels_cluster : arrays, shape (n,)

    Returns
    -------
    float

    Examples
    --------
    >>> hungarian_accuracy([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> hungarian_accuracy([0, 0, 0, 0], [0, 1, 2, 3])
    0.25
    """
    table = _contingency(labels_true, labels_cluster)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def clustering_scores(labels_true, labels_cluster):
    """Purity, Hungarian accuracy, adjusted Rand index and normalised mutual information.

    Parameters
    ----------
    labels_true, labels_cluster : arrays, shape (n,)

    Returns
    -------
    dict
        ``purity``, ``hungarian_accuracy``, ``ari`` and ``nmi``, as floats.
    """
    labels_true = as_labels(labels_true, None, "labels_true")
    labels_cluster = as_labels(labels_cluster, len(labels_true), "labels_cluster")
    if not len(labels_true):
        raise ValueError("labels_true and labels_cluster are empty: no objects to score")
    return {
        "purity": cluster_purity(labels_true, labels_cluster),
        "hungarian_accuracy": hungarian_accuracy(labels_true, labels_cluster),
        "ari": float(adjusted_rand_score(labels_true, labels_cluster)),
        "nmi": float(normalized_mutual_info_score(labels_true, labels_cluster)),
    }


def kmeans_purity(embeddings, labels, n_clusters, seed=0):
    """Purity of KMeans clusters of ``embeddings`` against ``labels``.

    Parameters
    ----------
    embeddings : array, shape (n, d)
    labels : array, shape (n,)
    n_clusters : int
    seed : int
        Random state of KMeans (see :func:`analysis.clustering.cluster`).

    Returns
    -------
    float
    """
    from analysis.clustering import cluster

    embeddings = as_embeddings(embeddings)
    labels = as_labels(labels, len(embeddings))
    return cluster_purity(labels, cluster(embeddings, "kmeans", n_clusters, seed=seed))
