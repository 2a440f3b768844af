"""Embeddings of whole datasets and their export as morphological profiles (CSV, Parquet, AnnData)."""

import json
import pathlib

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from data.io import atomic_write

FORMATS = ("csv", "parquet", "h5ad")


def extract_embeddings(model, data, batch_size=256, device=None, progress=True):
    """Embed a dataset or an image array of any size, streaming batches.

    Parameters
    ----------
    model : VAE
        A trained model (``run.load_model``).
    data : Dataset or array, shape (n, c, h, w)
        A torch Dataset yielding ``(image, label)`` (e.g. ``data.datasets.ImageDataset``,
        memory-mapped or not) or an array/tensor of images in [0, 1].

    Returns
    -------
    numpy.ndarray, shape (n, zdim)
    """
    import utils

    if isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        return utils.get_model_embeddings_from_loader(model, loader, device=device, progress=progress)
    return utils.get_model_embeddings_from_tensors(
        model, data, batch_size=batch_size, device=device, progress=progress
    )


def profiles_table(embeddings, obs=None):
    """A table with one row per object: the ``obs`` columns, then ``z0 ... z{d-1}``."""
    embeddings = np.asarray(embeddings)
    obs = pd.DataFrame(obs if obs is not None else {"index": np.arange(len(embeddings))})
    if len(obs) != len(embeddings):
        raise ValueError(f"obs has {len(obs)} rows for {len(embeddings)} embeddings")
    features = pd.DataFrame(
        embeddings, columns=[f"z{i}" for i in range(embeddings.shape[1])], index=obs.index
    )
    return pd.concat([obs, features], axis=1)


def export_profiles(embeddings, path, obs=None, uns=None, formats=FORMATS):
    """Write profiles to ``path`` + ``.csv`` / ``.parquet`` / ``.h5ad`` (each atomically).

    Parameters
    ----------
    embeddings : array, shape (n, d)
    path : str or Path
        Output path without extension.
    obs : dict or DataFrame, optional
        Per-object annotations (image index, label, source, object id, ...).
    uns : dict, optional
        Provenance (model config, versions, run directory); stored in the AnnData ``uns`` as
        JSON text and in the Parquet file's metadata.
    formats : iterable of {'csv', 'parquet', 'h5ad'}

    Returns
    -------
    list of Path
        The written files. The ``.h5ad`` opens in scanpy (``X`` = embeddings, ``obs`` =
        annotations); the tables in pandas, pycytominer or any spreadsheet.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = profiles_table(embeddings, obs)
    provenance = json.dumps(uns or {}, default=str)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        if fmt == "csv":
            atomic_write(target, lambda p: table.to_csv(p, index=False))
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrow = pa.Table.from_pandas(table, preserve_index=False)
            arrow = arrow.replace_schema_metadata({**arrow.schema.metadata, b"o2vae": provenance.encode()})
            atomic_write(target, lambda p, arrow=arrow: pq.write_table(arrow, p))
        elif fmt == "h5ad":
            import anndata

            obs_table = table.drop(columns=[c for c in table.columns if c.startswith("z")]).astype(
                {c: str for c in table.columns if table[c].dtype == object}
            )
            obs_table.index = obs_table.index.astype(str)
            adata = anndata.AnnData(X=np.asarray(embeddings, dtype=np.float32), obs=obs_table)
            adata.uns["o2vae"] = provenance
            atomic_write(target, lambda p, adata=adata: adata.write_h5ad(p))
        else:
            raise ValueError(f"unknown format {fmt!r}, expected one of {FORMATS}")
        written.append(target)
    return written


def model_provenance(model, run_dir=None):
    """Plain-data description of where embeddings came from: config, versions, run directory."""
    from models.build import library_versions

    config = getattr(model, "config", None)
    return {
        "config": None if config is None else config.to_dict(),
        "versions": library_versions(),
        "run_dir": None if run_dir is None else str(run_dir),
        "torch_device": str(next(model.parameters()).device) if isinstance(model, torch.nn.Module) else None,
    }
