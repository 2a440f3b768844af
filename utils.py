"""Embedding extraction for trained models: ``import run, utils``.

Example
-------
>>> model = run.load_model("wandb/offline-run-.../files")            # doctest: +SKIP
>>> emb = utils.get_model_embeddings_from_tensors(model, x_test)     # doctest: +SKIP
"""

import numpy as np
import torch
from tqdm.auto import tqdm


def _model_device(model):
    return next(model.parameters()).device


@torch.no_grad()
def get_model_embeddings_from_loader(model, loader, return_labels=False, device=None, progress=True):
    """Embed every image a loader yields (posterior means), in eval mode.

    Parameters
    ----------
    model : VAE
        A trained model (see ``run.load_model``).
    loader : iterable
        Yields ``(images, labels)`` batches, e.g. a DataLoader over ``data.datasets.ImageDataset``.
    return_labels : bool
        Also return the labels.
    device : str or torch.device, optional
        Where to compute (default: where the model is).
    progress : bool
        Show a progress bar.

    Returns
    -------
    embeddings : numpy.ndarray, shape (n, zdim)
    labels : numpy.ndarray, shape (n,)
        Only with ``return_labels``.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval().to(device)
    embeddings, labels = [], []
    try:
        for x, y in tqdm(loader, desc="embedding", unit="batch", disable=not progress):
            embeddings.append(model.embed(x.to(device, torch.float32)).cpu().numpy())
            labels.append(np.asarray(y))
    finally:
        model.train(was_training)
    out = np.concatenate(embeddings) if embeddings else np.zeros((0, 0), np.float32)
    if return_labels:
        return out, (np.concatenate(labels) if labels else np.zeros(0, np.int64))
    return out


def get_model_embeddings_from_tensors(model, x, batch_size=256, device=None, progress=True):
    """Embed images ``x`` ``(n, c, h, w)`` (tensor or array) in batches of ``batch_size``.

    Returns
    -------
    numpy.ndarray, shape (n, zdim)
    """
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (n, c, h, w), got {tuple(x.shape)}")
    batches = [(x[i : i + batch_size], torch.zeros(0)) for i in range(0, len(x), batch_size)]
    return get_model_embeddings_from_loader(model, batches, device=device, progress=progress)
