"""A parametric adult skull as signed distance fields in millimetres, varied per subject.

Frame: the head's RAS+ frame in mm (+x the subject's right, +y anterior, +z superior), the
origin at the centre of the voxel grid. Fields are negative inside. One canonical skull
(cranial vault, orbits, nasal aperture, zygomatic bodies and arches, maxilla, teeth, mastoids,
mandible) and its filled outer envelope are deformed per subject by a smooth, invertible warp
(size, length, breadth, height, face height, jaw width, prognathism, left-right asymmetry) and a
few shape settings (brow ridge, orbit and aperture size, mandibular angle). The soft tissue over
it is in head.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FIELD_MM = 240.0  # side of the cubic field of view over the head, mm


@dataclass(frozen=True)
class HeadParams:
    """One subject. Factors are relative to the canonical skull (1 = average)."""

    size: float = 1.0  # overall scale
    length: float = 1.0  # antero-posterior
    breadth: float = 1.0  # left-right
    height: float = 1.0  # vertical
    face_height: float = 1.0  # extra vertical scale below the orbits
    jaw_width: float = 1.0  # left-right scale of the lower face
    prognathism_mm: float = 0.0  # forward shift of the jaw
    asymmetry: float = 0.0  # relative breadth difference, right side larger when > 0
    brow_mm: float = 3.0  # brow-ridge prominence
    orbit: float = 1.0  # orbit size
    aperture: float = 1.0  # nasal aperture size
    gonial_flare_mm: float = 0.0  # outward flare of the mandibular angles
    body_mass: float = 1.0  # soft-tissue factor (1 = table means)
    nose_mm: float = 0.0  # nose projection beyond the aperture rule

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def random_params(rng: np.random.Generator) -> HeadParams:
    """A subject drawn around the canonical adult (overall size 0.90-0.99, the other factors
    within +-6%, body mass 0.7-1.45) so that every head fits the field of view."""
    return HeadParams(
        size=float(rng.uniform(0.90, 0.99)),
        length=float(rng.uniform(0.96, 1.04)),
        breadth=float(rng.uniform(0.95, 1.05)),
        height=float(rng.uniform(0.96, 1.04)),
        face_height=float(rng.uniform(0.95, 1.05)),
        jaw_width=float(rng.uniform(0.94, 1.06)),
        prognathism_mm=float(rng.uniform(-4, 4)),
        asymmetry=float(rng.uniform(-0.03, 0.03)),
        brow_mm=float(rng.uniform(1.0, 5.0)),
        orbit=float(rng.uniform(0.92, 1.08)),
        aperture=float(rng.uniform(0.88, 1.12)),
        gonial_flare_mm=float(rng.uniform(-3, 3)),
        body_mass=float(np.clip(np.exp(rng.normal(0, 0.18)), 0.7, 1.45)),
        nose_mm=float(rng.normal(0, 2.5)),
    )


# ---------------------------------------------------------------- distance primitives


def _dot3(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise dot product of (N, 3) with a 3-vector, without BLAS threads."""
    return v[:, 0] * w[0] + v[:, 1] * w[1] + v[:, 2] * w[2]


