import numpy as np
import pandas as pd
import pytest
import torch

from data import generate_nuclei, generate_o2mnist, generate_shapes
from data.datasets import load_dataset
from registration.transform import rotate_flip


def undo(x, angle, flip):
    """Inverse of rotate_flip: rotate back, then mirror."""
    back = rotate_flip(torch.from_numpy(x), torch.from_numpy(-angle).float(), mode="bicubic")
    return torch.where(torch.from_numpy(flip)[:, None, None, None], back.flip(-1), back).numpy()


def relative_error(a, b):
    return np.abs(a - b).sum((1, 2, 3)) / np.abs(b).sum((1, 2, 3))


@pytest.fixture(scope="module")
def o2mnist(tmp_path_factory):
    out = tmp_path_factory.mktemp("o2mnist")
    generate_o2mnist.main(["--n", "300", "--n-test", "60", "--out", str(out), "--overwrite"])
    return out


def test_o2mnist_files_shapes_and_values(o2mnist):
    data = load_dataset(o2mnist)  # validates: finite, square, even, in [0, 1]
    assert data["X_train"].shape == (300, 1, 32, 32) and data["X_test"].shape == (60, 1, 32, 32)
    assert set(np.unique(data["y_train"])) == set(range(10))
    meta = np.load(o2mnist / "meta_train.npz")
    assert meta["angle"].shape == (300,) and meta["flip"].dtype == bool
    assert 0 <= meta["angle"].min() and meta["angle"].max() < 360
    assert 0.3 < meta["flip"].mean() < 0.7
    assert (o2mnist / "samples.png").stat().st_size > 10_000


def test_o2mnist_metadata_undoes_the_transform(o2mnist):
    data = load_dataset(o2mnist)
    meta = np.load(o2mnist / "meta_train.npz")
    x_mnist, y_mnist, _, _ = generate_o2mnist.load_mnist()
    upright = np.pad(x_mnist[meta["mnist_index"]], ((0, 0), (2, 2), (2, 2)))[:, None] / 255.0
    np.testing.assert_array_equal(data["y_train"], y_mnist[meta["mnist_index"]])
    x = np.asarray(data["X_train"])
    err = relative_error(undo(x, meta["angle"], meta["flip"]), upright)
    wrong = relative_error(undo(x, meta["angle"], ~meta["flip"]), upright)
    # two bicubic resamplings of a thin stroke: ~10 % of its mass moves; a wrong flip moves most of it
    assert np.median(err) < 0.15 and np.percentile(err, 95) < 0.25
    assert np.median(wrong) > 0.5


def test_o2mnist_is_reproducible_from_the_seed(o2mnist, tmp_path):
    generate_o2mnist.main(["--n", "300", "--n-test", "60", "--out", str(tmp_path)])
    assert torch.equal(torch.load(tmp_path / "X_train.sav"), torch.load(o2mnist / "X_train.sav"))
    other = tmp_path / "other"
    generate_o2mnist.main(["--n", "300", "--n-test", "60", "--out", str(other), "--seed", "1"])
    assert not torch.equal(torch.load(other / "X_train.sav"), torch.load(o2mnist / "X_train.sav"))


def test_generators_refuse_to_overwrite(o2mnist):
    before = (o2mnist / "X_train.sav").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_o2mnist.main(["--n", "10", "--n-test", "10", "--out", str(o2mnist)])
    assert (o2mnist / "X_train.sav").stat().st_mtime_ns == before


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    generate_shapes.main(["--n", "120", "--n-test", "30", "--size", "32", "--out", str(out), "--overwrite"])
    return out


def test_shapes_files_classes_and_values(shapes):
    data = load_dataset(shapes)
    assert data["X_train"].shape == (120, 1, 32, 32) and data["X_test"].shape == (30, 1, 32, 32)
    counts = np.bincount(data["y_train"], minlength=len(generate_shapes.CLASSES))
    assert len(counts) == 6 and counts.min() == counts.max() == 20  # balanced
    x = np.asarray(data["X_train"])
    assert x.min() == 0.0 and 0.5 < x.max() <= 1.0
    # every object lies inside the inscribed disk, so no rotation cuts it
    yy, xx = np.mgrid[:32, :32] - 15.5
    assert (x[..., np.hypot(yy, xx) > 15.5] == 0).all()


