"""Image -> voxel occupancy: a ResNet18 encoder and a fully connected decoder (Pix3D task)."""

from __future__ import annotations

import torch
from torch import nn

FEATURES = 512  # ResNet18 pooled feature size


class VoxelNet(nn.Module):
    """(B, 3, H, W) ImageNet-normalised images -> (B, R, R, R) occupancy logits.

    The encoder is torchvision's ResNet18 without its classifier (randomly initialised; load
    torchvision ImageNet weights into `encoder` to start from them); the decoder is
    Linear(512, hidden) - ReLU - Dropout - Linear(hidden, R^3).
    """

    def __init__(self, resolution: int = 32, hidden: int = 1024, dropout: float = 0.2) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.resolution = resolution
        self.encoder = resnet18(weights=None)
        self.encoder.fc = nn.Identity()
        self.decoder = nn.Sequential(
            nn.Linear(FEATURES, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, resolution**3),
        )

    def set_output_prior(self, logits: torch.Tensor) -> None:
        """Start from a prior shape: the last layer's bias becomes logits (R, R, R)."""
        with torch.no_grad():
            self.decoder[-1].bias.copy_(logits.reshape(-1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.encoder(images))
        r = self.resolution
        return logits.view(-1, r, r, r)
