"""The code shown in the docs runs: README code blocks and docstring examples."""

import doctest
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_registration_readme_example_runs():
    blocks = python_blocks(ROOT / "registration" / "README.md")
    assert blocks, "registration/README.md has no python example"
    for code in blocks:
        exec(compile(code, "registration/README.md", "exec"), {})


@pytest.mark.parametrize(
    "name",
    [
        "registration.transform",
        "registration.polar",
        "registration.phase_correlation",  # the package exports a function of the same name
        "registration.register",
        "models.decoders.cnn_decoder",
        "analysis.metrics",
    ],
)
def test_docstring_examples(name):
    failures, tried = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
