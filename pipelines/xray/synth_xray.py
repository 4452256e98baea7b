"""Synthetic X-rays: DRRs of a CT at random known poses, degraded like a radiograph.

Layout written by `recon synth xray -o DIR` (and read by `recon register --truth`):
    xray_000.dcm ...   MONOCHROME1 DX DICOM, 12-bit raw transmission, geometry tags
                       (DistanceSourceToDetector, PixelSpacing, DetectorActiveOrigin, positioner
                       angles of the nominal C-arm position) and Patient Orientation: L\\F
                       (radiological display, diffdrr's reverse_x_axis=True, the default) or R\\F
    truth.json         {"convention", "ct", "nominal": {rot_deg, xyz_mm},
                        "xrays": {file name: {"pose": 4x4, "rot_deg", "xyz_mm"}}}
    fiducials.json     {"units": "mm", "labels": [...], "points": [[x, y, z], ...]} CT world
                       points (vertebra centroids of the label map)
Poses follow recon.pipelines.xray.pose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from recon.pipelines.xray.drr import Intrinsics, make_renderer, render_with
from recon.pipelines.xray.pose import as_pose_batch, describe_pose, pose_from_euler


@dataclass
class SynthXrayConfig:
    count: int = 10
    height: int = 128  # detector rows and columns, px
    sdd: float = 1020.0  # mm
    field_mm: float = 400.0  # detector side, mm (spacing = field / height)
    nominal_rot_deg: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    nominal_xyz_mm: list[float] = field(default_factory=lambda: [0.0, 850.0, 0.0])
    rot_range_deg: float = 10.0  # uniform +- around the nominal angles
    xyz_range_mm: float = 20.0  # uniform +- around the nominal translation
    degrade: bool = True  # noise, contrast curve, blur, collimation
    photons: float = 1e4  # unattenuated photons per pixel (quantum noise); 0 = no noise
    blur_px: float = 0.6  # Gaussian blur sigma, px
    collimation: float = 0.03  # up to this fraction of each side is blocked
    renderer: str = "siddon"
    reverse_x_axis: bool = True  # columns toward the patient's left (L\F); False: right (R\F)

    def intrinsics(self) -> Intrinsics:
        spacing = self.field_mm / self.height
        return Intrinsics(
            self.sdd, self.height, self.height, spacing, spacing, reverse_x_axis=self.reverse_x_axis
        )


def random_poses(config: SynthXrayConfig, generator: torch.Generator) -> torch.Tensor:
    """Poses (count, 4, 4) uniformly within the ranges around the nominal pose."""
    count = config.count
    rot = torch.tensor(config.nominal_rot_deg) + config.rot_range_deg * (
        2 * torch.rand(count, 3, generator=generator) - 1
    )
    xyz = torch.tensor(config.nominal_xyz_mm) + config.xyz_range_mm * (
        2 * torch.rand(count, 3, generator=generator) - 1
    )
    return pose_from_euler(torch.deg2rad(rot), xyz)


def degrade(line_integral: torch.Tensor, config: SynthXrayConfig, generator: torch.Generator):
    """A DRR (1, 1, H, W) -> raw transmission counts (H, W) uint16 in 0..4095 (12 bits).

    Beer-Lambert transmission, a random gamma contrast curve, Gaussian blur, quantum noise
    (config.photons per unattenuated pixel) and collimator blades (blocked bands along the
    borders) when config.degrade is set.
    """
    image = line_integral.float()
    image = image / (image.amax() + 1e-6)
    transmission = torch.exp(-3.0 * image)
    if config.degrade:
        gamma = 0.8 + 0.4 * float(torch.rand(1, generator=generator))
        transmission = transmission**gamma
        if config.blur_px > 0:
            size = int(6 * config.blur_px + 1) | 1
            from torchvision.transforms.functional import gaussian_blur

            transmission = gaussian_blur(transmission, [size, size], [config.blur_px] * 2)
        if config.photons > 0:  # Poisson counts, Gaussian approximation
            sigma = (transmission.clamp_min(0) / config.photons).sqrt()
            transmission = transmission + sigma * torch.randn(
                transmission.shape, generator=generator
            )
        height, width = transmission.shape[-2:]
        bands = (torch.rand(4, generator=generator) * config.collimation * height).long()
        top, bottom, left, right = (int(b) for b in bands)
        blocked = 0.02
        if top:
            transmission[..., :top, :] = blocked
        if bottom:
            transmission[..., height - bottom :, :] = blocked
        if left:
            transmission[..., :, :left] = blocked
        if right:
            transmission[..., :, width - right :] = blocked
    counts = (transmission.clamp(0, 1) * 4095).round()
    return counts[0, 0].to(torch.int32).numpy().astype(np.uint16)


def synthesize_xrays(
    folder: Path,
    config: SynthXrayConfig,
    seed: int = 0,
    ct: Path | None = None,
    labelmap: Path | None = None,
    device: str = "cpu",
    track=None,
    poses: torch.Tensor | None = None,
    subject=None,
) -> dict:
    """Write config.count synthetic X-rays of `ct` (default: the bundled chest CT) into folder,
    at random poses, or at `poses` (N, 4, 4) when given (then N X-rays); `subject` reuses a CT
    already loaded with load_ct.

    Returns {"files": [...], "poses": (N, 4, 4) tensor, "fiducials": (F, 3) array or None,
    "config", "intrinsics", "subject" (the CT as loaded)}.
    """
    from recon.pipelines.common.outputs import write_json
    from recon.pipelines.xray.volume import fiducial_tensor, load_ct, vertebra_centroids
    from recon.pipelines.xray.xray import write_xray_dicom

    generator = torch.Generator().manual_seed(int(seed))
    subject = load_ct(ct, labelmap) if subject is None else subject
    intrinsics = config.intrinsics()
    drawn = random_poses(config, generator)
    poses = drawn if poses is None else as_pose_batch(poses)
    drr = make_renderer(subject, intrinsics, config.renderer, device)
    images = render_with(drr, poses, batch_size=2, track=track)
    nominal = (*config.nominal_rot_deg[:2], config.nominal_xyz_mm[1])
    truth = {
        "convention": "diffdrr ZXY Euler, camera-to-world 4x4, mm",
        "ct": str(ct) if ct is not None else "bundled chest CT (diffdrr)",
        "intrinsics": intrinsics.as_dict(),
        "patient_orientation": "L\\F" if intrinsics.reverse_x_axis else "R\\F",
        "nominal": {"rot_deg": config.nominal_rot_deg, "xyz_mm": config.nominal_xyz_mm},
        "xrays": {},
    }
    files = []
    for index, (pose, image) in enumerate(zip(poses, images, strict=True)):
        name = f"xray_{index:03d}.dcm"
        counts = degrade(image[None], config, generator)
        write_xray_dicom(
            folder / name,
            counts,
            intrinsics,
            "MONOCHROME1",
            positioner=nominal,
            description=f"synthetic X-ray {index} (recon synth xray)",
        )
        truth["xrays"][name] = {"pose": pose.tolist(), **describe_pose(pose[None])}
        files.append(folder / name)
    write_json(folder / "truth.json", truth)
    fiducials = None
    if subject.mask is not None:
        centroids = vertebra_centroids(subject)
        if centroids:
            fiducials = fiducial_tensor(centroids)[0].numpy()
            write_json(
                folder / "fiducials.json",
                {
                    "units": "mm",
                    "frame": "CT world (RAS+, volume centre at the origin)",
                    "labels": sorted(centroids),
                    "points": fiducials.tolist(),
                },
            )
    return {
        "files": files,
        "poses": poses,
        "fiducials": fiducials,
        "config": asdict(config),
        "intrinsics": intrinsics,
        "subject": subject,
    }


def read_truth(path: Path) -> dict[str, torch.Tensor]:
    """truth.json (written above) -> {file name: pose (1, 4, 4)}."""
    import json

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import require_file
    from recon.pipelines.xray.pose import check_poses

    path = require_file(Path(path), "truth file")
    try:
        doc = json.loads(path.read_text())
        entries = doc["xrays"]
        return {
            name: check_poses(torch.tensor(entry["pose"]), path) for name, entry in entries.items()
        }
    except (ValueError, KeyError, TypeError) as error:
        raise BadInput(
            f"{path}: not a truth file written by `recon synth xray` "
            f"({type(error).__name__}: {error})"
        ) from error


def read_fiducials(path: Path) -> np.ndarray:
    """fiducials.json -> (F, 3) world points in mm."""
    import json

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import require_file

    path = require_file(Path(path), "fiducials file")
    try:
        points = np.asarray(json.loads(path.read_text())["points"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as error:
        raise BadInput(f"{path}: not a fiducials file ({type(error).__name__})") from error
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise BadInput(f"{path}: fiducials must be a list of [x, y, z] points")
    return points
