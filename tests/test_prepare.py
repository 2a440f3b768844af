"""data.prepare: from synthetic label images with known objects to a dataset of centred crops."""

import json
import types

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage import draw, measure

from data.datasets import load_dataset
from data.prepare import PrepareError, main, prepare_dataset

SIZE = 32


def ellipse_image(rng, shape=(120, 160), n=5, border_object=True):
    """An intensity image and a label mask with ``n`` ellipses inside and one cut by the border."""
    image = np.zeros(shape, np.float32)
    mask = np.zeros(shape, np.int32)
    placed = 0
    while placed < n:
        r, c = rng.uniform(15, shape[0] - 15), rng.uniform(15, shape[1] - 15)
        rr, cc = draw.ellipse(
            r, c, rng.uniform(4, 9), rng.uniform(3, 6), shape, rotation=rng.uniform(0, np.pi)
        )
        if mask[rr, cc].any() or np.hypot(rr - r, cc - c).max() > 11:
            continue
        placed += 1
        mask[rr, cc] = placed
        image[rr, cc] = rng.uniform(100, 4000) + 50 * (cc - c)  # a gradient: intensity centroid moves
    if border_object:
        rr, cc = draw.disk((3, shape[1] // 2), 6, shape=shape)
        mask[rr, cc] = n + 1
        image[rr, cc] = 1000
    return np.clip(image, 0, None), mask


@pytest.fixture
def label_images(tmp_path):
    rng = np.random.default_rng(0)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    truth = {}
    for i in range(6):
        image, mask = ellipse_image(rng)
        tifffile.imwrite(images / f"img{i}.tif", image)
        tifffile.imwrite(masks / f"img{i}.tif", mask)
        truth[f"img{i}.tif"] = (image, mask)
    return images, masks, truth


def crop_centroid(crop):
    """Centroid of the pixels of a binary crop, relative to the crop centre."""
    rows, cols = np.nonzero(crop > 0.5)
    return rows.mean() - (crop.shape[0] - 1) / 2, cols.mean() - (crop.shape[1] - 1) / 2


def test_every_kept_crop_is_centred_and_every_inner_object_is_kept(label_images, tmp_path):
    images, masks, truth = label_images
    out = tmp_path / "data"
    summary = prepare_dataset(out, images=images, masks=masks, size=SIZE, mask_mode="mask", progress=False)
    meta = pd.read_parquet(out / "metadata.parquet")
    inner = {
        (name, p.label) for name, (_, m) in truth.items() for p in measure.regionprops(m) if p.label <= 5
    }
    assert set(zip(meta["source_image"], meta["object_id"], strict=True)) == inner
    assert summary["dropped"] == {"touches the image border": 6}
    assert summary["n_objects"] == {"train": 25, "test": 5}  # one of 6 images in the test split
    for split in ("train", "test"):
        x = np.load(out / f"X_{split}.npy")
        rows = meta[meta["split"] == split]
        assert x.shape == (len(rows), 1, SIZE, SIZE) and x.dtype == np.float32
        for crop, (_, row) in zip(x, rows.iterrows(), strict=True):
            dy, dx = crop_centroid(crop[0])
            assert abs(dy) <= 0.5 and abs(dx) <= 0.5, (row["source_image"], row["object_id"], dy, dx)
            # the crop holds the object at scale 1: the same pixels, up to a sub-pixel shift of its edge
            (p,) = [
                p for p in measure.regionprops(truth[row["source_image"]][1]) if p.label == row["object_id"]
            ]
            assert abs((crop[0] > 0.5).sum() - p.area) <= 0.5 * p.perimeter


def test_metadata_matches_regionprops_and_no_image_spans_both_splits(label_images, tmp_path):
    images, masks, truth = label_images
    out = tmp_path / "data"
    prepare_dataset(out, images=images, masks=masks, size=SIZE, test_fraction=0.34, seed=3, progress=False)
    meta = pd.read_csv(out / "metadata.csv")
    assert meta.groupby("source_image")["split"].nunique().max() == 1
    assert (meta["split"] == "test").groupby(meta["source_image"]).first().sum() == 2  # round(0.34 * 6)
    for _, row in meta.iterrows():
        (p,) = [p for p in measure.regionprops(truth[row["source_image"]][1]) if p.label == row["object_id"]]
        assert (row["centroid_row"], row["centroid_col"]) == pytest.approx(p.centroid)
        assert (row["bbox_min_row"], row["bbox_max_col"], row["area"]) == (p.bbox[0], p.bbox[3], p.area)
        assert row["index_in_split"] == (meta[meta["split"] == row["split"]].index < row.name).sum()
    data = load_dataset(out)  # our own dataset checks: finite, square, even, in [0, 1]
    assert len(data["X_train"]) + len(data["X_test"]) == len(meta)


def brute_force_extent(mask, label, centroid):
    rows, cols = np.nonzero(mask == label)
    return 2 * (np.hypot(rows - centroid[0], cols - centroid[1]).max() + 0.5)


@pytest.mark.parametrize("scale", ["fit", "dataset"])
def test_scale_factors_are_recorded_and_correct(label_images, tmp_path, scale):
    images, masks, truth = label_images
    out = tmp_path / "data"
    prepare_dataset(
        out, images=images, masks=masks, size=SIZE, scale=scale, fill=0.7, mask_mode="mask", progress=False
    )
    meta = pd.read_parquet(out / "metadata.parquet")
    extents = np.array(
        [
            brute_force_extent(truth[r.source_image][1], r.object_id, (r.centroid_row, r.centroid_col))
            for r in meta.itertuples()
        ]
    )
    np.testing.assert_allclose(meta["extent"], extents)
    if scale == "fit":
        np.testing.assert_allclose(meta["scale_factor"], 0.7 * SIZE / extents)
    else:
        assert meta["scale_factor"].nunique() == 1
        assert meta["scale_factor"].iloc[0] == pytest.approx(0.7 * SIZE / np.percentile(extents, 95))
    x = np.concatenate([np.load(out / f"X_{s}.npy") for s in ("train", "test")])
    order = np.concatenate([np.flatnonzero(meta["split"] == s) for s in ("train", "test")])
    scaled_area = meta["area"].to_numpy()[order] * meta["scale_factor"].to_numpy()[order] ** 2
    np.testing.assert_allclose((x[:, 0] > 0.5).sum((1, 2)), scaled_area, rtol=0.2)


def test_objects_larger_than_the_crop_are_dropped_or_clipped(label_images, tmp_path):
    images, masks, _ = label_images
    summary = prepare_dataset(tmp_path / "a", images=images, masks=masks, size=16, progress=False)
    assert summary["dropped"]["larger than the crop's disk"] > 0
    clipped = prepare_dataset(tmp_path / "b", images=images, masks=masks, size=16, clip=True, progress=False)
    assert "larger than the crop's disk" not in clipped["dropped"]
    assert sum(clipped["n_objects"].values()) == 30


def test_intensity_centre_and_mask_modes(label_images, tmp_path):
    images, masks, truth = label_images
    out = tmp_path / "data"
    prepare_dataset(
        out, images=images, masks=masks, size=SIZE, centre="intensity", mask_mode="both", progress=False
    )
    meta = pd.read_parquet(out / "metadata.parquet")
    x = np.load(out / "X_train.npy")
    assert x.shape[1] == 2  # intensity, then the mask
    row = meta[meta["split"] == "train"].iloc[0]
    image, mask = truth[row["source_image"]]
    rows, cols = np.nonzero(mask == row["object_id"])
    w = image[rows, cols]
    assert (row["centroid_row"], row["centroid_col"]) == pytest.approx(
        ((w * rows).sum() / w.sum(), (w * cols).sum() / w.sum())
    )
    assert set(np.unique(x[:, 1])) <= {0.0, 1.0}
    assert (x[:, 0][x[:, 1] == 0] == 0).all()  # intensity is zero outside the object
    summary = json.loads((out / "prepare.json").read_text())
    assert (
        summary["normalisation"]["rule"] == "dataset" and len(summary["normalisation"]["values"]["lo"]) == 1
    )


def test_labels_csv_gives_classes_and_metadata(label_images, tmp_path):
    images, masks, _ = label_images
    csv = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "file": [f"img{i}.tif" for i in range(6)],
            "label": ["treated", "control"] * 3,
            "well": list("AABBCC"),
        }
    ).to_csv(csv, index=False)
    out = tmp_path / "data"
    summary = prepare_dataset(
        out, images=images, masks=masks, labels=csv, group_column="well", size=SIZE, progress=False
    )
    assert summary["classes"] == ["control", "treated"]
    meta = pd.read_parquet(out / "metadata.parquet")
    assert meta.groupby("well")["split"].nunique().max() == 1  # split by the group column
    for split in ("train", "test"):
        y = np.load(out / f"y_{split}.npy")
        expected = (meta.loc[meta["split"] == split, "label"] == "treated").astype(int)
        np.testing.assert_array_equal(y, expected)


