"""Every notebook runs headless on small settings, and writes the figures it promises."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]

NOTEBOOKS = {
    "notebooks/train_o2mnist.ipynb": ["train_reconstructions.png", "train_umap.png"],
    "examples/analysis_o2mnist.ipynb": [
        "mnist_umap_O2-VAE.png",
        "mnist_umap_vanilla.png",
        "mnist_mosaic_vanilla.png",
        "mnist_knn_O2-VAE.png",
        "mnist_outliers.png",
        "mnist_invariance.png",
    ],
    "examples/analysis_nuclei.ipynb": [
        "nuclei_profiles.h5ad",
        "nuclei_umap_source.png",
        "nuclei_mosaic.png",
        "nuclei_clusters.png",
        "nuclei_outliers.png",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("path", list(NOTEBOOKS))
def test_notebook_runs_and_writes_its_figures(path, tmp_path, monkeypatch):
    monkeypatch.setenv("O2VAE_SMALL", "1")
    monkeypatch.setenv("O2VAE_OUT", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    notebook = nbformat.read(ROOT / path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not any(cell.get("outputs") for cell in code_cells), f"{path}: commit it with outputs cleared"
    workdir = {"metadata": {"path": str((ROOT / path).parent)}}
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources=workdir)
    client.execute()  # raises CellExecutionError on the first failing cell
    for name in NOTEBOOKS[path]:
        produced = tmp_path / name
        assert produced.is_file() and produced.stat().st_size > 1000, f"{path} did not write {name}"
