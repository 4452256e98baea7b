"""Analytic solids for the synthetic data sets: unions of boxes and cylinders minus holes.

A Solid is evaluated at points (P, 3) and answers inside/outside exactly, so the synthetic
voxel grids are ground truth, not a voxelisation of a mesh. Coordinates are arbitrary units;
`occupancy` samples the solid at voxel centres of a cube given by its centre and side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Box:
    centre: tuple[float, float, float]
    half: tuple[float, float, float]  # half side lengths along x, y, z

    def contains(self, points: np.ndarray) -> np.ndarray:
        return np.all(np.abs(points - np.asarray(self.centre)) <= np.asarray(self.half), axis=-1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c, h = np.asarray(self.centre), np.asarray(self.half)
        return c - h, c + h


@dataclass(frozen=True)
class Cylinder:
    centre: tuple[float, float, float]
    axis: int  # 0, 1 or 2: the cylinder's axis is x, y or z
    radius: float
    half_length: float

    def contains(self, points: np.ndarray) -> np.ndarray:
        rel = points - np.asarray(self.centre)
        others = [i for i in range(3) if i != self.axis]
        radial = rel[..., others[0]] ** 2 + rel[..., others[1]] ** 2
        return (radial <= self.radius**2) & (np.abs(rel[..., self.axis]) <= self.half_length)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.full(3, self.radius)
        half[self.axis] = self.half_length
        c = np.asarray(self.centre)
        return c - half, c + half


@dataclass
class Solid:
    """Union of `parts` minus the union of `holes`."""

    parts: list = field(default_factory=list)
    holes: list = field(default_factory=list)

    def contains(self, points: np.ndarray) -> np.ndarray:
        inside = np.zeros(points.shape[:-1], dtype=bool)
        for part in self.parts:
            inside |= part.contains(points)
        for hole in self.holes:
            inside &= ~hole.contains(points)
        return inside

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lows, highs = zip(*(p.bounds() for p in self.parts), strict=True)
        return np.min(lows, axis=0), np.max(highs, axis=0)


def occupancy(solid: Solid, resolution: int, centre=(0.0, 0.0, 0.0), side: float = 1.0):
    """Solid sampled at the voxel centres of a cube (side, centred at centre): (N, N, N) bool."""
    axis = (np.arange(resolution) + 0.5) / resolution * side - side / 2
    out = np.empty((resolution,) * 3, dtype=bool)
    grid_y, grid_z = np.meshgrid(axis + centre[1], axis + centre[2], indexing="ij")
    for i, x in enumerate(axis + centre[0]):
        points = np.stack([np.full_like(grid_y, x), grid_y, grid_z], axis=-1)
        out[i] = solid.contains(points)
    return out


def fitted_occupancy(solid: Solid, resolution: int) -> np.ndarray:
    """Solid sampled on the grid of `recon.pipelines.shapes.voxelize` (bounding box centred, longest
    side spanning the grid), so it compares directly with voxelize_mesh of its mesh."""
    low, high = solid.bounds()
    return occupancy(solid, resolution, tuple((low + high) / 2), float((high - low).max()))


def solid_mesh(solid: Solid, resolution: int = 96):
    """Watertight trimesh of the solid in its own units (marching cubes at `resolution`)."""
    from recon.pipelines.shapes.voxelize import grid_to_mesh

    low, high = solid.bounds()
    side = float((high - low).max()) * (1 + 4 / resolution)
    centre = (low + high) / 2
    grid = occupancy(solid, resolution, tuple(centre), side)
    mesh = grid_to_mesh(grid, smooth=0.6)
    mesh.apply_scale(side / resolution)
    mesh.apply_translation(centre - side / 2)
    return mesh