def test_crops_folder(tmp_path):
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(1)
    centres = {}
    for i in range(5):
        img = rng.normal(10, 1, (40 + 2 * i, 50)).clip(0)  # any size, noisy background
        r, c = 18 + i, 22 + i
        rr, cc = draw.ellipse(r, c, 8, 5, img.shape, rotation=0.3 * i)
        img[rr, cc] += 200
        tifffile.imwrite(crops / f"cell{i}.tif", img.astype(np.float32))
        centres[f"cell{i}.tif"] = (rr.mean(), cc.mean())
    out = tmp_path / "data"
    prepare_dataset(out, crops=crops, size=SIZE, mask_mode="mask", test_fraction=0.2, progress=False)
    meta = pd.read_parquet(out / "metadata.parquet")
    assert sorted(meta["source_image"]) == sorted(centres)
    for r in meta.itertuples():
        assert (r.centroid_row, r.centroid_col) == pytest.approx(centres[r.source_image], abs=0.5)


def test_bad_files_are_reported_and_skipped(label_images, tmp_path, capsys):
    images, masks, _ = label_images
    (images / "broken.tif").write_bytes(b"not a tiff")
    (masks / "broken.tif").write_bytes(b"not a tiff")
    tifffile.imwrite(images / "small.tif", np.ones((20, 20), np.float32))
    tifffile.imwrite(masks / "small.tif", np.ones((21, 20), np.int32))
    tifffile.imwrite(images / "empty.tif", np.ones((30, 30), np.float32))
    tifffile.imwrite(masks / "empty.tif", np.zeros((30, 30), np.int32))
    tifffile.imwrite(images / "floaty.tif", np.ones((30, 30), np.float32))
    tifffile.imwrite(masks / "floaty.tif", np.full((30, 30), 0.5, np.float32))
    summary = prepare_dataset(tmp_path / "data", images=images, masks=masks, size=SIZE, progress=False)
    assert summary["dropped"]["bad file"] == 4
    assert sum(summary["n_objects"].values()) == 30
    err = capsys.readouterr().err
    assert "skipped broken.tif: " in err and "unreadable" in err
    assert "skipped small.tif: " in err and "mask shape (21, 20) differs from its image's (20, 20)" in err
    assert "skipped empty.tif: " in err and "the mask is empty" in err
    assert "skipped floaty.tif: " in err and "must hold integers, got dtype float32" in err


