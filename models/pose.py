"""Pose regressor: a radiograph -> its C-arm pose as normalised offsets from a nominal pose."""

from __future__ import annotations

import torch
from torch import nn


class PoseRegressor(nn.Module):
    """(B, 1, S, S) standardised image -> (B, 6) offsets: ZXY Euler angles / rot_range and
    translation / xyz_range, relative to the nominal pose the model was trained around.

    Four conv blocks (3x3 conv, batch norm, ReLU, 2x2 max pool) doubling `base` filters, global
    average pooling, then Linear(8 base, 128) - ReLU - Linear(128, 6).
    """

    def __init__(self, base: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for depth in range(4):
            width = base * 2**depth
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(channels, 128), nn.ReLU(inplace=True), nn.Linear(128, 6)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))
