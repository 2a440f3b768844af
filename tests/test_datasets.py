import os
import pathlib
import pickle
import stat
import types

import numpy as np
import pytest
import tifffile
import torch

from configs.schema import DataConfig
from data.datasets import (
    DatasetError,
    ImageDataset,
    get_datasets_from_config,
    load_array,
    load_dataset,
)


def make_images(n=6, c=1, size=8, seed=0):
    return np.random.default_rng(seed).random((n, c, size, size)).astype(np.float32)


def write(path, x):
    """Write ``x`` in the format named by the suffix of ``path``."""
    suffix = path.suffix
    if suffix == ".sav":
        torch.save(torch.from_numpy(x) if isinstance(x, np.ndarray) else x, path)
    elif suffix == ".npy":
        np.save(path, x)
    elif suffix == ".npz":
        np.savez(path, x=x)
    elif suffix == ".tif":
        tifffile.imwrite(path, x)
    return path


@pytest.mark.parametrize("suffix", [".sav", ".npy", ".npz", ".tif"])
def test_each_format_round_trips(tmp_path, suffix):
    x = make_images(n=5, c=1)[:, 0]  # (n, h, w): a multi-page tif stores one page per image
    got = load_array(write(tmp_path / f"X_train{suffix}", x))
    np.testing.assert_array_equal(got, x)
    data = load_dataset(tmp_path)
    assert data["X_train"].shape == (5, 1, 8, 8)  # the channel axis is added


def test_sav_holding_a_numpy_array_loads(tmp_path):
    x = make_images()
    torch.save(x, tmp_path / "X_train.sav")  # the original repo also saved numpy arrays this way
    np.testing.assert_array_equal(load_array(tmp_path / "X_train.sav"), x)


def test_npy_is_memory_mapped(tmp_path):
    got = load_array(write(tmp_path / "X_train.npy", make_images()))
    assert isinstance(got, np.memmap)
    data = load_dataset(tmp_path)
    assert isinstance(data["X_train"].base, np.memmap) or isinstance(data["X_train"], np.memmap)


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "X_train.sav", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(DatasetError, match="X_train.sav.*never arbitrary pickled objects"):
        load_array(tmp_path / "X_train.sav")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="obj.npy"):
        load_array(tmp_path / "obj.npy")


def test_sav_of_a_dict_is_refused(tmp_path):
    torch.save({"x": torch.zeros(2, 4, 4)}, tmp_path / "X_train.sav")
    with pytest.raises(
        DatasetError, match="X_train.sav: expected a tensor or numeric numpy array, found dict"
    ):
        load_array(tmp_path / "X_train.sav")


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 1, 1, 8, 8), np.float32), r"must have shape \(n, c, h, w\) or \(n, h, w\)"),
        (np.zeros((8, 8), np.float32), r"must have shape"),
        (np.zeros((2, 1, 8, 6), np.float32), "must be square, got height 8 and width 6"),
        (np.zeros((2, 1, 9, 9), np.float32), "image size must be even, got 9x9; pad by one pixel"),
        (np.zeros((0, 1, 8, 8), np.float32), "empty image array"),
        (np.array([[["a"]]]), "must be numeric"),
    ],
)
def test_bad_image_arrays(tmp_path, x, message):
    np.save(tmp_path / "X_train.npy", x)
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(tmp_path)
    assert "X_train.npy" in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_name_the_image(tmp_path, bad):
    x = make_images()
    x[4, 0, 2, 3] = bad
    np.save(tmp_path / "X_train.npy", x)
    with pytest.raises(DatasetError, match="X_train.npy: image 4 contains NaN or Inf"):
        load_dataset(tmp_path)


def test_values_outside_unit_range(tmp_path):
    x = make_images() * 255
    np.save(tmp_path / "X_train.npy", x)
    with pytest.raises(
        DatasetError, match=r"X_train.npy: values lie in \[.*\] but must lie in \[0, 1\].*minmax"
    ):
        load_dataset(tmp_path)
    data = load_dataset(tmp_path, rescale="minmax")
    dset = ImageDataset(data["X_train"], value_range=data["value_range"])
    items = torch.stack([dset[i][0] for i in range(len(dset))])
    assert items.min() == pytest.approx(0.0, abs=1e-6) and items.max() == pytest.approx(1.0, abs=1e-6)