def test_refuses_to_overwrite_and_never_modifies_inputs(label_images, tmp_path):
    images, masks, _ = label_images
    before = {p.name: p.read_bytes() for p in (*images.iterdir(), *masks.iterdir())}
    out = tmp_path / "data"
    main(["--images", str(images), "--masks", str(masks), "--out", str(out), "--size", str(SIZE)])
    with pytest.raises(SystemExit, match="already holds files; pass --overwrite"):
        main(["--images", str(images), "--masks", str(masks), "--out", str(out)])
    main(["--images", str(images), "--masks", str(masks), "--out", str(out), "--size", "48", "--overwrite"])
    assert np.load(out / "X_train.npy").shape[-1] == 48
    assert {p.name: p.read_bytes() for p in (*images.iterdir(), *masks.iterdir())} == before


def test_nothing_usable_is_an_error(tmp_path):
    images, masks = tmp_path / "i", tmp_path / "m"
    images.mkdir()
    masks.mkdir()
    tifffile.imwrite(images / "a.tif", np.ones((30, 30), np.float32))
    tifffile.imwrite(masks / "a.tif", np.zeros((30, 30), np.int32))
    with pytest.raises(
        PrepareError,
        match=r"no usable object in 1 input\(s\); dropped: \{'bad file': 1\}; bad files: "
        r".*a.tif: the mask is empty",
    ):
        prepare_dataset(tmp_path / "out", images=images, masks=masks, progress=False)
    border = np.zeros((30, 30), np.int32)
    border[0:5, 10:15] = 1  # the only object touches the top edge
    tifffile.imwrite(masks / "a.tif", border)
    with pytest.raises(PrepareError, match=r"'touches the image border': 1\} \(--keep-border keeps"):
        prepare_dataset(tmp_path / "out", images=images, masks=masks, progress=False)
    with pytest.raises(PrepareError, match="no mask with the same stem"):
        tifffile.imwrite(images / "b.tif", np.ones((30, 30), np.float32))
        (masks / "a.tif").rename(masks / "c.tif")
        prepare_dataset(tmp_path / "out", images=images, masks=masks, progress=False)


