"""How much an embedding moves when the same object is seen at another orientation.

Every function here takes images in [0, 1] (the model's input scale, e.g. the ``images`` of
``python -m analysis``) and embeds them and their rotated copies with
``utils.get_model_embeddings_from_tensors(..., rescale=False)``: rotating with bicubic
interpolation and clamping to [0, 1] only make sense in that scale, so the model's training
value range is not applied again.
"""

import numpy as np
import torch

import utils
from registration import rotate_flip


def orientation_sensitivity(model, sources, seed=0, batch_size=256):
    """Embedding distance between two random orientations of each object, relative to object spread.

    Each source image is rendered twice, each time rotated once from the source by a uniformly
    random angle and flipped with probability 0.5 (bicubic interpolation, as a microscope sees
    the same object in two poses). The distance between the two embeddings of an object is
    divided by the median distance between embeddings of different objects.

    Parameters
    ----------
    model : VAE
        Trained model (embeds in eval mode, see ``utils.get_model_embeddings_from_tensors``).
    sources : tensor or array, shape (n, c, h, w)
        Upright source objects in [0, 1] (centred, inside the inscribed disk).
    seed : int
        Seed of the random orientations.
    batch_size : int

    Returns
    -------
    dict
        ``relative_distance``: mean over objects of (same-object distance / median
        different-object distance), 0 for a perfectly invariant embedding, about 1 for one that
        does not recognise the object; ``per_object``: the ratio per object;
        ``median_between_objects``: the denominator.
    """
    x = torch.as_tensor(np.asarray(sources, dtype=np.float32))
    g = torch.Generator().manual_seed(seed)
    views = []
    for _ in range(2):
        angle = torch.rand(len(x), generator=g) * 360.0
        flip = torch.rand(len(x), generator=g) < 0.5
        views.append(rotate_flip(x, angle, flip, mode="bicubic").clamp(0.0, 1.0))
    e1, e2 = (
        utils.get_model_embeddings_from_tensors(model, v, batch_size, progress=False, rescale=False)
        for v in views
    )
    same = np.linalg.norm(e1 - e2, axis=1)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(x), size=(2, 20 * len(x)))
    keep = i != j
    between = np.median(np.linalg.norm(e1[i[keep]] - e1[j[keep]], axis=1))
    ratio = same / between
    return {
        "relative_distance": float(ratio.mean()),
        "per_object": ratio,
        "median_between_objects": float(between),
    }


def grid_symmetry_change(model, x, batch_size=256):
    """Largest relative embedding change over the 8 symmetries of the pixel grid (exact transforms).

    Parameters
    ----------
    model : VAE
    x : tensor or array, shape (n, c, h, w)
        Images in [0, 1].
    batch_size : int

    Returns
    -------
    dict
        Symmetry name (``rot90`` ... ``flip + rot270``, the 7 besides the identity) -> max over
        images of ``|e(g x) - e(x)| / |e(x)|``.
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    base = utils.get_model_embeddings_from_tensors(model, x, batch_size, progress=False, rescale=False)
    return _grid_changes(model, x, base, batch_size)


def _relative_change(e, base):
    """``|e - base| / |base|`` per row."""
    return np.linalg.norm(e - base, axis=1) / np.linalg.norm(base, axis=1)


def _grid_changes(model, x, base, batch_size):
    """:func:`grid_symmetry_change` given the embeddings ``base`` of ``x`` itself."""
    out = {}
    for flip in (False, True):
        for k in range(4):
            if not flip and k == 0:
                continue
            t = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
            name = f"{'flip + ' if flip else ''}rot{90 * k}"
            moved = utils.get_model_embeddings_from_tensors(
                model, t, batch_size, progress=False, rescale=False
            )
            out[name] = float(_relative_change(moved, base).max())
    return out


def invariance_report(model, images, seed=0, batch_size=256):
    """Relative embedding change under the 8 grid symmetries and under random continuous rotations.

    Parameters
    ----------
    model : VAE
    images : tensor or array, shape (n, c, h, w)
        Images in [0, 1].
    seed : int
        Seed of the random orientations.
    batch_size : int

    Returns
    -------
    dict
        For each grid symmetry, the largest relative change ``|e(g x) - e(x)| / |e(x)|`` over
        the images; ``random rotation + flip``: its median over one random continuous
        orientation per image (bicubic); ``orientation sensitivity``: see
        :func:`orientation_sensitivity`.
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    base = utils.get_model_embeddings_from_tensors(model, x, batch_size, progress=False, rescale=False)
    report = _grid_changes(model, x, base, batch_size)
    g = torch.Generator().manual_seed(seed)
    angle, flip = torch.rand(len(x), generator=g) * 360.0, torch.rand(len(x), generator=g) < 0.5
    rotated = rotate_flip(x, angle, flip, mode="bicubic").clamp(0.0, 1.0)
    moved = utils.get_model_embeddings_from_tensors(model, rotated, batch_size, progress=False, rescale=False)
    report["random rotation + flip"] = float(np.median(_relative_change(moved, base)))
    report["orientation sensitivity"] = orientation_sensitivity(model, x, seed, batch_size)[
        "relative_distance"
    ]
    return report
