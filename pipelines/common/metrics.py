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
    corners = np.asarray(reference.vertices)[np.unique(np.asarray(reference.faces))]
    diagonal = float(np.linalg.norm(np.ptp(corners, axis=0)))  # of the surface: its faces' corners
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


# Image metrics for (prediction, reference) images with values in [0, data_range]:
# - SSIM (Wang et al. 2004): mean over the valid (unpadded) window positions of
#   ((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)), local
#   statistics under an 11 x 11 Gaussian window of sigma 1.5 (population covariance),
#   C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = data_range; equals skimage's structural_similarity with
#   gaussian_weights=True, sigma=1.5, use_sample_covariance=False.
# - PSNR = 10 log10(L^2 / MSE) in dB (capped at 100 dB for identical images).
# - MAE = mean |x - y|, in the images' units.
# Each takes (H, W), (B, H, W) or (B, 1, H, W) arrays or tensors and returns one value per image.


def _image_batch(image):
    import torch

    tensor = torch.as_tensor(image, dtype=torch.float32)
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 3:
        tensor = tensor[:, None]
    if tensor.ndim != 4 or tensor.shape[1] != 1:
        raise ValueError(f"expected (H, W), (B, H, W) or (B, 1, H, W) images, got {tensor.shape}")
    return tensor


def ssim(prediction, reference, data_range: float = 1.0):
    """Per-image SSIM, tensor (B,) (see the image metrics definitions above), in float32 also
    under mixed precision (autocast would run its convolutions in bfloat16 or float16)."""
    import torch
    import torch.nn.functional as F

    x = _image_batch(prediction)
    y = _image_batch(reference).to(x.device)
    with torch.autocast(x.device.type, enabled=False):
        coords = torch.arange(11, dtype=torch.float32, device=x.device) - 5
        gauss = torch.exp(-(coords**2) / (2 * 1.5**2))
        gauss = gauss / gauss.sum()
        window = (gauss[:, None] * gauss[None, :])[None, None]

        def local_mean(image):
            return F.conv2d(image, window)

        mu_x, mu_y = local_mean(x), local_mean(y)
        var_x = local_mean(x * x) - mu_x**2
        var_y = local_mean(y * y) - mu_y**2
        cov = local_mean(x * y) - mu_x * mu_y
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
            (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        )
        return index.mean(dim=(1, 2, 3))


def psnr(prediction, reference, data_range: float = 1.0):
    """Per-image PSNR in dB, tensor (B,), capped at 100 dB."""
    import torch

    x, y = _image_batch(prediction), _image_batch(reference)
    mse = ((x - y.to(x.device)) ** 2).mean(dim=(1, 2, 3))
    return torch.clamp(10 * torch.log10(data_range**2 / mse.clamp_min(1e-10)), max=100.0)


def mae(prediction, reference):
    """Per-image mean absolute error, tensor (B,)."""
    x, y = _image_batch(prediction), _image_batch(reference)
    return (x - y.to(x.device)).abs().mean(dim=(1, 2, 3))


# Pose metrics. Poses are 4x4 camera-to-world rigid transforms (recon.pipelines.xray.pose),
# arrays (4, 4) or (B, 4, 4); fiducials are CT world points in mm, (N, 3).
# - mTRE (mm) = mean_i |T_true^-1 p_i - T_est^-1 p_i|: the 3D target registration error of the
#   fiducials p_i expressed in the C-arm frame.
# - rotation error (deg) = geodesic angle of R_true^T R_est.
# - translation error (mm) = |T_true^-1 o - T_est^-1 o| for the CT centre o (the world origin),
#   i.e. the target error at the volume centre; it does not grow with the source distance.


def _pose_batch(pose) -> np.ndarray:
    pose = np.asarray(pose.detach().cpu() if hasattr(pose, "detach") else pose, np.float64)
    return pose[None] if pose.ndim == 2 else pose


def _camera_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """World points (N, 3) into the camera frame of each pose: (B, N, 3)."""
    rotation, translation = pose[:, :3, :3], pose[:, :3, 3]
    return np.einsum("bji,bnj->bni", rotation, points[None] - translation[:, None])


