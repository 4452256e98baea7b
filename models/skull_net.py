"""Image -> skull and face occupancy: one ResNet18 encoder, two cooperating 3D decoders.

Encoder: torchvision's ResNet18 trunk (randomly initialised; load torchvision weights into
`encoder` to start from them) up to layer4, its (512, h, w) map average-pooled to 4 x 4, reduced
to 64 channels by a 1x1 convolution and flattened (1024 features: where things lie in the image
is kept), plus 12 image moments (`image_moments`: the object's extent and position, a shortcut
small training sets learn from quickly) standardised by their running mean and variance over
training (BatchNorm1d with a cumulative average): F = 1036 features.

Each head: Linear(F, C * 4^3) -> (C, 4, 4, 4), then stride-2 transposed convolutions (kernel 4)
doubling the grid up to the output side R (R = 4 * 2^k), channels halving from C; the last one
(zero-initialised) gives one logit per voxel, added to the head's prior: a learned per-voxel
logit grid (set to the training set's mean shape) resampled under an affine transform predicted
from the image (identity + 0.15 tanh(Linear(F, 12)), zero-initialised). The prior carries size,
proportions and pose, the decoder the rest; an untrained head returns its prior exactly. The
face decoder also sees the skull decoder's features at every scale (concatenated), so the face
is built over the predicted skull.
"""

from __future__ import annotations

import torch
from torch import nn

POOLED = 4  # encoder map side after pooling
REDUCED = 64  # encoder channels after the 1x1 reduction
MOMENTS = 12  # image moment features beside the encoder's
POSE_RANGE = 0.15  # bound on each entry of the prior's affine, relative to the identity


def decoder_stages(resolution: int) -> int:
    """Number of doubling stages from 4^3 to resolution^3; ValueError unless 4 * 2^k."""
    stages, side = 0, 4
    while side < resolution:
        side, stages = side * 2, stages + 1
    if side != resolution or stages < 1:
        raise ValueError(f"resolution must be 8, 16, 32, 64, 128, ... not {resolution}")
    return stages


class _Decoder(nn.Module):
    def __init__(self, resolution: int, channels: int, side_channels: list[int] | None) -> None:
        super().__init__()
        stages = decoder_stages(resolution)
        widths = [max(channels >> i, 4) for i in range(stages)] + [1]
        extra = side_channels or [0] * stages
        self.channels = channels
        self.stages = nn.ModuleList()
        for i in range(stages):
            cin, cout = widths[i] + extra[i], widths[i + 1]
            layers: list[nn.Module] = [nn.ConvTranspose3d(cin, cout, 4, 2, 1)]
            if i < stages - 1:
                layers += [nn.GroupNorm(min(4, cout), cout), nn.ReLU(inplace=True)]
            self.stages.append(nn.Sequential(*layers))
        self.widths = widths
        self.prior = nn.Parameter(torch.zeros(resolution, resolution, resolution))
        last = self.stages[-1][0]
        nn.init.zeros_(last.weight)  # an untrained head returns its prior exactly
        nn.init.zeros_(last.bias)

    def forward(
        self, latent: torch.Tensor, theta: torch.Tensor, side: list[torch.Tensor] | None = None
    ):
        """latent (B, C, 4, 4, 4), theta (B, 3, 4) -> (logits (B, R, R, R), stage inputs)."""
        import torch.nn.functional as F

        h, features = latent, []
        for i, stage in enumerate(self.stages):
            features.append(h)
            if side is not None:
                h = torch.cat([h, side[i]], dim=1)
            h = stage(h)
        size = (len(latent), 1, *self.prior.shape)
        grid = F.affine_grid(theta, size, align_corners=False)
        prior = self.prior[None, None].expand(len(latent), -1, -1, -1, -1)
        prior = F.grid_sample(prior, grid, padding_mode="border", align_corners=False)
        return h[:, 0] + prior[:, 0], features


