"""Scores of a representation: kNN accuracy, cluster purity."""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.neighbors import KNeighborsClassifier


def knn_accuracy(train_embeddings, train_labels, test_embeddings, test_labels, k=5):
    """Accuracy of a k-nearest-neighbour classifier fit on the training embeddings."""
    knn = KNeighborsClassifier(n_neighbors=k).fit(train_embeddings, train_labels)
    return float(knn.score(test_embeddings, test_labels))


def cluster_purity(labels_true, labels_cluster):
    """Fraction of objects whose cluster's majority label is their own label.

    Examples
    --------
    >>> cluster_purity([0, 0, 1, 1], [5, 5, 5, 7])
    0.75
    """
    labels_true, labels_cluster = np.asarray(labels_true), np.asarray(labels_cluster)
    majority = sum(np.bincount(labels_true[labels_cluster == c]).max() for c in np.unique(labels_cluster))
    return float(majority / len(labels_true))


def kmeans_purity(embeddings, labels, n_clusters, seed=0):
    """Purity of KMeans clusters of ``embeddings`` against ``labels``."""
    clusters = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(embeddings)
    return cluster_purity(labels, clusters)