def test_labels_must_match_images(tmp_path):
    np.save(tmp_path / "X_train.npy", make_images(n=6))
    np.save(tmp_path / "y_train.npy", np.arange(5))
    with pytest.raises(DatasetError, match="y_train.npy: 5 labels for 6 images"):
        load_dataset(tmp_path)
    np.save(tmp_path / "y_train.npy", np.zeros((6, 2)))
    with pytest.raises(DatasetError, match="y_train.npy: labels must be one-dimensional"):
        load_dataset(tmp_path)


def test_train_and_test_sizes_must_match(tmp_path):
    np.save(tmp_path / "X_train.npy", make_images(size=8))
    np.save(tmp_path / "X_test.npy", make_images(size=10))
    with pytest.raises(DatasetError, match=r"X_test.npy: test images have shape .* but training images"):
        load_dataset(tmp_path)


def test_missing_and_ambiguous_files(tmp_path):
    with pytest.raises(DatasetError, match="dataset directory not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no X_train file"):
        load_dataset(tmp_path)
    np.save(tmp_path / "X_train.npy", make_images())
    write(tmp_path / "X_train.sav", make_images())
    with pytest.raises(DatasetError, match="several files for 'X_train'"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="file not found"):
        load_array(tmp_path / "missing.npy")
    with pytest.raises(DatasetError, match="unknown file type '.csv'"):
        (tmp_path / "a.csv").write_text("1")
        load_array(tmp_path / "a.csv")


def test_augmentation_by_90_degrees_equals_rot90():
    x = torch.from_numpy(make_images(n=1, c=2)[0])
    assert torch.allclose(ImageDataset.augment(x, 90.0, False), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(ImageDataset.augment(x, 0.0, True), x.flip(-1), atol=1e-6)


def test_random_augmentation_varies_and_keeps_labels():
    x = np.zeros((1, 1, 16, 16), np.float32)
    x[0, 0, 4:8, 7:9] = 1.0  # an off-centre bar: its rotations differ
    dset = ImageDataset(x, np.array([3]), rotate=True, flip=True)
    torch.manual_seed(0)
    items = [dset[0] for _ in range(20)]
    assert all(label == 3 for _, label in items)
    imgs = torch.stack([img for img, _ in items])
    assert imgs.std(0).max() > 0.3  # different orientations
    # rotation about the centre keeps the mass of an object inside the disk (up to interpolation)
    assert torch.allclose(imgs.sum((1, 2, 3)), torch.full((20,), 8.0), atol=0.5)


def test_unlabelled_items_carry_no_label_and_a_label_of_minus_one_is_kept():
    item = ImageDataset(make_images())[0]
    assert len(item) == 1 and item[0].shape == (1, 8, 8)
    labelled = ImageDataset(make_images(n=2), np.array([-1, 4]))
    assert [labelled[i][1] for i in range(2)] == [-1, 4]


@pytest.mark.parametrize(
    "y, message",
    [
        (np.array([0, 1, 2.5, 3, 4, 5]), r"labels must be finite whole numbers, label 2 is 2.5"),
        (np.array([0, 1, 2, np.nan, 4, 5]), r"label 3 is nan"),
        (np.array(["a", "b", "a", "b", "a", "b"]), r"labels must be integers, got dtype <U1.*np.unique"),
    ],
)
def test_labels_must_be_finite_integers(tmp_path, y, message):
    np.save(tmp_path / "X_train.npy", make_images(n=6))
    np.save(tmp_path / "y_train.npy", y)
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(tmp_path)
    assert "y_train.npy" in str(err.value)


def test_whole_float_labels_become_int64(tmp_path):
    np.save(tmp_path / "X_train.npy", make_images(n=6))
    np.save(tmp_path / "y_train.npy", np.array([0.0, 1, 2, 3, -1, 5]))
    y = load_dataset(tmp_path)["y_train"]
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 3, -1, 5]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_sav_tensors_of_any_float_dtype_or_with_gradients_load(tmp_path, dtype):
    x = torch.from_numpy(make_images()).to(dtype).requires_grad_(True)
    torch.save(x, tmp_path / "X_train.sav")
    got = load_array(tmp_path / "X_train.sav")
    np.testing.assert_array_equal(got, x.detach().float().numpy())  # bfloat16 values are exact in float32
    assert load_dataset(tmp_path)["X_train"].shape == (6, 1, 8, 8)


def test_complex_sav_tensor_is_refused(tmp_path):
    torch.save(torch.zeros(2, 1, 8, 8, dtype=torch.complex64), tmp_path / "X_train.sav")
    with pytest.raises(
        DatasetError, match="X_train.sav: expected a real numeric tensor, got dtype torch.complex64"
    ):
        load_array(tmp_path / "X_train.sav")


