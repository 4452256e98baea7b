"""2D/3D registration: the CT pose whose DRR best matches an X-ray, by gradient ascent.

The method follows xvr: similarity = 0.5 x multiscale NCC (whole image + 9 px patches) +
0.5 x gradient NCC (11 px patches) between the X-ray and the DRR, both min-max scaled
(recon.pipelines.xray.similarity);
Adam on ZXY Euler angles (rad) and translation (mm) with separate learning rates,
ReduceLROnPlateau per stage, early stop after `max_plateaus` rate cuts; a coarse-to-fine
pyramid of detector sizes, learning rates halved at each finer stage. Measured defaults: the CT
resampled to 2 mm, a 64 px stage then a 128 px stage, trilinear rendering.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from recon.pipelines.xray.drr import Intrinsics, make_renderer
from recon.pipelines.xray.pose import CONVENTION, as_pose_batch
from recon.pipelines.xray.similarity import GradientMultiscaleNCC


@dataclass
class RegistrationConfig:
    """Defaults of `recon register` (measured on the bundled chest CT on CPU)."""

    ct_spacing_mm: float = 2.0  # the CT is resampled to this isotropic voxel size
    heights: list[int] = field(default_factory=lambda: [64, 128])  # detector rows per stage
    iterations: list[int] = field(default_factory=lambda: [200, 100])  # at most, per stage
    patience: list[int] = field(default_factory=lambda: [10, 10])  # plateau patience per stage
    lr_rot: float = 1e-2  # rad per step (Adam), stage 0
    lr_xyz: float = 1.0  # mm per step (Adam), stage 0
    lr_factor: float = 0.1  # ReduceLROnPlateau factor
    threshold: float = 1e-4  # relative improvement that resets the plateau counter
    max_plateaus: int = 2  # a stage stops after this many learning-rate cuts
    renderer: str = "trilinear"  # siddon | trilinear
    n_points: int = 250  # samples per ray for the trilinear renderer
    mirror_check_below: float = 0.8  # a final similarity below this triggers the mirror check
    mirror_margin: float = 0.05  # the mirrored X-ray must beat the X-ray by this much

    def as_dict(self) -> dict:
        return asdict(self)


class EulerPose(torch.nn.Module):
    """Optimisable pose: ZXY Euler angles (rad) and translation (mm) -> (1, 4, 4) matrix."""

    def __init__(self, pose: torch.Tensor) -> None:
        super().__init__()
        from diffdrr.pose import RigidTransform

        rot, xyz = RigidTransform(as_pose_batch(pose)).convert("euler_angles", CONVENTION)
        self.rot = torch.nn.Parameter(rot.clone())
        self.xyz = torch.nn.Parameter(xyz.clone())

    def forward(self):
        from diffdrr.pose import convert

        return convert(self.rot, self.xyz, parameterization="euler_angles", convention=CONVENTION)


@dataclass
class Registration:
    init_pose: torch.Tensor  # (1, 4, 4)
    final_pose: torch.Tensor  # (1, 4, 4)
    similarity: float  # at the final pose, at the last stage's resolution
    runtime_s: float
    iterations: int
    log: dict  # per iteration: losses, heights, times, rots (N, 3), xyzs (N, 3)

    @property
    def trajectory(self) -> torch.Tensor:
        """Poses (N, 4, 4) visited by the optimiser."""
        from recon.pipelines.xray.pose import pose_from_euler

        if len(self.log["rots"]) == 0:
            return self.final_pose
        return pose_from_euler(self.log["rots"], self.log["xyzs"])


def standardise(image: torch.Tensor) -> torch.Tensor:
    """Min-max scale each image of a (B, 1, H, W) batch to [0, 1]."""
    low = image.amin(dim=(-2, -1), keepdim=True)
    high = image.amax(dim=(-2, -1), keepdim=True)
    return (image - low) / (high - low + 1e-6)


def resize_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Area-average (or bilinear when enlarging) a (B, 1, H, W) image to (height, width)."""
    if image.shape[-2:] == (height, width):
        return image
    if height <= image.shape[-2] and width <= image.shape[-1]:
        return F.interpolate(image, size=(height, width), mode="area")
    return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)


def stage_region(region: torch.Tensor | None, intrinsics: Intrinsics) -> torch.Tensor | None:
    """The image region (1, 1, H, W) bool at a stage's detector size: the pixels whose whole
    area lies inside it."""
    if region is None:
        return None
    area = resize_image(region.float(), intrinsics.height, intrinsics.width)
    return area > 1 - 1e-4


