"""O(2)-invariant CNN encoder built from e2cnn steerable convolutions.

The image enters as a field of scalars (one trivial field per channel). Each layer is a steerable
convolution, a batch norm and a non-linearity that keep every feature map equivariant to the
group. A layer marked for downsampling halves the map in one of two ways: ``pooling='after'``
follows it with anti-aliased average pooling (a Gaussian blur sampled with stride 2), as the
O2-VAE paper does; ``pooling='strided'`` blurs the layer's input and samples its convolution with
stride 2. Blurring commutes with the (linear, translation-equivariant) convolution, so 'strided'
equals pooling the convolution's output before the batch norm and non-linearity rather than after
them (except on the outermost ring of the output, where the two zero-pad different maps, both
symmetrically), and computes a quarter of the convolution. A last steerable
convolution whose kernel covers the whole remaining map turns it into one feature vector per image
(keeping where things are relative to the centre, which a global average would lose); it is made
invariant and an MLP maps it to the posterior mean and log-variance.

Invariant map: the last layer outputs trivial fields and 2-D irreps (frequencies 1 to
``max_frequency``), made invariant by taking the norm of each irrep; the paper's layer outputs
induced fields with their norms. For D_N, irreps replace regular fields in that layer only: the max
over N rotations of a regular field changes in steps as an object turns between two of the N
angles, while the norm of an irrep (the magnitude of a Fourier coefficient over the rotations)
varies smoothly (on O2-MNIST: orientation sensitivity 0.13 with regular fields, 0.09-0.10 with
irreps; BENCHMARKS.md).

Exactness: a strided operation commutes with the 90-degree rotations and the flips of the pixel
grid only if it samples symmetrically about the image centre, i.e. on an odd-sized map. An even
first kernel (size 4, padding 2) turns a ``2^k m`` image into a ``2^k m + 1`` map, and each
stride-2 pooling maps ``2n + 1`` to ``n + 1``, so with an image size divisible by
``2 ** n_downsample`` every pooled map is odd ('strided' samples the same positions: its first
layer takes a ``2^k m`` image straight to ``2^(k-1) m + 1``). The last map, ``m + 1`` pixels, is
covered by one kernel whose sampling grid is symmetric about its centre at any size. The embedding
is then invariant to the 8 grid symmetries up to float error. Other angles are approximated by the
sampling of the kernels (and reach the error of image interpolation at best): trained alone, the
D8 encoder has an orientation sensitivity of 0.09-0.10 on O2-MNIST, the paper's continuous-O(2)
one 0.03-0.04 at 20-44x the training time. The default preset trains it with the invariance term
of :class:`models.vae.VAE` (``model.invariance_weight``), which brings it to about 0.04 (0.034 to
0.045 over the budgets measured) at a fraction of that cost (BENCHMARKS.md, "Training recipe").
"""

import functools

import e2cnn.nn as enn
from e2cnn import gspaces
from torch import nn

import models  # noqa: F401  (applies the e2cnn compatibility fixes)
from models.gaussian_head import GaussianHead, check_images, check_layer_plan


def build_gspace(group, n_rotations, max_frequency):
    """The symmetry group acting on the plane: dihedral D_N or continuous O(2)."""
    if group == "dihedral":
        return gspaces.FlipRot2dOnR2(N=n_rotations)
    if group == "o2":
        return gspaces.FlipRot2dOnR2(N=-1, maximum_frequency=max_frequency)
    raise ValueError(f"group must be 'dihedral' or 'o2', got {group!r}")