def test_rgb_tiff_stack_is_read_channels_first(tmp_path):
    x = (make_images(n=4, c=3) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "X_train.tif", np.moveaxis(x, 1, -1), photometric="rgb")  # (n, h, w, 3)
    np.testing.assert_array_equal(load_array(tmp_path / "X_train.tif"), x)


def test_tiff_with_channels_before_images_is_reordered(tmp_path):
    x = make_images(n=5, c=2)
    channels_first = np.ascontiguousarray(np.moveaxis(x, 1, 0))  # (c, n, h, w), axes named
    tifffile.imwrite(tmp_path / "X_train.tif", channels_first, metadata={"axes": "CZYX"})
    np.testing.assert_array_equal(load_array(tmp_path / "X_train.tif"), x)


def test_channels_first_stacks_are_not_read_as_few_images_of_many_channels(tmp_path):
    np.save(tmp_path / "X_train.npy", np.zeros((2, 40, 8, 8), np.float32))  # 40 images of 2 channels
    with pytest.raises(DatasetError, match=r"reads as 2 images of 40 channels; if it is \(c, n, h, w\)"):
        load_dataset(tmp_path)


def test_channel_last_arrays_get_a_hint(tmp_path):
    np.save(tmp_path / "X_train.npy", np.moveaxis(make_images(n=4, c=3), 1, -1))
    with pytest.raises(DatasetError, match=r"X_train.npy: shape \(4, 8, 8, 3\) looks like channel-last"):
        load_dataset(tmp_path)


def test_minmax_range_comes_from_training_data_and_test_data_must_lie_inside(tmp_path):
    x = make_images(n=6) * 200 + 10
    np.save(tmp_path / "X_train.npy", x)
    np.save(tmp_path / "X_test.npy", x[:2] * 0.5 + 60)  # inside the training range
    data = load_dataset(tmp_path, rescale="minmax")
    assert data["value_range"] == (pytest.approx(x.min()), pytest.approx(x.max()))
    np.save(tmp_path / "X_test.npy", x[:2] * 2)
    with pytest.raises(DatasetError, match=r"X_test.npy: values lie in \[.*\] but must lie in the range"):
        load_dataset(tmp_path, rescale="minmax")


def test_a_given_value_range_is_used_for_every_split(tmp_path):
    np.save(tmp_path / "X_train.npy", make_images(n=6) * 100)
    data = load_dataset(tmp_path, rescale="minmax", value_range=(0.0, 255.0))
    assert data["value_range"] == (0.0, 255.0)
    dset = ImageDataset(data["X_train"], value_range=data["value_range"])
    np.testing.assert_allclose(dset[3][0].numpy(), data["X_train"][3] / 255.0, rtol=1e-6)
    with pytest.raises(
        DatasetError, match=r"X_train.npy: values lie in .* but must lie in the range \[0, 50\]"
    ):
        load_dataset(tmp_path, rescale="minmax", value_range=(0.0, 50.0))


def test_get_datasets_from_config(tmp_path):
    np.save(tmp_path / "X_train.npy", make_images(n=10))
    np.save(tmp_path / "y_train.npy", np.arange(10))
    np.save(tmp_path / "X_test.npy", make_images(n=4))
    config = types.SimpleNamespace(
        data=DataConfig(data_dir=str(tmp_path), batch_size=3, rotation_augmentation=True)
    )
    dset, loader, dset_test, loader_test = get_datasets_from_config(config)
    assert len(dset) == 10 and len(dset_test) == 4
    assert dset.rotate and not dset_test.rotate
    x, y = next(iter(loader))
    assert x.shape == (3, 1, 8, 8) and x.dtype == torch.float32
    assert sum(len(b[0]) for b in loader_test) == 4
    assert all(len(b) == 1 for b in loader_test)  # no labels: batches hold the images only
    (tmp_path / "X_test.npy").unlink()
    assert get_datasets_from_config(config)[2:] == (None, None)


def data_config(data_dir, **values):
    return types.SimpleNamespace(data=DataConfig(data_dir=str(data_dir), **values))


def test_limit_train_keeps_the_first_images_and_labels(tmp_path):
    x = make_images(n=10)
    np.save(tmp_path / "X_train.npy", x)
    np.save(tmp_path / "y_train.npy", np.arange(10) + 100)
    dset = get_datasets_from_config(data_config(tmp_path, batch_size=4, limit_train=7))[0]
    assert len(dset) == 7
    np.testing.assert_array_equal(dset.x, x[:7])
    assert [dset[i][1] for i in range(7)] == list(range(100, 107))


