"""The committed notebooks show current outputs, and each runs headless on small settings.

Re-execute after editing a notebook: ``.venv/bin/python scripts/execute_notebooks.py [PATH]``.
"""

import importlib.util
import pathlib

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
execute_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute_notebooks)

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
    "examples/own_data.ipynb": [
        "my_cells/X_train.npy",
        "my_cells/metadata.parquet",
        "my_cells/prepare.json",
        "my_analysis/report.md",
        "my_analysis/profiles.parquet",
        "my_analysis/umap_mosaic.png",
    ],
}
NO_OUTPUT_TAG = "no-output"  # a code cell tagged so may be committed without outputs
RERUN = ".venv/bin/python scripts/execute_notebooks.py"


def _code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _n_png(cell):
    return sum("image/png" in out.get("data", {}) for out in cell.outputs)


def test_script_lists_the_tested_notebooks():
    assert execute_notebooks.NOTEBOOKS == list(NOTEBOOKS)


@pytest.mark.parametrize("path", list(NOTEBOOKS))
def test_committed_notebook_is_executed_and_current(path):
    notebook = nbformat.read(ROOT / path, as_version=4)
    cells = _code_cells(notebook)
    recorded = notebook.metadata.get("o2vae", {}).get("code_sha256")
    assert recorded == execute_notebooks.code_hash(notebook), f"{path}: code changed since execution: {RERUN}"
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1)), f"{path}: {RERUN}"
    for i, cell in enumerate(cells, 1):
        where = f"{path}, code cell {i}"
        if NO_OUTPUT_TAG not in cell.metadata.get("tags", []):
            assert cell.outputs, f"{where} has no outputs"
        for out in cell.outputs:
            assert out.output_type != "error", f"{where} failed: {out.get('ename')}: {out.get('evalue')}"
            text = out.get("text", "")
            assert not execute_notebooks.PROGRESS.search(text), f"{where}: progress bar in the outputs"
            assert str(ROOT) not in text + out.get("data", {}).get("text/plain", ""), f"{where}: local path"
        assert "execution" not in cell.metadata, f"{where}: timing metadata"
        if "plots." in cell.source:
            assert _n_png(cell) > 0, f"{where} draws a figure but shows none"
    promised = sum(name.endswith(".png") for name in NOTEBOOKS[path])
    assert sum(map(_n_png, cells)) >= promised, f"{path}: fewer inline figures than the {promised} it saves"
    size_kb = (ROOT / path).stat().st_size / 1e3
    assert size_kb < 400, f"{path} is {size_kb:.0f} kB: keep committed outputs small"


@pytest.mark.slow
@pytest.mark.parametrize("path", list(NOTEBOOKS))
def test_notebook_runs_and_writes_its_figures(path, tmp_path):
    fresh = execute_notebooks.execute(ROOT / path, tmp_path)  # raises CellExecutionError on a failing cell
    for name in NOTEBOOKS[path]:
        produced = tmp_path / name
        assert produced.is_file() and produced.stat().st_size > 1000, f"{path} did not write {name}"
    # the committed outputs come from the current code path: the same kinds of output in every cell
    committed = nbformat.read(ROOT / path, as_version=4)
    structures = execute_notebooks.output_structure(fresh), execute_notebooks.output_structure(committed)
    for i, (now, then) in enumerate(zip(*structures, strict=True), 1):
        assert now == then, f"{path}, code cell {i}: outputs {now} now, {then} committed: {RERUN} {path}"