def image_moments(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 12): mass, centroid (x, y) and second central moments (xx, yy, xy)
    of the channel-mean image (less its minimum) and of its soft silhouette (brighter than its
    mean), coordinates in [-1, 1]; times 4 to sit near unit scale."""
    grey = images.mean(1)
    height, width = grey.shape[-2:]
    ys = torch.linspace(-1, 1, height, device=images.device, dtype=images.dtype)[:, None]
    xs = torch.linspace(-1, 1, width, device=images.device, dtype=images.dtype)[None, :]
    flat = grey.flatten(1)
    low, mean, std = flat.min(1)[0], flat.mean(1), flat.std(1) + 1e-6
    weights = [
        grey - low[:, None, None],
        torch.sigmoid((grey - mean[:, None, None]) / (0.25 * std[:, None, None])),
    ]
    features = []
    for w in weights:
        mass = w.sum((1, 2)) + 1e-6
        cx = (w * xs).sum((1, 2)) / mass
        cy = (w * ys).sum((1, 2)) / mass
        dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
        sxx = (w * dx * dx).sum((1, 2)) / mass
        syy = (w * dy * dy).sum((1, 2)) / mass
        sxy = (w * dx * dy).sum((1, 2)) / mass
        features += [mass / (height * width), cx, cy, sxx, syy, sxy]
    return 4 * torch.stack(features, dim=1)


class SkullNet(nn.Module):
    """(B, 3, H, W) ImageNet-normalised images -> (skull, face) logits, each (B, R, R, R)."""

    def __init__(self, resolution: int = 64, channels: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.resolution = resolution
        self.encoder = resnet18(weights=None)
        self.encoder.fc = nn.Identity()
        self.reduce = nn.Sequential(
            nn.AdaptiveAvgPool2d(POOLED),
            nn.Conv2d(512, REDUCED, 1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        features = REDUCED * POOLED * POOLED + MOMENTS
        # moments are fixed functions of the image: standardise them by their running average
        self.moment_norm = nn.BatchNorm1d(MOMENTS, momentum=None, affine=False)
        self.dropout = nn.Dropout(dropout)
        self.channels = channels
        self.skull_latent = nn.Sequential(nn.Linear(features, channels * 64), nn.ReLU(True))
        self.face_latent = nn.Sequential(nn.Linear(features, channels * 64), nn.ReLU(True))
        self.pose = nn.Linear(features, 24)  # an affine (3 x 4) per head, for its prior
        nn.init.zeros_(self.pose.weight)
        nn.init.zeros_(self.pose.bias)
        self.skull_decoder = _Decoder(resolution, channels, None)
        widths = self.skull_decoder.widths[:-1]
        self.face_decoder = _Decoder(resolution, channels, widths)

    def set_output_prior(self, skull_logits: torch.Tensor, face_logits: torch.Tensor) -> None:
        """Start from prior shapes: the per-voxel biases become these logits (R, R, R)."""
        with torch.no_grad():
            self.skull_decoder.prior.copy_(skull_logits)
            self.face_decoder.prior.copy_(face_logits)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        x = e.maxpool(e.relu(e.bn1(e.conv1(images))))
        x = e.layer4(e.layer3(e.layer2(e.layer1(x))))
        moments = self.moment_norm(image_moments(images))
        return self.dropout(torch.cat([self.reduce(x), moments], dim=1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.image_features(images)
        c = self.channels
        skull_latent = self.skull_latent(code).view(-1, c, 4, 4, 4)
        face_latent = self.face_latent(code).view(-1, c, 4, 4, 4)
        identity = torch.eye(3, 4, device=images.device, dtype=code.dtype)
        theta = identity + POSE_RANGE * torch.tanh(self.pose(code).view(-1, 2, 3, 4))
        skull, skull_features = self.skull_decoder(skull_latent, theta[:, 0])
        face, _ = self.face_decoder(face_latent, theta[:, 1], skull_features)
        return skull, face
