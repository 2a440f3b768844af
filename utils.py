"""Embedding extraction for trained models: ``import run, utils``. The one way this repo embeds images.

Example
-------
>>> model = run.load_model("wandb/offline-run-.../files")            # doctest: +SKIP
>>> emb = utils.get_model_embeddings_from_tensors(model, x_test)     # doctest: +SKIP
"""

import numpy as np
import torch
from tqdm.auto import tqdm

from data.datasets import to_model_input
from data.io import release_pages, trim_heap
from models.export import export_encoder


def _model_device(model):
    return next(model.parameters()).device


def model_input_size(model):
    """The size images are resized to before encoding (``data.resize``), or None."""
    config = getattr(model, "config", None)
    return config.model.image_size if config is not None and config.data.resize else None


def model_value_range(model):
    """The ``(lo, hi)`` of the data that the model maps to [0, 1] before encoding.

    ``(0, 1)`` unless the model was trained with ``data.rescale = 'minmax'``, whose range is
    stored in its config (``model.config.data.value_range``) and checkpoint.
    """
    config = getattr(model, "config", None)
    if config is None or config.data.rescale is None:
        return (0.0, 1.0)
    if config.data.value_range is None:
        raise ValueError(
            "the model uses data.rescale = 'minmax' but holds no data.value_range: it was not trained "
            "(run.train fills it in) or its config was edited"
        )
    lo, hi = config.data.value_range
    return (float(lo), float(hi))


def _check_loader_range(model, loader):
    dataset_range = getattr(getattr(loader, "dataset", None), "value_range", None)
    if dataset_range is not None and tuple(map(float, dataset_range)) != model_value_range(model):
        raise ValueError(
            f"the loader's dataset maps the value range {tuple(dataset_range)} to [0, 1], but the model "
            f"was trained on {model_value_range(model)}: build it with "
            "run.get_datasets_from_config(model.config)"
        )


def get_model_embeddings_from_loader(
    model, loader, return_labels=False, device=None, progress=True, export=True
):
    """Embed every image a loader yields (posterior means), in eval mode.

    Parameters
    ----------
    model : VAE
        A trained model (see ``run.load_model``).
    loader : iterable
        Yields batches ``[images, labels]`` or ``[images]`` with images in the model's [0, 1]
        input scale, e.g. the loaders of ``run.get_datasets_from_config(model.config)``.
    return_labels : bool
        Also return the labels (None when the batches carry none).
    device : str or torch.device, optional
        Where to compute (default: where the model is).
    progress : bool
        Show a progress bar.
    export : bool
        Embed with the encoder exported to plain PyTorch (:func:`models.export.export_encoder`;
        the same embeddings to float precision, faster); False: with the e2cnn modules.

    Returns
    -------
    embeddings : numpy.ndarray, shape (n, zdim)
    labels : numpy.ndarray of int64, shape (n,), or None
        Only with ``return_labels``.
    """
    _check_loader_range(model, loader)
    embeddings, labels = _embed_batches(model, loader, None, device, progress, export=export)
    return (embeddings, labels) if return_labels else embeddings


@torch.no_grad()
def _embed_batches(model, batches, total, device, progress, out=None, export=True):
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval().to(device)
    # stand-ins without an encoder (the benchmarks' adapters) embed their own way
    exported = export_encoder(model.encoder) if export and hasattr(model, "encoder") else None
    embeddings, labels, n, n_batches = [], [], 0, 0
    try:
        for batch in tqdm(batches, total=total, desc="embedding", unit="batch", disable=not progress):
            n_batches += 1
            x = batch[0].to(device, torch.float32)
            emb = (model.embed(x) if exported is None else exported(x)[0]).cpu().numpy()
            if out is None:
                embeddings.append(emb)
            else:
                out[n : n + len(emb)] = emb
                release_pages(out[n : n + len(emb)])
            n += len(emb)
            if len(batch) > 1:
                labels.append(np.asarray(batch[1], dtype=np.int64))
            trim_heap()
    finally:
        model.train(was_training)
    if labels and len(labels) != n_batches:
        raise ValueError("some batches carry labels and some do not")
    if out is None:
        out = np.concatenate(embeddings) if embeddings else np.zeros((0, 0), np.float32)
    return out, (np.concatenate(labels) if labels else None)


def get_model_embeddings_from_tensors(
    model, x, batch_size=256, device=None, progress=True, rescale=True, out=None, export=True
):
    """Embed images ``x`` ``(n, c, h, w)`` in batches of ``batch_size``, streaming.

    Parameters
    ----------
    model : VAE
    x : tensor or array, shape (n, c, h, w)
        Images as stored in the dataset files (a memory map is read one batch at a time).
    batch_size : int
    device : str or torch.device, optional
    progress : bool
    rescale : bool
        Map the model's training value range to [0, 1] first (see :func:`model_value_range`;
        the identity for models trained on data in [0, 1]). False when ``x`` is in [0, 1] already.
        Models trained with ``data.resize`` resize the images either way.
    out : numpy.ndarray, shape (n, zdim), optional
        Where to write the embeddings, e.g. a map of a file,
        ``numpy.lib.format.open_memmap(path, "w+", numpy.float32, (n, zdim))``: with a memory-mapped
        ``x`` too, memory then stays flat however many images there are (BENCHMARKS.md,
        "Embedding memory").
    export : bool
        Embed with the encoder exported to plain PyTorch (:func:`models.export.export_encoder`;
        the same embeddings to float precision, faster: BENCHMARKS.md, "Inference"); False: with
        the e2cnn modules.

    Returns
    -------
    numpy.ndarray, shape (n, zdim)
        ``out`` when given.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D or holds NaN or Inf (the message names the image).
    """
    if not isinstance(x, (torch.Tensor, np.ndarray)):
        x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (n, c, h, w), got {tuple(x.shape)}")
    value_range = model_value_range(model) if rescale else (0.0, 1.0)
    size = model_input_size(model)

    def batches():
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            if isinstance(chunk, torch.Tensor):
                batch = chunk.detach().to(torch.float32)
            else:  # a copy: memory maps are read-only
                batch = torch.from_numpy(np.array(chunk, dtype=np.float32))
                release_pages(chunk)  # a memory map read whole would stay resident
            if not torch.isfinite(batch).all():
                bad = start + int((~torch.isfinite(batch)).flatten(1).any(1).nonzero()[0, 0])
                raise ValueError(f"image {bad} contains NaN or Inf")
            yield (to_model_input(batch, value_range, size),)

    config = getattr(model, "config", None)  # None for stand-ins without one (benchmarks' adapters)
    zdim = config.model.zdim if config is not None else None
    if out is not None and (out.ndim != 2 or len(out) != len(x) or out.shape[1] not in (zdim, None)):
        raise ValueError(f"out must have shape (n, zdim) = ({len(x)}, {zdim}), got {tuple(out.shape)}")
    total = -(-len(x) // batch_size)
    return _embed_batches(model, batches(), total, device, progress, out, export)[0]
