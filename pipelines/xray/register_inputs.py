"""`recon register` inputs: X-ray files, starting poses, true poses and fiducials."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.pose import load_poses, pose_from_degrees
from recon.pipelines.xray.xray import DICOM_SUFFIXES, IMAGE_SUFFIXES, Xray

INITS = ("dicom", "fixed", "model", "restart")  # --init strategies


def expand_inputs(paths: list[Path]) -> list[Path]:
    """X-ray files and folders (their DICOM/PNG/TIFF files, sorted) -> unique files."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix.lower() in DICOM_SUFFIXES)
            )
            if not found:
                raise BadInput(f"{path}: folder holds no DICOM, PNG or TIFF X-rays")
            files.extend(found)
        elif not path.exists():
            raise BadInput(f"{path}: no such X-ray file or folder")
        else:
            files.append(path)
    stems = [f.name.split(".")[0] for f in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise BadInput(
            f"X-rays share the output name(s) {', '.join(duplicates)}; "
            "register them in separate calls"
        )
    return files


def dicom_pose(xray: Xray, orientation: str) -> torch.Tensor:
    """xvr's pose from the positioner angles: rot (primary, secondary, 0) deg, xyz (0, SDP, 0)."""
    if xray.positioner is None:
        raise BadInput(
            f"{xray.path}: no PositionerPrimaryAngle/PositionerSecondaryAngle/"
            "DistanceSourceToPatient tags for --init dicom; use --init fixed"
        )
    primary, secondary, sdp = xray.positioner
    sign = -1.0 if orientation == "PA" else 1.0
    return pose_from_degrees([primary, secondary, 0.0], [0.0, sign * sdp, 0.0])


def restart_pose(source: Path, xray: Xray) -> torch.Tensor:
    """final_pose of a previous run: a parameters.pt, or an output folder with <stem>/."""
    source = Path(source)
    if source.is_dir():
        source = source / xray.path.name.split(".")[0] / "parameters.pt"
    return load_poses(source)[:1]


def read_truth_for(files: list[Path], truth: Path) -> list[torch.Tensor]:
    """True poses for each X-ray: a synth truth.json (by file name) or a pose file (in order)."""
    from recon.pipelines.xray.synth_xray import read_truth

    if Path(truth).suffix.lower() == ".json" and '"xrays"' in Path(truth).read_text()[:100000]:
        table = read_truth(truth)
        missing = [f.name for f in files if f.name not in table]
        if missing:
            raise BadInput(f"{truth}: no true pose for {', '.join(missing[:3])}")
        return [table[f.name] for f in files]
    poses = load_poses(truth)
    if len(poses) != len(files):
        raise BadInput(f"{truth}: holds {len(poses)} poses for {len(files)} X-rays")
    return [p[None] for p in poses]


def default_fiducials(truth: Path | None, subject) -> np.ndarray | None:
    """fiducials.json beside the truth file, else vertebra centroids of the CT's label map."""
    from recon.pipelines.xray.synth_xray import read_fiducials
    from recon.pipelines.xray.volume import fiducial_tensor, vertebra_centroids

    if truth is not None and (Path(truth).parent / "fiducials.json").is_file():
        return read_fiducials(Path(truth).parent / "fiducials.json")
    if subject.mask is not None:
        centroids = vertebra_centroids(subject)
        if centroids:
            return fiducial_tensor(centroids)[0].numpy()
    return None


def initial_pose(
    init: str,
    xray: Xray,
    orientation: str,
    rot_deg: tuple[float, float, float],
    xyz_mm: tuple[float, float, float],
    restart: Path | None,
    predictor=None,
) -> torch.Tensor:
    """The starting pose (1, 4, 4) for one X-ray under the chosen --init strategy."""
    if init == "dicom":
        return dicom_pose(xray, orientation)
    if init == "fixed":
        if not all(math.isfinite(v) for v in (*rot_deg, *xyz_mm)):
            raise BadInput("--rot and --xyz must be finite numbers")
        return pose_from_degrees(rot_deg, xyz_mm)
    if init == "restart":
        if restart is None:
            raise BadInput("--init restart needs --from PARAMETERS.pt or a previous output folder")
        return restart_pose(restart, xray)
    if init == "model":
        if predictor is None:
            raise BadInput("--init model needs --checkpoint CKPT from `recon train pose`")
        return predictor(xray)
    raise BadInput(f"--init must be one of {', '.join(INITS)}, not {init}")


def parse_stages(text: str, name: str) -> list[int]:
    """'64,128' -> [64, 128] (positive integers)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError as error:
        raise BadInput(f"--{name}: expected comma-separated integers, not {text!r}") from error
    if not values or min(values) <= 0:
        raise BadInput(f"--{name}: expected positive integers, not {text!r}")
    return values
