"""One subject's head: the skull (anatomy.py) and the face over it, with landmarks.

The face is the skull's filled envelope offset outward by a soft-tissue depth field
(`depth_field`): Gaussian-weighted interpolation between craniometric landmarks whose depths
come from TISSUE_DEPTH_MM, scaled per subject by a body-mass factor, plus a nose whose
projection follows the nasal aperture, cut by a horizontal plane below the chin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.pipelines.skull.anatomy import (
    HeadParams,
    Warp,
    bone_sdf,
    capsule_sdf,
    ellipsoid_sdf,
    envelope_sdf,
    smooth_union,
    tube_sdf,
)

# Adult soft-tissue depths (mm) at craniometric landmarks: rounded pooled adult means of the kind
# tabulated by Stephan & Simpson 2008 ("Facial soft tissue depths in craniofacial identification
# (part I): an analytical review of the published adult data", J Forensic Sci 53(6):1257-72;
# the T-table) and De Greef et al. 2006 (Belgian adults by ultrasound, Forensic Sci Int
# 157S:S12-S23), within the ranges they report: glabella 5-6, nasion 6-7, mid-philtrum 11-12,
# pogonion 11-12, gonion 13-18, mid-masseter 18-20. The scalp values (vertex, euryon,
# opisthocranion) are not in those facial tables and are set to typical scalp thickness.
# Second number: sensitivity to body mass (0 = none, 1 = depth scales with the factor), larger
# on the cheeks and jaw than on the forehead, as De Greef et al. 2006 report.
TISSUE_DEPTH_MM: dict[str, tuple[float, float]] = {
    "vertex": (5.5, 0.2),
    "opisthocranion": (6.0, 0.2),
    "euryon": (6.0, 0.3),
    "frontal_eminence": (4.5, 0.3),
    "glabella": (5.5, 0.3),
    "nasion": (6.5, 0.3),
    "rhinion": (3.0, 0.2),
    "supraorbital": (6.0, 0.4),
    "infraorbital": (7.0, 0.7),
    "zygion": (6.5, 0.7),
    "mid_philtrum": (11.5, 0.5),
    "labrale_inferius": (13.0, 0.5),
    "mentolabial_sulcus": (10.5, 0.6),
    "pogonion": (11.5, 0.7),
    "menton": (7.5, 0.8),
    "gonion": (15.0, 1.0),
    "mid_masseter": (19.0, 1.0),
    "mastoid": (7.0, 0.4),
}
BILATERAL = {"euryon", "frontal_eminence", "supraorbital", "infraorbital", "zygion", "gonion"}
BILATERAL |= {"mid_masseter", "mastoid"}
DEPTH_SIGMA_MM = 28.0  # width of each landmark's Gaussian weight in the depth field
BACKGROUND_DEPTH_MM = 6.0  # depth far from every landmark (weight BACKGROUND_WEIGHT)
BACKGROUND_WEIGHT = 1e-3


# Canonical anchor points, mm, placed near the envelope and snapped onto it (`landmarks`).
# Right-side versions of the bilateral landmarks have +x; left ones are mirrored.
_ANCHORS: dict[str, tuple[float, float, float]] = {
    "vertex": (0.0, -9.0, 95.0),
    "opisthocranion": (0.0, -99.0, 27.0),
    "euryon": (70.0, -9.0, 30.0),
    "frontal_eminence": (28.0, 70.0, 55.0),
    "glabella": (0.0, 80.0, 30.0),
    "nasion": (0.0, 82.0, 14.0),
    "rhinion": (0.0, 88.0, -4.0),
    "supraorbital": (34.0, 78.0, 28.0),
    "infraorbital": (34.0, 78.0, -10.0),
    "zygion": (64.0, 30.0, -10.0),
    "mid_philtrum": (0.0, 80.0, -40.0),
    "labrale_inferius": (0.0, 80.0, -60.0),
    "mentolabial_sulcus": (0.0, 78.0, -74.0),
    "pogonion": (0.0, 82.0, -86.0),
    "menton": (0.0, 70.0, -100.0),
    "gonion": (52.0, 8.0, -86.0),
    "mid_masseter": (56.0, 18.0, -50.0),
    "mastoid": (62.0, -22.0, -20.0),
}


@dataclass(frozen=True)
class Landmark:
    name: str  # e.g. "gonion_r"
    point: np.ndarray  # on the skull's envelope, subject frame, mm
    normal: np.ndarray  # outward unit normal of the envelope there
    depth_mm: float  # soft-tissue depth along the normal

    def as_dict(self) -> dict:
        return {
            "point_mm": [round(float(v), 3) for v in self.point],
            "normal": [round(float(v), 5) for v in self.normal],
            "depth_mm": round(float(self.depth_mm), 3),
        }


class Head:
    """One subject: its skull and face fields in the subject frame (mm)."""

    def __init__(self, params: HeadParams, depth_noise: np.ndarray | None = None) -> None:
        self.params = params
        self.warp = Warp(params)
        self._scale = self.warp.distance_scale()
        names = landmark_names()
        noise = np.ones(len(names)) if depth_noise is None else np.asarray(depth_noise)
        self.landmarks = self._place_landmarks(names, noise)
        self._points = np.stack([lm.point for lm in self.landmarks])
        self._depths = np.array([lm.depth_mm for lm in self.landmarks])

    def bone(self, points: np.ndarray) -> np.ndarray:
        """Signed distance to bone (approximate, mm) at subject points (N, 3)."""
        return bone_sdf(self.warp.inverse(points), self.params) * self._scale

    def envelope(self, points: np.ndarray) -> np.ndarray:
        """Signed distance to the skull's filled envelope (approximate, mm)."""
        return envelope_sdf(self.warp.inverse(points), self.params) * self._scale

    def depth(self, points: np.ndarray) -> np.ndarray:
        """Soft-tissue depth field (mm) at points (N, 3) (see module doc)."""
        return depth_field(points, self._points, self._depths)

    def face(self, points: np.ndarray) -> np.ndarray:
        """Signed field of the face (skin surface at 0, negative inside), mm."""
        envelope = self.envelope(points)
        band = (envelope > -1.0) & (envelope < 40.0)  # depths stay below 40 mm
        skin = envelope.copy()
        skin[band] -= self.depth(points[band])
        skin = np.minimum(skin, self._nose(points))
        return np.maximum(skin, self.neck_cut_mm() - points[:, 2])

    def neck_cut_mm(self) -> float:
        """Height (z, mm) of the horizontal plane that ends the head below: 12 mm under menton."""
        menton = next(lm for lm in self.landmarks if lm.name == "menton")
        return float(menton.point[2]) - 12.0

    def nose_projection_mm(self) -> float:
        """Pronasale's distance in front of the aperture rim: 0.95 x the aperture height (a
        simple proportional rule) plus the subject's own deviation."""
        return 0.95 * 34.0 * self.params.aperture * self.params.size + self.params.nose_mm

    def _nose(self, points: np.ndarray) -> np.ndarray:
        p = self.params
        root = self.warp.forward(np.array([[0.0, 86.0, 8.0]]))[0]
        rim = self.warp.forward(np.array([[0.0, 80.0, -22.0]]))[0]
        tip = rim + np.array([0.0, self.nose_projection_mm() - 9.0 * p.size, -4.0 * p.size])
        base = rim + np.array([0.0, 6.0, -12.0 * p.size])
        bridge = tube_sdf(points, np.stack([root, tip]), np.array([5.0, 9.0]) * p.size)
        columella = capsule_sdf(points, tip, base, 7.0 * p.size)
        alae = np.minimum(
            ellipsoid_sdf(points, rim + np.array([-14.0, 10.0, -9.0]) * p.size, (8.0, 9.0, 8.0)),
            ellipsoid_sdf(points, rim + np.array([14.0, 10.0, -9.0]) * p.size, (8.0, 9.0, 8.0)),
        )
        return smooth_union(smooth_union(bridge, columella, 5.0), alae, 6.0)

    def _place_landmarks(self, names: list[str], noise: np.ndarray) -> list[Landmark]:
        anchors = np.array([_anchor(n) for n in names])
        points = self.warp.forward(anchors)
        for _ in range(6):  # Newton steps onto the envelope's zero level
            value, normal = self._envelope_gradient(points)
            points = points - value[:, None] * normal
        _, normals = self._envelope_gradient(points)
        result = []
        for name, point, normal, factor in zip(names, points, normals, noise, strict=True):
            mean, sensitivity = TISSUE_DEPTH_MM[_base_name(name)]
            depth = mean * (1.0 + sensitivity * (self.params.body_mass - 1.0)) * factor
            result.append(Landmark(name, point, normal, float(depth)))
        return result

    def _envelope_gradient(self, points: np.ndarray, step: float = 0.25):
        value = self.envelope(points)
        grad = np.stack(
            [
                (self.envelope(points + step * e) - self.envelope(points - step * e)) / (2 * step)
                for e in np.eye(3)
            ],
            axis=1,
        )
        grad /= np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-9)
        return value, grad


