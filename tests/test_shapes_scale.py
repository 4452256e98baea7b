"""Projection and back-projection at scale: rays cast in chunks, views judged on a sample."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from recon.pipelines.shapes import (
    backprojection,
    load_depth_views,
    project_mesh,
    projection,
    read_views,
    write_projection,
)
from recon.pipelines.shapes.backprojection import MAX_DISAGREEING, view_disagreement


def _rays_at_once(camera: projection.Camera, size: int) -> np.ndarray:
    """A camera's rays as one float64 (size, size, 6) array rounded to float32 at the end."""
    u, v = projection.pixel_grid(size)
    d, r, w = (np.asarray(x) for x in (camera.direction, camera.right, camera.up))
    origins = projection.DISTANCE * d + u[..., None] * r + v[..., None] * w
    directions = np.broadcast_to(-d, origins.shape)
    return np.concatenate([origins, directions], axis=-1).astype(np.float32)


def _bumpy_mesh() -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    v = sphere.vertices
    bump = 1 + 0.2 * np.sin(5 * v[:, 0]) * np.cos(3 * v[:, 1])
    return trimesh.Trimesh(v * bump[:, None] * [1.0, 0.6, 1.5], sphere.faces)


def _views(mesh, folder, size: int, views: int = 8):
    folder.mkdir()
    projected = project_mesh(mesh, views=views, size=size)
    write_projection(projected, folder, projected.views_json("scale", 0, 0))
    doc = read_views(folder)
    return doc, load_depth_views(folder, doc)


@pytest.mark.parametrize("size", [37, 64])
def test_rays_by_rows_are_those_of_the_whole_image(size):
    for camera in projection.ring_cameras(5, caps=True):
        whole = _rays_at_once(camera, size)
        assert np.array_equal(projection.camera_rays(camera, size), whole)
        rows = slice(7, 20)
        assert np.array_equal(projection.camera_rays(camera, size, rows), whole[rows])


def test_casting_in_chunks_gives_the_depths_of_one_cast(monkeypatch):
    """Rays cast a few rows at a time hit where all views' rays cast together did."""
    import open3d as o3d

    mesh = _bumpy_mesh()
    size = 48
    cameras = projection.ring_cameras(6, caps=True)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    rays = np.stack([_rays_at_once(c, size) for c in cameras])
    expected = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    for chunk in (100, size * size, 1 << 20):  # 2 rows, one view, the default
        monkeypatch.setattr(projection, "RAY_CHUNK", chunk)
        found = projection.cast_depths(mesh.vertices, mesh.faces, cameras, size)
        assert found.dtype == np.float32 and found.shape == expected.shape
        assert np.array_equal(found, expected), chunk
    assert np.isfinite(expected).any() and np.isinf(expected).any()


def test_project_mesh_depths_are_those_of_one_cast():
    mesh = _bumpy_mesh()
    projected = project_mesh(mesh, views=4, caps=True, size=40)
    vertices = mesh.vertices @ projected.to_normalised[:3, :3].T + projected.to_normalised[:3, 3]
    distances = projection.cast_depths(vertices, mesh.faces, projected.cameras, 40)
    assert np.array_equal(projected.depths, projection.encode_depth(distances))


def test_views_are_judged_as_on_points_lifted_again(tmp_path):
    """The points reconstruct lifted, passed in, judge the views as the points lifted anew."""
    doc, depths = _views(_bumpy_mesh(), tmp_path / "v", 32)
    points, _ = backprojection.lift_views(doc, depths)
    swapped = depths.copy()
    swapped[[1, 3]] = swapped[[3, 1]]
    assert view_disagreement(doc, depths, points) == view_disagreement(doc, depths)
    torn = view_disagreement(doc, swapped)
    assert torn == view_disagreement(doc, swapped, backprojection.lift_views(doc, swapped)[0])
    assert max(torn.values()) > 2 * MAX_DISAGREEING


def test_backprojection_lifts_the_views_once(tmp_path, monkeypatch):
    """The views' agreement is judged on the points reconstruct lifted, not lifted again."""
    mesh = _bumpy_mesh()
    _views(mesh, tmp_path / "v", 32)
    lifted = []
    lift = backprojection.lift_views

    def counted(doc, depths):
        lifted.append(len(depths))
        return lift(doc, depths)

    monkeypatch.setattr(backprojection, "lift_views", counted)
    result = backprojection.reconstruct(tmp_path / "v")
    assert lifted == [10]
    assert result.points > 0
