import numpy as np
import pytest
import torch
from skimage.transform import rotate as sk_rotate

from registration.transform import rotate_flip


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 2, 16, 16, generator=g)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_multiples_of_90_degrees_equal_rot90(images, k):
    out = rotate_flip(images, 90.0 * k)
    assert torch.allclose(out, torch.rot90(images, k, dims=(-2, -1)), atol=1e-5)


def test_flip_mirrors_columns_before_rotating(images):
    assert torch.allclose(rotate_flip(images, 0.0, True), images.flip(-1), atol=1e-6)
    expected = torch.rot90(images.flip(-1), 1, dims=(-2, -1))
    assert torch.allclose(rotate_flip(images, 90.0, True), expected, atol=1e-5)


def test_arbitrary_angle_matches_skimage_rotate():
    rng = np.random.default_rng(1)
    img = rng.random((24, 24))
    for angle in (17.0, 123.4, 301.0):
        ours = rotate_flip(torch.from_numpy(img)[None, None], angle)[0, 0].numpy()
        ref = sk_rotate(img, angle, order=1, mode="constant", cval=0.0)
        # compare away from the border, where the two zero-padding conventions differ
        yy, xx = np.mgrid[:24, :24] - 11.5
        inner = np.hypot(yy, xx) < 10
        np.testing.assert_allclose(ours[inner], ref[inner], atol=1e-6)


@pytest.mark.parametrize("flip", [[True, False, True, False], [False, True, False, True]])
def test_per_image_angles_and_flips(images, flip):
    x = torch.cat([images, images[:1].flip(-2)])  # four different images
    angle = torch.tensor([0.0, 90.0, 180.0, 270.0])
    flip = torch.tensor(flip)
    out = rotate_flip(x, angle, flip)
    for i in range(4):
        # image i: mirrored (if flip[i]), then rotated by i quarter turns, exactly
        expected = torch.rot90(x[i].flip(-1) if flip[i] else x[i], i, dims=(-2, -1))
        assert torch.allclose(out[i], expected, atol=1e-5)
        assert torch.allclose(out[i : i + 1], rotate_flip(x[i : i + 1], angle[i], flip[i]), atol=1e-6)


def test_integer_shift_moves_content(images):
    out = rotate_flip(images, 0.0, shift=torch.tensor([2.0, -3.0]))  # 2 rows down, 3 columns left
    assert torch.allclose(out[..., 2:, :-3], images[..., :-2, 3:], atol=1e-6)
    assert (out[..., :2, :] == 0).all()


def test_inverse_transform_restores_the_disk():
    from scipy.ndimage import gaussian_filter

    noise = np.random.default_rng(2).random((2, 1, 16, 16))
    x = torch.from_numpy(gaussian_filter(noise, sigma=(0, 0, 1.5, 1.5)))  # smooth, like real images
    back = rotate_flip(rotate_flip(x, 37.0, True), -37.0)  # undo: rotate back, then mirror
    back = back.flip(-1)
    yy, xx = np.mgrid[:16, :16] - 7.5
    inner = torch.from_numpy(np.hypot(yy, xx) < 5)
    # two bilinear resamplings blur a little; the error stays well below the image's own variation
    assert (back - x)[..., inner].abs().mean() < 0.1 * x[..., inner].std()


def test_gradients_flow_to_the_image(images):
    x = images.clone().requires_grad_(True)
    rotate_flip(x, 33.0, True).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_gradient_matches_finite_differences(mode):
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    angle, flip, shift = torch.tensor([33.0, 250.0]), torch.tensor([True, False]), torch.tensor([0.3, -1.2])
    assert torch.autograd.gradcheck(
        lambda x: rotate_flip(x, angle, flip, shift, mode=mode), (x.requires_grad_(True),)
    )


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(b, c, h, w\)"):
        rotate_flip(torch.zeros(4, 4), 10.0)
    with pytest.raises(TypeError, match="float"):
        rotate_flip(torch.zeros(1, 1, 4, 4, dtype=torch.int64), 10.0)
    with pytest.raises(ValueError, match="angle"):
        rotate_flip(torch.zeros(2, 1, 4, 4), torch.zeros(3))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        rotate_flip(np.zeros((1, 1, 4, 4)), 10.0)
    with pytest.raises(ValueError, match="empty batch: x has 0 images"):
        rotate_flip(torch.zeros(0, 1, 4, 4), 10.0)
    with pytest.raises(ValueError, match=r"shift must have shape \(2,\) or \(2, 2\)"):
        rotate_flip(torch.zeros(2, 1, 4, 4), 10.0, shift=torch.zeros(3))


def test_non_finite_input_is_named():
    x = torch.rand(3, 1, 4, 4)
    bad = x.clone()
    bad[1, 0, 2, 2] = float("inf")
    with pytest.raises(ValueError, match=r"x\[1\] contains NaN or Inf"):
        rotate_flip(bad, 10.0)
    with pytest.raises(ValueError, match=r"angle\[2\] contains NaN or Inf"):
        rotate_flip(x, torch.tensor([0.0, 1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"angle\[0\] contains NaN or Inf"):
        rotate_flip(x, float("nan"))
    with pytest.raises(ValueError, match=r"shift\[0\] contains NaN or Inf"):
        rotate_flip(x, 10.0, shift=torch.tensor([float("nan"), 0.0]))


# measured largest difference from float32: float16 4e-4, bfloat16 3.6e-3 (the rounding of x),
# float64 1.3e-6; half precision is warped in float32, so an angle of 300.3 degrees is not rounded
@pytest.mark.parametrize("dtype, tol", [(torch.float16, 1e-3), (torch.bfloat16, 5e-3), (torch.float64, 1e-5)])
def test_any_float_dtype(images, dtype, tol):
    angle, flip, shift = torch.tensor([20.0, 133.7, 300.3]), torch.tensor([True, False, True]), (0.5, -1.25)
    out = rotate_flip(images.to(dtype), angle, flip, shift)
    assert out.dtype == dtype
    assert (out.double() - rotate_flip(images, angle, flip, shift)).abs().max() < tol