def test_minmax_rescaling_maps_the_training_range_to_unit_interval(tmp_path):
    x = make_images(n=10) * 3000 + 500
    np.save(tmp_path / "X_train.npy", x)
    np.save(tmp_path / "X_test.npy", x[:3])
    dset, loader, dset_test, _ = get_datasets_from_config(
        data_config(tmp_path, batch_size=5, rescale="minmax")
    )
    images = torch.cat([b[0] for b in loader])
    assert images.min().item() == pytest.approx(0.0, abs=1e-6) and images.max().item() == pytest.approx(1.0)
    expected = (x[:3] - x.min()) / (x.max() - x.min())
    np.testing.assert_allclose(np.stack([dset_test[i][0].numpy() for i in range(3)]), expected, rtol=1e-5)
    fixed = data_config(tmp_path, batch_size=5, rescale="minmax", value_range=[0.0, 4000.0])
    np.testing.assert_allclose(get_datasets_from_config(fixed)[2][0][0].numpy(), x[0] / 4000.0, rtol=1e-6)


def test_training_loader_shuffles_reproducibly_and_covers_every_image(tmp_path):
    np.save(tmp_path / "X_train.npy", make_images(n=12))
    np.save(tmp_path / "y_train.npy", np.arange(12))
    config = data_config(tmp_path, batch_size=4)

    def epoch_order(seed):
        loader = get_datasets_from_config(config, generator=torch.Generator().manual_seed(seed))[1]
        return [int(v) for b in loader for v in b[1]]

    first = epoch_order(0)
    assert sorted(first) == list(range(12)) and first != list(range(12))
    assert epoch_order(0) == first and epoch_order(1) != first


@pytest.mark.parametrize("n, batches", [(17, [16]), (18, [16, 2]), (16, [16])])
def test_only_a_last_training_batch_of_one_image_is_dropped(tmp_path, n, batches):
    np.save(tmp_path / "X_train.npy", make_images(n=n))
    np.save(tmp_path / "X_test.npy", make_images(n=17))
    _, loader, _, loader_test = get_datasets_from_config(data_config(tmp_path, batch_size=16))
    assert [len(b[0]) for b in loader] == batches
    assert [len(b[0]) for b in loader_test] == [16, 1]  # evaluation keeps every image


def test_atomic_write_creates_normal_files_and_keeps_the_old_one_on_failure(tmp_path):
    from data.io import atomic_write

    target = tmp_path / "model.pt"
    old_umask = os.umask(0o027)
    try:
        atomic_write(target, lambda p: pathlib.Path(p).write_bytes(b"first"))
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"first" and stat.S_IMODE(target.stat().st_mode) == 0o640

    def fail(p):
        pathlib.Path(p).write_bytes(b"half")
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_resizing_on_load_is_anti_aliased_and_keeps_the_range():
    from data.datasets import to_model_input

    checker = (np.indices((32, 32)).sum(0) % 2).astype(np.float32)[None, None]  # the Nyquist frequency
    small = to_model_input(torch.from_numpy(checker), size=16)
    assert small.shape == (1, 1, 16, 16)
    # averaged away, not aliased to 0 or 1 (the corners' filters are cut by the border)
    np.testing.assert_allclose(small[..., 1:-1, :].numpy(), 0.5, atol=1e-6)
    np.testing.assert_allclose(small.numpy(), 0.5, atol=0.011)
    yy, xx = np.mgrid[:32, :32] / 31.0
    smooth = torch.from_numpy((0.5 + 0.4 * np.sin(2 * yy + xx)).astype(np.float32))[None, None]
    from skimage.transform import resize

    reference = resize(smooth[0, 0].numpy(), (16, 16), anti_aliasing=True)
    np.testing.assert_allclose(to_model_input(smooth, size=16)[0, 0].numpy(), reference, atol=0.01)
    scaled = to_model_input(smooth * 200 + 100, value_range=(100.0, 300.0), size=16)
    np.testing.assert_allclose(scaled.numpy(), to_model_input(smooth, size=16).numpy(), atol=1e-5)


def test_config_resize_serves_images_at_the_model_size(tmp_path):
    np.save(tmp_path / "X_train.npy", make_images(n=6, c=2, size=32))
    config = types.SimpleNamespace(
        data=DataConfig(data_dir=str(tmp_path), batch_size=3, resize=True),
        model=types.SimpleNamespace(image_size=16),
    )
    dset, loader, _, _ = get_datasets_from_config(config)
    assert dset[0][0].shape == (2, 16, 16) and next(iter(loader))[0].shape == (3, 2, 16, 16)