def mtre(estimated, truth, fiducials) -> np.ndarray:
    """Mean target registration error in mm per pose, (B,) (definition above)."""
    points = np.asarray(fiducials, np.float64).reshape(-1, 3)
    est = _camera_points(_pose_batch(estimated), points)
    ref = _camera_points(_pose_batch(truth), points)
    return np.linalg.norm(est - ref, axis=-1).mean(axis=-1)


def rotation_error_deg(estimated, truth) -> np.ndarray:
    """Geodesic rotation error in degrees per pose, (B,): the angle of R_truth^T R_est, as
    atan2(|axis part|, cosine part), which stays exact near 0 where arccos of the trace loses
    about 0.03 deg to float32 rounding."""
    est, ref = _pose_batch(estimated)[:, :3, :3], _pose_batch(truth)[:, :3, :3]
    relative = np.einsum("bji,bjk->bik", ref, est)
    cosine = (np.trace(relative, axis1=1, axis2=2) - 1) / 2
    skew = relative - np.swapaxes(relative, 1, 2)
    sine = np.linalg.norm(np.stack([skew[:, 2, 1], skew[:, 0, 2], skew[:, 1, 0]], -1), axis=-1) / 2
    return np.degrees(np.arctan2(sine, cosine))


def translation_error_mm(estimated, truth) -> np.ndarray:
    """Target error at the CT centre in mm per pose, (B,) (definition above)."""
    return mtre(estimated, truth, np.zeros((1, 3)))


# Voxel metrics. Inputs are occupancy probabilities and binary targets as arrays or tensors,
# (B, ...) with one sample per leading index; each function returns one value per sample.
# - IoU@t = |P & T| / |P | T| with P = (probability >= t); t is declared by the caller (0.5 for
#   every reported score; a threshold sweep is reported for information, never used to pick one).
#   Two empty grids score 1.
# - Dice@t = 2 |P & T| / (|P| + |T|), same conventions; the soft Dice loss lives with the task.
# - Voxel-wise MAE and MSE of the probability against the 0/1 target; R^2 = 1 - SSE / SST with
#   SST taken about the sample's own mean occupancy (R^2 of a constant prediction <= 0); a target
#   of one value throughout (SST = 0) scores 1 when matched exactly, else 0 (as scikit-learn).


def _voxel_batch(values):
    import torch

    tensor = torch.as_tensor(values).float()
    return tensor.reshape(tensor.shape[0], -1) if tensor.ndim > 1 else tensor[None]


def voxel_iou(probability, target, threshold: float = 0.5):
    """IoU at a declared threshold per sample, tensor (B,) (definition above)."""
    p = _voxel_batch(probability) >= threshold
    t = _voxel_batch(target).to(p.device) >= 0.5
    union = (p | t).sum(1).float()
    inter = (p & t).sum(1).float()
    return _ratio_or_one(inter, union)


def _ratio_or_one(numerator, denominator):
    """numerator / denominator, 1 where the denominator is 0 (both grids empty)."""
    return numerator / denominator.clamp_min(1) + (denominator == 0).float()


def voxel_dice(probability, target, threshold: float = 0.5):
    """Dice at a declared threshold per sample, tensor (B,) (definition above)."""
    p = _voxel_batch(probability) >= threshold
    t = _voxel_batch(target).to(p.device) >= 0.5
    inter = (p & t).sum(1).float()
    return _ratio_or_one(2 * inter, (p.sum(1) + t.sum(1)).float())


def voxel_regression(probability, target) -> dict:
    """Voxel-wise MAE, MSE and R^2 per sample, each a tensor (B,) (definition above)."""
    import torch

    p = _voxel_batch(probability)
    t = _voxel_batch(target).to(p.device).float()
    error = p - t
    sse = (error**2).sum(1)
    sst = ((t - t.mean(1, keepdim=True)) ** 2).sum(1)
    return {
        "mae": error.abs().mean(1),
        "mse": (error**2).mean(1),
        "r2": torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-12), (sse == 0).float()),
    }


# Spine: Cobb-angle error = |measured - true| in degrees, both unsigned Cobb angles (the largest
# difference between two vertebral tilts); the mean over X-rays is the Cobb MAE.


def cobb_error(measured_deg, true_deg):
    """Absolute Cobb-angle error in degrees (definition above); scalars or arrays."""
    return np.abs(
        np.abs(np.asarray(measured_deg, dtype=np.float64))
        - np.abs(np.asarray(true_deg, dtype=np.float64))
    )


