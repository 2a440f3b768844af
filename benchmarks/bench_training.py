"""Training speed, peak memory and embedding quality of the O2-MNIST presets.

Speed (each configuration in a fresh process, so peak memory is its own):
    python benchmarks/bench_training.py speed [--presets default fast paper vanilla] [--sizes 32 64]
        [--batches 64 256] [--steps 5] [--device cpu] [--set key=value ...] [--system-malloc]

Breakdown (where the time of one default training step goes: encoder, e2cnn filter expansion, decoder):
    python benchmarks/bench_training.py breakdown [--sizes 32 64] [--batches 64 256] [--set key=value ...]

Quality (train each preset for the same epochs, then score its test embeddings):
    python benchmarks/bench_training.py quality [--presets default fast paper vanilla] [--set key=value ...]
        [--device cpu]

Score (the quality columns of an O2-MNIST model trained elsewhere: a run directory, or
pretrained/o2mnist or pretrained/o2mnist_vanilla):
    python benchmarks/bench_training.py score RUN_DIR [--device cpu]

``--device`` (speed, quality and score: ``cpu``, ``cuda`` or ``cuda:N``, default ``cpu``) is where
the models train and embed; for quality it sets ``training.device`` (a ``--set
training.device=...`` given too wins).

Speed: images/second of full training steps (forward, aligned loss, backward, Adam) on random
images, after one warm-up step, and the process's peak resident memory (CPU) or peak CUDA
memory, and the minor page faults per timed step (pages the kernel had to map in). Each process
keeps freed memory as ``run.train`` does (``allocator.py``), unless ``--system-malloc``.
Quality: kNN (k=5) accuracy of test embeddings against training embeddings, KMeans (k=10) purity
of test embeddings, and the orientation sensitivity of ``analysis.invariance`` (two random
orientations of 1000 upright test digits; 0 is invariant, ~1 is blind to identity).
kNN is also reported with 6 and 9 as one class: rotated by 180 degrees a 6 is a 9, so an
invariant embedding can tell them apart only by handwriting style.
Needs ``data/o2_mnist`` (python data/generate_o2mnist.py).
"""

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS = {
    "default": "configs.config_o2mnist",
    "fast": "configs.config_o2mnist_fast",
    "paper": "configs.config_o2mnist_paper",
    "vanilla": "configs.config_o2mnist_vanilla",
    "full": "configs.config_o2mnist_full",  # the default model on all 60k images (quality only)
}
ARCHITECTURES = ("default", "fast", "paper", "vanilla")  # what the speed benchmark compares


def speed_one(preset, size, batch, steps, device, overrides=(), keep_memory=True):
    """Images/second and peak memory (MB) of ``steps`` training steps; run in its own process.

    ``keep_memory``: set glibc's thresholds as ``run.train`` does (``allocator.keep_freed_memory``).
    """
    from allocator import keep_freed_memory
    from configs.schema import load_config
    from models.build import build_model_from_config

    if keep_memory:
        keep_freed_memory()
    config = load_config(PRESETS[preset], [f"model.image_size={size}", *overrides])
    device = torch.device(device)
    model = build_model_from_config(config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, config.model.in_channels, size, size, device=device)

    def step():
        loss = model(x)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {
        "img_per_s": steps * batch / (time.perf_counter() - start),
        "peak_mb": peak_mb,
        "faults_per_step": faults / steps,
    }


def speed(args):
    memory = "glibc's own thresholds" if args.system_malloc else "freed memory kept (allocator.py)"
    print(f"device: {args.device}, torch threads: {torch.get_num_threads()}, {memory}\n")
    print(
        "| preset | size | batch | images/s | peak memory (MB) | page faults / step | x paper | x vanilla |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for batch in args.batches:
            rates = {}
            for preset in args.presets:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "_speed_one",
                        preset,
                        str(size),
                        str(batch),
                        str(args.steps),
                        args.device,
                        "system" if args.system_malloc else "keep",
                        *args.overrides,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=ROOT,
                )
                rates[preset] = json.loads(out.stdout.strip().splitlines()[-1])
            for preset, r in rates.items():
                ratios = [
                    f"{r['img_per_s'] / rates[ref]['img_per_s']:.2f}" if ref in rates else "-"
                    for ref in ("paper", "vanilla")
                ]
                print(
                    f"| {preset} | {size} | {batch} | {r['img_per_s']:.0f} | {r['peak_mb']:.0f} "
                    f"| {r['faults_per_step']:,.0f} | {' | '.join(ratios)} |",
                    flush=True,
                )


