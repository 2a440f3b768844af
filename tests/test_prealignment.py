"""prealignment.prealign: known shapes at random poses end in one pose."""

import numpy as np
import pytest
import torch

from prealignment import compose, prealign
from registration import rotate_flip

SIZE = 48


def upright_shape(kind="asymmetric"):
    """A smooth shape in the disk, max 1: an ellipse, plus (asymmetric) a blob up and to the right."""
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    shape = np.exp(-(((xx / 6) ** 2 + (yy / 14) ** 2) ** 2))  # elongated, vertical
    if kind == "asymmetric":
        shape += np.exp(-(((xx - 8) / 3.5) ** 2 + ((yy + 10) / 3.5) ** 2))
    if kind == "disk":
        shape = np.exp(-((np.hypot(xx, yy) / 12) ** 4))
    return torch.from_numpy((shape / shape.max()).astype(np.float32))[None, None]


def random_poses(x, n, seed):
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(n, generator=g) * 360
    flip = torch.rand(n, generator=g) < 0.5
    return rotate_flip(x.expand(n, -1, -1, -1), angle, flip, mode="bicubic").clamp(0, 1), angle, flip


def relative(a, b):
    return float((a - b).flatten(1).norm(dim=1).max() / b.norm())


def angle_difference(a, b):
    return ((a - b + 180) % 360 - 180).abs()


@pytest.mark.parametrize("method", ["moments", "moments+refine", "template"])
def test_an_asymmetric_shape_at_random_poses_ends_in_one_pose(method):
    x = upright_shape()
    posed, angle, flip = random_poses(x, 24, seed=0)
    reference = prealign(x, method="moments")
    result = prealign(torch.cat([x, posed]), method=method)
    # measured: 0.0104 (moments and refine), 0.0100 (template): the error of the bicubic poses themselves
    assert relative(result.images[1:], result.images[:1]) < 0.02
    assert relative(result.images[:1], reference.images) < 0.1
    # the found transform undoes the applied one: found o applied = the upright shape's pose
    total_angle, total_flip = compose(result.angle[1:], result.flip[1:], angle, flip)
    assert torch.equal(total_flip, result.flip[:1].expand(24))
    assert angle_difference(total_angle, result.angle[0]).max() < 1.5


def central_moments(image):
    """mu20, mu02, mu11, mu30, mu03 of an image (x right, y up), computed directly in numpy."""
    w = image / image.sum()
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    x, y = xx - (w * xx).sum(), -(yy - (w * yy).sum())
    return [(w * m).sum() for m in (x * x, y * y, x * y, x**3, y**3)]


def test_the_moments_pose_has_a_vertical_major_axis_and_positive_skewness():
    for k in range(4):
        posed = torch.rot90(upright_shape(), k, dims=(-2, -1)).flip(-1)
        aligned = prealign(posed).images[0, 0].double().numpy()
        mu20, mu02, mu11, mu30, mu03 = central_moments(aligned)
        assert mu02 > 2 * mu20 and abs(mu11) < 0.01 * mu02  # the major axis is vertical
        assert mu03 > 0 and mu30 > 0  # heavier tails up and right


def test_aligned_input_is_left_unchanged():
    once = prealign(random_poses(upright_shape(), 8, seed=1)[0])
    twice = prealign(once.images)
    assert angle_difference(twice.angle, torch.zeros(8)).max() < 0.5 and not twice.flip.any()
    assert relative(twice.images, once.images) < 0.03


def test_rotation_symmetric_shapes_are_reported_undetermined_and_kept():
    disk = upright_shape("disk").expand(3, -1, -1, -1)
    result = prealign(disk)
    assert not result.determined.any()
    assert torch.equal(result.angle, torch.zeros(3)) and not result.flip.any()
    assert relative(result.images, disk) < 1e-5