# Skull and face (millimetres, or voxels where the voxel size is unknown):
# - Symmetric surface distance: points sampled uniformly by area on both surfaces (seeded); for
#   each point the exact distance to the other surface (point to nearest triangle). The mean and the
#   95th percentile are taken over the pooled distances of both directions (the usual ASSD and
#   HD95); `within` = share of the REFERENCE surface's points whose nearest predicted point lies
#   within the tolerance (2.5 mm unless said otherwise: the share of the true face within
#   +-2.5 mm of the prediction, as craniofacial reconstruction studies report it).
# - Soft-tissue depth at a landmark: along the landmark's outward unit normal n, sampled every
#   `step` from p - 12 mm * n to p + 45 mm * n (trilinear on the probability grids), the depth
#   is the distance from where the skull probability last drops below 0.5 before the face
#   surface (the landmark itself when the ray meets no skull) to where the face probability
#   first drops below 0.5 beyond the landmark; the error is |predicted depth - true depth| per
#   landmark.


@dataclass(frozen=True)
class SurfaceDistance:
    mean: float  # symmetric mean surface distance, units of the meshes
    p95: float  # 95th percentile of the pooled distances
    within: float  # share of the reference surface within tolerance of the prediction
    tolerance: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def symmetric_surface_distance(
    predicted, reference, tolerance: float = 2.5, samples: int = 20_000, seed: int = 0
) -> SurfaceDistance:
    """Mean and 95th-percentile symmetric surface distance and the share of the reference
    within tolerance, for two trimesh meshes in the same units (definition above)."""
    to_ref = distance_to_surface(sample_surface(predicted, samples, seed), reference)
    to_pred = distance_to_surface(sample_surface(reference, samples, seed + 1), predicted)
    pooled = np.concatenate([to_ref, to_pred])
    return SurfaceDistance(
        mean=float(pooled.mean()),
        p95=float(np.percentile(pooled, 95)),
        within=float((to_pred <= tolerance).mean()),
        tolerance=float(tolerance),
    )


def distance_to_surface(points: np.ndarray, mesh) -> np.ndarray:
    """Exact distance from each point (N, 3) to a triangle mesh's surface (open3d), (N,)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    query = o3d.core.Tensor(np.asarray(points, dtype=np.float32))
    return scene.compute_distance(query).numpy().astype(np.float64)


def landmark_tissue_depths(
    skull, face, points, normals, step: float = 0.25, voxel: float = 1.0, origin=None
) -> np.ndarray:
    """Soft-tissue depth at each landmark (definition above), in the units of `points`.

    skull, face: probability grids (R, R, R) indexed (x, y, z); points (L, 3) and unit normals
    (L, 3); a point q lies at index (q - origin) / voxel - 0.5 (origin = the grid's corner).
    NaN where the ray never leaves the face.
    """
    from scipy.ndimage import map_coordinates

    points = np.asarray(points, np.float64).reshape(-1, 3)
    normals = np.asarray(normals, np.float64).reshape(-1, 3)
    origin = np.zeros(3) if origin is None else np.asarray(origin, np.float64)
    offsets = np.arange(-12.0, 45.0 + step / 2, step)
    rays = points[:, None, :] + offsets[None, :, None] * normals[:, None, :]
    index = ((rays - origin) / voxel - 0.5).reshape(-1, 3).T
    shape = (len(points), len(offsets))
    sample = {}
    for name, grid in (("skull", skull), ("face", face)):
        values = map_coordinates(np.asarray(grid, np.float32), index, order=1, cval=0.0)
        sample[name] = values.reshape(shape) >= 0.5
    depths = np.full(len(points), np.nan)
    for i in range(len(points)):
        face_out = np.flatnonzero(~sample["face"][i] & (offsets > -step))
        if len(face_out) == 0:
            continue
        end = face_out[0]
        bone = np.flatnonzero(sample["skull"][i, :end])
        start = bone[-1] + 1 if len(bone) else np.searchsorted(offsets, 0.0)
        depths[i] = offsets[end] - offsets[min(start, end)]
    return depths


def tissue_depth_error(predicted_depths, true_depths) -> np.ndarray:
    """|predicted - true| soft-tissue depth per landmark (NaN where either is unknown)."""
    return np.abs(np.asarray(predicted_depths, np.float64) - np.asarray(true_depths, np.float64))