def test_shapes_are_reproducible(shapes, tmp_path):
    generate_shapes.main(["--n", "120", "--n-test", "30", "--size", "32", "--out", str(tmp_path)])
    assert torch.equal(torch.load(tmp_path / "X_test.sav"), torch.load(shapes / "X_test.sav"))


@pytest.mark.parametrize("cls", range(6))
def test_shapes_render_is_rotate_flip_of_the_upright_object(cls):
    rng = np.random.default_rng(cls)
    params = generate_shapes.random_params(cls, rng)
    upright = generate_shapes.render(cls, params, 0.0, False, 64)[None, None]
    for angle, flip in ((90.0, False), (90.0, True), (37.0, True), (211.0, False)):
        direct = generate_shapes.render(cls, params, angle, flip, 64)[None, None]
        warped = rotate_flip(torch.from_numpy(upright), angle, flip, mode="bicubic").numpy()
        assert relative_error(warped, direct)[0] < 0.05, (angle, flip)
    # classes differ in shape: the same orientation of another class is far away
    other = generate_shapes.render(
        (cls + 1) % 6, generate_shapes.random_params((cls + 1) % 6, rng), 0.0, False, 64
    )
    assert relative_error(other[None, None], upright)[0] > 0.2


# crops per source, as data/README.md's table lists them
NUCLEI_CROPS = {"stardist/img2d": 110, "napari/nuclei": 11, "napari/2D_timelapse": 120, "mahotas/nuclear": 44}


def test_nuclei_crops(tmp_path):
    generate_nuclei.main(["--out", str(tmp_path), "--size", "64"])
    data = load_dataset(tmp_path)
    n_train, n_test = len(data["X_train"]), len(data["X_test"])
    assert n_train + n_test > 200 and n_test == round(0.2 * (n_train + n_test))
    x = np.asarray(data["X_train"])
    yy, xx = np.mgrid[:64, :64] - 31.5
    assert (x[..., np.hypot(yy, xx) > 31] == 0).all()  # background zeroed, objects inside the disk
    assert (x.reshape(n_train, -1).max(1) > 0.9).all()  # intensities normalised per object
    centre = x[:, 0, 28:36, 28:36].mean((1, 2))
    assert (centre > 0).mean() > 0.95  # centred: the nucleus covers the middle
    table = pd.read_parquet(tmp_path / "metadata.parquet")
    meta = table[table["split"] == "train"].sort_values("index_in_split")
    assert set(meta["source"]) == {
        "stardist/img2d",
        "napari/nuclei",
        "napari/2D_timelapse",
        "mahotas/nuclear",
    }
    assert len(meta["object_id"]) == n_train and (meta["object_id"] > 0).all()
    keys = set(zip(meta["source"], meta["index"], meta["object_id"], strict=True))
    assert len(keys) == n_train  # each crop is a distinct object

    # the exact counts of data/README.md: 285 crops, 20 % (57) in the test split
    assert (n_train, n_test) == (228, 57)
    sources, counts = np.unique(table["source"], return_counts=True)
    assert dict(zip(sources.tolist(), counts.tolist(), strict=True)) == NUCLEI_CROPS
    # every crop has one metadata row, in the order of the arrays; the timelapse is read every 3rd frame
    assert len(set(zip(table["source"], table["index"], table["object_id"], strict=True))) == 285
    assert sorted(table.loc[table["split"] == "test", "index_in_split"]) == list(range(57))
    assert (meta["index"][meta["source"] == "napari/2D_timelapse"] % 3 == 0).all()
    assert (meta["scale_factor"].groupby(meta["source"]).nunique() == 1).all()  # one zoom per source
    # deterministic: a second run writes the same crops in the same order
    generate_nuclei.main(["--out", str(tmp_path / "again"), "--size", "64"])
    again = load_dataset(tmp_path / "again")
    np.testing.assert_array_equal(np.asarray(again["X_train"]), x)
    np.testing.assert_array_equal(np.asarray(again["X_test"]), np.asarray(data["X_test"]))
