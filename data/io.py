"""Write generated datasets: atomically, never over existing data, with a sample grid."""

import ctypes
import functools
import hashlib
import mmap
import os
import pathlib
import secrets

import numpy as np
import torch

# the files a dataset directory may hold; --overwrite removes them first, so none is left stale
DATASET_FILES = (
    "X_train.*", "X_test.*", "y_train.*", "y_test.*", "meta_train.npz", "meta_test.npz",
    "metadata.parquet", "metadata.csv", "prepare.json", "samples.png",
)  # fmt: skip


def prepare_output_dir(out_dir, overwrite=False):
    """Create ``out_dir``; refuse to reuse a non-empty one unless ``overwrite``.

    With ``overwrite``, the dataset files of an earlier run (:data:`DATASET_FILES`) are removed
    first, so that none of them (old labels, an old test split, another format) survives next
    to the new ones; other files are left alone.

    Raises
    ------
    FileExistsError
        If ``out_dir`` holds files and ``overwrite`` is False.
    """
    out_dir = pathlib.Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} already holds files; pass --overwrite to replace them")
        for pattern in DATASET_FILES:
            for old in out_dir.glob(pattern):
                if old.is_file():
                    old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def file_sha256(path):
    """sha256 of a file's bytes, read in chunks (hex string)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def release_pages(array):
    """Drop the resident pages of a memory-mapped array (a ``numpy.memmap`` slice) from this process.

    Reading a memory map leaves what was read resident, counted in the process's memory, until
    the map is closed: streaming a dataset larger than memory through one map would grow the
    process by the whole file. After a slice has been used, this tells the kernel it is no
    longer needed (``madvise(MADV_DONTNEED)``): the data stays in the file (and the page cache)
    and is read again if touched. Maps opened in ``'r'``, ``'r+'`` or ``'w+'`` mode only: they are
    shared maps, whose writes are in the page cache already (the kernel keeps a dropped page's
    dirty state and writes it to the file as usual); copy-on-write maps, whose changes would be
    lost, other arrays and systems without ``madvise`` are left alone.
    """
    mapping = getattr(array, "_mmap", None)
    if mapping is None or array.size == 0 or getattr(array, "mode", "c") == "c":
        return
    if not hasattr(mapping, "madvise") or not array.flags.c_contiguous:
        return
    start = array.ctypes.data - np.frombuffer(mapping, dtype=np.uint8).ctypes.data
    aligned = start - start % mmap.PAGESIZE
    length = start + array.nbytes - aligned
    mapping.madvise(mmap.MADV_DONTNEED, aligned, length)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (AttributeError, OSError):
        return None


def trim_heap():
    """Hand the memory this process has freed back to the system (glibc's ``malloc_trim(0)``).

    A long loop that allocates and frees a batch's tensors leaves the freed memory in the malloc
    heap, where its size drifts by tens of MB over thousands of batches and counts as resident.
    Trimming after each batch keeps the peak flat (BENCHMARKS.md, "Embedding memory").

    Returns
    -------
    bool
        Whether anything was released; always False where the C library has no ``malloc_trim``
        (macOS, Windows, musl), where this does nothing.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def atomic_write(path, write):
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one rename.

    The temporary file sits in the same folder (so the rename is atomic) and is created with
    the permissions of a new file (``0o666`` less the process umask), like ``open(path, "w")``.
    """
    path = pathlib.Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_split(out_dir, split, x, y=None, meta=None):
    """Save ``X_<split>.sav``, ``y_<split>.sav`` (as torch tensors) and ``meta_<split>.npz``.

    Parameters
    ----------
    out_dir : Path
        Dataset directory.
    split : {'train', 'test'}
    x : numpy.ndarray, shape (n, c, h, w)
        Images in [0, 1], saved as float32.
    y : numpy.ndarray, shape (n,), optional
        Integer labels.
    meta : dict of numpy.ndarray, optional
        Per-image metadata (e.g. true angle and flip), saved with ``np.savez``.
    """
    out_dir = pathlib.Path(out_dir)
    atomic_write(out_dir / f"X_{split}.sav", lambda p: torch.save(torch.from_numpy(x.astype(np.float32)), p))
    if y is not None:
        atomic_write(
            out_dir / f"y_{split}.sav", lambda p: torch.save(torch.from_numpy(y.astype(np.int64)), p)
        )
    if meta:

        def write_meta(tmp):
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
                np.savez(f, **meta)

        atomic_write(out_dir / f"meta_{split}.npz", write_meta)


def save_sample_grid(path, x, labels=None, ncols=12, title=None):
    """Save a PNG grid of the first images of ``x`` ``(n, c, h, w)`` (first channel shown)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's) stays

    n = min(len(x), ncols * 4)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(ncols * 1.0, nrows * 1.1 + 0.3))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(x[k, 0], cmap="gray", vmin=0, vmax=1)
            if labels is not None:
                ax.set_title(str(labels[k]), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=80, format="png"))
