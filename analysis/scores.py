"""Scores of a trained model on a labelled dataset: kNN accuracy, cluster purity, orientation sensitivity."""

import numpy as np
import torch

import utils
from analysis.invariance import orientation_sensitivity
from analysis.metrics import kmeans_purity, knn_accuracy
from data.datasets import load_dataset, split_metadata, to_model_input

N_REFERENCE = 10_000  # training images the kNN classifier is fit on
N_SENSITIVITY = 1_000  # test images rendered twice for the orientation sensitivity


def load_for_model(model, data_dir):
    """The arrays of a dataset (:func:`data.datasets.load_dataset`), checked against the model's value range.

    The images come back as stored; :func:`as_model_input` maps them to the model's [0, 1].
    """
    if model.config.data.rescale is None:
        return load_dataset(data_dir)
    return load_dataset(data_dir, rescale="minmax", value_range=utils.model_value_range(model))


def as_model_input(model, images):
    """Stored images as the model sees them: its value range mapped to [0, 1], resized if it resizes."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    return to_model_input(x, utils.model_value_range(model), utils.model_input_size(model))


def split_labels(data_dir, arrays, split, labels):
    """Labels of a split: the dataset's ``y`` or a column of its metadata (``metadata.parquet``).

    Raises
    ------
    ValueError
        If the split has no such labels.
    """
    if labels == "y":
        if arrays[f"y_{split}"] is None:
            raise ValueError(f"{data_dir}: no y_{split} labels; give labels= a metadata column instead")
        return np.asarray(arrays[f"y_{split}"])
    meta = split_metadata(data_dir, split, len(arrays[f"X_{split}"]))
    if labels not in meta:
        raise ValueError(
            f"{data_dir}: no metadata column {labels!r} for the {split} split "
            f"(found: {sorted(meta) or 'no metadata of the right length'})"
        )
    return meta[labels]


def model_scores(model, data_dir, labels="y"):
    """Held-out scores of a model on a dataset directory.

    Parameters
    ----------
    model : VAE
        A trained model (``run.load_model``).
    data_dir : str or Path
        A dataset with ``train`` and ``test`` splits, both labelled.
    labels : str
        ``"y"``, or the ``metadata.parquet`` column to use as label.

    Returns
    -------
    dict
        ``knn``: accuracy (k=5) of test embeddings classified by their neighbours among the first
        :data:`N_REFERENCE` training embeddings; ``purity``: KMeans purity of the test embeddings
        with as many clusters as labels; ``sensitivity``: orientation sensitivity
        (:func:`analysis.invariance.orientation_sensitivity`) of the first :data:`N_SENSITIVITY`
        test images; ``n_reference``, ``n_test``.
    """
    arrays = load_for_model(model, data_dir)
    if arrays["X_test"] is None:
        raise ValueError(f"{data_dir}: no test split (X_test) to score on")
    x_ref, x_test = arrays["X_train"][:N_REFERENCE], arrays["X_test"]
    y_ref = split_labels(data_dir, arrays, "train", labels)[:N_REFERENCE]
    y_test = split_labels(data_dir, arrays, "test", labels)
    emb_ref = utils.get_model_embeddings_from_tensors(model, x_ref, progress=False)
    emb_test = utils.get_model_embeddings_from_tensors(model, x_test, progress=False)
    sources = as_model_input(model, x_test[:N_SENSITIVITY])
    return {
        "knn": knn_accuracy(emb_ref, y_ref, emb_test, y_test, k=5),
        "purity": kmeans_purity(emb_test, y_test, n_clusters=len(np.unique(y_test))),
        "sensitivity": orientation_sensitivity(model, sources)["relative_distance"],
        "n_reference": len(x_ref),
        "n_test": len(x_test),
    }
