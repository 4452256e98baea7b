"""Meshes <-> occupancy grids: filled voxelisation (cached per file), max-pooling, meshing.

Grid convention: a grid of shape (N, N, N) indexes (x, y, z); `voxelize_mesh` centres the mesh's
bounding box in the grid and scales it so that its longest side spans all N voxels. Voxel
(i, j, k) holds the point (i + 0.5, j + 0.5, k + 0.5) in voxel units. A voxel is occupied when
its centre lies inside the surface (a filled grid, not a shell); with `shell=True` the voxels
the surface passes through are added too (nothing thinner than a voxel disappears, but solids
grow by about half a voxel).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput

METHODS = ("auto", "raycast", "winding")
WINDING_FACES = 3000  # meshes are decimated to this many faces before the winding number


def normalise_to_grid(vertices: np.ndarray, resolution: int) -> np.ndarray:
    """Vertices (V, 3) moved into voxel units: bounding box centred, longest side = resolution."""
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    extent = float((high - low).max())
    if extent <= 0:
        raise BadInput("mesh is degenerate (zero extent)")
    return (vertices - (low + high) / 2) * (resolution / extent) + resolution / 2


def voxel_centres(resolution: int) -> np.ndarray:
    """Centres of every voxel in voxel units, (N, N, N, 3) float32, indexed (x, y, z)."""
    axis = np.arange(resolution, dtype=np.float32) + 0.5
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def voxelize_mesh(
    mesh, resolution: int = 32, method: str = "auto", shell: bool = False
) -> np.ndarray:
    """Filled occupancy grid (N, N, N) bool of a trimesh mesh (see module doc for the frame).

    method: "raycast" counts ray crossings with open3d (exact for watertight meshes, majority of
    5 rays), "winding" uses the generalised winding number (robust to holes and flipped or
    duplicated faces), "auto" picks raycast for watertight meshes and winding otherwise.
    """
    if method not in METHODS:
        raise BadInput(f"voxelisation method must be one of {', '.join(METHODS)}, not {method!r}")
    vertices = normalise_to_grid(np.asarray(mesh.vertices, dtype=np.float64), resolution)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if method == "auto":
        method = "raycast" if mesh.is_watertight else "winding"
    centres = voxel_centres(resolution)
    if method == "raycast":
        inside = raycast_inside(vertices, faces, centres)
    else:
        inside = robust_inside(vertices, faces, centres)
    return inside | surface_voxels(vertices, faces, resolution) if shell else inside


def robust_inside(vertices: np.ndarray, faces: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Inside test for meshes with small holes: voxels the surface crosses are decided by the
    generalised winding number, all others by flooding the outside from the grid border."""
    from scipy.ndimage import binary_fill_holes

    shell = surface_voxels(vertices, faces, centres.shape[0])
    inside = binary_fill_holes(shell) & ~shell
    small_v, small_f = decimated(vertices, faces, WINDING_FACES)
    inside[shell] = winding_number(small_v, small_f, centres[shell]) > 0.5
    return inside


def decimated(vertices: np.ndarray, faces: np.ndarray, target: int):
    """(vertices, faces) simplified to at most target faces (open3d quadric decimation)."""
    if len(faces) <= target:
        return vertices, faces
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(faces.astype(np.int32))
    )
    small = mesh.simplify_quadric_decimation(target)
    return np.asarray(small.vertices), np.asarray(small.triangles, dtype=np.int64)


def raycast_inside(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Inside test by ray-crossing parity (open3d, majority of 5 rays); shape points[..., 0]."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32))
    )
    query = o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))
    return scene.compute_occupancy(query, nsamples=5).numpy().astype(bool)


def winding_number(
    vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, chunk: int = 4096
) -> np.ndarray:
    """Generalised winding number of a triangle soup at points (P, 3) -> (P,), ~1 inside, ~0 out.

    Sum over triangles of the signed solid angle (Van Oosterom-Strackee) divided by 4 pi.
    """
    import torch

    tri = torch.as_tensor(vertices[faces], dtype=torch.float32)  # (F, 3, 3)
    result = np.empty(len(points), dtype=np.float64)
    budget = max(1, 2_000_000 // max(1, len(faces)))
    step = max(1, min(chunk, budget))
    for start in range(0, len(points), step):
        query = torch.as_tensor(points[start : start + step], dtype=torch.float32)
        rel = tri[None] - query[:, None, None, :]  # (P, F, 3, 3)
        a, b, c = rel[..., 0, :], rel[..., 1, :], rel[..., 2, :]
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.cross(b, c, dim=-1)).sum(-1)
        denom = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        angle = 2 * torch.atan2(det, denom)
        result[start : start + step] = (angle.sum(-1) / (4 * np.pi)).numpy()
    return result


