"""The code shown in the docs runs: README code blocks and docstring examples."""

import doctest
import importlib
import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_registration_readme_example_runs():
    blocks = python_blocks(ROOT / "registration" / "README.md")
    assert blocks, "registration/README.md has no python example"
    for code in blocks:
        exec(compile(code, "registration/README.md", "exec"), {})


README_RUN_DIR = "wandb/offline-run-.../files"  # the placeholder run directory of README.md's examples


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A trained run of configs.config_tiny on a small generated dataset (as tests/test_training.py)."""
    import run
    from configs.schema import load_config
    from data import generate_shapes

    data = tmp_path_factory.mktemp("tiny_shapes")
    generate_shapes.main(["--n", "96", "--n-test", "32", "--size", "16", "--out", str(data), "--overwrite"])
    out = tmp_path_factory.mktemp("runs")
    config = load_config(
        "configs.config_tiny",
        [f"data.data_dir={data}", f"logging.out_dir={out}", "logging.wandb_mode=disabled"],
    )
    return run.train(config)


def test_main_readme_python_blocks_run(tiny_run, tmp_path):
    import torch

    import run
    import utils

    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "README.md has no python example"
    assert sum(code.count(README_RUN_DIR) for code in blocks) >= 1
    assert sum(code.count('"embeddings.npy"') for code in blocks) == 1
    namespace = {}
    for code in blocks:
        code = code.replace(README_RUN_DIR, str(tiny_run))
        code = code.replace('"embeddings.npy"', repr(str(tmp_path / "embeddings.npy")))
        exec(compile(code, "README.md", "exec"), namespace)
    # the block for large datasets: every training image's embedding, in the file
    written = np.load(tmp_path / "embeddings.npy")
    tiny = run.load_model(tiny_run)
    expected_train = utils.get_model_embeddings_from_tensors(
        tiny, run.get_datasets_from_config(tiny.config)[0].x
    )
    assert written.shape == (96, 4)
    np.testing.assert_allclose(written, expected_train, rtol=1e-5, atol=1e-6)
    # the embeddings block: the test images' posterior means, and the test labels
    model = run.load_model(tiny_run).eval()
    _, _, dset_test, _ = run.get_datasets_from_config(model.config)
    images = torch.as_tensor(dset_test.x[:100], dtype=torch.float32)
    with torch.no_grad():
        expected = model.encoder(images)[0]
    assert namespace["emb"].shape == (32, model.config.model.zdim) == expected.shape
    torch.testing.assert_close(torch.from_numpy(namespace["emb"]), expected, rtol=1e-5, atol=1e-6)
    assert len(dset_test) == 32
    np.testing.assert_array_equal(namespace["labels"], np.asarray(dset_test.y))


@pytest.mark.parametrize(
    "name",
    [
        "registration.transform",
        "registration.polar",
        "registration.phase_correlation",  # the package exports a function of the same name
        "registration.register",
        "models.decoders.cnn_decoder",
        "analysis.metrics",
        "analysis.outliers",
        "analysis.plots",
        "prealignment.canonical",
    ],
)
def test_docstring_examples(name):
    failures, tried = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


def test_reliability_md_names_only_tests_that_exist():
    import re

    text = (ROOT / "RELIABILITY.md").read_text()
    cited = re.findall(r"tests/(test_\w+)\.py(?:::(test_\w+))?((?:`, `test_\w+)*)", text)
    assert len(cited) >= 15
    for module, first, more in cited:
        source = (ROOT / "tests" / f"{module}.py").read_text()
        for name in [first, *re.findall(r"test_\w+", more)]:
            assert not name or f"def {name}(" in source, (
                f"RELIABILITY.md cites {module}.py::{name}, which is gone"
            )
