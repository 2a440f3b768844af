"""Property-based sweep of bad input: every public entry point either works or raises a ValueError or
TypeError whose message names the argument or file; never a deep torch/numpy error or a hang.

Hypothesis draws random shapes (including empty and zero-sized), dtypes and NaN/Inf values.
RELIABILITY.md reports the figures (inputs tried, failures found and fixed).
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SWEEP = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same inputs on every run: CI cannot flake
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
DTYPES = st.sampled_from(["float16", "float32", "float64", "uint8", "int32", "int64", "bool", "complex64"])


def arrays(min_dims=0, max_dims=5, max_side=9):
    shapes = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side)
    return DTYPES.flatmap(
        lambda dt: hnp.arrays(
            dt,
            shapes,
            elements={"allow_nan": True, "allow_infinity": True}
            if "float" in dt or "complex" in dt
            else None,
        )
    )


def expect_clear(call, *names):
    """Run ``call``; a failure must be ValueError/TypeError naming one of ``names``."""
    try:
        return call()
    except (ValueError, TypeError) as e:
        message = str(e)
        event(message[-90:])
        assert any(name in message for name in names), f"{type(e).__name__} without a name: {message}"
        return None


@SWEEP
@given(x=arrays(), y=st.one_of(st.none(), arrays(max_dims=2)))
def test_dataset_loading(tmp_path_factory, x, y):
    from data.datasets import load_dataset

    folder = tmp_path_factory.mktemp("data")
    np.save(folder / "X_train.npy", x)
    if y is not None:
        np.save(folder / "y_train.npy", y)
    expect_clear(lambda: load_dataset(folder), "X_train", "y_train")


@SWEEP
@given(x=arrays(max_side=12), other=st.one_of(st.none(), arrays(max_side=12)), translation=st.booleans())
def test_registration(x, other, translation):
    from registration import register

    fixed = torch.from_numpy(x)
    moving = fixed if other is None else torch.from_numpy(other)  # the same batch, or any other
    expect_clear(lambda: register(fixed, moving, translation=translation), "fixed", "moving")


@SWEEP
@given(x=arrays(max_side=12), method=st.sampled_from(["moments", "moments+refine", "template", "nope"]))
def test_prealignment(x, method):
    from prealignment import prealign

    expect_clear(lambda: prealign(x, method, max_iter=2), "x", "method", "image")


@SWEEP
@given(emb=arrays(min_dims=1, max_dims=3, max_side=12), k=st.integers(-1, 5))
def test_analysis_functions(emb, k):
    from analysis import clustering, outliers, projection

    expect_clear(lambda: clustering.cluster(emb, "kmeans", n_clusters=k), "embeddings", "n_clusters")
    expect_clear(lambda: outliers.outlier_scores(emb, "isolation_forest"), "embeddings")
    expect_clear(lambda: projection.pca(emb), "embeddings", "n_components")
    expect_clear(lambda: projection.umap(emb), "embeddings")


@SWEEP
@given(
    key=st.sampled_from(["model.zdim", "data.batch_size", "training.lr", "model.encoder", "nope.x", "model"]),
    value=st.one_of(
        st.text(max_size=8), st.integers(-3, 3).map(str), st.sampled_from(["None", "[1, 2]", "nan"])
    ),
)
def test_config_overrides(key, value):
    from configs.schema import ConfigError, load_config

    try:
        load_config("configs.config_tiny", [f"{key}={value}"])
    except ConfigError as e:
        assert key.split(".")[0] in str(e) or "override" in str(e), str(e)


@pytest.fixture(scope="module")
def tiny_model():
    import run
    from configs.schema import load_config

    return run.build_model_from_config(load_config("configs.config_tiny")).eval()


@SWEEP
@given(x=arrays(max_side=18))
def test_embedding(tiny_model, x):
    import utils

    expect_clear(
        lambda: utils.get_model_embeddings_from_tensors(tiny_model, x, progress=False), "x", "images", "image"
    )


@SWEEP
@given(
    image=st.one_of(
        hnp.arrays(
            "float32",
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=4, max_side=24),
            elements=st.floats(0, 1, width=32),
        ),
        arrays(min_dims=2, max_dims=3, max_side=24),
    ),
    data=st.data(),
)
def test_prepare_from_images_and_masks(tmp_path_factory, image, data):
    import tifffile
    from hypothesis import assume

    from data.prepare import prepare_dataset

    # masks mostly of the image's (h, w) with one object off the border, so that most inputs that
    # are valid images reach the cropping; others of any shape and content
    shape = data.draw(
        st.sampled_from([image.shape[-2:], image.shape[:2]])
        | hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=24)
    )
    dtype = data.draw(st.sampled_from(["uint8", "int32", "float32"]))
    if len(shape) == 2 and min(shape) >= 4 and data.draw(st.booleans()):
        mask = np.zeros(shape, dtype)
        r0, c0 = data.draw(st.integers(1, shape[0] - 3)), data.draw(st.integers(1, shape[1] - 3))
        mask[
            r0 : data.draw(st.integers(r0 + 1, shape[0] - 1)),
            c0 : data.draw(st.integers(c0 + 1, shape[1] - 1)),
        ] = 1
    else:
        mask = data.draw(hnp.arrays(dtype, shape, elements=st.integers(0, 3)))
    root = tmp_path_factory.mktemp("prepare")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    try:
        tifffile.imwrite(root / "images" / "cell.tif", image)
        tifffile.imwrite(root / "masks" / "cell.tif", mask)
    except Exception:  # not a writable TIFF (complex, empty): not an input a user can hand over
        assume(False)
    written = expect_clear(
        lambda: prepare_dataset(
            root / "out",
            images=root / "images",
            masks=root / "masks",
            size=16,
            test_fraction=0.5,
            progress=False,
        ),
        "cell",
        "images",
        "masks",
        "fits the crop",  # every object too large or too small for the crop, with the option to try
        "--keep-border",  # every object touches the border, with the option that keeps them
        "area",
    )
    event("dataset written" if written is not None else "refused")  # see --hypothesis-show-statistics


@SWEEP
@given(
    train=arrays(min_dims=1, max_dims=3, max_side=12),
    test=arrays(min_dims=1, max_dims=3, max_side=12),
    labels=arrays(min_dims=0, max_dims=2, max_side=12),
    k=st.integers(-1, 6),
)
def test_metrics(train, test, labels, k):
    from analysis import metrics

    n_train = len(train) if train.ndim else 0
    n_test = len(test) if test.ndim else 0
    # labels of the right length half of the time, so that the embeddings' own checks are reached
    y_train = np.arange(n_train) % 3 if labels.ndim == 0 else labels
    y_test = np.arange(n_test) % 3 if labels.ndim == 0 else labels
    names = ("train_embeddings", "test_embeddings", "train_labels", "test_labels", "k")
    expect_clear(lambda: metrics.knn_accuracy(train, y_train, test, y_test, k=k), *names)
    expect_clear(lambda: metrics.clustering_scores(labels, y_test), "labels_true", "labels_cluster")
    expect_clear(
        lambda: metrics.kmeans_purity(train, y_train, n_clusters=k), "embeddings", "labels", "n_clusters"
    )


PREPARE_OPTIONS = {
    "size": st.integers(-2, 40),
    "centre": st.sampled_from(["mask", "intensity", "bbox", "nope"]),
    "scale": st.sampled_from(["none", "fit", "dataset", "nope"]),
    "fill": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "fill_percentile": st.floats(-10, 110),
    "clip": st.booleans(),
    "mask_mode": st.sampled_from(["intensity", "masked", "binary", "nope"]),
    "keep_border": st.booleans(),
    "min_area": st.none() | st.integers(-5, 500),
    "max_area": st.none() | st.integers(-5, 500),
    "normalisation": st.sampled_from(["dataset", "image", "object", "none", "nope"]),
    "percentiles": st.tuples(st.floats(-10, 110), st.floats(-10, 110)),
    "test_fraction": st.floats(-0.5, 1.5),
    "seed": st.integers(0, 3),
}


@SWEEP
@given(options=st.fixed_dictionaries({}, optional=PREPARE_OPTIONS))
def test_prepare_options(tmp_path_factory, options):
    import tifffile

    from data.prepare import prepare_dataset

    # valid inputs: three images with two ellipses each, one near the border; the options vary
    root = tmp_path_factory.mktemp("prepare_options")
    for folder in ("images", "masks"):
        (root / folder).mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        mask = np.zeros((60, 60), np.uint16)
        yy, xx = np.mgrid[:60, :60]
        mask[((yy - 20) / 8) ** 2 + ((xx - 25) / 5) ** 2 < 1] = 1
        mask[((yy - 45) / 4) ** 2 + ((xx - 4 - i) / 6) ** 2 < 1] = 2
        tifffile.imwrite(root / "images" / f"cell{i}.tif", (mask > 0) * 0.7 + 0.1 * rng.random((60, 60)))
        tifffile.imwrite(root / "masks" / f"cell{i}.tif", mask)
    written = expect_clear(
        lambda: prepare_dataset(
            root / "out", images=root / "images", masks=root / "masks", progress=False, **options
        ),
        *PREPARE_OPTIONS,
        "normalise",
        "no usable object",
    )
    event("dataset written" if written is not None else "refused")
