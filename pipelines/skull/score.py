"""Scoring skull and face grids against the truth, in millimetres where the voxel size is known.

Per subject: IoU@0.5 and Dice@0.5 per head; for the face, the symmetric surface distance (mean,
95th percentile) and the share of the true face surface within +-2.5 mm of the prediction
(1 voxel when the voxel size is unknown); a predicted face without a surface has no distance
(NaN, left out of the means) and counts in `face_missing` (1, so its mean is the share of
such subjects): the mean distances never hide it. With landmarks (truth.json), the
soft-tissue depth error at every landmark: the depth measured on the predicted grids against
the depth measured the same way on the true grids (definitions in
recon.pipelines.common.metrics), and, for reference, how far the depth measured on the true
grids lies from the depth the head was built with (`true_depth_vs_table`: voxelisation, and
bone that lies inside the skull's envelope).
Surfaces are marching cubes at 0.5 of each grid; mm coordinates put the grid's centre at the
origin.

Baselines: the training set's mean shape per head (mean occupancy >= 0.5), and `mean_depth_face`:
the TRUE skull covered with the table-mean tissue depths (body mass 1, no per-subject deviation,
the nose by the aperture rule alone) -- what one builds from the real skull and a depth table.
"""

from __future__ import annotations

import numpy as np

from recon.pipelines.skull.data import HEADS

TOLERANCE_MM = 2.5


def grid_mesh(probability: np.ndarray, voxel_mm: float | None):
    """Closed surface (marching cubes at 0.5) of a grid, in mm (grid centre at the origin) when
    voxel_mm is known, else in voxels (corner at the origin); None when the grid has none."""
    from recon.pipelines.shapes import grid_to_mesh

    try:
        mesh = grid_to_mesh(np.asarray(probability, np.float32), 0.5)
    except ValueError:
        return None
    if voxel_mm:
        mesh.apply_scale(voxel_mm)
        mesh.apply_translation([-probability.shape[0] * voxel_mm / 2] * 3)
    return mesh


def score_subject(
    predicted: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    voxel_mm: float | None,
    landmarks: dict | None = None,
    samples: int = 20_000,
) -> dict[str, float]:
    """Scores of one subject (see module doc); predicted: probabilities, truth: bool grids."""
    from recon.pipelines.common.metrics import (
        landmark_tissue_depths,
        symmetric_surface_distance,
        tissue_depth_error,
        voxel_dice,
        voxel_iou,
    )

    scores: dict[str, float] = {}
    for head in HEADS:
        p, t = predicted[head][None], truth[head][None]
        scores[f"{head}_iou"] = float(voxel_iou(p, t, 0.5)[0])
        scores[f"{head}_dice"] = float(voxel_dice(p, t, 0.5)[0])
    tolerance = TOLERANCE_MM if voxel_mm else 1.0
    pred_mesh = grid_mesh(predicted["face"], voxel_mm)
    true_mesh = grid_mesh(truth["face"], voxel_mm)
    if pred_mesh is None or true_mesh is None:
        scores.update(face_mean=float("nan"), face_p95=float("nan"), face_within=0.0)
    else:
        distance = symmetric_surface_distance(pred_mesh, true_mesh, tolerance, samples)
        scores.update(face_mean=distance.mean, face_p95=distance.p95, face_within=distance.within)
    scores["face_missing"] = float(pred_mesh is None)
    if landmarks and voxel_mm:
        names = sorted(landmarks)
        points = np.array([landmarks[n]["point_mm"] for n in names])
        normals = np.array([landmarks[n]["normal"] for n in names])
        origin = np.full(3, -predicted["face"].shape[0] * voxel_mm / 2)
        depths = {
            source: landmark_tissue_depths(
                grids["skull"], grids["face"], points, normals, 0.25, voxel_mm, origin
            )
            for source, grids in (("predicted", predicted), ("true", truth))
        }
        error = tissue_depth_error(depths["predicted"], depths["true"])
        scores["depth_error"] = float(np.nanmean(error))
        designed = np.array([landmarks[n]["depth_mm"] for n in names])
        scores["true_depth_vs_table"] = float(np.nanmean(np.abs(depths["true"] - designed)))
    return scores


def mean_depth_face(params: dict, resolution: int) -> np.ndarray:
    """The mean-depth baseline's face grid (R, R, R) bool for a subject's head parameters."""
    from recon.pipelines.skull.anatomy import HeadParams
    from recon.pipelines.skull.head import mean_depth_head
    from recon.pipelines.skull.synth import head_fields

    head = mean_depth_head(HeadParams(**params))
    return head_fields(head, resolution)[1] < 0


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every score over subjects (NaN entries skipped)."""
    keys = sorted({k for row in rows for k in row})
    return {k: float(np.nanmean([row.get(k, np.nan) for row in rows])) for k in keys}


def score_folder(
    checkpoint, test_root, mean_shape: dict[str, np.ndarray] | None = None, device: str = "cpu"
) -> dict:
    """Predict every pair of test_root with a checkpoint and score it; with truth.json also
    the mean-depth baseline; with mean_shape also the mean-shape baseline. Returns
    {"model", "mean_shape", "mean_depth": summaries, "subjects": n, "voxel_mm"}."""
    import json
    from pathlib import Path

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.skull.data import list_pairs, load_grids, read_voxel_mm
    from recon.pipelines.skull.predict import probability_stream
    from recon.pipelines.skull.task import load_net

    root = Path(test_root)
    voxel_mm = read_voxel_mm(root)
    truth_path = root / "truth.json"
    subjects = (
        json.loads(truth_path.read_text(encoding="utf-8-sig"))["subjects"]
        if truth_path.is_file()
        else {}
    )
    pairs = list_pairs(root)
    net, config = load_net(Path(checkpoint))
    predicted = probability_stream(net, config, [p.image for p in pairs], device)
    rows: dict[str, list] = {"model": [], "mean_shape": [], "mean_depth": []}
    for pair, probability in zip(pairs, predicted, strict=True):
        truth = load_grids(pair.voxels)
        if truth["face"].shape != probability["face"].shape:
            raise BadInput(
                f"{pair.voxels}: grids {truth['face'].shape}, the checkpoint predicts "
                f"{probability['face'].shape} (score it on a set of its resolution)"
            )
        landmarks = subjects.get(pair.name, {}).get("landmarks")
        rows["model"].append(score_subject(probability, truth, voxel_mm, landmarks))
        if mean_shape is not None:
            baseline = {h: (mean_shape[h] >= 0.5).astype(np.float32) for h in HEADS}
            rows["mean_shape"].append(score_subject(baseline, truth, voxel_mm, landmarks))
        if pair.name in subjects:
            face = mean_depth_face(subjects[pair.name]["params"], truth["face"].shape[0])
            baseline = {"skull": truth["skull"].astype(np.float32), "face": face}
            rows["mean_depth"].append(score_subject(baseline, truth, voxel_mm, landmarks))
    result = {k: summarise(v) for k, v in rows.items() if v}
    result.update(subjects=len(pairs), voxel_mm=voxel_mm)
    return result
