"""Export a trained O2 encoder to plain PyTorch modules for fast inference.

e2cnn's ``export()`` turns its convolutions, ``InnerBatchNorm`` and pointwise non-linearities
into ``torch.nn`` modules. The anti-aliased pooling, a fixed Gaussian blur, becomes a depthwise
``Conv2d`` here; the last layer's modules (norm batch norm, norm non-linearities, invariant
pooling), which have no export, keep running as e2cnn code on plain tensors; the whole-map
convolution of the last layer becomes the matrix product it is. Each batch norm that follows a
convolution is folded into it (``torch.nn.utils.fusion``), and the convolutions run on
channels-last tensors, which the CPU convolutions handle 1.3-3x faster than e2cnn's channels-first
ones at batches of 64-256 (BENCHMARKS.md, "Inference"). The result computes the same
``(mu, logvar)`` in eval mode (tested to float precision); it cannot be trained, and it does not
follow later changes of the encoder's weights: export again after training.
"""

import copy

import torch
from e2cnn import nn as enn
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from models.encoders_o2.o2_encoder import O2Encoder, WholeMapConv
from models.gaussian_head import check_images


class OnTensors(nn.Module):
    """An e2cnn module without an export, applied to plain tensors."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(enn.GeometricTensor(x, self.module.in_type)).tensor


class WholeMapLinear(nn.Linear):
    """A convolution whose kernel covers its whole input map, as a matrix product (see WholeMapConv)."""

    def __init__(self, conv):
        super().__init__(conv.weight[0].numel(), conv.out_channels, bias=conv.bias is not None)
        self.weight.data.copy_(conv.weight.flatten(1))
        if conv.bias is not None:
            self.bias.data.copy_(conv.bias)

    def forward(self, x):
        return super().forward(x.flatten(1))[:, :, None, None]


class ExportedEncoder(nn.Module):
    """The exported layers of an :class:`O2Encoder` and its MLP head: images to ``(mu, logvar)``."""

    def __init__(self, features, head, in_channels, image_size):
        super().__init__()
        self.features, self.head = features, head
        self.in_channels, self.image_size = in_channels, image_size

    def forward(self, x):
        check_images(x, self.in_channels, self.image_size, training=False)
        x = self.features(x.contiguous(memory_format=torch.channels_last))
        return self.head(x.flatten(1))


def export_layer(module):
    """A ``torch.nn`` module computing what the e2cnn ``module`` computes (in eval mode)."""
    if isinstance(module, enn.PointwiseAvgPoolAntialiased):
        channels, _, size, _ = module.filter.shape
        conv = nn.Conv2d(channels, channels, size, module.stride, module.padding, groups=channels, bias=False)
        conv.weight.data.copy_(module.filter)
        return conv
    if isinstance(module, WholeMapConv):
        return WholeMapLinear(module.export())
    try:
        return module.export()
    except NotImplementedError:
        return OnTensors(copy.deepcopy(module))


def fold_batch_norms(layers):
    """``layers`` with every BatchNorm2d that directly follows a Conv2d folded into that Conv2d."""
    folded = []
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d) and folded and isinstance(folded[-1], nn.Conv2d):
            folded[-1] = fuse_conv_bn_eval(folded[-1], layer)
        else:
            folded.append(layer)
    return folded


@torch.no_grad()
def export_encoder(encoder):
    """A plain-PyTorch copy of ``encoder`` for inference (eval mode); other encoders are returned as they are.

    Parameters
    ----------
    encoder : nn.Module
        A trained encoder; an :class:`O2Encoder` is exported, anything else (the vanilla CNN
        encoder, plain PyTorch already) is returned unchanged.

    Returns
    -------
    nn.Module
        In eval mode, on the encoder's device: images ``(b, c, h, w)`` to ``(mu, logvar)``.
    """
    if not isinstance(encoder, O2Encoder):
        return encoder
    was_training = encoder.training
    encoder.eval()  # e2cnn's export reads the expanded filters and the running statistics
    try:
        layers = fold_batch_norms([export_layer(m).eval() for m in encoder.features.children()])
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                layer.to(memory_format=torch.channels_last)
        head = copy.deepcopy(encoder.head)
        exported = ExportedEncoder(nn.Sequential(*layers), head, encoder.in_channels, encoder.image_size)
    finally:
        encoder.train(was_training)
    device = next(encoder.parameters()).device
    return exported.to(device).eval()
