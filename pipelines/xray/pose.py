"""The one pose convention of the project: diffdrr's ZXY Euler angles plus translation.

A pose is a rigid transform from the C-arm (camera) frame to the CT world frame, stored as a
4x4 matrix ``[[R, R @ xyz], [0, 0, 0, 1]]`` with ``R = Rz(rot[0]) @ Rx(rot[1]) @ Ry(rot[2])``
(diffdrr's ``convert(rot, xyz, parameterization="euler_angles", convention="ZXY")``).

- The CT world is the volume's RAS+ frame in millimetres with the volume centre at the origin
  (diffdrr's ``read`` with ``center_volume=True``); the "AP" orientation turns the C-arm so that
  the identity rotation looks from anterior to posterior.
- ``xyz`` is in mm and is NOT the source position: the source sits at ``R @ xyz``.
- Angles are radians inside the code and degrees only on the command line and in JSON written
  for people (keys ending in ``_deg``).
- Files hold 4x4 matrices: ``.pt`` (a (4, 4) or (N, 4, 4) float tensor, or a dict with
  ``final_pose`` as written by `recon register`), or ``.json`` / ``.npy`` with the same shapes
  (a JSON dict: its ``poses``, ``final_pose`` or ``pose``, or a `synth xray` truth.json's
  ``xrays``, their poses in the file's order).
- Poses do not depend on the detector's column direction (diffdrr's ``reverse_x_axis``, a
  mirror that no pose can produce), so they are interchangeable with xvr's parameters files
  whichever way an X-ray's columns run. REVERSE_X_AXIS (False, as xvr renders) is the default
  of a detector made in code; X-ray files say their own (recon.pipelines.xray.orientation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from recon.pipelines.common.errors import BadInput

CONVENTION = "ZXY"
REVERSE_X_AXIS = False
POSE_SUFFIXES = (".pt", ".pth", ".json", ".npy")


def pose_from_euler(rot: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """Poses (B, 4, 4) from ZXY Euler angles in radians (B, 3) and translations in mm (B, 3)."""
    from diffdrr.pose import convert

    rot = torch.as_tensor(rot, dtype=torch.float32).reshape(-1, 3)
    xyz = torch.as_tensor(xyz, dtype=torch.float32).reshape(-1, 3).to(rot)
    return convert(rot, xyz, parameterization="euler_angles", convention=CONVENTION).matrix


def pose_from_degrees(rot_deg, xyz_mm) -> torch.Tensor:
    """One pose (1, 4, 4) from CLI values: three angles in degrees, three translations in mm.

    Converted by diffdrr itself (degrees=True), so a render equals diffdrr's bit for bit.
    """
    from diffdrr.pose import convert

    rot = torch.tensor([[float(a) for a in rot_deg]], dtype=torch.float32)
    xyz = torch.tensor([[float(v) for v in xyz_mm]], dtype=torch.float32)
    return convert(
        rot, xyz, parameterization="euler_angles", convention=CONVENTION, degrees=True
    ).matrix


def euler_from_pose(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ZXY Euler angles in radians (B, 3) and translations in mm (B, 3) of poses (B, 4, 4)."""
    from diffdrr.pose import RigidTransform

    rot, xyz = RigidTransform(as_pose_batch(pose)).convert("euler_angles", CONVENTION)
    return rot, xyz


def as_pose_batch(pose) -> torch.Tensor:
    """A (4, 4) or (B, 4, 4) matrix as a float32 (B, 4, 4) tensor."""
    pose = torch.as_tensor(pose, dtype=torch.float32)
    return pose.unsqueeze(0) if pose.ndim == 2 else pose