def test_refinement_and_template_lower_the_error_monotonically():
    # a symmetric ellipse with texture: the moments cannot fix its flips, the refinement can
    rng = np.random.default_rng(0)
    base = upright_shape("ellipse")[0, 0].numpy()
    texture = base * (1 + 0.6 * np.sin(np.arange(SIZE) / 3.0)[:, None] * np.cos(np.arange(SIZE) / 5.0)[None])
    x = torch.from_numpy(np.clip(texture, 0, None).astype(np.float32))[None, None]
    posed = random_poses(x, 32, seed=2)[0] + 0.01 * torch.from_numpy(
        rng.random((32, 1, SIZE, SIZE), np.float32)
    )
    refined = prealign(posed, method="moments+refine")
    assert refined.iterations >= 1 and len(refined.errors) == refined.iterations + 1
    assert all(b <= a for a, b in zip(refined.errors, refined.errors[1:], strict=False))
    assert refined.errors[-1] < 0.7 * refined.errors[0]
    template = prealign(posed, method="template")
    assert template.errors[-1] <= refined.errors[-1] * 1.05 and template.errors[-1] < template.errors[0]
    np.testing.assert_allclose(
        torch.stack(
            [
                rotate_flip(p[None], a, f)[0]
                for p, a, f in zip(posed, refined.angle, refined.flip, strict=True)
            ]
        ),
        refined.images,
        atol=1e-4,
    )  # the returned transform reproduces the returned images


def test_numpy_in_numpy_out_and_channels():
    x = np.concatenate([upright_shape().numpy(), 0.5 * upright_shape().numpy()], axis=1)
    result = prealign(np.rot90(x, 1, axes=(-2, -1)).copy())
    assert isinstance(result.images, np.ndarray) and result.images.shape == (1, 2, SIZE, SIZE)
    np.testing.assert_allclose(result.images[:, 1], 0.5 * result.images[:, 0], atol=1e-6)


def test_compose_equals_applying_both_transforms():
    x = torch.rand(4, 1, 8, 8)
    for a1, f1, a2, f2 in [(90.0, True, 180.0, False), (270.0, False, 90.0, True), (90.0, True, 90.0, True)]:
        angle, flip = compose(torch.tensor(a2), torch.tensor(f2), torch.tensor(a1), torch.tensor(f1))
        twice = rotate_flip(rotate_flip(x, a1, f1), a2, f2)
        torch.testing.assert_close(rotate_flip(x, float(angle), bool(flip)), twice, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "x, error, message",
    [
        (torch.zeros(2, 1, 8, 8), ValueError, "image 0 has no positive value"),
        (torch.full((1, 1, 8, 8), float("nan")), ValueError, "image 0 contains NaN or Inf"),
        (torch.zeros(0, 1, 8, 8), ValueError, "must not be empty"),
        (torch.ones(8, 8), ValueError, r"must have shape \(n, c, h, w\)"),
        (-torch.ones(1, 1, 8, 8), ValueError, "image 0 has negative values"),
        ([[1.0]], TypeError, "tensor or numpy array"),
    ],
)
def test_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        prealign(x)
    with pytest.raises(ValueError, match="method must be one of"):
        prealign(torch.ones(1, 1, 8, 8), method="pca")


def test_figure_script_writes_the_figure_and_the_table(tmp_path, capsys):
    from prealignment import figure

    figure.main(["--out", str(tmp_path / "before_after.png")])
    assert (tmp_path / "before_after.png").stat().st_size > 20_000
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 6 + 1  # header, the six shape classes, the nuclei
    elongated = [float(v) for v in table[2].strip("| ").split(" | ")[1:]]
    assert table[2].startswith("| elongated") and max(elongated) < 0.6  # the moments suffice there


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bool])
def test_integer_and_bool_masks_come_back_as_float(dtype):
    mask = (torch.rot90(upright_shape(), 1, dims=(-2, -1)) > 0.5).to(dtype)
    result = prealign(mask)
    assert result.images.dtype == torch.float32
    assert abs(float(result.images.sum()) - float(mask.float().sum())) < 0.02 * float(mask.float().sum())
