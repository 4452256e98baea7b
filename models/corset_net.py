"""Corset networks: a spine-conditioned U-Net generator and a 5-convolution PatchGAN critic.

Generator (instance norm, so train and eval modes agree): 6 down blocks (stride-2 4x4 conv,
features 64, 128, 256, 512, 512, 512 for features=64) and 7 up blocks: six stride-2 transposed
convs with skip connections, then a full-resolution output block that also sees the input.
Dropout p_enc in the three deepest down blocks, p_dec in the three innermost up blocks. The
spine embedding (E floats) is injected at the bottleneck twice: concatenated as extra channels,
and as a FiLM scale and shift of the bottleneck features; with embedding_size 0 the generator
is unconditioned. Input (B, C_in, H, W), H and W multiples of 64; output (B, C_out, H, W) in
[-1, 1].

Output head: plain tanh, or with residual=True a gated residual on a base: the LAST C_out
input channels (a prior that already depicts the output views, e.g. the offset torso's views),
plus a bounded correction (+-0.25) where a gate says foreground, and -1 (background) elsewhere.
The gate is a sigmoid thresholded at 0.5 in the forward pass, with the sigmoid's gradient
(straight-through); its logit is the head's plus +-GATE_PRIOR by the base's own foreground, and
the head starts at zero, so an untrained residual generator returns its base unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

GATE_PRIOR = 3.0  # gate logit that the base's foreground (background) contributes


def _down(cin: int, cout: int, norm: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
        nn.InstanceNorm2d(cout, affine=True),
        nn.ReLU(inplace=True),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class CorsetGenerator(nn.Module):
    """U-Net generator conditioned on a spine embedding (see module doc)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embedding_size: int = 0,
        features: int = 64,
        p_enc: float = 0.35,
        p_dec: float = 0.6,
        residual: bool = False,
    ) -> None:
        super().__init__()
        f = features
        self.residual = residual
        self.out_channels = out_channels
        widths = [f, 2 * f, 4 * f, 8 * f, 8 * f, 8 * f]
        self.embedding_size = embedding_size
        self.downs = nn.ModuleList()
        cin = in_channels
        for i, w in enumerate(widths):
            norm = 0 < i < len(widths) - 1  # no norm on the input or at the 1-2 px bottleneck
            self.downs.append(_down(cin, w, norm=norm, dropout=p_enc if i >= 3 else 0.0))
            cin = w
        bottleneck = widths[-1]
        if embedding_size > 0:
            self.film = nn.Sequential(
                nn.Linear(embedding_size, 128),
                nn.ReLU(inplace=True),
                nn.Linear(128, 2 * bottleneck),
            )
            self.embed_channels = min(64, bottleneck)
            self.embed_proj = nn.Linear(embedding_size, self.embed_channels)
            cin = bottleneck + self.embed_channels
        self.ups = nn.ModuleList()
        skips = widths[::-1][1:] + [0]  # skip widths met after each up block
        outs = widths[::-1][1:] + [f]
        for i, (w, s) in enumerate(zip(outs, skips, strict=True)):
            self.ups.append(_up(cin, w, dropout=p_dec if i < 3 else 0.0))
            cin = w + s
        self.head = nn.Sequential(
            nn.Conv2d(cin + in_channels, f, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(f, 2 * out_channels if residual else out_channels, 1),
        )
        if residual:  # start from the base: no correction, its own foreground
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        if self.embedding_size > 0:
            if embedding is None:
                raise ValueError("this generator needs a spine embedding")
            scale, shift = self.film(embedding).chunk(2, dim=1)
            h = h * (1 + scale[..., None, None]) + shift[..., None, None]
            e = self.embed_proj(embedding)[..., None, None].expand(-1, -1, *h.shape[2:])
            h = torch.cat([h, e], dim=1)
        skips = skips[::-1][1:]
        for i, up in enumerate(self.ups):
            h = up(h)
            if i < len(skips):
                h = torch.cat([h, skips[i]], dim=1)
        out = self.head(torch.cat([h, x], dim=1))
        if not self.residual:
            return torch.tanh(out)
        correction, gate = out.chunk(2, dim=1)
        base = x[:, -self.out_channels :]
        gate = gate + torch.where(base > -1, GATE_PRIOR, -GATE_PRIOR)
        soft = torch.sigmoid(gate)
        gate = (gate > 0).to(gate.dtype) + soft - soft.detach()  # hard forward, soft gradient
        return gate * (base + 0.25 * torch.tanh(correction)) - (1 - gate)


class PatchCritic(nn.Module):
    """PatchGAN discriminator with 5 convolutions: (B, C, H, W) -> logits (B, 1, H/8-2, W/8-2)."""

    def __init__(self, in_channels: int, features: int = 64) -> None:
        super().__init__()
        f = features
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, f, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * f),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * f, 4 * f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(4 * f),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * f, 8 * f, 4, 1, 1, bias=False),
            nn.BatchNorm2d(8 * f),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(8 * f, 1, 4, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
