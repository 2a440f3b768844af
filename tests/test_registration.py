import functools

import numpy as np
import pytest
import torch
from scipy.ndimage import fourier_shift, gaussian_filter
from skimage.registration import phase_cross_correlation
from skimage.transform import warp_polar

from data import generate_o2mnist, generate_shapes
from registration import (
    PolarTransform,
    RegistrationResult,
    disk_mask,
    phase_correlation,
    register,
    register_brute_force,
    register_rotation_flip,
    rotate_flip,
)


def angle_error(a, b):
    return ((a - b + 180.0) % 360.0 - 180.0).abs()


def true_inverse(angle, flip):
    """Parameters of the transform that undoes rotate_flip(., angle, flip)."""
    return torch.where(flip, angle, -angle) % 360.0, flip


def rotate_vector(angle, flip, v):
    """The linear part of rotate_flip(., angle, flip) applied to displacements ``v`` ``(b, 2)`` = (dy, dx).

    Mirror the columns (dx -> -dx), then rotate counter-clockwise as displayed, with rows down.
    """
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad), torch.sin(rad)
    dy, dx = v.unbind(-1)
    dx = torch.where(flip, -dx, dx)
    return torch.stack([dy * cos - dx * sin, dx * cos + dy * sin], -1)


def smooth_objects(n, size=64, seed=0):
    """Random smooth images inside a disk: asymmetric 'objects' with no preferred orientation."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random((n, 1, size, size)), sigma=(0, 0, size / 32, size / 32))
    return torch.from_numpy(x * disk_mask(size, size, 0.4 * size).numpy()).float()


@pytest.fixture(scope="module")
def digits():
    x, *_ = generate_o2mnist.load_mnist()
    return torch.from_numpy(np.pad(x[:24], ((0, 0), (2, 2), (2, 2)))[:, None] / 255.0).float()


@pytest.fixture(scope="module")
def shapes():
    images, *_ = generate_shapes.make_shapes(24, np.random.default_rng(0), size=64)
    return torch.from_numpy(images)


@pytest.fixture(scope="module")
def nuclei():
    from data import generate_nuclei

    images = generate_nuclei.make_nuclei(size=64)[0]
    return torch.from_numpy(images[::12][:24])


def test_polar_matches_skimage_warp_polar():
    img = np.random.default_rng(0).random((33, 33))  # odd size: centre on a pixel
    for size, image in (((33, 33), img), ((32, 32), img[:32, :32])):
        polar = PolarTransform(size, n_angles=72, n_radii=10)
        ours = polar(torch.from_numpy(image)[None, None])[0, 0].numpy()  # (radii, angles)
        centre = ((size[0] - 1) / 2, (size[1] - 1) / 2)
        # skimage: row j is angle +j*5 degrees clockwise as displayed, column k is radius k * R / 20
        ref = warp_polar(image, center=centre, radius=polar.radius, output_shape=(72, 20), order=1)
        # ours: angle counter-clockwise, radius (k + 0.5) * R / 10 = skimage column 2k + 1
        ref = ref[(-np.arange(72)) % 72][:, 1::2].T
        np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_disk_mask_marks_pixel_centres_inside_the_disk():
    assert disk_mask.__module__ == "registration.masks"  # shared by models and registration
    inscribed = torch.ones(4, 4)
    inscribed[[0, 0, 3, 3], [0, 3, 0, 3]] = 0  # corner centres lie 1.5 * sqrt(2) > 2 from the centre
    assert torch.equal(disk_mask(4, 4), inscribed)
    plus = torch.zeros(5, 5)
    plus[2, 1:4] = plus[1:4, 2] = 1  # radius 1 about pixel (2, 2): the centre and its 4 neighbours
    assert torch.equal(disk_mask(5, 5, 1.0), plus)
    assert disk_mask(6, 8, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("shift", [(3, -5), (-7, 2), (0, 0), (12, 15)])
def test_phase_correlation_matches_skimage(shift):
    rng = np.random.default_rng(1)
    moving = gaussian_filter(rng.random((3, 2, 40, 48)), (0, 0, 1, 1))
    fixed = np.roll(moving, shift, axis=(-2, -1))
    ours, peak = phase_correlation(torch.from_numpy(fixed), torch.from_numpy(moving))
    for i in range(3):
        ref, *_ = phase_cross_correlation(fixed[i], moving[i], normalization="phase")
        np.testing.assert_allclose(ours[i].numpy(), ref[1:], atol=1e-6)  # ref has the channel axis
        np.testing.assert_allclose(ours[i].numpy(), shift, atol=1e-6)
    assert torch.allclose(peak, torch.ones(3, dtype=peak.dtype), atol=1e-6)


@pytest.mark.parametrize(
    "shape, normalization, tol_ours, tol_skimage, tol_diff",
    # largest errors measured here (px): ours, skimage (upsample_factor=100, so within 0.005 of
    # its own peak), and the two apart; the parabola through whole-pixel samples used before
    # (upsample=1) was off by 0.126 / 0.119 / 0.053 / 0.035
    [
        ((40, 48), "phase", 0.03, 0.03, 0.006),  # 0.0251, 0.0286, 0.0052
        ((41, 49), "phase", 3e-4, 0.0051, 0.0052),  # 0.00018, 0.0048, 0.0050
        ((40, 48), None, 0.008, 0.0085, 0.011),  # 0.0066, 0.0075, 0.0094
        ((41, 49), None, 0.004, 0.0051, 0.006),  # 0.0028, 0.0048, 0.0051
    ],
)
def test_phase_correlation_subpixel_shifts_match_skimage(
    shape, normalization, tol_ours, tol_skimage, tol_diff
):
    # A Fourier shift by a fractional amount; with phase normalisation at even sizes the real
    # Nyquist frequency of a real image is not a pure phase ramp, which costs both methods 0.03 px.
    rng = np.random.default_rng(0)
    moving = gaussian_filter(rng.random((16, 2, *shape)), (0, 0, 2, 2))
    shift = rng.uniform(-6, 6, (16, 2))
    fixed = np.stack(
        [
            [np.fft.ifftn(fourier_shift(np.fft.fftn(c), s)).real for c in m]
            for m, s in zip(moving, shift, strict=True)
        ]
    )
    ours, peak = phase_correlation(
        torch.from_numpy(fixed), torch.from_numpy(moving), normalization=normalization
    )
    ours = ours.numpy()
    ref = np.stack(
        [
            phase_cross_correlation(f, m, upsample_factor=100, normalization=normalization)[0][1:]
            for f, m in zip(fixed, moving, strict=True)
        ]
    )
    assert np.abs(ours - shift).max() < tol_ours
    assert np.abs(ref - shift).max() < tol_skimage
    assert np.abs(ours - ref).max() < tol_diff
    if normalization == "phase":
        assert (peak > 0.95).all()  # the refined peak of a pure (sub-pixel) shift is nearly 1


def test_phase_correlation_options():
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    moved = torch.roll(x, (3, -2), dims=(-2, -1))
    for kwargs in ({"subpixel": False}, {"upsample": 1}, {"normalization": None}):
        shift, _ = phase_correlation(moved, x, **kwargs)
        assert torch.allclose(shift, torch.tensor([[3.0, -2.0]] * 2), atol=1e-4), kwargs
    _, peak = phase_correlation(moved, x, normalization=None)
    assert torch.allclose(peak, (x * x).sum((1, 2, 3)), rtol=1e-4)  # the plain correlation at the shift
    with pytest.raises(ValueError, match="normalization must be one of"):
        phase_correlation(x, x, normalization="none")
    with pytest.raises(ValueError, match="upsample must be a whole number >= 1"):
        phase_correlation(x, x, upsample=0)


def check_recovery(x, seed, tol_median, tol_p95):
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(len(x), generator=g) * 360
    flip = torch.rand(len(x), generator=g) < 0.5
    moving = rotate_flip(x, angle, flip)
    result = register(x, moving)
    brute = register_brute_force(x, moving, step_deg=0.25)
    want_angle, want_flip = true_inverse(angle, flip)
    err = angle_error(result.angle, want_angle)
    assert (result.flip == want_flip).all()
    assert err.median() < tol_median and err.quantile(0.95) < tol_p95, (err.median(), err.quantile(0.95))
    # the aligned residual is within a few percent of the best of a 0.25-degree brute-force search
    mask = disk_mask(*x.shape[-2:])
    ours_res = ((result.apply(moving) - x) * mask).pow(2).sum((1, 2, 3))
    brute_res = ((brute.apply(moving) - x) * mask).pow(2).sum((1, 2, 3))
    assert (ours_res <= brute_res * 1.05 + 1e-3 * x.pow(2).sum((1, 2, 3))).all()
    return err


def test_recovers_random_transforms_of_smooth_images():
    check_recovery(smooth_objects(32), seed=0, tol_median=0.25, tol_p95=0.5)


def test_recovers_random_transforms_of_digits(digits):
    check_recovery(digits, seed=1, tol_median=0.3, tol_p95=1.0)


def test_recovers_random_transforms_of_shapes(shapes):
    # round and elongated objects are (nearly) symmetric: judge the angle on the residual only
    g = torch.Generator().manual_seed(2)
    angle, flip = torch.rand(len(shapes), generator=g) * 360, torch.rand(len(shapes), generator=g) < 0.5
    moving = rotate_flip(shapes, angle, flip)
    result, brute = register(shapes, moving), register_brute_force(shapes, moving, step_deg=0.25)
    mask = disk_mask(64, 64)
    ours_res = ((result.apply(moving) - shapes) * mask).pow(2).sum((1, 2, 3))
    brute_res = ((brute.apply(moving) - shapes) * mask).pow(2).sum((1, 2, 3))
    assert (ours_res <= brute_res * 1.05 + 1e-3 * shapes.pow(2).sum((1, 2, 3))).all()


def test_recovers_random_transforms_of_nuclei(nuclei):
    check_recovery(nuclei, seed=3, tol_median=0.3, tol_p95=2.0)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", [False, True])
def test_multiples_of_90_degrees_and_flips_are_exact(k, flip):
    x = smooth_objects(8, size=32, seed=k)
    moving = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
    result = register(x, moving)
    assert (result.flip == flip).all()
    want = (90.0 * k if flip else -90.0 * k) % 360.0
    assert (angle_error(result.angle, torch.full_like(result.angle, want)) < 1e-3).all()
    assert torch.allclose(result.apply(moving), x, atol=1e-4)


def test_dtypes_channels_and_batch_of_one_agree():
    x = smooth_objects(6, size=32, seed=5)
    angle = torch.tensor([10.0, 50.0, 100.0, 200.0, 250.0, 333.3])
    flip = torch.tensor([True, False, True, False, True, False])
    moving = rotate_flip(x, angle, flip)
    ref = register(x, moving)
    r64 = register(x.double(), moving.double())
    assert r64.angle.dtype == torch.float64
    assert torch.equal(r64.flip, ref.flip) and (angle_error(r64.angle.float(), ref.angle) < 0.02).all()
    # three identical channels: the same transform
    r3 = register(x.repeat(1, 3, 1, 1), moving.repeat(1, 3, 1, 1))
    assert torch.equal(r3.flip, ref.flip) and (angle_error(r3.angle, ref.angle) < 0.01).all()
    for i in range(len(x)):
        r1 = register(x[i : i + 1], moving[i : i + 1])
        assert r1.flip.item() == ref.flip[i].item() and angle_error(r1.angle, ref.angle[i]).item() < 0.01
    r16 = register(x.half(), moving.half())
    assert r16.angle.dtype == torch.float16 and torch.equal(r16.flip, ref.flip)
    # measured: within 0.054 degrees of float32's angles (float16 steps are 0.25 degrees above 256),
    # so within 0.25 of the true ones (float32: 0.22 at most here)
    want_angle, want_flip = true_inverse(angle, flip)
    assert (angle_error(ref.angle, want_angle) < 0.23).all() and torch.equal(ref.flip, want_flip)
    assert (angle_error(r16.angle.float(), ref.angle) < 0.07).all()
    assert (angle_error(r16.angle.float(), want_angle) < 0.27).all()
    # bfloat16 rounds angles to steps of 1 degree in [128, 256) and 2 above (measured: 0.22 from float32)
    rb16 = register(x.bfloat16(), moving.bfloat16())
    assert rb16.angle.dtype == torch.bfloat16 and torch.equal(rb16.flip, want_flip)
    assert (angle_error(rb16.angle.float(), ref.angle) < 1.0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_agrees_with_cpu():
    x = smooth_objects(16, size=64, seed=6)
    moving = rotate_flip(x, torch.rand(16) * 360, torch.rand(16) < 0.5)
    cpu, gpu = register(x, moving), register(x.cuda(), moving.cuda())
    assert torch.equal(gpu.flip.cpu(), cpu.flip)
    assert (angle_error(gpu.angle.cpu(), cpu.angle) < 0.01).all()
    aligned = gpu.apply(moving.cuda())
    assert aligned.is_cuda


def test_translation_mode_recovers_shifted_objects():
    x = smooth_objects(32, size=64, seed=7) * disk_mask(64, 64, 20)
    g = torch.Generator().manual_seed(7)
    angle, flip = torch.rand(32, generator=g) * 360, torch.rand(32, generator=g) < 0.5
    shift = (torch.rand(32, 2, generator=g) - 0.5) * 10
    moving = rotate_flip(x, angle, flip, shift)
    plain = register(x, moving)
    result = register(x, moving, translation=True)
    want_angle, want_flip = true_inverse(angle, flip)
    assert (result.flip == want_flip).all()
    assert angle_error(result.angle, want_angle).median() < 0.5
    mask = disk_mask(64, 64)

    def relative_residual(r):
        return ((r.apply(moving) - x) * mask).pow(2).sum((1, 2, 3)).sqrt() / (x * mask).pow(2).sum(
            (1, 2, 3)
        ).sqrt()

    residual, plain_residual = relative_residual(result), relative_residual(plain)
    assert residual.median() < 0.2 and plain_residual.median() > 2 * residual.median()
    # every pair, 180-degree ambiguity included (measured: at most 0.28 degrees)
    assert (angle_error(result.angle, want_angle) < 0.4).all()
    # moving is x moved by R = rotate(angle) mirror(flip), then by `shift`. The found transform moves a
    # point p of moving to R^-1 p + s (R^-1: the linear part of want_angle, want_flip), which maps
    # R q + shift back to q only for s = -R^-1 shift (measured: at most 0.039 px off)
    want_shift = -rotate_vector(want_angle, want_flip, shift)
    assert ((result.shift - want_shift).norm(dim=-1) < 0.05).all()
    # 32 pairs of 64 px run in CPU chunks of 16 (registration.register.CPU_CHUNK_ELEMENTS): as each pair alone
    for i in (0, 15, 16, 31):
        alone = register(x[i : i + 1], moving[i : i + 1], translation=True)
        assert alone.flip.item() == result.flip[i].item()
        assert angle_error(alone.angle, result.angle[i]).item() < 1e-3
        assert torch.allclose(alone.shift, result.shift[i : i + 1], atol=1e-4)


def test_score_is_a_normalised_correlation():
    x = smooth_objects(4, size=32)
    assert torch.allclose(register(x, x).score, torch.ones(4), atol=1e-5)
    assert torch.allclose(register(x, 3 * x).score, torch.ones(4), atol=1e-5)
    unrelated = register(x, smooth_objects(4, size=32, seed=9)).score
    assert (unrelated < 0.99).all()


def test_apply_is_differentiable():
    x = smooth_objects(2, size=32)
    result = register(x, x.flip(-1))
    moving = x.flip(-1).clone().requires_grad_(True)
    result.apply(moving).sum().backward()
    assert moving.grad.abs().sum() > 0
    # the gradient is the warp's own (float64, a few pixels: finite differences are exact enough)
    small = RegistrationResult(
        torch.tensor([37.5, 301.2]),
        torch.tensor([True, False]),
        torch.tensor([[0.4, -1.3], [0.0, 2.1]]),
        torch.ones(2),
    )
    y = torch.rand(2, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(small.apply, (y.requires_grad_(True),))


# every public function of a pair of batches, with its default options
PAIR_FUNCTIONS = {
    "register": register,
    "register(translation=True)": functools.partial(register, translation=True),
    "register_rotation_flip": register_rotation_flip,
    "register_brute_force": functools.partial(register_brute_force, step_deg=30.0),
    "phase_correlation": phase_correlation,
}


@pytest.mark.parametrize("function", PAIR_FUNCTIONS)
@pytest.mark.parametrize(
    "fixed, moving, error, message",
    [
        (torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), ValueError, r"fixed must have shape \(b, c, h, w\)"),
        (torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 8), ValueError, r"moving must have shape \(b, c, h, w\)"),
        (torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8), ValueError, "same shape"),
        (torch.zeros(0, 1, 8, 8), torch.zeros(0, 1, 8, 8), ValueError, "empty batch"),
        (torch.zeros(1, 1, 0, 3), torch.zeros(1, 1, 0, 3), ValueError, r"fixed has empty images.*0, 3\)"),
        (torch.zeros(2, 0, 8, 8), torch.zeros(2, 0, 8, 8), ValueError, "fixed has empty images or no"),
        (
            torch.zeros(1, 1, 8, 8, dtype=torch.int64),
            torch.zeros(1, 1, 8, 8),
            TypeError,
            "fixed must have a float dtype",
        ),
        (
            torch.zeros(1, 1, 8, 8),
            torch.zeros(1, 1, 8, 8, dtype=torch.cfloat),
            TypeError,
            "moving must have a float",
        ),
        (np.zeros((1, 1, 8, 8)), torch.zeros(1, 1, 8, 8), TypeError, "fixed must be a torch.Tensor"),
    ],
)
def test_bad_input(function, fixed, moving, error, message):
    with pytest.raises(error, match=message):
        PAIR_FUNCTIONS[function](fixed, moving)


def test_non_finite_input_names_the_image():
    x = torch.zeros(3, 1, 8, 8)
    y = x.clone()
    y[2, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"moving\[2\] contains NaN or Inf"):
        register(x, y)


@pytest.mark.parametrize("function", PAIR_FUNCTIONS)
@pytest.mark.parametrize(
    "which, value", [("fixed", float("nan")), ("moving", float("nan")), ("moving", -float("inf"))]
)
def test_every_pair_function_names_the_non_finite_image(function, which, value):
    pair = {"fixed": torch.rand(3, 1, 8, 8), "moving": torch.rand(3, 1, 8, 8)}
    pair[which][1, 0, 2, 5] = value
    with pytest.raises(ValueError, match=rf"{which}\[1\] contains NaN or Inf"):
        PAIR_FUNCTIONS[function](**pair)


def test_polar_transform_and_apply_check_their_images():
    polar, result = PolarTransform((8, 8)), register(torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8))
    bad = torch.rand(3, 1, 8, 8)
    bad[2, 0, 0, 0] = float("nan")
    for function in (polar, result.apply):
        with pytest.raises(ValueError, match=r"x\[2\] contains NaN or Inf"):
            function(bad)
        with pytest.raises(TypeError, match="x must have a float dtype"):
            function(torch.zeros(3, 1, 8, 8, dtype=torch.int64))
        with pytest.raises(ValueError, match=r"x must have shape \(b, c, h, w\)"):
            function(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="empty batch: x has 0 images"):
        polar(torch.zeros(0, 1, 8, 8))
    with pytest.raises(ValueError, match=r"expected images \(b, c, 8, 8\)"):
        polar(torch.zeros(1, 1, 8, 9))


# measured differences from float32 (the largest over the 4 pairs): float16 angles 0.11 degree, shifts
# 0.016 px (phase correlation), images and scores 5e-4; bfloat16 0.22 degree, 0.010 px, 4e-3 (8-bit
# mantissa); float64 0.001 degree, 0.004 px (float32's own error in phase correlation), 1e-6
@pytest.mark.parametrize(
    "dtype, tol_angle, tol_shift, tol_image",
    [
        (torch.float16, 0.15, 0.02, 1e-3),
        (torch.bfloat16, 0.3, 0.015, 5e-3),
        (torch.float64, 0.002, 0.005, 1e-5),
    ],
)
def test_every_function_takes_any_float_dtype(dtype, tol_angle, tol_shift, tol_image):
    x = smooth_objects(4, size=32, seed=11) * disk_mask(32, 32, 10)
    angle, flip = torch.tensor([20.0, 100.0, 200.0, 300.0]), torch.tensor([False, True, True, False])
    shift = torch.tensor([[1.5, -2.25], [0.0, 3.0], [-2.5, 0.5], [2.0, 2.0]])
    pairs = {
        "register": (x, rotate_flip(x, angle, flip)),
        "register(translation=True)": (x, rotate_flip(x, angle, flip, shift)),
        "register_rotation_flip": (x, rotate_flip(x, angle, flip)),
        "register_brute_force": (x, rotate_flip(x, angle, flip)),  # the best of its 30-degree grid
        "phase_correlation": (x, rotate_flip(x, 0.0, False, shift)),
    }
    for name, (fixed, moving) in pairs.items():
        ref, out = (
            PAIR_FUNCTIONS[name](fixed, moving),
            PAIR_FUNCTIONS[name](fixed.to(dtype), moving.to(dtype)),
        )
        if name == "phase_correlation":
            assert all(t.dtype == dtype for t in out), name
            assert (out[0].double() - ref[0]).abs().max() < tol_shift, name
            continue
        assert all(t.dtype == dtype for t in (out.angle, out.shift, out.score)), name
        assert torch.equal(out.flip, ref.flip), name
        assert (angle_error(out.angle.float(), ref.angle) < tol_angle).all(), name
        assert (out.shift.float() - ref.shift).abs().max() < tol_shift, name
        assert (out.score.float() - ref.score).abs().max() < tol_image, name
        assert out.apply(moving.to(dtype)).dtype == dtype
    polar = PolarTransform((32, 32))
    assert polar(x.to(dtype)).dtype == dtype
    assert (polar(x.to(dtype)).double() - polar(x)).abs().max() < tol_image


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])  # fmt: skip
@pytest.mark.parametrize("translation", [False, True])
def test_batches_are_registered_in_chunks_that_give_each_pairs_own_result(monkeypatch, device, translation):
    import importlib

    reg = importlib.import_module(
        "registration.register"
    )  # the module: the package exports a function of that name
    x = smooth_objects(12, size=32).to(device)
    angle = torch.linspace(0.0, 330.0, 12, device=device)
    moving = rotate_flip(x, angle, flip=torch.arange(12, device=device) % 2 == 1).half()
    whole = register(x.half(), moving, translation=translation)
    # chunks of 5 pairs, half precision cast chunk by chunk, on either device
    per_pair = (4 * 32) ** 2 if translation else reg.cached_polar_transform((32, 32), 360).n_radii * 360
    monkeypatch.setattr(reg, "CPU_CHUNK_ELEMENTS", 5 * per_pair)
    monkeypatch.setattr(reg, "CUDA_CHUNK_ELEMENTS", 5 * per_pair)
    chunked = register(x.half(), moving, translation=translation)
    assert whole.angle.dtype == chunked.angle.dtype == torch.float16
    assert torch.equal(whole.flip, chunked.flip)
    assert torch.allclose(whole.angle.float(), chunked.angle.float(), atol=0.3)  # float16 angle steps
    for i in (0, 4, 5, 11):  # each side of a chunk boundary: as the pair registered alone
        alone = register(x[i : i + 1].half(), moving[i : i + 1], translation=translation)
        assert alone.flip.item() == chunked.flip[i].item()
        assert torch.equal(alone.angle, chunked.angle[i : i + 1])
