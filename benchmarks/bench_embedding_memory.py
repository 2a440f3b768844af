"""Peak memory and speed of embedding a memory-mapped dataset, at 100,000 and 1,000,000 images.

    python benchmarks/bench_embedding_memory.py [--sizes 100000 1000000] [--model o2mnist]
        [--dir DIR] [--batch-size 256]

Writes ``DIR/X_<n>.npy`` (n float32 images 1 x 32 x 32, random values in [0, 1]: the content does
not change the work) and embeds it in a fresh process per setting with
``utils.get_model_embeddings_from_tensors``, reading the images through ``numpy.load(mmap_mode="r")``:
- ``out=memmap``: embeddings written to ``numpy.lib.format.open_memmap`` (the flat-memory path);
- ``out=None``: embeddings returned as one in-memory array (n x zdim float32).
Reports the process's peak resident memory (``VmHWM`` of ``/proc/self/status``, which counts
file pages mapped and read too; not ``ru_maxrss``, which on Linux carries the parent's peak over
into a child started after the parent wrote the images), wall time and images/second. The files
are removed at the end. Linux only.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_images(path, n, size=32, chunk=50_000):
    """A float32 ``.npy`` of ``n`` random images ``(n, 1, size, size)``, written in chunks."""
    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(path, "w+", np.float32, (n, 1, size, size))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        x[start:stop] = rng.random((stop - start, 1, size, size), dtype=np.float32)
    x.flush()
    del x


def peak_resident_mb():
    """This process's peak resident memory (VmHWM), in MB."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this benchmark needs Linux")


def embed_one(model_name, images, out_path, batch_size, export=True):
    """Embed ``images`` (a .npy path) in this process; returns the measurements."""
    import run
    import utils

    model = run.load_model(model_name)
    x = np.load(images, mmap_mode="r")
    out = None
    if out_path != "none":
        out = np.lib.format.open_memmap(out_path, "w+", np.float32, (len(x), model.config.model.zdim))
    start = time.perf_counter()
    emb = utils.get_model_embeddings_from_tensors(
        model, x, batch_size=batch_size, progress=False, out=out, export=export
    )
    seconds = time.perf_counter() - start
    return {
        "images": len(x),
        "seconds": seconds,
        "img_per_s": len(x) / seconds,
        "peak_rss_mb": peak_resident_mb(),
        "checksum": float(np.asarray(emb[-100:]).sum()),  # the last rows were written
    }


def measure(model_name, images, out_path, batch_size, export=True):
    """:func:`embed_one` in a fresh process (so that its peak memory is its own)."""
    command = [sys.executable, __file__, "_one", model_name, str(images), str(out_path), str(batch_size)]
    result = subprocess.run(
        [*command, "export" if export else "e2cnn"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_one":
        print(json.dumps(embed_one(argv[1], argv[2], argv[3], int(argv[4]), argv[5] == "export")))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--model", default="o2mnist", help="a run directory, checkpoint or pretrained name")
    parser.add_argument("--dir", default=None, help="where to write the images (default: a temporary folder)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"model {args.model}, batch size {args.batch_size}, files in {tmp}\n")
        print("| images | output | peak RSS (MB) | time (s) | images/s |")
        print("|---|---|---|---|---|")
        for n in args.sizes:
            images = pathlib.Path(tmp) / f"X_{n}.npy"
            write_images(images, n)
            for out in ("memmap", "none"):
                out_path = pathlib.Path(tmp) / f"emb_{n}.npy" if out == "memmap" else "none"
                r = measure(args.model, images, out_path, args.batch_size)
                label = "memory map (`out=`)" if out == "memmap" else "in memory"
                figures = f"{r['peak_rss_mb']:.0f} | {r['seconds']:.1f} | {r['img_per_s']:.0f}"
                print(
                    f"| {n:,} | {label} | {figures} |",
                    flush=True,
                )
            images.unlink()


if __name__ == "__main__":
    main()
