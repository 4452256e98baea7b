"""`recon register` inputs: X-ray files, starting poses, true poses and fiducials."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.inputs import XRAY_KINDS, is_xray_file, xray_name
from recon.pipelines.xray.pose import load_poses, pose_from_degrees
from recon.pipelines.xray.xray import Xray

INITS = ("dicom", "fixed", "model", "restart")  # --init strategies
MAX_DISTANCE_MM = 10000.0  # the largest source distance taken as a C-arm geometry


RESERVED = re.compile(r"(results|run)(\.shard-\d+-of-\d+)?\.json")  # register's own files


def expand_inputs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """X-ray files and folders (their X-ray files, is_xray_file, sorted by name) -> (files, each
    given once, and the folders given) (recon.pipelines.common.inputs.gather_inputs)."""
    from recon.pipelines.common.inputs import gather_inputs

    files, folders = gather_inputs(paths, is_xray_file, XRAY_KINDS)
    return files, folders


def output_names(files: list[Path]) -> list[str]:
    """One output folder name per X-ray: xray_name, made unique by the shared rule
    (recon.pipelines.common.inputs.output_names: FOLDER_NAME, then FOLDER_NAME_SUFFIX, then
    NNN_NAME); BadInput for a name `register` keeps for its own files."""
    from recon.pipelines.common.inputs import output_names as unique_names

    return unique_names(files, xray_name, RESERVED.fullmatch)


def dicom_pose(xray: Xray, orientation: str) -> torch.Tensor:
    """xvr's pose from the positioner angles: rot (primary, secondary, 0) deg, xyz (0, SDP, 0).
    Without them the line says why, as the reader found it (Xray.positioner_problem: the tags
    missing, or a source-to-patient distance that puts the start behind the detector)."""
    if xray.positioner is None:
        problem = xray.positioner_problem or (
            "no PositionerPrimaryAngle/PositionerSecondaryAngle/DistanceSourceToPatient tags "
            "for --init dicom"
        )
        raise BadInput(f"{xray.path}: {problem}; use --init fixed")
    primary, secondary, sdp = xray.positioner
    angles_ok = all(math.isfinite(v) and abs(v) <= 360 for v in (primary, secondary))
    if not angles_ok:
        raise BadInput(
            f"{xray.path}: positioner angles ({primary}, {secondary}) deg must be finite and "
            "within +-360; use --init fixed"
        )
    if not (math.isfinite(sdp) and 0 < sdp <= MAX_DISTANCE_MM):
        raise BadInput(
            f"{xray.path}: source-to-patient distance {sdp} mm is not in (0, {MAX_DISTANCE_MM:g}]"
        )
    sign = -1.0 if orientation == "PA" else 1.0
    return pose_from_degrees([primary, secondary, 0.0], [0.0, sign * sdp, 0.0])


def restart_poses(
    source: Path | None, files: list[Path], names: list[str], todo: list[int]
) -> list[torch.Tensor]:
    """The starting pose (1, 4, 4) for --init restart of each X-ray files[i], i in todo: from
    an output folder, the final_pose of its <name>/parameters.pt (names: output_names); from a
    pose file, its one pose for every X-ray, or one pose per X-ray of files (read_truth_for: a
    synth truth.json by file name, else in order)."""
    if source is None:
        raise BadInput("--init restart needs --from PARAMETERS.pt or a previous output folder")
    source = Path(source)
    if source.is_dir():
        return [load_poses(source / names[i] / "parameters.pt")[:1] for i in todo]
    poses = load_poses(source)
    if len(poses) == 1:
        return [poses] * len(todo)
    every = read_truth_for(files, source, "pose")
    return [every[i] for i in todo]


def read_truth_for(files: list[Path], truth: Path, what: str = "true pose") -> list[torch.Tensor]:
    """True poses for each X-ray: a synth truth.json (by file name) or a pose file (in order);
    what names a pose in the messages."""
    from recon.pipelines.xray.synth_xray import read_truth

    truth = Path(truth)
    if truth.suffix.lower() == ".json" and (
        not truth.exists() or '"xrays"' in truth.read_text()[:100000]
    ):  # a synth truth.json, or one an unfinished sharded set has not written yet
        table = read_truth(truth)
        missing = [f.name for f in files if f.name not in table]
        if missing:
            raise BadInput(f"{truth}: no {what} for {', '.join(missing[:3])}")
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
    predictor=None,
) -> torch.Tensor:
    """The starting pose (1, 4, 4) for one X-ray under --init dicom, fixed or model (restart
    reads every X-ray's start from --from at once: restart_poses)."""
    if init == "dicom":
        return dicom_pose(xray, orientation)
    if init == "fixed":
        if not all(math.isfinite(v) for v in (*rot_deg, *xyz_mm)):
            raise BadInput("--rot and --xyz must be finite numbers")
        return pose_from_degrees(rot_deg, xyz_mm)
    if init == "model":
        if predictor is None:
            raise BadInput("--init model needs --checkpoint CKPT from `recon train pose`")
        return predictor(xray)
    raise BadInput(f"--init must be one of {', '.join(INITS)}, not {init}")


# a stage's rows hold at least one window of the gradient NCC (similarity.GNCC_PATCH, 11 px)
STAGE_RANGES = {"heights": (11, 4096), "iterations": (1, 100000), "patience": (1, 10000)}
STAGE_DEFAULTS = {"heights": "64,128", "iterations": "200,100", "patience": "10,10"}
MAX_STAGES = 8


def stage_plan(texts: dict[str, str]) -> dict[str, list[int]]:
    """The per-stage values of --heights, --iterations and --patience (texts by name). The
    stages are as many as the longest list among the flags given and the defaults left whose
    values differ (--heights 64,128 and --iterations 200,100: two); one value, or a default whose
    values are all the same (--patience 10,10), serves every stage; any other count is
    BadInput, naming each flag's values."""
    values = {name: parse_stages(text, name) for name, text in texts.items()}
    given = [name for name, text in texts.items() if text.replace(" ", "") != STAGE_DEFAULTS[name]]
    count = max(
        len(stages)
        for name, stages in values.items()
        if name in given or len(set(stages)) > 1 or len(given) == 0
    )
    plan = {}
    for name, stages in values.items():
        spreads = len(stages) == 1 or (name not in given and len(set(stages)) == 1)
        if len(stages) != count and spreads:
            stages = stages[:1] * count
        plan[name] = stages
    if any(len(stages) != count for stages in plan.values()):
        shown = ", ".join(
            f"--{name} {','.join(map(str, v))} ({len(v)}{'' if name in given else ', default'})"
            for name, v in values.items()
        )
        raise BadInput(
            f"--heights, --iterations and --patience need one value per stage ({count} here), "
            f"or one for all; got {shown}"
        )
    return plan


def parse_stages(text: str, name: str) -> list[int]:
    """'64,128' -> [64, 128]: 1 to MAX_STAGES integers, each within STAGE_RANGES[name]."""
    low, high = STAGE_RANGES[name]
    stated = f"--{name} must be 1 to {MAX_STAGES} comma-separated integers in [{low}, {high}]"
    try:
        values = [int(v) for v in str(text).split(",")]  # "64,,128" is no list of stages
    except ValueError as error:
        raise BadInput(f"{stated}, not {text!r}") from error
    if not 1 <= len(values) <= MAX_STAGES or not all(low <= v <= high for v in values):
        raise BadInput(f"{stated}, not {text!r}")
    return values
