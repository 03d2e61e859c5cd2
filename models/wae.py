"""Encoder and decoder of the Wasserstein auto-encoder (Tolstikhin et al. 2017, "Wasserstein
Auto-Encoders", Appendix C, and the authors' code), which the LOSSGRAD paper trains on CelebA.

Encoder: ``len(encoder_channels)`` convolutions with stride 2, each followed by batch
normalisation and ReLU, then a linear layer to the latent code. The WAE paper's widths are
128-256-512-1024 for both MNIST (4x4 kernels) and 64x64 CelebA (5x5 kernels).

Decoder: a linear layer from the code to a ``base`` x ``base`` map of
``decoder_channels[0]`` channels with ReLU, then transposed convolutions with stride 2
(each with batch normalisation and ReLU) through ``decoder_channels[1:]``, doubling the
resolution each time, and a last transposed convolution with stride 1 to the image channels,
then a sigmoid. The WAE paper's decoders: z -> 7x7x1024 -> 14x14x512 -> 28x28x256 -> 28x28x1
for MNIST, and z -> 8x8x1024 -> 16x16x512 -> 32x32x256 -> 64x64x128 -> 64x64x3 for CelebA.
Latent sizes: 8 (MNIST) and 64 (CelebA).

.. note::
    The authors' code scales CelebA pixels to [-1, 1] and ends the decoder with tanh; here every
    image is in [0, 1] and the decoder ends with a sigmoid (as the authors do for MNIST), so
    that squared errors have the same units for both data sets. Their encoder also adds
    N(0, 0.01²) noise to its inputs during training and is pre-trained to match the prior's
    mean and covariance; neither is done here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _same_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int, size: int):
    """A convolution with TensorFlow's ``"SAME"`` padding for a ``size`` x ``size`` input: the
    output is ``ceil(size / stride)`` wide; an odd total padding puts the extra row and column
    at the bottom and right. Returns the module and the output size."""
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel_size - size, 0)
    before, after = total // 2, total - total // 2
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=before)
    if before == after:
        return conv, out_size
    conv.padding = (0, 0)
    return nn.Sequential(nn.ZeroPad2d((before, after, before, after)), conv), out_size


def _doubling_deconv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    """A transposed convolution with stride 2 whose output is exactly twice its input."""
    padding = (kernel_size - 1) // 2
    output_padding = 2 - kernel_size + 2 * padding
    return nn.ConvTranspose2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=2,
        padding=padding,
        output_padding=output_padding,
    )


def _check_widths(values: Sequence[int], name: str) -> list[int]:
    widths = [int(value) for value in values]
    if not widths or any(width < 1 for width in widths):
        raise ValueError(f"{name}={list(values)}; expected a non-empty list of positive widths")
    return widths


class WAEEncoder(nn.Module):
    """Strided convolutions with BN + ReLU, then a linear map to the latent code.

    Args:
        image_size: height (= width) of the input images.
        in_channels: channels of the input images.
        latent_dim: size of the code.
        channels: output channels of each convolution.
        kernel_size: side of every convolution kernel.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        latent_dim: int,
        channels: Sequence[int] = (128, 256, 512, 1024),
        kernel_size: int = 4,
    ) -> None:
        super().__init__()
        channels = _check_widths(channels, "encoder_channels")
        layers: list[nn.Module] = []
        size, previous = image_size, in_channels
        for width in channels:
            conv, size = _same_conv(previous, width, kernel_size, 2, size)
            layers += [conv, nn.BatchNorm2d(width), nn.ReLU()]
            previous = width
        self.features = nn.Sequential(*layers)
        self.to_latent = nn.Linear(previous * size * size, latent_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.features(images).flatten(1))


class WAEDecoder(nn.Module):
    """A linear map to a small feature map, stride-2 transposed convolutions with BN + ReLU,
    and a stride-1 convolution to the image, then a sigmoid.

    The WAE code writes the last layer as a transposed convolution with stride 1, which is a
    convolution with a flipped kernel; it is written here as a convolution with "SAME" padding.

    Args:
        image_size: height (= width) of the output images; divisible by
            ``2 ** (len(channels) - 1)``.
        out_channels: channels of the output images.
        latent_dim: size of the code.
        channels: channels of the first feature map and of each upsampled one.
        kernel_size: side of every kernel.
    """

    def __init__(
        self,
        image_size: int,
        out_channels: int,
        latent_dim: int,
        channels: Sequence[int] = (1024, 512, 256),
        kernel_size: int = 4,
    ) -> None:
        super().__init__()
        channels = _check_widths(channels, "decoder_channels")
        upsamplings = len(channels) - 1
        if image_size % 2**upsamplings:
            raise ValueError(
                f"image_size={image_size} is not divisible by 2**{upsamplings}; "
                f"decoder_channels={channels} doubles the resolution {upsamplings} times"
            )
        self.base = image_size // 2**upsamplings
        self.first_channels = channels[0]
        self.from_latent = nn.Sequential(
            nn.Linear(latent_dim, channels[0] * self.base * self.base), nn.ReLU()
        )
        layers: list[nn.Module] = []
        for previous, width in zip(channels[:-1], channels[1:], strict=True):
            layers += [
                _doubling_deconv(previous, width, kernel_size),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
        final, _ = _same_conv(channels[-1], out_channels, kernel_size, 1, image_size)
        layers.append(final)
        self.layers = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        hidden = self.from_latent(codes).view(-1, self.first_channels, self.base, self.base)
        return torch.sigmoid(self.layers(hidden))


class WAE(nn.Module):
    """A deterministic auto-encoder whose codes are pushed towards the prior by the WAE task.

    Args:
        image_size: height (= width) of the images (28 for MNIST, 64 for CelebA).
        channels: image channels (1 or 3).
        latent_dim: size of the code (8 for MNIST, 64 for CelebA in the WAE paper).
        encoder_channels: widths of the encoder's convolutions.
        decoder_channels: widths of the decoder's first feature map and upsampling layers.
        kernel_size: side of every kernel (4 for MNIST, 5 for CelebA in the WAE paper).
        width_divisor: every width of ``encoder_channels`` and ``decoder_channels`` is
            divided by it (at least 1 channel is kept); 1 gives the widths as listed.

    ``forward(images)`` returns ``(reconstructions, codes)``.
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 64,
        encoder_channels: Sequence[int] = (128, 256, 512, 1024),
        decoder_channels: Sequence[int] = (1024, 512, 256, 128),
        kernel_size: int = 5,
        width_divisor: int = 1,
    ) -> None:
        super().__init__()
        sizes = (image_size, channels, latent_dim, kernel_size, width_divisor)
        if min(sizes) < 1:
            raise ValueError(
                f"image_size={image_size}, channels={channels}, latent_dim={latent_dim}, "
                f"kernel_size={kernel_size}, width_divisor={width_divisor}; all must be positive"
            )
        encoder_channels = [max(1, int(c) // width_divisor) for c in encoder_channels]
        decoder_channels = [max(1, int(c) // width_divisor) for c in decoder_channels]
        self.image_shape = (channels, image_size, image_size)
        self.latent_dim = latent_dim
        self.encoder = WAEEncoder(image_size, channels, latent_dim, encoder_channels, kernel_size)
        self.decoder = WAEDecoder(image_size, channels, latent_dim, decoder_channels, kernel_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.reshape(-1, *self.image_shape)
        codes = self.encoder(images)
        return self.decoder(codes), codes
