"""O(2)-invariant CNN encoder built from e2cnn steerable convolutions.

The image enters as a field of scalars (one trivial field per channel). Each layer is a steerable
convolution, a batch norm and a non-linearity that keep every feature map equivariant to the
group; some layers are followed by anti-aliased average pooling (stride 2). The last features are
made invariant per position (group pooling of regular fields, norms of the others), averaged over
space, and an MLP maps them to the posterior mean and log-variance.

Exactness: a strided operation commutes with the 90-degree rotations and the flips of the pixel
grid only if it samples symmetrically about the image centre, i.e. on an odd-sized map. An even
first kernel (size 4, padding 2) turns a ``2^k m`` image into a ``2^k m + 1`` map, and each
stride-2 pooling maps ``2n + 1`` to ``n + 1``, so with an image size divisible by
``2 ** n_downsample`` every pooled map is odd and the embedding is invariant to the 8 grid
symmetries up to float error. Other angles are approximated by the sampling of the kernels
(and reach the error of image interpolation at best).
"""

import e2cnn.nn as enn
from e2cnn import gspaces
from torch import nn

import models  # noqa: F401  (applies the e2cnn compatibility fixes)
from models.gaussian_head import GaussianHead, check_layer_plan

LAYER_TYPES = ("regular", "norm", "induced_gated")


def build_gspace(group, n_rotations, max_frequency):
    """The symmetry group acting on the plane: dihedral D_N or continuous O(2)."""
    if group == "dihedral":
        return gspaces.FlipRot2dOnR2(N=n_rotations)
    if group == "o2":
        return gspaces.FlipRot2dOnR2(N=-1, maximum_frequency=max_frequency)
    raise ValueError(f"group must be 'dihedral' or 'o2', got {group!r}")


def _regular_layer(in_type, multiplicity, kernel_size, padding):
    gs = in_type.gspace
    out_type = enn.FieldType(gs, multiplicity * [gs.regular_repr])
    layers = [
        enn.R2Conv(in_type, out_type, kernel_size, padding=padding),
        enn.InnerBatchNorm(out_type),
        enn.ReLU(out_type, inplace=True),
    ]
    return layers, out_type


def _norm_layer(in_type, multiplicity, kernel_size, padding, max_frequency):
    """Trivial fields (ELU) and 2-D irreps of frequencies 1..max_frequency (norm-ReLU)."""
    gs = in_type.gspace
    g = gs.fibergroup
    trivial = enn.FieldType(gs, multiplicity * [gs.trivial_repr])
    irreps = enn.FieldType(gs, multiplicity * [g.irrep(1, k) for k in range(1, max_frequency + 1)])
    out_type = trivial + irreps
    labels = ["trivial"] * len(trivial) + ["irreps"] * len(irreps)
    layers = [
        enn.R2Conv(in_type, out_type, kernel_size, padding=padding),
        enn.MultipleModule(
            out_type,
            labels,
            [(enn.InnerBatchNorm(trivial), "trivial"), (enn.NormBatchNorm(irreps), "irreps")],
        ),
        enn.MultipleModule(
            out_type,
            labels,
            [(enn.ELU(trivial), "trivial"), (enn.NormNonLinearity(irreps, "n_relu"), "irreps")],
        ),
    ]
    return layers, out_type


def _induced_gated_layer(in_type, multiplicity, kernel_size, padding, max_frequency):
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
        enn.R2Conv(in_type, out_type, kernel_size, padding=padding),
        enn.MultipleModule(
            out_type,
            bn_labels,
            [(enn.InnerBatchNorm(trivial + gates), "trivial"), (enn.InducedNormBatchNorm(gated), "gated")],
        ),
        enn.MultipleModule(
            out_type,
            nl_labels,
            [(enn.ELU(trivial), "trivial"), (enn.InducedGatedNonLinearity1(gated_type), "gate")],
        ),
    ]
    # the gate non-linearity consumes the gates: its output holds the trivial and gated fields only
    return layers, trivial + gated


def invariant_map(field_type):
    """A module mapping features of ``field_type`` to invariant channels, position by position."""
    labels, modules = [], []
    for r in field_type:
        if r.is_trivial():
            labels.append("trivial")
        elif "regular" in r.name:
            labels.append("regular")
        elif "induced" in r.name:
            labels.append("induced")
        else:
            labels.append("irrep")
    grouped = field_type.group_by_labels(labels)
    for label, sub in grouped.items():
        if label == "trivial":
            modules.append((enn.IdentityModule(sub), label))
        elif label == "regular":
            modules.append((enn.GroupPooling(sub), label))
        elif label == "induced":
            modules.append((enn.InducedNormPool(sub), label))
        else:
            modules.append((enn.NormPool(sub), label))
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
        Band limit of the O(2) feature fields.
    layer_type : {'regular', 'norm', 'induced_gated'}
        'regular': regular fields of D_N with ReLU (fast; exports to plain PyTorch);
        'norm': O(2) irreps with norm-ReLU; 'induced_gated': the O2-VAE paper's layer.
    channels : list of int
        Field multiplicity of each convolution layer.
    downsample : list of bool
        Whether each layer is followed by anti-aliased average pooling with stride 2.
    kernel_size : int
        Odd kernel size of all but the first layer (whose kernel is 4, see module notes).
    hidden : int
        Width of the MLP head.
    antialias_sigma : float
        Width of the Gaussian blur before each stride-2 sampling (pixels).
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
        hidden=128,
        antialias_sigma=0.66,
    ):
        super().__init__()
        check_layer_plan(image_size, channels, downsample)
        if layer_type == "regular" and group != "dihedral":
            raise ValueError(
                "layer_type 'regular' needs group 'dihedral' (continuous O(2) has no regular fields)"
            )
        if layer_type in ("norm", "induced_gated") and group != "o2":
            raise ValueError(f"layer_type {layer_type!r} needs group 'o2'")
        gs = build_gspace(group, n_rotations, max_frequency)
        self.in_type = enn.FieldType(gs, in_channels * [gs.trivial_repr])
        field_type, layers = self.in_type, []
        for i, (multiplicity, down) in enumerate(zip(channels, downsample, strict=True)):
            # the first kernel is even so that an even image becomes an odd, centred feature map
            k, pad = (4, 2) if i == 0 else (kernel_size, kernel_size // 2)
            if layer_type == "regular":
                block, field_type = _regular_layer(field_type, multiplicity, k, pad)
            elif layer_type == "norm":
                block, field_type = _norm_layer(field_type, multiplicity, k, pad, max_frequency)
            else:
                block, field_type = _induced_gated_layer(field_type, multiplicity, k, pad, max_frequency)
            layers += block
            if down:
                layers.append(enn.PointwiseAvgPoolAntialiased(field_type, sigma=antialias_sigma, stride=2))
        layers.append(invariant_map(field_type))
        self.features = enn.SequentialModule(*layers)
        self.head = GaussianHead(self.features.out_type.size, zdim, hidden)

    def forward(self, x):
        """Return ``(mu, logvar)`` of the posterior, each ``(b, zdim)``."""
        feats = self.features(enn.GeometricTensor(x, self.in_type)).tensor
        return self.head(feats.mean((2, 3)))