def load_poses(path: Path) -> torch.Tensor:
    """Read poses (N, 4, 4) from .pt/.pth, .json or .npy (see module doc); BadInput otherwise."""
    from recon.pipelines.common.io import read_json, require_file

    path = require_file(Path(path), "pose file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".pt", ".pth"):
            from recon.pipelines.common.checkpoints import read_torch_file

            data = read_torch_file(
                path,
                "pose file",
                "give a parameters.pt that register wrote, or a tensor saved with torch.save",
            )
            if isinstance(data, dict):
                if "final_pose" not in data:
                    raise BadInput(f"{path}: pose file has no 'final_pose' entry")
                data = data["final_pose"]
        elif suffix == ".json":
            data = _json_poses(read_json(path), path)
        elif suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            raise BadInput(f"{path}: pose file must end in {', '.join(POSE_SUFFIXES)}")
        poses = torch.as_tensor(np.asarray(data, dtype=np.float32))
    except BadInput:
        raise
    except Exception as error:  # unpickling refusals, bad JSON, ragged lists
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInput(f"{path}: not a readable pose file ({message[:200]})") from error
    return check_poses(poses, path)


def _json_poses(data, path: Path):
    """The pose list of a JSON pose file: a 4x4 list or a list of them; a dict's `poses`,
    `final_pose` or `pose` (a `synth xray` item's JSON); or a `synth xray` truth.json's
    `xrays` (their poses in the file's order, which is by name)."""
    if not isinstance(data, dict):
        return data
    for key in ("poses", "final_pose", "pose"):
        if key in data:
            return data[key]
    xrays = data.get("xrays")
    if isinstance(xrays, dict) and xrays:
        for name, item in xrays.items():
            if not (isinstance(item, dict) and "pose" in item):
                raise BadInput(f"{path}: xrays[{name!r}] has no 'pose' (a 4x4 matrix)")
        return [_matrix(item["pose"], path, f"xrays[{name!r}]") for name, item in xrays.items()]
    keys = ", ".join(sorted(map(str, data))[:6]) or "none"
    raise BadInput(
        f"{path}: a JSON pose file holds 4x4 matrices, or a dict with 'poses', 'final_pose', "
        f"'pose' or 'xrays' (a synth xray truth.json); this one has keys {keys}"
    )


def _matrix(value, path: Path, where: str):
    """A JSON 4x4 matrix as nested lists, or BadInput naming where it is not one."""
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = None
    if matrix is None or matrix.shape != (4, 4):
        shape = "ragged rows" if matrix is None else f"shape {matrix.shape}"
        raise BadInput(f"{path}: {where}['pose'] is not a 4x4 matrix ({shape})")
    return value


def pose_names(path: Path) -> list[str] | None:
    """The X-ray file names of a `synth xray` truth.json's poses, in load_poses' order; None
    for a pose file that names none (or that cannot be read: load_poses says why)."""
    if Path(path).suffix.lower() != ".json":
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    xrays = data.get("xrays") if isinstance(data, dict) else None
    if not isinstance(xrays, dict) or any(k in data for k in ("poses", "final_pose", "pose")):
        return None
    return [str(name) for name in xrays]


def check_poses(poses: torch.Tensor, source: Path | str) -> torch.Tensor:
    """Validate a (4, 4) or (N, 4, 4) stack of rigid transforms (orthonormal rotations with
    determinant +1, no reflection); returns (N, 4, 4)."""
    if poses.ndim not in (2, 3) or tuple(poses.shape[-2:]) != (4, 4) or poses.numel() == 0:
        raise BadInput(
            f"{source}: poses must be 4x4 or Nx4x4 matrices, got shape {tuple(poses.shape)}"
        )
    poses = as_pose_batch(poses)
    if not torch.isfinite(poses).all():
        raise BadInput(f"{source}: poses contain non-finite values")
    rotation = poses[:, :3, :3]
    eye = torch.eye(3).expand_as(rotation)
    if (rotation @ rotation.mT - eye).abs().max() > 1e-3 or (
        poses[:, 3] - torch.tensor([0.0, 0.0, 0.0, 1.0])
    ).abs().max() > 1e-6:
        raise BadInput(f"{source}: poses are not rigid transforms (rotation not orthonormal)")
    mirrored = torch.linalg.det(rotation.double()) < 0
    if mirrored.any():
        first = int(mirrored.nonzero()[0, 0])
        raise BadInput(
            f"{source}: pose {first} is a reflection (rotation determinant -1), not a rigid "
            "transform; it would render a mirror image"
        )
    return poses


def save_poses(path: Path, poses: torch.Tensor, intrinsics: dict | None = None) -> None:
    """Write poses (N, 4, 4) as a .pt tensor or a JSON {"convention", "poses"} document; with
    the detector they were rendered with (intrinsics, Intrinsics.as_dict), a .pt holds
    {"final_pose", "intrinsics"} as a `recon register` parameters.pt does, so `make-drr --pose`
    renders on that detector."""
    from recon.pipelines.common.checkpoints import write_torch_file
    from recon.pipelines.common.outputs import atomic_file, write_json

    poses = as_pose_batch(poses).detach().cpu()
    if Path(path).suffix.lower() == ".json":
        write_json(
            path,
            {"convention": f"diffdrr {CONVENTION} camera-to-world, mm", "poses": poses.tolist()}
            | ({"intrinsics": intrinsics} if intrinsics else {}),
        )
        return
    content = poses if intrinsics is None else {"final_pose": poses, "intrinsics": intrinsics}
    with atomic_file(Path(path)) as tmp:
        write_torch_file(content, tmp)


def describe_pose(pose: torch.Tensor) -> dict[str, list[float]]:
    """A pose as {'rot_deg': [3], 'xyz_mm': [3]} for people."""
    rot, xyz = euler_from_pose(pose)
    return {
        "rot_deg": [round(math.degrees(a), 4) for a in rot[0].tolist()],
        "xyz_mm": [round(v, 4) for v in xyz[0].tolist()],
    }
