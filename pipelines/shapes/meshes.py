"""Procedural test shapes in millimetres, z up: sphere, capsule, box, torus, scoliotic torso."""

from __future__ import annotations

import math

import numpy as np

SHAPES = ("sphere", "capsule", "box", "torus", "torso")


def make_shape(name: str):
    """One named shape as a watertight trimesh mesh."""
    import trimesh

    if name == "sphere":
        return trimesh.creation.icosphere(subdivisions=4, radius=100.0)
    if name == "capsule":
        return trimesh.creation.capsule(height=200.0, radius=60.0, count=[48, 48])
    if name == "box":
        box = trimesh.creation.box(extents=[200.0, 120.0, 80.0])
        box.apply_transform(trimesh.transformations.rotation_matrix(math.radians(30), [0, 0, 1]))
        return box
    if name == "torus":
        return trimesh.creation.torus(
            major_radius=100.0, minor_radius=35.0, major_sections=96, minor_sections=48
        )
    if name == "torso":
        return torso_tube(cobb_deg=25.0)
    raise ValueError(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")


def spine_curve(z: np.ndarray, height: float, cobb_deg: float) -> np.ndarray:
    """Lateral offset (mm) of a single-curve scoliotic spine at heights z in [0, height].

    x(z) = A sin(pi z / height); the tangent angle at the ends is atan(A pi / height), so the
    angle between the two end tangents (the Cobb angle) is 2 atan(A pi / height).
    """
    amplitude = height / math.pi * math.tan(math.radians(cobb_deg) / 2)
    return amplitude * np.sin(math.pi * z / height)


def torso_tube(
    height: float = 500.0,
    cobb_deg: float = 25.0,
    width: float = 320.0,
    depth: float = 210.0,
    rings: int = 80,
    around: int = 96,
):
    """A closed torso-like tube whose cross-sections follow a scoliotic spine curve."""
    import trimesh

    z = np.linspace(0.0, height, rings)
    t = z / height
    waist = 1 - 0.18 * np.exp(-(((t - 0.45) / 0.18) ** 2))  # narrower waist, wider chest/hips
    half_w = 0.5 * width * waist * (1 + 0.05 * t)
    half_d = 0.5 * depth * (0.95 + 0.1 * np.sin(math.pi * t))
    cx = spine_curve(z, height, cobb_deg)
    twist = np.radians(0.4 * cobb_deg) * np.sin(math.pi * t)  # rotation follows the curve
    angle = np.linspace(0, 2 * math.pi, around, endpoint=False)
    ex = half_w[:, None] * np.cos(angle)[None]
    ey = half_d[:, None] * np.sin(angle)[None]
    x = cx[:, None] + ex * np.cos(twist)[:, None] - ey * np.sin(twist)[:, None]
    y = ex * np.sin(twist)[:, None] + ey * np.cos(twist)[:, None]
    ring_vertices = np.stack([x, y, np.broadcast_to(z[:, None], x.shape)], axis=-1).reshape(-1, 3)
    bottom = np.array([[cx[0], 0.0, 0.0]])
    top = np.array([[cx[-1], 0.0, height]])
    vertices = np.concatenate([ring_vertices, bottom, top])
    faces = _tube_faces(rings, around)
    return trimesh.Trimesh(vertices, faces, process=True)


def _tube_faces(rings: int, around: int) -> np.ndarray:
    """Triangles of a closed tube: quads between rings plus a fan at each end."""
    ring = np.arange(around)
    nxt = (ring + 1) % around
    side = []
    for k in range(rings - 1):
        a, b = k * around + ring, k * around + nxt
        c, d = (k + 1) * around + nxt, (k + 1) * around + ring
        side.append(np.stack([a, b, c], axis=1))
        side.append(np.stack([a, c, d], axis=1))
    bottom_centre, top_centre = rings * around, rings * around + 1
    top_ring = (rings - 1) * around
    bottom_fan = np.stack([np.full(around, bottom_centre), nxt, ring], axis=1)
    top_fan = np.stack([np.full(around, top_centre), top_ring + ring, top_ring + nxt], axis=1)
    return np.concatenate(side + [bottom_fan, top_fan])
