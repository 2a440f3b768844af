"""Execute the notebooks in place on small settings, so the repository shows their outputs.

Usage: ``.venv/bin/python scripts/execute_notebooks.py [NOTEBOOK ...]`` (default: all of them).

Each notebook runs headless (nbclient, one kernel each) with ``O2VAE_SMALL=1``,
``WANDB_MODE=disabled``, ``TQDM_DISABLE=1`` and ``O2VAE_OUT=notebook_outputs/executed/<name>``
(git-ignored, emptied first), and is written back with its outputs, figures inline as PNG
(quantized to 256 colours to keep the repository light). Progress bars, timing metadata, widget
state and the local path of the repository are stripped so that re-executing gives readable diffs.
``metadata["o2vae"]["code_sha256"]`` records :func:`code_hash` of the code that made the outputs;
``tests/test_notebooks.py`` fails when a code cell changes without re-executing. ``--check`` only
reports stale notebooks.
"""

import argparse
import base64
import hashlib
import io
import os
import pathlib
import re
import shutil
import sys
import time

import nbformat
from nbclient import NotebookClient
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = [
    "notebooks/train_o2mnist.ipynb",
    "examples/analysis_o2mnist.ipynb",
    "examples/analysis_nuclei.ipynb",
    "examples/own_data.ipynb",
]
OUT = "notebook_outputs/executed"
ENV = {"O2VAE_SMALL": "1", "WANDB_MODE": "disabled", "TQDM_DISABLE": "1"}
UNSET = ("O2VAE_RUN", "O2VAE_VANILLA_RUN", "O2VAE_TRAIN")  # the notebooks use the shipped models
# a tqdm bar ("epoch 1/2:  40%|####  | 6/15 [00:01<00:02, 4.1batch/s]") and tqdm's IProgress warning
PROGRESS = re.compile(r"\[\d+:\d\d(<[\d:?]+)?, |TqdmWarning|IProgress not found|from \.autonotebook import")


def code_hash(notebook):
    """sha256 of the code cells' sources, each followed by a NUL byte.

    Parameters
    ----------
    notebook : nbformat.NotebookNode

    Returns
    -------
    str
        Hex digest; it changes with any edit to a code cell, not with outputs or markdown.
    """
    sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    return hashlib.sha256("".join(s + "\0" for s in sources).encode()).hexdigest()


def _strip_progress(text):
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return "\n".join(line for line in lines if not PROGRESS.search(line)).strip("\n")


def _relative(text):
    return text.replace(f"{ROOT}{os.sep}", "")


def compress_png(b64):
    """A base64 PNG flattened onto white and quantized to 256 colours, if that is smaller.

    Figures of grey-scale images and a few plot colours lose nothing visible, and take about
    half the space.
    """
    image = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    buffer = io.BytesIO()
    flat.quantize(256, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
    smaller = base64.b64encode(buffer.getvalue()).decode()
    return smaller if len(smaller) < len(b64) else b64


def clean(notebook):
    """Drop progress bars (stderr), widget outputs and state, and timing metadata, in place.

    Paths inside the repository are shown relative to its root (where the notebooks work), and
    figures are compressed (:func:`compress_png`).

    Returns
    -------
    nbformat.NotebookNode
        ``notebook`` itself.
    """
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                out.text = _strip_progress(out.text)
                if not out.text:
                    continue
                out.text += "\n"
            if out.output_type == "stream":
                out.text = _relative(out.text)
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                continue
            if "image/png" in data:
                data["image/png"] = compress_png(data["image/png"])
            for mime in ("text/plain", "text/html"):
                if mime in data:
                    data[mime] = _relative(data[mime])
            outputs.append(out)
        cell.outputs = outputs
    return notebook


def output_structure(notebook):
    """Per code cell: the stream names and, in order, the MIME types of each rich output.

    Compares runs of one notebook without comparing pixels or numbers.

    Returns
    -------
    list of tuple
        ``(stream names, [(output_type, mime types), ...])`` per code cell.
    """
    structure = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        streams = tuple(sorted({o.name for o in cell.outputs if o.output_type == "stream"}))
        rich = [
            (o.output_type, tuple(sorted(o.get("data", {}))))
            for o in cell.outputs
            if o.output_type != "stream"
        ]
        structure.append((streams, rich))
    return structure


def execute(path, out_dir, timeout=1800):
    """Execute the notebook at ``path`` on small settings from its own folder, and :func:`clean` it.

    Parameters
    ----------
    path : str or Path
        A notebook in the repository (its code finds the repository root); the file is not written.
    out_dir : str or Path
        ``O2VAE_OUT``: where the notebook writes data, runs and figures (a relative path is
        taken from the repository root).
    timeout : int
        Seconds allowed per cell.

    Returns
    -------
    nbformat.NotebookNode
        The executed, cleaned notebook; raises ``nbclient.exceptions.CellExecutionError``
        on the first failing cell.
    """
    path = pathlib.Path(path).resolve()
    notebook = nbformat.read(path, as_version=4)
    saved = {key: os.environ.get(key) for key in [*ENV, *UNSET, "O2VAE_OUT"]}
    os.environ.update(ENV, O2VAE_OUT=str(out_dir))
    for key in UNSET:
        os.environ.pop(key, None)
    try:
        NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
            record_timing=False,
            coalesce_streams=True,
        ).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return clean(notebook)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="paths (default: all of them)")
    parser.add_argument("--check", action="store_true", help="only list notebooks whose code changed")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    stale = []
    for name in args.notebooks or [str(ROOT / n) for n in NOTEBOOKS]:
        path = pathlib.Path(name).resolve()
        if args.check:
            notebook = nbformat.read(path, as_version=4)
            if notebook.metadata.get("o2vae", {}).get("code_sha256") != code_hash(notebook):
                stale.append(name)
                print(f"{name}: stale (re-execute it)")
            continue
        out_dir = ROOT / OUT / path.stem
        shutil.rmtree(out_dir, ignore_errors=True)
        start = time.perf_counter()
        notebook = execute(path, out_dir.relative_to(ROOT), args.timeout)
        notebook.metadata["o2vae"] = {
            "code_sha256": code_hash(notebook),
            "executed_by": "scripts/execute_notebooks.py (O2VAE_SMALL=1)",
        }
        nbformat.validate(notebook)
        nbformat.write(notebook, path)
        seconds = time.perf_counter() - start
        print(f"{name}: executed in {seconds:.0f} s, {path.stat().st_size / 1e3:.0f} kB", flush=True)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
