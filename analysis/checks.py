"""Input checks shared by the analysis functions: errors name the argument, before scikit-learn sees it."""

import numpy as np


def as_embeddings(embeddings, name="embeddings"):
    """``embeddings`` as a float64 array ``(n, d)`` with ``n, d >= 1`` and finite values.

    Raises
    ------
    TypeError
        For complex or non-numeric values.
    ValueError
        For another shape, an empty array, NaN or Inf (the message names the first bad row).
    """
    x = np.asarray(embeddings)
    if np.iscomplexobj(x) or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise TypeError(f"{name} must be real numbers, got dtype {x.dtype}")
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"{name} must be a non-empty (n, d) array, got shape {x.shape}")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} hold NaN or Inf (first in row {int(np.argmax(bad))}, {int(bad.sum())} rows)"
        )
    return x


def as_labels(labels, n, name="labels"):
    """``labels`` as a 1-D array of ``n`` (None: any number of) finite class labels, numbers or strings.

    Raises
    ------
    TypeError
        For complex values.
    ValueError
        For another shape or length, NaN or Inf.
    """
    y = np.asarray(labels)
    if np.iscomplexobj(y):
        raise TypeError(f"{name} must be class labels (numbers or strings), got dtype {y.dtype}")
    if y.ndim != 1 or (n is not None and len(y) != n):
        expected = "labels" if n is None else f"{n} labels (one per object)"
        raise ValueError(f"{name} must be a 1-D array of {expected}, got shape {y.shape}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{name} hold NaN or Inf (first at {int(np.argmax(~np.isfinite(y)))})")
    return y


def check_count(value, name, at_most=None):
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= 1 (and <= ``at_most``)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if at_most is not None and value > at_most:
        raise ValueError(f"{name} is {value}, more than the {at_most} objects there are")
