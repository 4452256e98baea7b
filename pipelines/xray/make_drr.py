"""`recon make-drr` as a function: CT + poses -> DRR files (16-bit PNG or DICOM).

Columns follow DrrRequest.reverse_x_axis: True (the default) is the radiological display, the
patient's left along increasing columns (L\\F), which is also what `recon register` assumes for a
PNG, so a PNG written here registers without flags; DICOMs carry it as Patient Orientation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.drr import RENDERERS, Intrinsics, drr_to_uint16

FORMATS = ("png", "dcm")


@dataclass
class DrrRequest:
    """Everything `recon make-drr` was asked to do (see its --help)."""

    out: Path
    volume: Path | None = None
    orientation: str = "AP"
    pose: Path | None = None
    rot: tuple[float, float, float] | None = None
    xyz: tuple[float, float, float] | None = None
    sdd: float = 1020.0
    height: int = 256
    width: int | None = None
    delx: float = 1.6
    dely: float | None = None
    reverse_x_axis: bool = True  # diffdrr's flag: True = L\F (radiological), False = R\F
    renderer: str = "siddon"
    fmt: str = "png"
    batch_size: int = 8
    device: str = "auto"
    seed: int = 0
    overwrite: bool = False


def request_poses(r: DrrRequest) -> torch.Tensor:
    """The poses (N, 4, 4) asked for by --pose or --rot/--xyz."""
    from recon.pipelines.xray.pose import load_poses, pose_from_degrees

    if r.pose is not None and (r.rot is not None or r.xyz is not None):
        raise BadInput("give either --pose or --rot/--xyz, not both")
    if r.pose is not None:
        return load_poses(r.pose)
    if r.rot is None or r.xyz is None:
        raise BadInput("give --pose FILE, or both --rot R1 R2 R3 (deg) and --xyz X Y Z (mm)")
    return pose_from_degrees(r.rot, r.xyz)


def request_intrinsics(r: DrrRequest) -> Intrinsics:
    width = r.height if r.width is None else r.width
    dely = r.delx if r.dely is None else r.dely
    if min(r.height, width) < 1 or max(r.height, width) > 4096:
        raise BadInput(f"detector size {r.height}x{width} px is out of range (1..4096)")
    if not (r.sdd > 0 and r.delx > 0 and dely > 0):
        raise BadInput("--sdd, --delx and --dely must be positive")
    return Intrinsics(
        float(r.sdd),
        int(r.height),
        int(width),
        float(r.delx),
        float(dely),
        reverse_x_axis=bool(r.reverse_x_axis),
    )


def output_paths(r: DrrRequest, count: int) -> tuple[Path, list[Path]]:
    """The checked output target and one file path per DRR (before the atomic rename)."""
    from recon.pipelines.common.outputs import check_output

    if count == 1 and Path(r.out).suffix.lower() in (".png", ".dcm"):
        out = check_output(r.out, r.overwrite, (".png", ".dcm"))
        return out, [out]
    if r.fmt not in FORMATS:
        raise BadInput(f"--format must be one of {', '.join(FORMATS)}, not {r.fmt}")
    if Path(r.out).suffix.lower() in (".png", ".dcm"):
        raise BadInput(f"{r.out}: {count} poses need an output folder, not a single file")
    out = check_output(r.out, r.overwrite)
    return out, [out / f"drr_{i:04d}.{r.fmt}" for i in range(count)]


def write_drr(
    path: Path, image: torch.Tensor, intrinsics: Intrinsics, pose: torch.Tensor, view: str = "AP"
) -> dict:
    """One DRR (H, W) as 16-bit PNG or DICOM; returns {path, mm_per_count}."""
    from recon.pipelines.common.io import write_png
    from recon.pipelines.xray.pose import describe_pose
    from recon.pipelines.xray.xray import write_xray_dicom

    counts, scale = drr_to_uint16(image)
    pixels = counts.numpy().astype("uint16")
    described = describe_pose(pose[None])
    if path.suffix.lower() == ".dcm":
        positioner = (described["rot_deg"][0], described["rot_deg"][1], described["xyz_mm"][1])
        write_xray_dicom(
            path,
            pixels,
            intrinsics,
            "MONOCHROME2",
            rescale_slope=scale,
            positioner=positioner,
            description="DRR (recon make-drr)",
            view=view,
        )
    else:
        write_png(path, pixels)
    return {"path": str(path), "mm_per_count": scale, **described}


def run_make_drr(r: DrrRequest, info, track) -> dict:
    """Validate, render in batches, write; returns the result document."""
    from recon.pipelines.common.devices import choose_device
    from recon.pipelines.common.outputs import atomic_dir
    from recon.pipelines.xray.drr import make_renderer, render_with
    from recon.pipelines.xray.volume import load_ct

    if r.renderer not in RENDERERS:
        raise BadInput(f"--renderer must be one of {', '.join(RENDERERS)}, not {r.renderer}")
    if r.batch_size < 1:
        raise BadInput("--batch-size must be at least 1")
    poses = request_poses(r)
    intrinsics = request_intrinsics(r)
    out, paths = output_paths(r, len(poses))
    device = choose_device(r.device)
    torch.manual_seed(r.seed)
    clock = time.perf_counter()
    subject = load_ct(r.volume, None, r.orientation)
    info(f"CT {r.volume or 'bundled chest CT'}: {tuple(subject.density.shape[1:])} voxels")
    drr = make_renderer(subject, intrinsics, r.renderer, device)
    images = render_with(drr, poses, r.batch_size, track if len(poses) > 1 else None)
    written = []
    if paths == [out]:
        written.append(write_drr(out, images[0, 0], intrinsics, poses[0], r.orientation))
    else:
        with atomic_dir(out) as folder:
            for path, image, pose in zip(paths, images, poses, strict=True):
                written.append(
                    write_drr(folder / path.name, image[0], intrinsics, pose, r.orientation)
                )
                written[-1]["path"] = str(path)
    return {
        "out": str(out),
        "files": written,
        "height": intrinsics.height,
        "width": intrinsics.width,
        "intrinsics": intrinsics.as_dict(),
        "patient_orientation": "L\\F" if intrinsics.reverse_x_axis else "R\\F",
        "renderer": r.renderer,
        "device": device,
        "seconds": round(time.perf_counter() - clock, 3),
    }