def retain_freed_memory() -> None:
    """Let glibc keep freed blocks below 1 GiB for reuse rather than return them to the system.

    Each CPU iteration allocates and frees tens of MB (sample grids and their gradients); by
    default glibc maps such blocks afresh every time and the page faults cost ~15% of a
    128 px registration. Process-wide; the process keeps its peak memory. No-op off glibc.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    if not mallopt(-3, 1 << 30):  # M_MMAP_THRESHOLD; older glibc caps it at 32 MiB
        mallopt(-4, 0)  # M_MMAP_MAX: no mapped blocks at all


def register(
    subject,
    image: torch.Tensor,
    intrinsics: Intrinsics,
    init_pose: torch.Tensor,
    config: RegistrationConfig | None = None,
    device: str | torch.device = "cpu",
    step: Callable[[int], None] | None = None,
    region: torch.Tensor | None = None,
) -> Registration:
    """Register an X-ray (1, 1, H, W) (bright = dense) to `subject` from init_pose (1, 4, 4).

    region (1, 1, H, W) bool: the X-ray's pixels that are image (recon.pipelines.xray.xray's
    `cropped_region`); only they count in the similarity, at every stage (stage_region).

    `subject` should already be resampled to config.ct_spacing_mm (load_ct(spacing_mm=...)).
    step(n) is called after every iteration (a progress bar). Programs that register on the CPU
    run faster after retain_freed_memory() (a process-wide choice, so theirs to make).
    """
    config = config or RegistrationConfig()
    if not (len(config.heights) == len(config.iterations) == len(config.patience)):
        raise ValueError("heights, iterations and patience need one entry per stage")
    init_pose = as_pose_batch(init_pose).to(device)
    pose = EulerPose(init_pose).to(device)
    renderer_kwargs = {"n_points": config.n_points} if config.renderer == "trilinear" else {}
    image = image.to(device)
    log = {"losses": [], "heights": [], "times": [], "rots": [], "xyzs": []}
    clock = time.perf_counter()
    stopped = False
    for stage, (height, iterations, patience) in enumerate(
        zip(config.heights, config.iterations, config.patience, strict=True)
    ):
        stage_intrinsics = intrinsics.resized(min(int(height), intrinsics.height))
        drr = make_renderer(subject, stage_intrinsics, config.renderer, device)
        fixed = standardise(resize_image(image, stage_intrinsics.height, stage_intrinsics.width))
        similarity = GradientMultiscaleNCC(fixed, mask=stage_region(region, stage_intrinsics))
        divisor = 2**stage  # the rates halve at each finer stage
        optimizer = torch.optim.Adam(
            [
                {"params": [pose.rot], "lr": config.lr_rot / divisor},
                {"params": [pose.xyz], "lr": config.lr_xyz / divisor},
            ],
            maximize=True,
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, "max", config.lr_factor, patience, config.threshold, threshold_mode="rel"
        )
        current_lr, plateaus = math.inf, 0
        for _ in range(int(iterations)):
            tick = time.perf_counter()
            optimizer.zero_grad()
            moving = standardise(drr(pose(), **renderer_kwargs))
            score = similarity(moving).mean()
            if not torch.isfinite(score):
                stopped = True
                break
            score.backward()
            optimizer.step()
            scheduler.step(score.detach())
            log["losses"].append(float(score.detach()))
            log["heights"].append(int(stage_intrinsics.height))
            log["times"].append(time.perf_counter() - tick)
            log["rots"].append(pose.rot.detach().cpu().clone())
            log["xyzs"].append(pose.xyz.detach().cpu().clone())
            if step is not None:
                step(1)
            lr = min(scheduler.get_last_lr())
            if lr < current_lr:
                current_lr = lr
                plateaus += 1
            if plateaus > config.max_plateaus:
                break
        if stopped:
            break
    with torch.no_grad():
        final_pose = pose().matrix.detach()
        moving = standardise(drr(pose(), **renderer_kwargs))
        final_score = float(similarity(moving).mean())
    runtime = time.perf_counter() - clock
    log["rots"] = torch.cat(log["rots"]) if log["rots"] else torch.zeros(0, 3)
    log["xyzs"] = torch.cat(log["xyzs"]) if log["xyzs"] else torch.zeros(0, 3)
    return Registration(
        init_pose.cpu(), final_pose.cpu(), final_score, runtime, len(log["losses"]), log
    )


@dataclass
class MirrorCheck:
    """The coarse stage of a registration run on the X-ray and on its left-right mirror image."""

    similarity: float  # best coarse-stage similarity of the X-ray as read
    mirrored_similarity: float  # the same for the mirrored X-ray
    mirrored: Registration  # the mirrored X-ray's coarse registration

    def mirrored_is_better(self, margin: float) -> bool:
        return self.mirrored_similarity > self.similarity + margin


def coarse_best(result: Registration) -> float:
    """The best similarity of the first (coarsest) stage of a registration; NaN when none."""
    log = result.log
    if not log["heights"]:
        return math.nan
    first = log["heights"][0]
    values = [v for v, h in zip(log["losses"], log["heights"], strict=True) if h == first]
    return max(values)


def mirror_check(
    subject,
    image: torch.Tensor,
    intrinsics: Intrinsics,
    result: Registration,
    config: RegistrationConfig,
    device: str | torch.device = "cpu",
    region: torch.Tensor | None = None,
) -> MirrorCheck:
    """Register the X-ray (1, 1, H, W) (and its region) mirrored left-right from the same
    start, coarse stage only. A mirror image cannot be reached by any pose, so when it matches
    the CT clearly better than the X-ray did, the X-ray's columns run the other way than its
    detector says."""
    from dataclasses import replace

    coarse = replace(
        config,
        heights=config.heights[:1],
        iterations=config.iterations[:1],
        patience=config.patience[:1],
    )
    flipped = None if region is None else region.flip(-1)
    # the principal point mirrors with the columns
    turned = replace(intrinsics, x0=-intrinsics.x0)
    mirrored = register(
        subject, image.flip(-1), turned, result.init_pose, coarse, device, region=flipped
    )
    return MirrorCheck(coarse_best(result), coarse_best(mirrored), mirrored)
