"""What each setting does: train the nuclei preset with one setting changed per row, and score it.

    python benchmarks/bench_tuning.py [--rows preset zdim=4 ...] [--preset configs.config_nuclei]
        [--labels source] [--set key=value ...]

Each row trains ``--preset`` (default: real nucleus crops, the irregular objects users ask about)
with its overrides, then reports, on the held-out test split: the reconstruction error (mean
squared error per pixel inside the inscribed disk, intensities in [0, 1], after the decoded
image is aligned to the input over rotation and flip; first 1000 test images; x1000), the kNN
accuracy (k=5) and KMeans purity with the crop's source image as label, the orientation sensitivity
(:func:`analysis.scores.model_scores`) and the wall-clock training time. The ``seed=1`` row
shows how much a score moves with the random seed alone; the ``image_size=32`` row's error is
measured on the downsampled 32 px images, so it is not comparable with the others. Needs the preset's data
(``python data/generate_nuclei.py``). The README's "Tuning" section quotes the table.
"""

import argparse
import pathlib
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_RECON = 1000  # test images whose reconstruction error is measured
ROWS = {
    "preset": [],
    "seed=1": ["training.seed=1"],
    "zdim=4": ["model.zdim=4"],
    "zdim=64": ["model.zdim=64"],
    "beta=0.1": ["model.beta=0.1"],
    "beta=4": ["model.beta=4"],
    "epochs=20": ["training.epochs=20", "training.validate_every=5", "training.checkpoint_every=5"],
    "epochs=180": ["training.epochs=180", "training.validate_every=30", "training.checkpoint_every=30"],
    "decoder_width=32": ["model.decoder_width=32"],
    "decoder_width=256": ["model.decoder_width=256"],
    "no augmentation": ["data.rotation_augmentation=False", "data.flip_augmentation=False"],
    "image_size=32": ["model.image_size=32", "data.resize=True"],
    "align_angles=32": ["model.align_angles=32"],
    "decoder_width=256, beta=0.1, epochs=180": [
        "model.decoder_width=256",
        "model.beta=0.1",
        "training.epochs=180",
        "training.validate_every=30",
        "training.checkpoint_every=30",
    ],
}


@torch.no_grad()
def aligned_reconstruction_error(model, images, batch_size=256):
    """Mean squared error per pixel inside the inscribed disk, after aligning each reconstruction.

    Measured at the model's input size: for a model trained with ``data.resize`` on a smaller
    size, on the downsampled images (not comparable with models at the stored size).
    """
    from analysis.scores import as_model_input
    from registration.masks import disk_mask

    device = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(images), batch_size):
        x = as_model_input(model, images[start : start + batch_size]).to(device)
        recon = model.reconstruct(x, align=True).clamp(0, 1)
        disk = disk_mask(*x.shape[-2:], device=device).bool()
        squared = ((recon - x) ** 2)[..., disk]
        total, count = total + float(squared.sum()), count + squared.numel()
    return total / count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--preset", default="configs.config_nuclei")
    parser.add_argument("--labels", default="source", help="'y' or the metadata column used as label")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="applied to every row",
    )
    args = parser.parse_args(argv)

    import run
    from analysis.scores import load_for_model, model_scores
    from configs.schema import load_config

    print(f"preset: {args.preset}, torch threads: {torch.get_num_threads()}\n")
    print(
        "| change | command | train time (min) | recon error x1000 | kNN acc (k=5) | KMeans purity "
        "| orientation sensitivity |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in args.rows:
        with tempfile.TemporaryDirectory() as out:
            run_options = [f"logging.out_dir={out}", "logging.wandb_mode=disabled"]
            config = load_config(args.preset, [*args.overrides, *ROWS[row], *run_options])
            start = time.perf_counter()
            run_dir = run.train(config)
            minutes = (time.perf_counter() - start) / 60
            model = run.load_model(run_dir)
        data_dir = config.data.data_dir
        scores = model_scores(model, data_dir, args.labels)
        error = aligned_reconstruction_error(model, load_for_model(model, data_dir)["X_test"][:N_RECON])
        command = " ".join(["python run.py", args.preset, *args.overrides, *ROWS[row]])
        print(
            f"| {row} | `{command}` | {minutes:.1f} | {1000 * error:.2f} | {scores['knn']:.3f} "
            f"| {scores['purity']:.3f} | {scores['sensitivity']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