def landmark_names() -> list[str]:
    """Landmark names in a fixed order; bilateral ones as NAME_r and NAME_l."""
    names = []
    for name in TISSUE_DEPTH_MM:
        names += [f"{name}_r", f"{name}_l"] if name in BILATERAL else [name]
    return names


def _base_name(name: str) -> str:
    return name[:-2] if name.endswith(("_r", "_l")) else name


def _anchor(name: str) -> tuple[float, float, float]:
    x, y, z = _ANCHORS[_base_name(name)]
    return (-x, y, z) if name.endswith("_l") else (x, y, z)


def depth_field(points: np.ndarray, landmarks: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """Depth (mm) at points (N, 3): sum_i w_i d_i / sum_i w_i with w_i = exp(-r_i^2 / 2 s^2),
    s = DEPTH_SIGMA_MM, plus a weak background term (BACKGROUND_DEPTH_MM)."""
    r2 = sum((points[:, k, None] - landmarks[None, :, k]) ** 2 for k in range(3))
    weights = np.exp(-r2 / (2 * DEPTH_SIGMA_MM**2))
    weighted = (weights * depths[None, :]).sum(1)
    total = weights.sum(1) + BACKGROUND_WEIGHT
    return (weighted + BACKGROUND_WEIGHT * BACKGROUND_DEPTH_MM) / total


def mean_depth_head(params: HeadParams) -> Head:
    """The same skull with table-mean tissue: body mass 1, no per-landmark deviation, the nose
    by the aperture rule alone (what one builds from the true skull and the depth table)."""
    from dataclasses import replace

    return Head(replace(params, body_mass=1.0, nose_mm=0.0))