def surface_voxels(vertices: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    """Voxels (N, N, N) bool that the surface passes through, from dense area-uniform samples."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    per_face = np.ceil(area * 8).astype(np.int64) + 3  # >= ~8 samples per voxel face of area
    per_face = np.minimum(per_face, 4096)
    rng = np.random.default_rng(0)
    index = np.repeat(np.arange(len(faces)), per_face)
    u, v = rng.random(len(index)), rng.random(len(index))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[index]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    points = np.concatenate([points, vertices])
    cells = np.clip(np.floor(points).astype(np.int64), 0, resolution - 1)
    grid = np.zeros((resolution,) * 3, dtype=bool)
    grid[cells[:, 0], cells[:, 1], cells[:, 2]] = True
    return grid


def voxelize_file(
    path: Path, resolution: int = 32, method: str = "auto", cache_dir: Path | None = None
) -> np.ndarray:
    """voxelize_mesh for a mesh file; with cache_dir the grid is stored once per file content."""
    from recon.pipelines.common.io import load_mesh, require_file

    path = require_file(Path(path), "mesh")
    cached = None
    if cache_dir is not None:
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:20]
        cached = Path(cache_dir) / f"{digest}_{resolution}_{method}.npy"
        if cached.exists():
            try:
                return np.load(cached).astype(bool)
            except (OSError, ValueError):
                cached.unlink(missing_ok=True)
    grid = voxelize_mesh(load_mesh(path), resolution, method)
    if cached is not None:
        from recon.pipelines.common.outputs import atomic_file

        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cached) as tmp, tmp.open("wb") as handle:
            np.save(handle, grid)
    return grid


def max_pool(grid: np.ndarray, resolution: int) -> np.ndarray:
    """Downsample a cubic grid (N, N, N) to (r, r, r) by max over blocks; N must divide by r."""
    size = grid.shape[0]
    if grid.ndim != 3 or len(set(grid.shape)) != 1:
        raise BadInput(f"expected a cubic 3D grid, got shape {grid.shape}")
    if resolution <= 0 or size % resolution:
        raise BadInput(f"grid size {size} is not a multiple of resolution {resolution}")
    f = size // resolution
    return grid.reshape(resolution, f, resolution, f, resolution, f).max(axis=(1, 3, 5))


LEVEL_LIFT = 1e-3  # see grid_to_mesh


def grid_to_mesh(grid: np.ndarray, level: float = 0.5, smooth: float = 0.0):
    """Watertight trimesh of an occupancy/probability grid (N, N, N): marching cubes on a grid
    padded by one empty voxel, inside where the value is >= level; vertices in voxel units
    (voxel centres at i + 0.5)."""
    import trimesh
    from skimage.measure import marching_cubes

    values = np.asarray(grid, dtype=np.float32)
    if smooth > 0:
        from scipy.ndimage import gaussian_filter

        values = gaussian_filter(values, smooth)
    padded = np.pad(values, 1)
    if padded.max() < level or padded.min() >= level:
        raise ValueError("grid has no surface at this level (empty or full)")
    # a value at the level (a float16 grid holds many 0.5s) is inside, as >= level counts it.
    # Values within LEVEL_LIFT of the level are moved that far from it, inside up and outside
    # down: marching cubes leaves holes where values equal the level, and puts the vertices of
    # all edges of a voxel that nearly equals it at one position, which a mesh file keeps as
    # one (an STL read back was then not watertight); this keeps them about a thousandth of a
    # voxel apart, far above float32 resolution.
    near = np.abs(padded - np.float32(level)) < LEVEL_LIFT
    lifted = np.where(padded >= np.float32(level), level + LEVEL_LIFT, level - LEVEL_LIFT)
    padded[near] = lifted[near].astype(np.float32)
    vertices, faces, _, _ = marching_cubes(padded, level=level)
    vertices = vertices - 1 + 0.5
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    if mesh.volume < 0:
        mesh.invert()
    return mesh
