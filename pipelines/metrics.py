"""Every metric the project reports, with its definition. All pipelines score through here.

Surface metrics sample points uniformly by area on both surfaces (seeded) and use nearest
neighbours between the two samples:
- Chamfer-L1 = (mean_p min_q |p - q| + mean_q min_p |q - p|) / 2, in the meshes' units
  (Occupancy Networks' definition); `chamfer_l1_pct` divides by the reference's bounding-box
  diagonal and multiplies by 100.
- F-score@tau = 2 P R / (P + R), precision P = share of predicted points within tau of the
  reference, recall R = share of reference points within tau of the prediction; tau is a stated
  fraction of the reference's bounding-box diagonal (1% unless said otherwise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SurfaceScore:
    chamfer_l1: float  # mesh units
    chamfer_l1_pct: float  # percent of the reference bounding-box diagonal
    fscore: float  # at tau
    precision: float
    recall: float
    tau: float  # mesh units
    tau_fraction: float  # tau / reference bounding-box diagonal
    diagonal: float  # reference bounding-box diagonal, mesh units

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def sample_surface(mesh, count: int, seed: int = 0) -> np.ndarray:
    """Points uniformly distributed by area on a trimesh surface, (count, 3), seeded."""
    import trimesh

    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float64)


def nearest_distances(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each point of source (N, 3), the distance to its nearest point of target (M, 3)."""
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(target).query(source, k=1, workers=-1)
    return distances


def surface_score(
    predicted, reference, tau_fraction: float = 0.01, samples: int = 100_000, seed: int = 0
) -> SurfaceScore:
    """Chamfer-L1 and F-score of a predicted mesh against a reference mesh (see module doc)."""
    diagonal = float(np.linalg.norm(np.ptp(reference.vertices, axis=0)))
    pred_points = sample_surface(predicted, samples, seed)
    ref_points = sample_surface(reference, samples, seed + 1)
    to_ref = nearest_distances(pred_points, ref_points)
    to_pred = nearest_distances(ref_points, pred_points)
    chamfer = 0.5 * (to_ref.mean() + to_pred.mean())
    tau = tau_fraction * diagonal
    precision = float((to_ref <= tau).mean())
    recall = float((to_pred <= tau).mean())
    fscore = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return SurfaceScore(
        chamfer_l1=float(chamfer),
        chamfer_l1_pct=float(100 * chamfer / diagonal),
        fscore=float(fscore),
        precision=precision,
        recall=recall,
        tau=float(tau),
        tau_fraction=tau_fraction,
        diagonal=diagonal,
    )
