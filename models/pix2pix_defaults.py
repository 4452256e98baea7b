"""The reference pix2pix recipe's numbers (Isola et al., 2017; see recon.models.pix2pix for the
networks they configure). No torch import: the drr task's settings take their defaults from here
before anything heavy loads."""

from __future__ import annotations

import math

LAMBDA_L1 = 100.0  # weight of the L1 term against the GAN term
LR = 2e-4  # Adam learning rate, generator and discriminator
BETAS = (0.5, 0.999)  # Adam betas (beta1 = 0.5)
BATCH_SIZE = 1
BASE_FILTERS = 64  # ngf and ndf
DROPOUT = 0.5  # in the three innermost 512-filter decoder blocks
INIT_STD = 0.02  # N(0, 0.02) convolution weights, N(1, 0.02) batch-norm scales


def unet_depth(size: int) -> int:
    """Number of stride-2 downsamplings that take a size x size image to 1 x 1 (8 for 256)."""
    depth = round(math.log2(size))
    if size < 32 or 2**depth != size:
        raise ValueError(f"U-Net size must be a power of two >= 32, not {size}")
    return depth


def patch_grid_side(side: int, layers: int) -> int:
    """The side of the PatchDiscriminator's logit grid for an input `side` pixels wide (0 or
    less: the input is too small for that many layers, and training would fail in its first
    step)."""
    for _ in range(layers):  # the first convolution and layers - 1 more halve it
        side = (side + 2 - 4) // 2 + 1
    return side - 2  # the stride-1 layer and the last convolution take one pixel each
