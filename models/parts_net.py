"""Image -> voxel occupancy: a ResNet50 encoder and a 3D transposed-convolution decoder."""

from __future__ import annotations

import torch
from torch import nn

FEATURES = 2048  # ResNet50 pooled feature size


def _up(channels_in: int, channels_out: int) -> nn.Sequential:
    """Transposed 3D convolution doubling each side, batch norm, ReLU."""
    return nn.Sequential(
        nn.ConvTranspose3d(channels_in, channels_out, kernel_size=4, stride=2, padding=1),
        nn.BatchNorm3d(channels_out),
        nn.ReLU(inplace=True),
    )


class PartsNet(nn.Module):
    """(B, 3, H, W) images -> (B, R, R, R) occupancy logits, R = 4 * 2^k (32 by default).

    torchvision's ResNet50 (random init) -> Linear(2048, C * 4^3) -> (B, C, 4, 4, 4) -> transposed
    convolutions halving the channels and doubling the side up to R -> Conv3d to one channel,
    plus a learned per-voxel offset (`prior`, zero unless set_output_prior is called).
    """

    def __init__(self, resolution: int = 32, channels: int = 128) -> None:
        super().__init__()
        from torchvision.models import resnet50

        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, not {resolution}")
        self.resolution, self.channels = resolution, channels
        self.encoder = resnet50(weights=None)
        self.encoder.fc = nn.Identity()
        self.project = nn.Sequential(nn.Linear(FEATURES, channels * 64), nn.ReLU(inplace=True))
        blocks, c, side = [], channels, 4
        while side < resolution:
            blocks.append(_up(c, max(c // 2, 8)))
            c, side = max(c // 2, 8), side * 2
        self.decoder = nn.Sequential(*blocks, nn.Conv3d(c, 1, kernel_size=3, padding=1))
        self.prior = nn.Parameter(torch.zeros(resolution, resolution, resolution))

    def set_output_prior(self, logits: torch.Tensor) -> None:
        """Start from a prior shape: the per-voxel output offset becomes logits (R, R, R)."""
        with torch.no_grad():
            self.prior.copy_(logits)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.project(self.encoder(images)).view(-1, self.channels, 4, 4, 4)
        return self.decoder(grid)[:, 0] + self.prior
