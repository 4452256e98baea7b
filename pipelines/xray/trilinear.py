"""diffdrr's trilinear renderer with its per-sample arithmetic folded into per-ray terms.

diffdrr's Trilinear builds each sample's grid coordinate with six element-wise operations on a
(B, rays, samples, 3) tensor, multiplies every sample by its ray length and step, and sums.
The coordinate is affine in the sample's parameter t in [0, 1], so FusedTrilinear computes the
per-ray offset and step once, forms the grid with one fused multiply-add, and scales the summed
samples per ray. Same interpolation (grid_sample), and for one pose the same samples and
gradients up to float rounding; gradients through the sampling range (alphamin, alphamax) are
kept. One difference: the sampling range is each image's own, where diffdrr takes it over the
whole batch, so a DRR here does not depend on which other poses share its batch (a batch of
poses renders exactly as the poses one by one, which shards and --batch-size rely on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffdrr.renderers import Trilinear, _get_alpha_minmax


class FusedTrilinear(Trilinear):
    """Drop-in for diffdrr.renderers.Trilinear (reducefn 'sum', no mask): returns (B, 1, rays).
    chunk_rays (None: all at once) samples the rays that many at a time, each image's sampling
    range taken over all its rays first, so a chunked DRR equals the whole one to float rounding."""

    chunk_rays: int | None = None

    def forward(
        self,
        volume,
        source,
        target,
        img,
        n_points=500,
        align_corners=False,
        mask=None,
        alphamin=None,
        alphamax=None,
    ):
        if mask is not None or self.reducefn != "sum":
            return super().forward(
                volume, source, target, img, n_points, align_corners, mask, alphamin, alphamax
            )
        dims = self.dims(volume)
        if alphamin is None or alphamax is None:  # diffdrr's ray/volume intersection, per image
            alphamin, alphamax = _get_alpha_minmax(source, target, dims, self.voxel_shift, self.eps)
            alphamin = alphamin.amin(dim=(1, 2), keepdim=True)  # (B, 1, 1)
            alphamax = alphamax.amax(dim=(1, 2), keepdim=True)
        # sample k lies at alpha_k = alphamin + t_k (alphamax - alphamin), t_k = k / (n - 1);
        # its grid coordinate 2 (source + alpha_k (target - source + eps) + shift) / dims - 1
        # is origin + t_k * step per ray
        direction = 2 * (target - source + self.eps) / dims
        origin = 2 * (source + self.voxel_shift) / dims - 1 + alphamin * direction
        step = (alphamax - alphamin) * direction
        t = torch.linspace(0, 1, n_points).to(volume)  # as diffdrr: float32 steps, then cast
        field = volume.permute(2, 1, 0)[None, None].expand(len(origin), -1, -1, -1, -1)
        rays = origin.shape[1]
        sums = []
        for start in range(0, rays, self.chunk_rays or rays):
            part = slice(start, start + (self.chunk_rays or rays))
            grid = torch.addcmul(
                origin[:, part].unsqueeze(-2), t.unsqueeze(-1), step[:, part].unsqueeze(-2)
            )
            samples = F.grid_sample(
                field, grid.unsqueeze(1), mode=self.mode, align_corners=align_corners
            )[:, 0, 0]
            sums.append(samples.sum(dim=-1))
        # rectangle rule: each sample weighs ray length x parameter step
        weight = img * ((alphamax - alphamin) / (n_points - 1))
        return torch.cat(sums, dim=-1).unsqueeze(1) * weight
