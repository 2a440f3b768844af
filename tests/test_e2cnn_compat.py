"""Each e2cnn fix is still needed (e2cnn fails without it) and works (e2cnn runs with all of them)."""

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Build a dihedral (D8, regular fields) and a continuous O(2) layer (irreps and induced fields),
# run them, and load a state dict into a fresh copy: together these touch every fix.
SCRIPT = textwrap.dedent(
    """
    import importlib.util, sys, warnings
    warnings.filterwarnings("error", message="indexing with dtype torch.uint8")
    # load the module by path: importing the models package would apply every fix
    spec = importlib.util.spec_from_file_location("compat", "models/_e2cnn_compat.py")
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    compat.apply(skip=sys.argv[1:])
    import torch
    from e2cnn import gspaces, nn as enn

    def layers(gs):
        t_in = enn.FieldType(gs, [gs.trivial_repr])
        if gs.fibergroup.order() > 0:
            t_out = enn.FieldType(gs, 2 * [gs.regular_repr])
            return enn.SequentialModule(
                enn.R2Conv(t_in, t_out, 5, padding=2), enn.ReLU(t_out), enn.R2Conv(t_out, t_out, 3, padding=1)
            )
        G = gs.fibergroup
        irreps = [G.irrep(1, 0)] + [G.irrep(1, k) for k in (1, 2, 3)]
        induced = [gs.induced_repr((None, -1), G.subgroup((None, -1))[0].irrep(k)) for k in (1, 2)]
        t_out = enn.FieldType(gs, 2 * irreps + induced)
        return enn.SequentialModule(
            enn.R2Conv(t_in, t_out, 5, padding=2),
            enn.NormNonLinearity(t_out),
            enn.R2Conv(t_out, t_out, 3, padding=1),
        )

    for gs in (gspaces.FlipRot2dOnR2(8), gspaces.FlipRot2dOnR2(-1, maximum_frequency=3)):
        net = layers(gs)
        x = enn.GeometricTensor(torch.randn(2, 1, 15, 15), net.in_type)
        other = layers(gs)
        other.load_state_dict(net.state_dict())
        assert torch.allclose(net(x).tensor, other(x).tensor)
    print("ok")
    """
)


def run(*skip):
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *skip], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )


def test_all_fixes_make_e2cnn_work():
    result = run()
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


# What e2cnn 0.2.3 raises without each fix (numpy 2.4.6, torch 2.13.0), as captured by running
# SCRIPT with the fix skipped: a word of the old check, the file the traceback names last (the
# patched e2cnn module, or the numpy or torch code it calls), and the failing line with the message
# (Python 3.11 prints a line of carets between them).
CARETS = r"[^\n]*\n(?:[ ~^]*\n)?"
SYMPTOMS = {
    "array_copy": (
        "copy",
        "e2cnn/kernels/utils.py",
        r"gamma = np\.array\(gamma, copy=False\)" + CARETS + r"ValueError: Unable to avoid copy while "
        r"creating an array as requested\.\nIf using `np\.array\(obj, copy=False\)` replace it with "
        r"`np\.asarray\(obj\)`",
    ),
    "tostring": (
        "tostring",
        "e2cnn/kernels/irreps_basis.py",
        r"hash\(self\.mu\.tostring\(\)\)" + CARETS + r"AttributeError: 'numpy\.ndarray' object has no "
        r"attribute 'tostring'",
    ),
    "np_float": (
        "np.float",
        "numpy/__init__.py",
        r"o2group\.py\", line \d+, in _induced_from_irrep\n.*dtype=np\.float\)" + CARETS + r"(?:.*\n)*"
        r"AttributeError: module 'numpy' has no attribute 'float'\.\n`np\.float` was a deprecated alias "
        r"for the builtin `float`",
    ),
    "uint8_mask": (
        "uint8",
        "e2cnn/nn/modules/r2_conv/basisexpansion_singleblock.py",
        r"full_mask\[mask\] = norms\.to\(torch\.uint8\)" + CARETS + r"UserWarning: indexing with dtype "
        r"torch\.uint8 is now deprecated, please use a dtype torch\.bool instead",
    ),
}


@pytest.mark.parametrize("fix", list(SYMPTOMS))
def test_each_fix_is_still_needed(fix):
    result = run(fix)
    assert result.returncode != 0, (
        f"e2cnn works without the {fix!r} fix: remove it from models/_e2cnn_compat.py"
    )
    symptom, last_file, message = SYMPTOMS[fix]
    assert symptom in result.stderr
    # the failure is the one this fix is for: where it is raised, with that breakage's own message
    # (not merely a word that any traceback of this script could contain), and nothing ran past it
    frames = re.findall(r'File "([^"]+)", line \d+', result.stderr)
    assert frames and frames[-1].endswith(last_file), result.stderr[-2000:]
    assert re.search(message, result.stderr), result.stderr[-2000:]
    assert result.stdout == ""


def test_the_symptoms_cover_every_fix():
    import models._e2cnn_compat as compat

    assert sorted(SYMPTOMS) == sorted(compat.FIXES)
