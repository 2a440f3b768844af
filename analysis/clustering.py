"""Cluster embeddings: KMeans, Gaussian mixture (optionally after PCA), agglomerative, HDBSCAN."""

from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from analysis.checks import as_embeddings

METHODS = ("kmeans", "gmm", "agglomerative", "hdbscan")


def cluster(embeddings, method="kmeans", n_clusters=10, pca_components=None, seed=0, min_cluster_size=10):
    """Cluster labels of each embedding.

    Parameters
    ----------
    embeddings : array, shape (n, d)
    method : {'kmeans', 'gmm', 'agglomerative', 'hdbscan'}
        KMeans (10 restarts), Gaussian mixture (full covariances), Ward agglomerative, or the
        density-based HDBSCAN (finds the number of clusters itself and labels noise -1).
    n_clusters : int
        Number of clusters (ignored by 'hdbscan').
    pca_components : int, optional
        Reduce to this many principal components first (helps the Gaussian mixture).
    seed : int
        Random state of KMeans, GMM and PCA.
    min_cluster_size : int
        Smallest cluster HDBSCAN reports.

    Returns
    -------
    numpy.ndarray of int, shape (n,)
    """
    x = as_embeddings(embeddings)
    if pca_components is not None:
        x = PCA(n_components=pca_components, random_state=seed).fit_transform(x)
    if method == "kmeans":
        return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(x)
    if method == "gmm":
        return GaussianMixture(n_components=n_clusters, random_state=seed).fit(x).predict(x)
    if method == "agglomerative":
        return AgglomerativeClustering(n_clusters=n_clusters).fit_predict(x)
    if method == "hdbscan":
        # copy=True, sklearn's future default: the caller's array is never modified
        return HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(x)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
