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