class InnerBatchNorm(enn.InnerBatchNorm):
    """e2cnn's ``InnerBatchNorm``, without a copy when the fields are all of one size.

    e2cnn normalises each group of equally sized fields and copies the result into a new tensor.
    When one size spans every channel (always so in the regular layers here), normalising the
    whole tensor at once gives the same numbers without that copy and its backward pass. The
    parameters, buffers and export are e2cnn's.
    """

    def forward(self, input):
        if input.type != self.in_type:
            raise ValueError(f"InnerBatchNorm expects fields of type {self.in_type}, got {input.type}")
        if len(self._contiguous) != 1 or not all(self._contiguous.values()):
            return super().forward(input)
        (size,) = self._contiguous
        b, c, h, w = input.tensor.shape
        batch_norm = getattr(self, f"batch_norm_[{size}]")
        out = batch_norm(input.tensor.view(b, c // size, size, h, w)).view(b, c, h, w)
        return enn.GeometricTensor(out, self.out_type)


def _regular_layer(in_type, multiplicity, conv):
    gs = in_type.gspace
    out_type = enn.FieldType(gs, multiplicity * [gs.regular_repr])
    layers = [
        conv(in_type, out_type),
        InnerBatchNorm(out_type),
        enn.ReLU(out_type, inplace=True),
    ]
    return layers, out_type


def _norm_layer(in_type, multiplicity, conv, max_frequency):
    """Trivial fields (ELU) and 2-D irreps of frequencies 1..max_frequency (norm-ReLU)."""
    gs = in_type.gspace
    g = gs.fibergroup
    trivial = enn.FieldType(gs, multiplicity * [gs.trivial_repr])
    irreps = enn.FieldType(gs, multiplicity * [g.irrep(1, k) for k in range(1, max_frequency + 1)])
    out_type = trivial + irreps
    labels = ["trivial"] * len(trivial) + ["irreps"] * len(irreps)
    layers = [
        conv(in_type, out_type),
        enn.MultipleModule(
            out_type,
            labels,
            [(InnerBatchNorm(trivial), "trivial"), (enn.NormBatchNorm(irreps), "irreps")],
        ),
        enn.MultipleModule(
            out_type,
            labels,
            [(enn.ELU(trivial), "trivial"), (enn.NormNonLinearity(irreps, "n_relu"), "irreps")],
        ),
    ]
    return layers, out_type


def _induced_gated_layer(in_type, multiplicity, conv, max_frequency):
    """The reference O2-VAE layer: trivial fields (ELU) and gated fields induced from SO(2) irreps."""
    gs = in_type.gspace
    so2, _, _ = gs.fibergroup.subgroup((None, -1))
    induced = [gs.induced_repr((None, -1), so2.irrep(k)) for k in range(1, max_frequency + 1)]
    trivial = enn.FieldType(gs, multiplicity * [gs.trivial_repr])
    # one gate per gated field: the representation induced from the trivial one of SO(2)
    gates = enn.FieldType(
        gs, multiplicity * len(induced) * [gs.induced_repr((None, -1), so2.trivial_representation)]
    )
    gated = enn.FieldType(gs, multiplicity * induced).sorted()
    out_type = trivial + gates + gated
    bn_labels = ["trivial"] * (len(trivial) + len(gates)) + ["gated"] * len(gated)
    nl_labels = ["trivial"] * len(trivial) + ["gate"] * (len(gates) + len(gated))
    gated_type = gates + gated
    layers = [
        conv(in_type, out_type),
        enn.MultipleModule(
            out_type,
            bn_labels,
            [(InnerBatchNorm(trivial + gates), "trivial"), (enn.InducedNormBatchNorm(gated), "gated")],
        ),
        enn.MultipleModule(
            out_type,
            nl_labels,
            [(enn.ELU(trivial), "trivial"), (enn.InducedGatedNonLinearity1(gated_type), "gate")],
        ),
    ]
    # the gate non-linearity consumes the gates: its output holds the trivial and gated fields only
    return layers, trivial + gated


class WholeMapConv(enn.R2Conv):
    """A steerable convolution whose kernel covers its whole input map: one output position.

    Computed as a matrix product, which on CPU is several times faster than ``conv2d`` (and its
    backward pass) for this shape; the result is the same.
    """

    def forward(self, input):
        if input.type != self.in_type:
            raise ValueError(f"WholeMapConv expects fields of type {self.in_type}, got {input.type}")
        if input.tensor.shape[-2:] != (self.kernel_size, self.kernel_size):
            raise ValueError(
                f"WholeMapConv expects {self.kernel_size}x{self.kernel_size} maps, "
                f"got {tuple(input.tensor.shape[-2:])}"
            )
        weight, bias = self.expand_parameters() if self.training else (self.filter, self.expanded_bias)
        out = nn.functional.linear(input.tensor.flatten(1), weight.flatten(1), bias)
        return enn.GeometricTensor(out[:, :, None, None], self.out_type)


def invariant_map(field_type):
    """A module mapping trivial fields, irreps and induced fields to invariants (norms of the others)."""
    labels = [
        "trivial" if r.is_trivial() else "induced" if "induced" in r.name else "irrep" for r in field_type
    ]
    pools = {"trivial": enn.IdentityModule, "induced": enn.InducedNormPool, "irrep": enn.NormPool}
    modules = [(pools[label](sub), label) for label, sub in field_type.group_by_labels(labels).items()]
    return enn.MultipleModule(field_type, labels, modules, reshuffle=1)


class O2Encoder(nn.Module):
    """Encoder whose output is invariant to rotations and reflections of the input.

    Parameters
    ----------
    in_channels : int
        Image channels.
    image_size : int
        Height = width of the images; must be divisible by ``2 ** sum(downsample)``.
    zdim : int
        Latent dimension: the encoder returns ``(mu, logvar)``, each ``(b, zdim)``.
    group : {'dihedral', 'o2'}
        D_N (``n_rotations`` rotations and the flips) or continuous O(2).
    n_rotations : int
        N of D_N.
    max_frequency : int
        Band limit of the O(2) feature fields and of the last layer's irreps (for D_N, below N / 2).
    layer_type : {'regular', 'norm', 'induced_gated'}
        'regular': regular fields of D_N with ReLU (fast);
        'norm': O(2) irreps with norm-ReLU; 'induced_gated': the O2-VAE paper's layer.
    channels : list of int
        Field multiplicity of each convolution layer before the last (whole-map) one.
    downsample : list of bool
        Whether each layer halves the map (how: see ``pooling``).
    kernel_size : int
        Odd kernel size of the layers in ``channels`` after the first (whose kernel is 4, see
        module notes); the last layer's kernel is the size of its input map.
    encoder_out : int
        Field multiplicity of the last layer, whose kernel covers the whole remaining map. The
        invariant feature vector has ``encoder_out * (1 + max_frequency)`` entries (one trivial
        field and one norm per frequency).
    hidden : int
        Width of the MLP head.
    antialias_sigma : float
        Width of the Gaussian blur before each stride-2 sampling (pixels).
    pooling : {'after', 'strided'}
        Downsampling: anti-aliased pooling after the non-linearity, or a blur before a stride-2
        convolution (see module notes). On O2-MNIST 'strided' trains 1.2-1.8x faster and is less
        invariant between grid angles: orientation sensitivity 0.11 against 0.09-0.10 trained
        alone, 0.041-0.047 against 0.034-0.039 with the invariance term (BENCHMARKS.md).
    """

    def __init__(
        self,
        in_channels,
        image_size,
        zdim,
        group="dihedral",
        n_rotations=8,
        max_frequency=3,
        layer_type="regular",
        channels=(8, 16, 24, 32),
        downsample=(True, True, True, False),
        kernel_size=5,
        encoder_out=64,
        hidden=128,
        antialias_sigma=0.66,
        pooling="after",
    ):
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        # image size after the downsamplings; the maps here are one pixel larger (module notes)
        halved = check_layer_plan(image_size, channels, downsample)
        if layer_type == "regular" and group != "dihedral":
            raise ValueError(
                "layer_type 'regular' needs group 'dihedral' (continuous O(2) has no regular fields)"
            )
        if layer_type in ("norm", "induced_gated") and group != "o2":
            raise ValueError(f"layer_type {layer_type!r} needs group 'o2'")
        if max_frequency < 1 or (group == "dihedral" and max_frequency >= n_rotations / 2):
            raise ValueError(
                f"max_frequency must be >= 1 (and < n_rotations / 2 for D_N), got {max_frequency}"
            )
        if pooling not in ("after", "strided"):
            raise ValueError(f"pooling must be 'after' or 'strided', got {pooling!r}")
        if halved < 2:
            raise ValueError(f"image size {image_size} leaves a last map of 1 pixel; use fewer pooling steps")
        gs = build_gspace(group, n_rotations, max_frequency)
        self.in_type = enn.FieldType(gs, in_channels * [gs.trivial_repr])
        if layer_type == "regular":
            make_layer = _regular_layer
        else:
            make_layer = functools.partial(
                _norm_layer if layer_type == "norm" else _induced_gated_layer, max_frequency=max_frequency
            )
        field_type, layers = self.in_type, []
        for i, (multiplicity, down) in enumerate(zip(channels, downsample, strict=True)):
            # the first kernel is even so that an even image becomes an odd, centred feature map
            k, pad = (4, 2) if i == 0 else (kernel_size, kernel_size // 2)
            strided = down and pooling == "strided"
            if strided:
                layers.append(enn.PointwiseAvgPoolAntialiased(field_type, sigma=antialias_sigma, stride=1))
            conv = functools.partial(enn.R2Conv, kernel_size=k, padding=pad, stride=2 if strided else 1)
            block, field_type = make_layer(field_type, multiplicity, conv)
            layers += block
            if down and not strided:
                layers.append(enn.PointwiseAvgPoolAntialiased(field_type, sigma=antialias_sigma, stride=2))
        conv = functools.partial(WholeMapConv, kernel_size=halved + 1)
        # D_N: irreps and their norms, not regular fields and a max over the N rotations (see notes)
        last_layer = (
            make_layer
            if layer_type != "regular"
            else functools.partial(_norm_layer, max_frequency=max_frequency)
        )
        block, field_type = last_layer(field_type, encoder_out, conv)
        layers += [*block, invariant_map(field_type)]
        self.features = enn.SequentialModule(*layers)
        self.head = GaussianHead(self.features.out_type.size, zdim, hidden)

    def forward(self, x):
        """Return ``(mu, logvar)`` of the posterior, each ``(b, zdim)``."""
        check_images(x, self.in_channels, self.image_size, self.training)
        feats = self.features(enn.GeometricTensor(x, self.in_type)).tensor
        return self.head(feats.flatten(1))
