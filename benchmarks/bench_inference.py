"""Embedding speed of the exported encoder against the e2cnn one, over batch sizes, with peak memory.

    python benchmarks/bench_inference.py [--model o2mnist] [--n 100000] [--small-n 20000]
        [--batch-sizes 32 64 128 256 512] [--dir DIR]

Writes ``n`` random float32 images of the model's size as ``.npy`` and, each setting in a fresh
process, embeds them read through ``numpy.load(mmap_mode="r")`` into a memory-mapped ``.npy``
with ``utils.get_model_embeddings_from_tensors``: with the e2cnn encoder (``export=False``) and
with the encoder exported to plain PyTorch (``export=True``, the default;
``models.export.export_encoder``), at every batch size. Reports images/second, the ratio of the
two at each batch size and between their best batch sizes, and peak resident memory (VmHWM). The
exported encoder at batch 256 also embeds ``small-n`` images, for memory against dataset size.
"""

import argparse
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_embedding_memory import measure, write_images  # noqa: E402


def model_image_shape(model_name):
    import run

    config = run.load_model(model_name).config.model
    return config.in_channels, config.image_size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="o2mnist", help="a run directory, checkpoint or pretrained name")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--small-n", type=int, default=20_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--dir", default=None, help="where to write the images (default: a temporary folder)")
    args = parser.parse_args(argv)
    channels, size = model_image_shape(args.model)
    if channels != 1:
        raise SystemExit(f"{args.model} takes {channels} channels; this benchmark writes one-channel images")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = pathlib.Path(tmp)
        images, small = tmp / f"X_{args.n}.npy", tmp / f"X_{args.small_n}.npy"
        write_images(images, args.n, size=size)
        write_images(small, args.small_n, size=size)
        print(f"model {args.model} ({size} px), {args.n:,} memory-mapped images, files in {tmp}\n")
        columns = ["batch", "e2cnn (img/s)", "exported (img/s)", "exported / e2cnn"]
        print("| " + " | ".join([*columns, "peak RSS e2cnn / exported (MB)"]) + " |")
        print("|---|---|---|---|---|")
        best = {"e2cnn": 0.0, "exported": 0.0}
        for batch in args.batch_sizes:
            r = {
                kind: measure(args.model, images, tmp / "emb.npy", batch, export=kind == "exported")
                for kind in ("e2cnn", "exported")
            }
            for kind in r:
                best[kind] = max(best[kind], r[kind]["img_per_s"])
            e2cnn, exported = r["e2cnn"], r["exported"]
            ratio = exported["img_per_s"] / e2cnn["img_per_s"]
            print(
                f"| {batch} | {e2cnn['img_per_s']:.0f} | {exported['img_per_s']:.0f} | {ratio:.2f}x | "
                f"{e2cnn['peak_rss_mb']:.0f} / {exported['peak_rss_mb']:.0f} |",
                flush=True,
            )
        print(f"\nbest batch size each: exported / e2cnn = {best['exported'] / best['e2cnn']:.2f}x")
        big = measure(args.model, images, tmp / "emb.npy", 256)
        little = measure(args.model, small, tmp / "emb_small.npy", 256)
        growth = 100 * (big["peak_rss_mb"] / little["peak_rss_mb"] - 1)
        print(
            f"exported, batch 256: peak RSS {little['peak_rss_mb']:.0f} MB for {args.small_n:,} images, "
            f"{big['peak_rss_mb']:.0f} MB for {args.n:,} ({growth:+.1f} %)"
        )


if __name__ == "__main__":
    main()
