"""pix2pix networks: a U-Net generator with skip connections and a 70 x 70 PatchGAN critic.

Reference defaults (Isola et al., "Image-to-Image Translation with Conditional Adversarial
Networks", 2017); their numbers live in recon.models.pix2pix_defaults, which imports no torch so
that a training config loads (and a bad one is refused) at once:

- generator: U-Net 256 (8 stride-2 downsamplings to 1 x 1), 64 base filters, batch norm,
  dropout 0.5 in the three innermost 512-filter decoder blocks (the noise source), tanh output;
- discriminator: 70 x 70 PatchGAN (3 stride-2 layers of 64-128-256 filters, then 512 at stride 1,
  then 1 logit per patch), fed the input and the output concatenated on channels;
- loss: GAN (binary cross-entropy on logits) + LAMBDA_L1 * L1, the critic's loss halved;
- optimiser: Adam, LR = 2e-4, betas (0.5, 0.999), batch size 1; LR constant for the first
  half of training, then decays linearly to 0;
- weights: N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales.

Depth is generic: `UNetGenerator(size=128)` has 7 downsamplings, so any power-of-two size from
32 px reaches 1 x 1 at the bottleneck. Images are (B, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from recon.models.pix2pix_defaults import BASE_FILTERS, DROPOUT, INIT_STD, unet_depth


class UNetGenerator(nn.Module):
    """U-Net: encoder of 4x4 stride-2 convolutions, mirrored decoder, skip at every scale.

    Filters double per level from `base` up to 8 x base; the decoder blocks at 8 x base below the
    top three carry dropout. (B, in_channels, size, size) -> (B, out_channels, size, size), tanh.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        size: int = 256,
        base: int = BASE_FILTERS,
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        depth = unet_depth(size)
        widths = [base * min(2**level, 8) for level in range(depth)]  # encoder outputs
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            if level == 0:  # outermost: no activation before, no norm after
                block = nn.Sequential(_down_conv(in_channels, width))
            elif level == depth - 1:  # innermost: no norm on the 1 x 1 code
                block = nn.Sequential(nn.LeakyReLU(0.2), _down_conv(widths[level - 1], width))
            else:
                block = nn.Sequential(
                    nn.LeakyReLU(0.2), _down_conv(widths[level - 1], width), nn.BatchNorm2d(width)
                )
            self.down.append(block)
        self.up = nn.ModuleList()
        for level in reversed(range(depth)):
            fan_in = widths[level] if level == depth - 1 else 2 * widths[level]
            if level == 0:  # outermost: back to image channels, tanh
                block = nn.Sequential(
                    nn.ReLU(), _up_conv(fan_in, out_channels, bias=True), nn.Tanh()
                )
            else:
                width = widths[level - 1]
                layers = [nn.ReLU(), _up_conv(fan_in, width), nn.BatchNorm2d(width)]
                # dropout in the 8 x base blocks between the innermost and the top three levels
                if dropout > 0 and 4 <= level < depth - 1:
                    layers.append(nn.Dropout(dropout))
                block = nn.Sequential(*layers)
            self.up.append(block)
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for block in self.up:
            x = block(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return x


class PatchDiscriminator(nn.Module):
    """PatchGAN: one real/fake logit per overlapping patch; 3 layers give 70 x 70 patches.

    (B, in_channels, H, W) -> (B, 1, H / 8 - 2, W / 8 - 2); in_channels = input + output channels.
    """

    def __init__(self, in_channels: int = 2, base: int = BASE_FILTERS, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Conv2d(in_channels, base, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        width = base
        for n in range(1, layers + 1):
            next_width = base * min(2**n, 8)
            stride = 2 if n < layers else 1
            blocks += [
                nn.Conv2d(width, next_width, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(next_width),
                nn.LeakyReLU(0.2),
            ]
            width = next_width
        blocks.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net(pair)


def init_weights(module: nn.Module, std: float = INIT_STD) -> nn.Module:
    """pix2pix initialisation: convolutions N(0, std), batch-norm scales N(1, std), biases 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, std)
            nn.init.zeros_(layer.bias)
    return module


def linear_decay(epoch: int, constant_epochs: int, decay_epochs: int) -> float:
    """LR multiplier: 1 for `constant_epochs`, then linear to 0 over `decay_epochs` (0-based)."""
    if decay_epochs <= 0:
        return 1.0
    return 1.0 - max(0, epoch + 1 - constant_epochs) / float(decay_epochs + 1)


def _down_conv(fan_in: int, fan_out: int) -> nn.Conv2d:
    return nn.Conv2d(fan_in, fan_out, 4, stride=2, padding=1, bias=False)


def _up_conv(fan_in: int, fan_out: int, bias: bool = False) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(fan_in, fan_out, 4, stride=2, padding=1, bias=bias)
