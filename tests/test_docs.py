"""The code shown in the docs runs: README code blocks and docstring examples."""

import doctest
import pathlib
import re

import pytest

import registration.phase_correlation
import registration.polar
import registration.register
import registration.transform

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_registration_readme_example_runs():
    blocks = python_blocks(ROOT / "registration" / "README.md")
    assert blocks, "registration/README.md has no python example"
    for code in blocks:
        exec(compile(code, "registration/README.md", "exec"), {})


@pytest.mark.parametrize(
    "module",
    [registration.transform, registration.polar, registration.phase_correlation, registration.register],
)
def test_docstring_examples(module):
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
