"""Pose regressor: a radiograph -> its C-arm pose as normalised offsets from a nominal pose."""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = ("spatial", "pooled")


class PoseRegressor(nn.Module):
    """(B, 1, S, S) standardised image -> (B, 6) offsets: ZXY Euler angles / rot_range and
    translation / xyz_range, relative to the nominal pose the model was trained around.

    Four conv blocks (two 3x3 conv + batch norm + ReLU, then 2x2 max pool) doubling `base`
    filters. "spatial" (default): the input carries two extra channels with the pixel
    coordinates in [-1, 1] and the head reads the whole (8 base, S/16, S/16) map, so where
    things lie on the detector (the in-plane translation) reaches the output; Linear(.., 256) -
    ReLU - Linear(256, 6). "pooled": no coordinates, global average pooling, Linear(8 base, 128)
    - ReLU - Linear(128, 6) (the first version; its checkpoints still load).
    """

    def __init__(self, base: int = 16, size: int = 64, architecture: str = "spatial") -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {architecture}")
        self.coordinates = architecture == "spatial"
        layers: list[nn.Module] = []
        channels = 3 if self.coordinates else 1
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
        if self.coordinates:
            cells = max(1, size // 16) ** 2
            self.features = nn.Sequential(*layers, nn.Flatten())
            self.head = nn.Sequential(
                nn.Linear(channels * cells, 256), nn.ReLU(inplace=True), nn.Linear(256, 6)
            )
        else:
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Sequential(
                nn.Linear(channels, 128), nn.ReLU(inplace=True), nn.Linear(128, 6)
            )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.coordinates:
            batch, _, height, width = image.shape
            rows = torch.linspace(-1, 1, height, device=image.device, dtype=image.dtype)
            cols = torch.linspace(-1, 1, width, device=image.device, dtype=image.dtype)
            grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
            image = torch.cat([image, grid.expand(batch, -1, -1, -1)], dim=1)
        return self.head(self.features(image))