def breakdown(args):
    """Milliseconds per training step of the default preset, and of its parts, forward and backward."""
    from configs.schema import load_config

    print(f"torch threads: {torch.get_num_threads()}, {args.steps} timed repeats after one warm-up\n")
    print("| size | batch | full step (ms) | encoder (ms) | of which filter expansion (ms) | decoder (ms) |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        for batch in args.batches:
            config = load_config(PRESETS["default"], [f"model.image_size={size}", *args.overrides])
            times = step_parts_ms(config, batch, args.steps)
            print(f"| {size} | {batch} | " + " | ".join(f"{t:.1f}" for t in times) + " |", flush=True)


def step_parts_ms(config, batch, repeats):
    """Mean milliseconds of a full training step, the encoder, its filter expansion and the decoder."""
    import e2cnn.nn as enn

    from allocator import keep_freed_memory
    from models.build import build_model_from_config

    keep_freed_memory()  # as run.train does
    torch.manual_seed(0)
    model = build_model_from_config(config).train()
    size = config.model.image_size
    x = torch.rand(batch, config.model.in_channels, size, size)
    z = torch.randn(batch, config.model.zdim)
    convs = [m for m in model.encoder.modules() if isinstance(m, enn.R2Conv)]

    def full():
        model(x)["loss"].backward()

    def encoder():
        mu, logvar = model.encoder(x)
        (mu.sum() + logvar.sum()).backward()

    def expansion():  # what every R2Conv computes from its weights in each training forward pass
        sum(sum(t.sum() for t in conv.expand_parameters()) for conv in convs).backward()

    def decoder():
        model.decoder(z).sum().backward()

    times = []
    for part in (full, encoder, expansion, decoder):
        part()
        start = time.perf_counter()
        for _ in range(repeats):
            part()
        times.append((time.perf_counter() - start) / repeats * 1000)
    return times


def upright_test_digits(data_dir, n):
    """The first ``n`` test digits of O2-MNIST before their random rotation (from the metadata)."""
    from data.generate_o2mnist import load_mnist

    meta = np.load(pathlib.Path(data_dir) / "meta_test.npz")
    _, _, x_test, _ = load_mnist()
    digits = x_test[meta["mnist_index"][:n]].astype(np.float32) / 255.0
    return np.pad(digits, ((0, 0), (2, 2), (2, 2)))[:, None]


def merge_six_nine(labels):
    """Labels with 9 relabelled as 6: a rotated 6 and a rotated 9 differ only in handwriting style."""
    return np.where(labels == 9, 6, labels)


HEADER = (
    "| preset | epochs | train images | train time (min) | kNN acc (k=5) | kNN acc, 6 = 9 "
    "| KMeans purity (k=10) | orientation sensitivity |\n|---|---|---|---|---|---|---|---|"
)


def score_row(name, model, minutes):
    """The quality table's row for a trained ``model`` (kNN, purity, sensitivity on its config's data)."""
    import run
    from analysis.invariance import orientation_sensitivity
    from analysis.metrics import kmeans_purity, knn_accuracy

    config = model.config
    dset, _, dset_test, _ = run.get_datasets_from_config(config)
    emb_train, y_train, emb_test, y_test = run.split_embeddings(model, dset, dset_test)
    knn = knn_accuracy(emb_train, y_train, emb_test, y_test, k=5)
    knn_69 = knn_accuracy(emb_train, merge_six_nine(y_train), emb_test, merge_six_nine(y_test), k=5)
    purity = kmeans_purity(emb_test, y_test, n_clusters=10)
    sensitivity = orientation_sensitivity(model, upright_test_digits(config.data.data_dir, 1000))
    trained = "-" if minutes is None else f"{minutes:.1f}"
    return (
        f"| {name} | {config.training.epochs} | {len(dset)} | {trained} | {knn:.3f} | {knn_69:.3f} "
        f"| {purity:.3f} | {sensitivity['relative_distance']:.3f} |"
    )


def quality(args):
    import run
    from configs.schema import load_config

    print(f"device: {args.device}, torch threads: {torch.get_num_threads()}\n")
    print(HEADER)
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as out:
            overrides = [
                f"logging.out_dir={out}",
                "logging.wandb_mode=disabled",
                f"training.device={args.device}",
                *args.overrides,
            ]
            config = load_config(PRESETS[preset], overrides)
            start = time.perf_counter()
            run_dir = run.train(config)
            minutes = (time.perf_counter() - start) / 60
            model = run.load_model(run_dir, device=run.pick_device(config.training.device))
            print(score_row(preset, model, minutes), flush=True)


def score(args):
    """Score a model trained elsewhere (a run directory or ``pretrained/NAME``), as quality does."""
    import run

    model = run.load_model(args.run_dir, device=run.pick_device(args.device))
    meta = pathlib.Path(model.config.data.data_dir) / "meta_test.npz"
    if not meta.is_file() or "mnist_index" not in np.load(meta):
        raise SystemExit(
            f"{args.run_dir} was trained on {model.config.data.data_dir}, which is not O2-MNIST "
            f"({meta} with 'mnist_index' is missing): score measures O2-MNIST models only"
        )
    print(HEADER)
    print(score_row(args.run_dir, model, None), flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_speed_one":
        preset, size, batch, steps, device, memory, *overrides = argv[1:]
        rate = speed_one(preset, int(size), int(batch), int(steps), device, overrides, memory == "keep")
        print(json.dumps(rate))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p_speed = sub.add_parser("speed")
    p_speed.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p_speed.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    p_speed.add_argument("--steps", type=int, default=5)
    device_help = "where to train and embed: cpu, cuda or cuda:N"
    p_speed.add_argument("--device", default="cpu", help=device_help)
    p_speed.add_argument("--presets", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    p_speed.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override applied to every preset (repeatable), e.g. --set model.invariance_weight=0",
    )
    p_speed.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's memory thresholds as they are (training before allocator.py)",
    )
    p_breakdown = sub.add_parser("breakdown", help="where the time of a default training step goes")
    p_breakdown.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p_breakdown.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    p_breakdown.add_argument("--steps", type=int, default=10)
    p_breakdown.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p_quality = sub.add_parser("quality")
    p_quality.add_argument("--presets", nargs="+", default=list(ARCHITECTURES), choices=list(PRESETS))
    p_quality.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override applied to every preset (repeatable), e.g. --set training.epochs=3",
    )
    p_quality.add_argument("--device", default="cpu", help=device_help)
    p_score = sub.add_parser("score", help="score a trained run directory or pretrained/NAME as quality does")
    p_score.add_argument("run_dir")
    p_score.add_argument("--device", default="cpu", help=device_help)
    args = parser.parse_args(argv)
    {"speed": speed, "breakdown": breakdown, "quality": quality, "score": score}[args.what](args)


if __name__ == "__main__":
    main()
