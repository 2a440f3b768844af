"""Variational autoencoder with an orientation-aligned reconstruction loss."""

import torch
import torch.nn.functional as F
from torch import nn

from registration import disk_mask, register, register_brute_force, rotate_flip

LOSSES = ("bce", "mse")
ALIGNMENTS = ("none", "fourier", "brute")


class VAE(nn.Module):
    """Encoder, decoder, reparameterisation and the (aligned) ELBO loss.

    Parameters
    ----------
    encoder : nn.Module
        Maps images ``(b, c, h, w)`` to ``(mu, logvar)``.
    decoder : nn.Module
        Maps ``z`` to unnormalised images (logits for 'bce').
    image_size : int
        Height = width of the images.
    loss : {'bce', 'mse'}
        Reconstruction loss: binary cross-entropy on a sigmoid output, or squared error.
    beta : float
        Weight of the KL divergence to the standard normal prior.
    align : {'none', 'fourier', 'brute'}
        Before the reconstruction loss, rotate/flip each reconstruction to best match its
        input: with the Fourier registration (``registration.register``) or a brute-force
        search on a ``rot_step_deg`` grid. Gradients flow through the warp to the decoder.
    rot_step_deg : float
        Angle step of the brute-force search.
    align_angles : int
        Angular samples of the Fourier registration.
    loss_mask : {'disk', None}
        Pixel mask of the loss: the inscribed disk (the only pixels that stay in the image
        under rotation), or every pixel.
    invariance_weight : float
        Weight of the invariance term (0: none). In training, a copy of the first
        ``invariance_fraction`` of each batch, each image rotated by a uniformly random angle and
        flipped with probability 0.5 (bicubic), goes through the same encoder pass; the term is
        the squared distance between the posterior means of an image and of its copy (summed over
        the latent dimensions, averaged over the copies). An encoder exact on the 8 grid
        symmetries only needs to learn the angles in between.
    invariance_fraction : float
        Share of each batch, in (0, 1], that gets a rotated copy.

    Notes
    -----
    Losses are sums over the pixels of one image, averaged over the batch. Under mixed-precision
    autocast (``training.precision='bf16'``) the encoder and decoder run in bfloat16, while the
    registration, the warp and the losses stay in float32: a bfloat16 phase correlation (8 bits
    of mantissa) would misplace its peak.
    """

    def __init__(
        self,
        encoder,
        decoder,
        image_size,
        loss="bce",
        beta=1.0,
        align="fourier",
        rot_step_deg=10.0,
        align_angles=128,
        loss_mask="disk",
        invariance_weight=0.0,
        invariance_fraction=0.25,
    ):
        super().__init__()
        if loss not in LOSSES or align not in ALIGNMENTS or loss_mask not in ("disk", None):
            raise ValueError(f"bad loss {loss!r}, align {align!r} or loss_mask {loss_mask!r}")
        if align != "none" and loss_mask is None:
            raise ValueError(
                "an aligned loss needs loss_mask='disk': pixels outside it do not survive a rotation"
            )
        if invariance_weight < 0 or not 0 < invariance_fraction <= 1:
            raise ValueError(
                f"invariance_weight must be >= 0 and invariance_fraction in (0, 1], got "
                f"{invariance_weight} and {invariance_fraction}"
            )
        self.encoder, self.decoder = encoder, decoder
        self.invariance_weight, self.invariance_fraction = invariance_weight, invariance_fraction
        self.loss, self.beta, self.align = loss, beta, align
        self.rot_step_deg, self.align_angles = rot_step_deg, align_angles
        pixel_mask = (
            disk_mask(image_size, image_size) if loss_mask == "disk" else torch.ones(image_size, image_size)
        )
        self.register_buffer("pixel_mask", pixel_mask[None, None], persistent=False)

    def encode(self, x):
        """Posterior ``(mu, logvar)`` of images ``x``."""
        return self.encoder(x)

    def to_image(self, out):
        """Map decoder output to image space (sigmoid for 'bce')."""
        return torch.sigmoid(out) if self.loss == "bce" else out

    def decode(self, z):
        """Images decoded from latent vectors ``z`` ``(b, zdim)``."""
        return self.to_image(self.decoder(z))

    def embed(self, x):
        """The embedding of ``x``: the posterior mean. Call ``model.eval()`` first."""
        return self.encode(x)[0]

    def find_alignment(self, x, out):
        """Rotation/flip aligning each decoded ``out`` (decoder output) to its input ``x``."""
        moving = self.to_image(out).detach()
        if self.align == "brute":
            return register_brute_force(x, moving, step_deg=self.rot_step_deg)
        return register(x, moving, n_angles=self.align_angles)

    def reconstruct(self, x, align=True):
        """Deterministic reconstruction from the posterior mean, aligned to ``x`` if asked."""
        out = self.decoder(self.embed(x))
        if align:
            out = self.find_alignment(x, out).apply(out)
        return self.to_image(out)

    def reconstruction_loss(self, out, x):
        """Per-image reconstruction loss of decoder output ``out`` against ``x`` (masked sum)."""
        if self.loss == "bce":
            per_pixel = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            per_pixel = (out - x) ** 2
        return (per_pixel * self.pixel_mask).sum((1, 2, 3))

    def forward(self, x):
        """Loss terms for a batch.

        Returns
        -------
        dict
            ``loss`` (recon + beta * kl + invariance_weight * invariance, averaged over the
            batch), ``recon``, ``kl``, ``invariance`` (0 in eval mode or with no weight) and the
            aligned decoder output ``out``.
        """
        n_copies = self._n_rotated_copies(len(x))
        if n_copies:
            copies = x[:n_copies]
            angle = torch.rand(n_copies, device=x.device) * 360.0
            flip = torch.rand(n_copies, device=x.device) < 0.5
            mu, logvar = self.encode(torch.cat([x, rotate_flip(copies, angle, flip, mode="bicubic")]))
            mu, mu_copies, logvar = mu[: len(x)], mu[len(x) :], logvar[: len(x)]
            invariance = ((mu[:n_copies].float() - mu_copies.float()) ** 2).sum(1).mean()
        else:
            mu, logvar = self.encode(x)
            invariance = torch.zeros((), device=x.device)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        out = self.decoder(z)
        if not torch.isfinite(out).all():  # before the alignment, which would reject it less clearly
            raise FloatingPointError("the decoder output holds NaN or Inf (diverged weights)")
        mu, logvar, out = mu.float(), logvar.float(), out.float()
        with torch.autocast(x.device.type, enabled=False):
            if self.align != "none":
                out = self.find_alignment(x, out).apply(out)
            recon = self.reconstruction_loss(out, x).mean()
            kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
        loss = recon + self.beta * kl + self.invariance_weight * invariance
        return {"loss": loss, "recon": recon, "kl": kl, "invariance": invariance, "out": out}

    def _n_rotated_copies(self, batch_size):
        if not self.training or self.invariance_weight == 0:
            return 0
        return max(1, round(self.invariance_fraction * batch_size))