def test_analysis_reads_the_metadata_of_each_split_in_image_order(label_images, tmp_path):
    from data.datasets import split_metadata

    images, masks, truth = label_images
    out = tmp_path / "data"
    prepare_dataset(out, images=images, masks=masks, size=SIZE, mask_mode="mask", progress=False)
    x = np.load(out / "X_train.npy")
    meta = split_metadata(out, "train", len(x))
    assert len(meta["source_image"]) == len(x) and "split" not in meta
    for crop, name, label in zip(x, meta["source_image"], meta["object_id"], strict=True):
        area = (truth[name][1] == label).sum()  # the crop at index i is the object of row i
        assert abs((crop[0] > 0.5).sum() - area) <= 0.25 * area
    assert split_metadata(out, "train", len(x) + 1) == {}


def test_multichannel_tiffs_pairs_csv_per_object_normalisation_and_area_filters(
    label_images, tmp_path, capsys
):
    _, masks, truth = label_images
    multi = tmp_path / "multi"
    multi.mkdir()
    rows = []
    for name, (image, _) in truth.items():
        tifffile.imwrite(multi / name, np.stack([image, 2 * image + 7], axis=-1))  # (h, w, 2)
        rows.append({"image": f"multi/{name}", "mask": str(masks / name), "group": name[:4]})
    pd.DataFrame(rows).to_csv(tmp_path / "pairs.csv", index=False)
    out = tmp_path / "data"
    summary = prepare_dataset(
        out, pairs=tmp_path / "pairs.csv", channel_axis=-1, size=SIZE, normalisation="per-object",
        mask_mode="none", min_area=60, max_area=120, test_fraction=0.0, progress=False,
    )  # fmt: skip
    areas = [p.area for _, m in truth.values() for p in measure.regionprops(m) if p.label <= 5]
    assert summary["dropped"]["smaller than min_area"] == sum(a < 60 for a in areas) > 0
    assert summary["dropped"]["larger than max_area"] == sum(a > 120 for a in areas) > 0
    meta = pd.read_parquet(out / "metadata.parquet")
    assert (
        set(meta["group"]) == {"img0", "img1", "img2", "img3", "img4", "img5"}
        and (meta["split"] == "train").all()
    )
    x = np.load(out / "X_train.npy")
    assert x.shape[1] == 2 and x.min() >= 0 and x.max() <= 1
    # per object, each channel's 99.5th percentile of object pixels maps to 1 (a linear map of channel 0)
    np.testing.assert_allclose(x[:, 0], x[:, 1], atol=2e-3)
    np.testing.assert_allclose(x.reshape(len(x), 2, -1).max(-1), 1.0, atol=1e-6)
    with pytest.raises(PrepareError, match=r"no usable object in 6 input\(s\); dropped: \{'bad file': 6\}"):
        prepare_dataset(tmp_path / "again", pairs=tmp_path / "pairs.csv", size=SIZE, progress=False)
    assert "image of shape (120, 160, 2); expected 2-D, or 3-D with --channel-axis" in capsys.readouterr().err


def test_training_reads_prepared_data_from_the_memory_map(label_images, tmp_path):
    from configs.schema import DataConfig
    from data.datasets import get_datasets_from_config

    images, masks, _ = label_images
    out = tmp_path / "data"
    prepare_dataset(out, images=images, masks=masks, size=SIZE, progress=False)
    config = types.SimpleNamespace(data=DataConfig(data_dir=str(out), batch_size=4, limit_train=10))
    dset, loader, dset_test, _ = get_datasets_from_config(config)
    assert isinstance(dset.x, np.memmap) and isinstance(dset_test.x, np.memmap)  # never read whole
    assert next(iter(loader))[0].shape == (4, 1, SIZE, SIZE)


def test_overwrite_leaves_no_stale_file_of_the_earlier_dataset(label_images, tmp_path):
    images, masks, _ = label_images
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"file": [f"img{i}.tif" for i in range(6)], "label": [0, 1] * 3}).to_csv(csv, index=False)
    out = tmp_path / "data"
    prepare_dataset(out, images=images, masks=masks, labels=csv, size=SIZE, progress=False)
    (out / "X_train.sav").write_bytes(b"an older format")
    (out / "notes.txt").write_text("mine")
    prepare_dataset(
        out, images=images, masks=masks, size=SIZE, test_fraction=0.0, overwrite=True, progress=False
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "X_train.npy",
        "metadata.csv",
        "metadata.parquet",
        "notes.txt",
        "prepare.json",
        "samples.png",
    ]
    data = load_dataset(out)
    assert data["y_train"] is None and data["X_test"] is None


