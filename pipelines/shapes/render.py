"""One headless mesh renderer for previews: ray-cast depth from an oblique orthographic camera,
shaded by the depth gradient. No window system and no VTK, so it runs on any server."""

from __future__ import annotations

import math

import numpy as np

from recon.pipelines.shapes.projection import Camera, cast_depths, normalising_transform


def render_mesh(mesh, size: int = 512, azimuth_deg: float = -60.0, elevation_deg: float = 15.0):
    """A shaded grey picture of a mesh from an oblique orthographic camera, (size, size) uint8."""
    to_normalised = normalising_transform(np.asarray(mesh.vertices))
    vertices = mesh.vertices @ to_normalised[:3, :3].T + to_normalised[:3, 3]
    a, b = math.radians(azimuth_deg), math.radians(elevation_deg)
    direction = np.array([math.cos(a) * math.cos(b), math.sin(a) * math.cos(b), math.sin(b)])
    right = np.cross([0.0, 0.0, 1.0], direction)
    right /= np.linalg.norm(right)
    up = np.cross(direction, right)
    camera = Camera("render", tuple(direction), tuple(right), tuple(up), azimuth_deg, elevation_deg)
    t = cast_depths(vertices, np.asarray(mesh.faces), [camera], size)[0]
    hit = np.isfinite(t)
    shade = np.zeros((size, size))
    if hit.any():
        # surface normal in the camera frame (right, up, toward the camera) from the depth
        # gradient; rows run downward, depth away from the camera
        gy, gx = np.gradient(np.where(hit, t, np.nanmax(np.where(hit, t, np.nan))))
        normal = np.stack([gx, -gy, np.full_like(gx, 2 * 1.05 / size)], -1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        light = np.array([-0.35, 0.45, 0.82])  # from the upper left, behind the viewer
        shade = np.clip(normal @ light, 0, 1)
    return np.where(hit, 40 + 200 * shade, 255).astype(np.uint8)
