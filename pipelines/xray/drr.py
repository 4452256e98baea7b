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

import math
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

    @property
    def extent_mm(self) -> tuple[float, float]:
        """(width, height) of the detector, mm."""
        return self.width * self.delx, self.height * self.dely

    def as_dict(self) -> dict:
        return asdict(self)


def detector_axes(intrinsics: Intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each column (x, mm) and each row (y, mm) of the detector lies in diffdrr's camera
    frame (the source at the origin, the detector plane at z = sdd), principal point and
    column direction included: (width,) and (height,) float64."""
    from diffdrr.detector import Detector

    i = intrinsics
    detector = Detector(
        i.sdd, i.height, i.width, i.delx, i.dely, i.x0, i.y0, torch.eye(4),
        reverse_x_axis=i.reverse_x_axis,
    )  # fmt: skip
    points = detector.calibration(detector.target)[0].reshape(i.height, i.width, 3).double()
    return points[0, :, 0], points[:, 0, 1]


def reproject(
    image: torch.Tensor, source: Intrinsics, target: Intrinsics, fill: float = 0.0
) -> torch.Tensor:
    """An X-ray (1, 1, H, W) recorded on detector `source` as detector `target` would record it
    from the same source and pose: both planes face the source square on, so each target pixel
    reads the source pixel on its ray (a scaling about the principal points by the ratio of the
    distances, and a mirror where the column directions differ), bilinearly. Rays beyond the
    source's field read `fill`. A source finer than the target is first area-averaged to about
    the target's pixel size (no aliasing). Returns (1, 1, target.height, target.width)."""
    import torch.nn.functional as F

    # the source's rows as fine as the target's, seen at the target's distance
    rows = round(source.height * source.dely * target.sdd / source.sdd / target.dely)
    if 0 < rows < source.height:
        source = source.resized(rows)
        image = F.interpolate(image, size=(source.height, source.width), mode="area")
    source_x, source_y = detector_axes(source)
    target_x, target_y = detector_axes(target)
    scale = source.sdd / target.sdd

    def to_normalised(values: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
        # pixel index along an evenly spaced axis, then grid_sample's [-1, 1] (align_corners)
        step = (axis[-1] - axis[0]) / max(len(axis) - 1, 1)
        index = (values - axis[0]) / step
        return index / max(len(axis) - 1, 1) * 2 - 1

    gx = to_normalised(target_x * scale, source_x)
    gy = to_normalised(target_y * scale, source_y)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None].to(image)
    sampled = F.grid_sample(image - fill, grid, "bilinear", "zeros", align_corners=True)
    return sampled + fill


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
    images = []
    for batch in batches:
        chunk_rays_(drr, len(batch))
        images.append(drr(RigidTransform(batch.to(device))).cpu())
    return torch.cat(images)


# Memory the renderers take per ray and batch item, measured on the bundled CT (512 x 512 x 133):
# Siddon about 29 bytes per voxel plane the ray may cross (256 px: 2.2 GB at once), the
# trilinear renderer about 14 bytes per sample (500 a ray; 1024 px: 7.2 GB at once)
SIDDON_BYTES_PER_PLANE = 32
TRILINEAR_BYTES_PER_SAMPLE = 16
TRILINEAR_SAMPLES = 500
RENDER_CHUNK_BYTES = 512 * 2**20  # rays are rendered in chunks that take about this much


def chunk_rays_(drr, batch: int) -> int | None:
    """Set drr to render a batch of `batch` poses in chunks of rays that each take at most
    about RENDER_CHUNK_BYTES (a 1024 px Siddon DRR of a 512 x 512 x 300 CT asked for about
    40 GB at once); returns the rays per chunk, None when all fit at once. Chunks change no
    value: Siddon traces each ray alone (diffdrr's patch_size: rays // patch_size^2 chunks of
    whole rays), and FusedTrilinear takes each image's sampling range over all its rays first
    (equal to float rounding)."""
    from recon.pipelines.xray.trilinear import FusedTrilinear

    rays = int(drr.detector.height) * int(drr.detector.width)
    fit = max(1, RENDER_CHUNK_BYTES // (ray_bytes(drr) * max(1, batch)))
    if isinstance(drr.renderer, FusedTrilinear):
        drr.renderer.chunk_rays = None if fit >= rays else fit
        return drr.renderer.chunk_rays
    if fit >= rays:
        drr.patch_size = None
        return None
    drr.patch_size = math.isqrt(rays // -(-rays // fit))  # then rays // patch^2 >= rays / fit
    chunks = rays // drr.patch_size**2
    return -(-rays // chunks)  # torch.chunk's largest


def ray_bytes(drr) -> int:
    """About the memory one ray of one pose takes in drr's renderer."""
    from recon.pipelines.xray.trilinear import FusedTrilinear

    if isinstance(drr.renderer, FusedTrilinear):
        return TRILINEAR_SAMPLES * TRILINEAR_BYTES_PER_SAMPLE
    return (sum(drr.density.shape[-3:]) + 3) * SIDDON_BYTES_PER_PLANE


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


def detector_directions(reorient, intrinsics: Intrinsics, poses: torch.Tensor) -> torch.Tensor:
    """Unit vectors (N, 3, 3) in the CT's world (RAS+) of each pose's image: [:, 0] along
    increasing columns, [:, 1] along increasing rows, [:, 2] the beam (the source toward the
    detector's centre). reorient: the CT's frame change, `subject.reorient` (4, 4) (AP/PA)."""
    world = _detector_points(reorient, intrinsics, poses)
    vectors = torch.stack(
        [world[:, 1] - world[:, 0], world[:, 2] - world[:, 0], world[:, 0] - world[:, 3]], 1
    )
    return vectors / vectors.norm(dim=2, keepdim=True)


def image_orientation(reorient, intrinsics: Intrinsics, pose: torch.Tensor) -> dict:
    """{patient_orientation, view_position} of the image a pose (4, 4) makes (reorient and
    intrinsics as detector_directions takes them): where the patient's directions run on the
    image ("L\\F" for the nominal AP and PA views, "R\\F" for a view from behind in the AP
    frame, "P\\F" for a lateral) and where the beam goes (AP, PA, RL, LL or None)."""
    from recon.pipelines.xray.orientation import patient_direction, view_position

    columns, rows, beam = detector_directions(reorient, intrinsics, pose)[0].numpy()
    return {
        "patient_orientation": f"{patient_direction(columns)}\\{patient_direction(rows)}",
        "view_position": view_position(beam),
    }


def pose_in_frame(poses: torch.Tensor, frame: str, target: str) -> torch.Tensor:
    """Poses (N, 4, 4) of diffdrr's `frame` (AP or PA) as poses of the `target` frame with the
    same source and detector on the patient; the PA frame is the AP frame reflected front to
    back, so across frames the columns run the other way (an image then shows as its mirror,
    which Patient Orientation records). In angles and mm: AP (a, b, c; x, y, z) is PA (a - 180,
    -b, -c; -x, -y, z)."""
    from recon.pipelines.xray.volume import frame_reorient

    poses = as_pose_batch(poses)
    if frame == target:
        return poses
    # the camera-to-world of a pose is pose @ reorient; the column flip keeps it a rotation
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    into = torch.linalg.inv(frame_reorient(target).double())
    return (poses.double() @ frame_reorient(frame).double() @ flip @ into).to(poses.dtype)


def positioner_tags(
    pose: torch.Tensor, frame: str, view: str | None
) -> tuple[float, float, float] | None:
    """The DICOM positioner (primary deg, secondary deg, source-to-patient mm) of a pose (1, 4,
    4) of `frame`, as `register --init dicom` and xvr read them back: diffdrr's first two ZXY
    angles and the source's distance along the frame's axis (+y for AP, -y for PA), in the frame
    the file's View Position names (a view from behind in the AP frame is PA, which register
    reads with --orientation PA); None when the source lies on the other side of the CT."""
    from recon.pipelines.xray.pose import describe_pose

    target = view if view in ("AP", "PA") else frame
    described = describe_pose(pose_in_frame(pose, frame, target))
    distance = described["xyz_mm"][1] * (-1.0 if target == "PA" else 1.0)
    primary, secondary = (a + 0.0 for a in described["rot_deg"][:2])  # no "-0"
    return (primary, secondary, distance) if distance > 0 else None


def ct_depth(reorient, intrinsics: Intrinsics, poses: torch.Tensor) -> torch.Tensor:
    """(N,) where the CT's centre lies along each pose's beam, as a fraction of the way from
    the source (0) to the detector (1): at or below 0 the CT is behind the source, and the
    renderer draws it through the source as through a pinhole, upside down."""
    world = _detector_points(reorient, intrinsics, poses)
    beam = world[:, 0] - world[:, 3]
    return (-world[:, 3] * beam).sum(1) / (beam * beam).sum(1)


def nearest_depth_mm(reorient, intrinsics: Intrinsics, rot_deg, xyz_mm, rot_range, xyz_range):
    """The least distance, mm, from the source to the CT's centre along the beam (ct_depth x
    sdd) over every corner of the box of poses +-rot_range deg and +-xyz_range mm around the
    nominal pose (rot_deg, xyz_mm): at or below 0 a pose drawn in it puts the CT behind the
    source."""
    import itertools

    import numpy as np

    from recon.pipelines.xray.pose import pose_from_degrees

    corners = [
        pose_from_degrees(
            np.asarray(rot_deg, float) + np.asarray(signs[:3]) * rot_range,
            np.asarray(xyz_mm, float) + np.asarray(signs[3:]) * xyz_range,
        )
        for signs in itertools.product((-1.0, 1.0), repeat=6)
    ]
    return float((ct_depth(reorient, intrinsics, torch.cat(corners)) * intrinsics.sdd).min())


def farthest_source_mm(xyz_mm, xyz_range: float) -> float:
    """The greatest distance, mm, from the CT's centre to a source drawn within +-xyz_range mm
    of xyz_mm on every axis (the source sits at R @ xyz, so at |xyz| whatever the angles). The
    CT's centre lies at most that far along any beam: a source-to-detector distance beyond it
    keeps the CT's centre before the detector for every pose drawn."""
    import itertools

    import numpy as np

    corners = itertools.product((-1.0, 1.0), repeat=3)
    return max(
        float(np.linalg.norm(np.asarray(xyz_mm, float) + np.asarray(c) * xyz_range))
        for c in corners
    )


def widest_xyz_range_mm(xyz_mm, sdd: float) -> float:
    """The widest +-range, mm, around xyz_mm whose sources all lie nearer to the CT's centre
    than sdd (farthest_source_mm < sdd), to 0.1 mm below; 0 when xyz_mm itself does not."""
    low, high = 0.0, float(sdd)
    if farthest_source_mm(xyz_mm, 0.0) >= sdd:
        return 0.0
    while high - low > 0.01:
        middle = (low + high) / 2
        low, high = (middle, high) if farthest_source_mm(xyz_mm, middle) < sdd else (low, middle)
    return float(int(low * 10) / 10)


def behind_the_source(orientation: str) -> str:
    """The end of the line refusing a pose that puts the CT behind the source (ct_depth <= 0),
    with where the frame's source lies: +y for AP, -y for PA."""
    side = -850 if orientation == "PA" else 850
    return (
        "puts the CT behind the source, which would draw it upside down; with --orientation "
        f"{orientation} the source lies on the other side of the CT (e.g. --xyz 0 {side} 0)"
    )


def sources_past_detector(xyz_mm, xyz_range: float, sdd: float) -> tuple[float, float] | None:
    """(farthest, widest) when a source drawn within +-xyz_range mm of xyz_mm may lie as far
    from the CT's centre as the detector lies from the source (farthest_source_mm >= sdd), so
    that the detector could cut through the CT: the farthest distance and the widest range that
    fits (widest_xyz_range_mm); None when every source lies nearer."""
    farthest = farthest_source_mm(xyz_mm, xyz_range)
    return None if farthest < sdd else (farthest, widest_xyz_range_mm(xyz_mm, sdd))


def past_the_detector(depth: float, sdd: float, sdd_from: str = "--sdd") -> str:
    """The end of the line refusing a pose whose CT centre lies at or past the detector
    (ct_depth >= 1, the fraction given as depth): the detector would cut through the CT and
    the DRR show only what lies before it, or nothing. sdd_from: where the distance came from."""
    return (
        f"puts the CT's centre {depth * sdd:.0f} mm from the source, at or past the detector "
        f"({sdd_from} {sdd:g} mm): the detector would cut through the CT; give a source-to-"
        "detector distance beyond the CT or bring the source nearer to it"
    )


def _detector_points(reorient, intrinsics: Intrinsics, poses: torch.Tensor) -> torch.Tensor:
    """(N, 4, 3) world points of each pose: the detector's centre, one pixel step from it
    along the columns and along the rows, the source."""
    from diffdrr.pose import RigidTransform

    columns, rows = detector_axes(replace(intrinsics, height=2, width=2))
    step_x, step_y, sdd = float(columns[1] - columns[0]), float(rows[1] - rows[0]), intrinsics.sdd
    camera = torch.tensor([[0, 0, sdd], [step_x, 0, sdd], [0, step_y, sdd], [0, 0, 0]])
    poses = as_pose_batch(poses).detach().double().cpu()
    frame = RigidTransform(torch.as_tensor(reorient).detach().double().cpu())
    points = camera.double().expand(len(poses), -1, -1).clone()
    return frame.compose(RigidTransform(poses))(points)


def drr_to_uint16(image: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Scale a non-negative DRR (H, W) to uint16 counts; returns (counts, mm per count)."""
    image = image.detach().float().cpu().clamp_min(0)
    peak = float(image.max())
    scale = peak / 65535.0 if peak > 0 else 1.0
    counts = torch.round(image / scale).clamp(0, 65535).to(torch.int32)
    return counts, scale
