"""Shaded renders of a mesh from a pinhole camera (open3d ray casting, Lambertian light).

Camera: looks at `target` from azimuth (around +z, from +x towards +y) and elevation (above the
xy plane) at `distance`, +z up, horizontal field of view `fov_deg`. Images are uint8 RGB with
the object mask; a pixel of the object gets colour * (ambient + diffuse * max(0, n . l)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class View:
    azimuth_deg: float
    elevation_deg: float
    distance: float
    fov_deg: float = 40.0
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def eye(self) -> np.ndarray:
        a, e = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        direction = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
        return np.asarray(self.target) + self.distance * direction


class Renderer:
    """Holds one mesh in an open3d scene; `render` casts one image per call."""

    def __init__(self, mesh) -> None:
        import open3d as o3d

        self._o3d = o3d
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(
            o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
        )

    def render(
        self,
        view: View,
        width: int,
        height: int,
        colour: np.ndarray,
        background: np.ndarray,
        light: np.ndarray | None = None,
        ambient: float = 0.3,
    ) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8 and mask (H, W) bool of the mesh seen from view."""
        o3d = self._o3d
        eye = view.eye()
        rays = self.scene.create_rays_pinhole(
            fov_deg=view.fov_deg,
            center=o3d.core.Tensor(np.asarray(view.target, dtype=np.float32)),
            eye=o3d.core.Tensor(eye.astype(np.float32)),
            up=o3d.core.Tensor(np.array([0, 0, 1], dtype=np.float32)),
            width_px=width,
            height_px=height,
        )
        # open3d's pinhole grid comes out rotated by 180 deg: row 0 at the bottom, column 0 right
        rays = np.ascontiguousarray(rays.numpy()[::-1, ::-1])
        hits = self.scene.cast_rays(o3d.core.Tensor(rays))
        mask = np.isfinite(hits["t_hit"].numpy())
        normals = hits["primitive_normals"].numpy()
        ray_dirs = rays[..., 3:]
        # make normals face the camera (robust to inconsistent winding)
        flip = np.sum(normals * ray_dirs, axis=-1, keepdims=True) > 0
        normals = np.where(flip, -normals, normals)
        if light is None:
            light = eye - np.asarray(view.target) + np.array([0.0, 0.0, view.distance])
        light = np.asarray(light, dtype=np.float64)
        light = light / np.linalg.norm(light)
        diffuse = np.clip(normals @ light, 0, 1)
        shade = ambient + (1 - ambient) * diffuse
        image = np.empty((height, width, 3), dtype=np.float64)
        image[:] = np.asarray(background, dtype=np.float64)
        image[mask] = shade[mask, None] * np.asarray(colour, dtype=np.float64)[None]
        return np.clip(image, 0, 255).astype(np.uint8), mask


def random_view(rng: np.random.Generator, radius: float, jitter: float = 0.15) -> View:
    """A viewpoint all round the object (elevation 5-45 deg) at a distance that fits radius,
    with the look-at point shifted so the object is not always centred in the frame."""
    fov = float(rng.uniform(35, 50))
    fit = radius / math.tan(math.radians(fov / 2))
    target = tuple(float(x) for x in rng.uniform(-jitter, jitter, 3) * radius)
    return View(
        azimuth_deg=float(rng.uniform(0, 360)),
        elevation_deg=float(rng.uniform(5, 45)),
        distance=float(fit * rng.uniform(1.25, 1.8)),
        fov_deg=fov,
        target=target,
    )


def mask_bbox(mask: np.ndarray) -> list[int]:
    """[x_min, y_min, x_max, y_max] in pixels (inclusive) of a non-empty mask."""
    rows, cols = np.nonzero(mask)
    return [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]