def test_pairs_groups_split_whole_groups_and_same_names_in_two_folders_stay_apart(label_images, tmp_path):
    images, masks, _ = label_images
    (tmp_path / "plate2").mkdir()
    rows = []
    for i in range(6):
        rows.append(
            {"image": str(images / f"img{i}.tif"), "mask": str(masks / f"img{i}.tif"), "group": "AB"[i // 3]}
        )
    for i in range(2):  # the same file names in another folder
        target = tmp_path / "plate2" / f"img{i}.tif"
        target.write_bytes((images / f"img{i}.tif").read_bytes())
        rows.append({"image": str(target), "mask": str(masks / f"img{i}.tif"), "group": "C"})
    pd.DataFrame(rows).to_csv(tmp_path / "pairs.csv", index=False)
    out = tmp_path / "data"
    prepare_dataset(out, pairs=tmp_path / "pairs.csv", size=SIZE, test_fraction=0.34, progress=False)
    meta = pd.read_parquet(out / "metadata.parquet")
    assert meta.groupby("group")["split"].nunique().max() == 1  # whole groups, not whole images
    assert (meta["split"] == "test").groupby(meta["group"]).first().sum() == 1
    assert meta["source_image"].nunique() == 8


def test_integer_classes_keep_their_numeric_order(label_images, tmp_path):
    images, masks, _ = label_images
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"file": [f"img{i}.tif" for i in range(6)], "label": [2, 10, 2, 10, 1, 1]}).to_csv(
        csv, index=False
    )
    summary = prepare_dataset(
        tmp_path / "d", images=images, masks=masks, labels=csv, size=SIZE, progress=False
    )
    assert summary["classes"] == ["1", "2", "10"]
    meta = pd.read_parquet(tmp_path / "d" / "metadata.parquet")
    np.testing.assert_array_equal(meta["label_id"], meta["label"].map({1: 0, 2: 1, 10: 2}))


def test_a_file_with_another_channel_count_is_reported_and_skipped(tmp_path, capsys):
    crops = tmp_path / "crops"
    crops.mkdir()
    grey = np.zeros((40, 40), np.uint8)
    rr, cc = draw.ellipse(20, 20, 9, 6)
    grey[rr, cc] = 200
    for i in range(3):
        tifffile.imwrite(crops / f"cell{i}.tif", grey)
    from skimage import io

    io.imsave(crops / "colour.png", np.stack([grey] * 3, -1), check_contrast=False)
    summary = prepare_dataset(tmp_path / "d", crops=crops, size=SIZE, test_fraction=0.0, progress=False)
    assert summary["dropped"] == {"bad file": 1} and summary["n_objects"]["train"] == 3
    assert "colour.png: 3 channel(s), but the first image has 1" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "altered", "missing"])
def test_a_damaged_prepared_file_is_named_with_the_command_that_rebuilds_it(label_images, tmp_path, damage):
    import hashlib

    from data.datasets import DatasetError

    images, masks, _ = label_images
    out = tmp_path / "data"
    main(["--images", str(images), "--masks", str(masks), "--out", str(out), "--size", str(SIZE)])
    files = json.loads((out / "prepare.json").read_text())["files"]
    assert set(files) == {"X_train.npy", "X_test.npy", "metadata.parquet", "metadata.csv"}
    for name, digest in files.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    load_dataset(out)  # intact: loads
    target = out / "X_train.npy"
    data = bytearray(target.read_bytes())
    if damage == "truncated":
        target.write_bytes(bytes(data[: len(data) - 100]))
    elif damage == "altered":  # a value changed inside the array: still a valid .npy
        data[-3] ^= 0x01
        target.write_bytes(bytes(data))
        assert np.isfinite(np.load(target)).all()  # still a readable .npy: only the checksum can tell
    else:
        target.unlink()
    reason = "missing, but prepare.json lists it" if damage == "missing" else "its sha256 differs"
    with pytest.raises(DatasetError, match=f"X_train.npy: {reason}.*python -m data.prepare --images"):
        load_dataset(out)
