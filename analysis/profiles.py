"""Export of embeddings as morphological profiles (CSV, Parquet, AnnData).

Embeddings come from ``utils.get_model_embeddings_from_tensors``, the one embedding function.
"""

import json
import pathlib

import numpy as np
import pandas as pd
import torch

from data.io import atomic_write

FORMATS = ("csv", "parquet", "h5ad")


def profiles_table(embeddings, obs=None):
    """A table with one row per object: the ``obs`` columns, then the embedding.

    Parameters
    ----------
    embeddings : array, shape (n, d)
    obs : dict or DataFrame, optional
        Per-object annotations with ``n`` rows (default: one ``index`` column ``0 ... n-1``).

    Returns
    -------
    pandas.DataFrame
        The ``obs`` columns, then ``z0 ... z{d-1}``.

    Raises
    ------
    ValueError
        If ``obs`` does not have one row per embedding.
    """
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
    """Plain-data description of where embeddings came from (the ``uns`` of :func:`export_profiles`).

    Parameters
    ----------
    model : torch.nn.Module
        The model; its ``config`` (if any) is stored whole.
    run_dir : str or Path, optional
        What the model was loaded from as the user named it (run directory, checkpoint or
        pretrained model name).

    Returns
    -------
    dict
        ``config`` (a dict or None), ``versions`` (Python and library versions now), ``run_dir``,
        ``checkpoint`` and ``checkpoint_sha256`` (the file ``run.load_model`` read and the hash of
        the bytes it read, so a profile names the exact weights; None for a model not loaded from
        a checkpoint) and ``torch_device`` (where the model's parameters are).
    """
    from models.build import library_versions

    config = getattr(model, "config", None)
    return {
        "config": None if config is None else config.to_dict(),
        "versions": library_versions(),
        "run_dir": None if run_dir is None else str(run_dir),
        "checkpoint": getattr(model, "checkpoint_path", None),
        "checkpoint_sha256": getattr(model, "checkpoint_sha256", None),
        "torch_device": str(next(model.parameters()).device) if isinstance(model, torch.nn.Module) else None,
    }