def ellipsoid_sdf(p: np.ndarray, centre, radii) -> np.ndarray:
    """Approximate signed distance to an ellipsoid (exact on the surface, good near it)."""
    q = (p - np.asarray(centre)) / np.asarray(radii)
    k0 = np.linalg.norm(q, axis=-1)
    k1 = np.linalg.norm(q / np.asarray(radii), axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def capsule_sdf(p: np.ndarray, a, b, radius) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ab = b - a
    t = np.clip(_dot3(p - a, ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(p - a - t[:, None] * ab, axis=-1) - radius


def tube_sdf(p, points, radii, squash=(1.0, 1.0, 1.0), margin: float = 16.0) -> np.ndarray:
    """Distance to a tube along a polyline with radii per vertex; squash scales the space
    (e.g. z / 2 for a cross-section twice as tall as wide). Exact within `margin` mm of the
    tube's bounding box; farther points get `margin`, a lower bound (enough for unions whose
    surface is all that matters there)."""
    squash = np.asarray(squash, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    reach = float(np.max(radii)) * squash.max() + margin
    near = np.all((p >= points.min(0) - reach) & (p <= points.max(0) + reach), axis=1)
    q, pts = p[near] / squash, points / squash
    best = np.full(len(q), np.inf)
    for i in range(len(pts) - 1):
        a, b = pts[i], pts[i + 1]
        ab = b - a
        t = np.clip(_dot3(q - a, ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
        radius = radii[i] + t * (radii[i + 1] - radii[i])
        d = q - a - t[:, None] * ab
        best = np.minimum(best, np.sqrt(np.einsum("ij,ij->i", d, d)) - radius)
    result = np.full(len(p), margin)
    result[near] = best * squash.min()
    return result


def _box(p: np.ndarray, centre, half, rounding: float) -> np.ndarray:
    q = np.abs(p - np.asarray(centre)) - (np.asarray(half) - rounding)
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    return outside + np.minimum(q.max(axis=-1), 0.0) - rounding


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union (polynomial smooth minimum of width k mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


# ---------------------------------------------------------------- canonical skull

VAULT_CENTRE = (0.0, -9.0, 27.0)
VAULT_RADII = (70.0, 90.0, 68.0)
BONE_MM = 6.0  # vault thickness
OFFSET_MM = np.array([0.0, -4.0, 8.0])  # canonical origin in the subject frame (centres the head)


def _mandible_curve(params: HeadParams) -> tuple[np.ndarray, np.ndarray]:
    """Polyline (right gonion -> chin -> left gonion) of the mandibular body, and its radii."""
    t = np.linspace(-1.0, 1.0, 13)
    x = 47.0 * np.sin(t * np.pi / 2) + np.sign(t) * params.gonial_flare_mm * np.abs(t) ** 4
    y = 72.0 - 62.0 * np.abs(t) ** 1.7
    z = -86.0 + 8.0 * np.abs(t) ** 2
    radii = 7.5 - 1.5 * np.abs(t)
    return np.stack([x, y, z], axis=1), radii


def _dental_arch(z: float, width: float, front: float) -> np.ndarray:
    t = np.linspace(-1.0, 1.0, 9)
    return np.stack(
        [width * np.sin(t * np.pi / 2), front - 42.0 * np.abs(t) ** 1.8, np.full_like(t, z)],
        axis=1,
    )


def bone_sdf(p: np.ndarray, params: HeadParams) -> np.ndarray:
    """Signed distance (mm, canonical frame) to the bone of the skull: points (N, 3) -> (N,)."""
    outer = ellipsoid_sdf(p, VAULT_CENTRE, VAULT_RADII)
    inner = ellipsoid_sdf(p, VAULT_CENTRE, np.asarray(VAULT_RADII) - BONE_MM)
    vault = np.maximum(outer, -inner)
    vault = np.maximum(vault, 6.0 - p[:, 2])  # open below: the base is added as a plate
    base = _box(p, (0.0, -12.0, 6.0), (52.0, 72.0, 3.0), 2.5)
    base = np.maximum(base, outer + 2.0)
    base = np.maximum(base, -capsule_sdf(p, (0, -40, -10), (0, -40, 20), 14.0))  # foramen magnum
    brow = capsule_sdf(p, (-38, 73, 30), (38, 73, 30), 4.0 + params.brow_mm * 0.6)
    face = _box(p, (0.0, 52.0, -18.0), (44.0, 24.0, 30.0), 12.0)
    face = np.maximum(face, -_box(p, (0.0, 48.0, -18.0), (38.0, 20.0, 24.0), 10.0))  # hollow
    face = np.maximum(face, -ellipsoid_sdf(p, (-34, 72, 8), np.array([19, 22, 17]) * params.orbit))
    face = np.maximum(face, -ellipsoid_sdf(p, (34, 72, 8), np.array([19, 22, 17]) * params.orbit))
    aperture = np.array([12.0, 30.0, 17.0]) * params.aperture
    face = np.maximum(face, -ellipsoid_sdf(p, (0, 74, -18), aperture))
    orbit_rims = np.minimum(
        tube_sdf(p, _ring((-34, 76, 8), 19 * params.orbit, 17 * params.orbit), np.full(13, 3.0)),
        tube_sdf(p, _ring((34, 76, 8), 19 * params.orbit, 17 * params.orbit), np.full(13, 3.0)),
    )
    nasal = capsule_sdf(p, (0, 78, 14), (0, 84, -4), 4.0)
    zygoma = np.minimum(
        ellipsoid_sdf(p, (-50, 56, -12), (11, 12, 13)),
        ellipsoid_sdf(p, (50, 56, -12), (11, 12, 13)),
    )
    arches = np.minimum(
        capsule_sdf(p, (-56, 50, -12), (-63, 4, -8), 4.0),
        capsule_sdf(p, (56, 50, -12), (63, 4, -8), 4.0),
    )
    mastoid = np.minimum(
        ellipsoid_sdf(p, (-55, -22, -16), (9, 11, 14)),
        ellipsoid_sdf(p, (55, -22, -16), (9, 11, 14)),
    )
    curve, radii = _mandible_curve(params)
    body = tube_sdf(p, curve, radii, squash=(1.0, 1.0, 1.9))
    ramus = np.minimum(
        tube_sdf(p, np.array([curve[0], (-52, 0, -22)]), np.array([6.0, 5.0]), (1.0, 2.0, 1.0)),
        tube_sdf(p, np.array([curve[-1], (52, 0, -22)]), np.array([6.0, 5.0]), (1.0, 2.0, 1.0)),
    )
    teeth = np.minimum(
        tube_sdf(p, _dental_arch(-50.0, 30.0, 70.0), np.full(9, 5.5), (1.0, 1.0, 1.6)),
        tube_sdf(p, _dental_arch(-60.0, 29.0, 68.0), np.full(9, 5.5), (1.0, 1.0, 1.6)),
    )
    parts = [vault, base, brow, face, orbit_rims, nasal, zygoma, arches, mastoid]
    parts += [body, ramus, teeth]
    return np.minimum.reduce(parts)


def _ring(centre, rx: float, rz: float) -> np.ndarray:
    angle = np.linspace(0, 2 * np.pi, 13)
    cx, cy, cz = centre
    return np.stack(
        [cx + rx * np.cos(angle), np.full_like(angle, cy), cz + rz * np.sin(angle)], axis=1
    )


def envelope_sdf(p: np.ndarray, params: HeadParams) -> np.ndarray:
    """Signed distance (mm, canonical frame) to the skull's filled outer envelope: vault,
    face, cheeks, jaw and the floor of the mouth as one solid (the orbits filled by the eyes)."""
    vault = ellipsoid_sdf(p, VAULT_CENTRE, VAULT_RADII)
    brow = capsule_sdf(p, (-38, 73, 30), (38, 73, 30), 4.0 + params.brow_mm * 0.6)
    face = _box(p, (0.0, 50.0, -18.0), (44.0, 26.0, 30.0), 14.0)
    nasal = capsule_sdf(p, (0, 78, 14), (0, 82, -6), 6.0)
    zygoma = np.minimum(
        ellipsoid_sdf(p, (-50, 56, -12), (11, 12, 13)),
        ellipsoid_sdf(p, (50, 56, -12), (11, 12, 13)),
    )
    arches = np.minimum(
        capsule_sdf(p, (-56, 50, -12), (-63, 4, -8), 5.0),
        capsule_sdf(p, (56, 50, -12), (63, 4, -8), 5.0),
    )
    curve, radii = _mandible_curve(params)
    jaw = tube_sdf(p, curve, radii + 1.0, (1.0, 1.0, 1.9), margin=45.0)
    rami = np.minimum(
        capsule_sdf(p, curve[0], (-52, 0, -22), 8.0), capsule_sdf(p, curve[-1], (52, 0, -22), 8.0)
    )
    mouth = _box(p, (0.0, 34.0, -62.0), (40.0, 34.0, 20.0), 14.0)
    base = _box(p, (0.0, -8.0, -14.0), (50.0, 32.0, 26.0), 18.0)
    mastoid = np.minimum(
        ellipsoid_sdf(p, (-55, -22, -16), (9, 11, 14)),
        ellipsoid_sdf(p, (55, -22, -16), (9, 11, 14)),
    )
    field = smooth_union(vault, brow, 6.0)
    for part, k in (
        (face, 10.0),
        (nasal, 4.0),
        (zygoma, 6.0),
        (arches, 6.0),
        (jaw, 6.0),
        (rami, 8.0),
        (mouth, 10.0),
        (base, 14.0),
        (mastoid, 6.0),
    ):
        field = smooth_union(field, part, k)
    return field


# ---------------------------------------------------------------- subject warp


@dataclass(frozen=True)
class Warp:
    """Canonical -> subject map: per-axis, monotonic, exactly invertible (see module doc)."""

    params: HeadParams

    def _x_scale(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        p = self.params
        side = np.where(x > 0, 1.0 + p.asymmetry / 2, 1.0 - p.asymmetry / 2)
        lower = np.clip(-z / 60.0, 0.0, 1.0)  # blends in the jaw width below the orbits
        return p.size * p.breadth * side * (1.0 + (p.jaw_width - 1.0) * lower)

    def _z_scale(self, z: np.ndarray) -> np.ndarray:
        p = self.params
        return p.size * p.height * np.where(z < 0, p.face_height, 1.0)

    def _shift_y(self, z: np.ndarray) -> np.ndarray:
        return self.params.prognathism_mm * np.clip((-z - 40.0) / 40.0, 0.0, 1.0)

    def forward(self, c: np.ndarray) -> np.ndarray:
        """Canonical points (N, 3) -> subject points (N, 3), mm."""
        p = self.params
        x = c[:, 0] * self._x_scale(c[:, 0], c[:, 2])
        y = p.size * (p.length * c[:, 1] + self._shift_y(c[:, 2]))
        z = c[:, 2] * self._z_scale(c[:, 2])
        return np.stack([x, y, z], axis=1) + OFFSET_MM

    def inverse(self, s: np.ndarray) -> np.ndarray:
        """Subject points (N, 3) -> canonical points (N, 3), mm."""
        p = self.params
        s = s - OFFSET_MM
        cz = s[:, 2] / self._z_scale(s[:, 2])
        cy = (s[:, 1] / p.size - self._shift_y(cz)) / p.length
        cx = s[:, 0] / self._x_scale(s[:, 0], cz)
        return np.stack([cx, cy, cz], axis=1)

    def distance_scale(self) -> float:
        """Factor from canonical to subject distances (the warp's smallest scale)."""
        p = self.params
        side = 1.0 - abs(p.asymmetry) / 2
        return p.size * min(p.breadth * side * min(1.0, p.jaw_width), p.length, p.height)
