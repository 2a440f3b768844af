"""Linear and kNN probes: the standard way to score a representation with labels."""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def make_probe(kind="logistic", k=5):
    """An unfitted probe: the one kNN classifier of this package, or a standardised linear probe.

    Parameters
    ----------
    kind : {'logistic', 'knn'}
        'knn': a k-nearest-neighbour classifier (Euclidean, uniform weights; also used by
        :func:`analysis.metrics.knn_accuracy`); 'logistic': standardisation then logistic regression.
    k : int
        Number of neighbours of 'knn'.

    Returns
    -------
    sklearn estimator
    """
    if kind == "knn":
        return KNeighborsClassifier(n_neighbors=k)
    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    raise ValueError(f"kind must be 'knn' or 'logistic', got {kind!r}")


def probe_accuracy(embeddings, labels, kind="logistic", folds=5, k=5, seed=0):
    """Cross-validated accuracy of a probe (stratified folds).

    Parameters
    ----------
    embeddings : array, shape (n, d)
    labels : array, shape (n,)
    kind : {'logistic', 'knn'}
        See :func:`make_probe`.
    folds : int
        Number of stratified folds (shuffled with ``seed``).
    k : int
        Number of neighbours of 'knn'.
    seed : int

    Returns
    -------
    dict
        ``mean`` and ``sd`` of the fold accuracies, the ``folds`` themselves, and the
        ``confusion`` matrix of the out-of-fold predictions (rows: true, columns: predicted,
        in the order of ``classes``).
    """
    x, y = np.asarray(embeddings), np.asarray(labels)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(make_probe(kind, k), x, y, cv=cv)
    predicted = cross_val_predict(make_probe(kind, k), x, y, cv=cv)
    classes = np.unique(y)
    return {
        "mean": float(scores.mean()),
        "sd": float(scores.std()),
        "folds": scores,
        "classes": classes,
        "confusion": confusion_matrix(y, predicted, labels=classes),
    }
