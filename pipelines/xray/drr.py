"""Digitally reconstructed radiographs (DRRs) of a CT at given poses, batched, with diffdrr.

Typical use (poses follow recon.pipelines.xray.pose: (N, 4, 4) camera-to-world, mm):

    from recon.pipelines.xray.volume import load_ct
    from recon.pipelines.xray.drr import Intrinsics, render_drrs
    from recon.pipelines.xray.pose import pose_from_degrees
    ct = load_ct()  # the bundled chest CT
    images = render_drrs(ct, pose_from_degrees([0, 0, 0], [0, 850, 0]),
                         Intrinsics(sdd=1020, height=256, width=256, delx=1.6, dely=1.6))
    # images: (1, 1, 256, 256) float tensor, line integrals of density (mm), on the CPU

Pixel [0, 0] is the top-left of the image as displayed; rows run from the patient's head to
the feet in the AP view and columns follow the detector's ``reverse_x_axis`` (Intrinsics; default
False, xvr's choice; True is the radiological display, see recon.pipelines.xray.orientation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch

from recon.pipelines.xray.pose import REVERSE_X_AXIS, as_pose_batch

RENDERERS = ("siddon", "trilinear")


@dataclass(frozen=True)
class Intrinsics:
    """A flat-panel C-arm detector."""

    sdd: float  # source-to-detector distance, mm
    height: int  # detector rows, px
    width: int  # detector columns, px
    delx: float  # column spacing, mm/px (DICOM pixel spacing [1])
    dely: float  # row spacing, mm/px (DICOM pixel spacing [0])
    x0: float = 0.0  # principal point offset along columns, mm
    y0: float = 0.0  # principal point offset along rows, mm
    reverse_x_axis: bool = REVERSE_X_AXIS  # diffdrr: True puts the patient's left (AP/PA) along
    # increasing columns (L\F, the radiological display), False the right (R\F, xvr's renders)

    def resized(self, height: int) -> Intrinsics:
        """The same detector area sampled with `height` rows (columns follow the aspect)."""
        width = max(1, round(self.width * height / self.height))
        return replace(
            self,
            height=int(height),
            width=width,
            delx=self.delx * self.width / width,
            dely=self.dely * self.height / height,
        )

    def as_dict(self) -> dict:
        return asdict(self)


def make_renderer(
    subject,
    intrinsics: Intrinsics,
    renderer: str = "siddon",
    device: str | torch.device = "cpu",
    **renderer_kwargs,
):
    """A diffdrr.DRR module for `subject` (from load_ct) and a detector, on `device`.

    Uses the project's conventions: voxel centres at integer indices (voxel_shift 0.5) and
    the column direction of intrinsics.reverse_x_axis. renderer_kwargs go to diffdrr's
    renderer (e.g. mode for siddon).
    The trilinear renderer is FusedTrilinear: diffdrr's, with fewer operations per sample.
    """
    from diffdrr.drr import DRR

    from recon.pipelines.xray.trilinear import FusedTrilinear

    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, not {renderer}")
    drr = DRR(
        subject,
        sdd=intrinsics.sdd,
        height=intrinsics.height,
        width=intrinsics.width,
        delx=intrinsics.delx,
        dely=intrinsics.dely,
        x0=intrinsics.x0,
        y0=intrinsics.y0,
        reverse_x_axis=intrinsics.reverse_x_axis,
        renderer=renderer,
        voxel_shift=0.5,
        **renderer_kwargs,
    )
    if renderer == "trilinear":
        drr.renderer = FusedTrilinear(0.5, **renderer_kwargs)
    return drr.to(device)


@torch.no_grad()
def render_with(
    drr,
    poses: torch.Tensor,
    batch_size: int = 8,
    track: Callable | None = None,
) -> torch.Tensor:
    """Render poses (N, 4, 4) with an existing diffdrr.DRR in batches -> (N, 1, H, W) on CPU.

    track(iterable, description) wraps the batch loop (a progress bar), when given.
    """
    from diffdrr.pose import RigidTransform

    poses = as_pose_batch(poses)
    device = drr.density.device
    batches = list(torch.split(poses, max(1, int(batch_size))))
    if track is not None:
        batches = track(batches, "rendering DRRs")
    images = [drr(RigidTransform(batch.to(device))).cpu() for batch in batches]
    return torch.cat(images)


def render_drrs(
    subject,
    poses: torch.Tensor,
    intrinsics: Intrinsics,
    renderer: str = "siddon",
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    track: Callable | None = None,
) -> torch.Tensor:
    """DRRs (N, 1, H, W) of `subject` at poses (N, 4, 4) for one detector; float32 on CPU."""
    drr = make_renderer(subject, intrinsics, renderer, device)
    return render_with(drr, poses, batch_size, track)


def project_points(drr, poses: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates (N, P, 2) as (column, row) of world points (N|1, P, 3) at poses."""
    from diffdrr.pose import RigidTransform

    poses = as_pose_batch(poses).to(drr.density.device)
    points = points.to(poses).expand(len(poses), -1, -1).clone()
    return drr.perspective_projection(RigidTransform(poses), points)


def drr_to_uint16(image: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Scale a non-negative DRR (H, W) to uint16 counts; returns (counts, mm per count)."""
    image = image.detach().float().cpu().clamp_min(0)
    peak = float(image.max())
    scale = peak / 65535.0 if peak > 0 else 1.0
    counts = torch.round(image / scale).clamp(0, 65535).to(torch.int32)
    return counts, scale
