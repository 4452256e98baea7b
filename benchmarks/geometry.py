"""Geometry benchmark: project + backproject of a 100k-face mesh, against open3d used directly.

Run: uv run python benchmarks/geometry.py   (prints figures; no assertions)
Target: project + backproject at 8 x 256 px under 10 s on 2 cores.

Both sides are measured in the same run on the same mesh:
- project: recon's `project_mesh` (normalise, ray-cast every view in one call, encode depths)
  against open3d's RaycastingScene casting the same rays alone;
- backproject: recon's `reconstruct` (voxel merge, outlier removal, normals turned toward the
  camera that saw each point, screened Poisson, clean-up) against the textbook open3d route on
  the same lifted points (the same voxel merge, normals from neighbours oriented by
  `orient_normals_consistent_tangent_plane`, since a bare cloud knows no cameras, Poisson at the
  same depth), each scored against the source mesh.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def round_trip() -> None:
    from recon.pipelines.common.metrics import surface_score
    from recon.pipelines.shapes.meshes import make_shape, torso_tube
    from recon.pipelines.shapes.projection import project_mesh

    mesh = torso_tube(rings=250, around=200)
    project_mesh(mesh, size=32)  # warm up open3d
    run = _both_ways(mesh)
    stages = {"project: ray cast": run["cast"], "project: write PNGs": run["write"]}
    stages.update({f"backproject: {k}": v for k, v in run["timings"].items()})
    total = sum(stages.values())
    score = surface_score(run["mesh"], mesh)
    print(f"\nproject + backproject, {len(mesh.faces):,} faces, 8 + 2 views x 256 px")
    for name, seconds in stages.items():
        print(f"  {name:28s} {seconds:6.2f} s  {100 * seconds / total:5.1f}%")
    print(f"  {'total':28s} {total:6.2f} s  (target < 10 s)")
    print(f"  F-score@1% {score.fscore:.3f}, Chamfer-L1 {score.chamfer_l1_pct:.3f}% of diagonal")
    print(
        f"  surface step / open3d Poisson share: {run['timings']['surface'] / total:.2f} of total"
    )
    print(
        f"\nproject: recon {run['cast']:.2f} s, open3d ray cast alone {run['bare_cast']:.2f} s "
        f"(recon / open3d = {run['cast'] / run['bare_cast']:.2f}; same run, same rays)"
    )
    print("\nbackproject against open3d's textbook route, same run, same points (8 + 2 views):")
    print(f"  {'shape':10s} {'recon s':>8s} {'F@1%':>6s} {'CD-L1%':>7s}   "
          f"{'open3d s':>8s} {'F@1%':>6s} {'CD-L1%':>7s}   time ratio")  # fmt: skip
    shapes = {"torso 100k": (mesh, run)}
    shapes.update({name: (make_shape(name), None) for name in ("torus", "box", "capsule")})
    for name, (shape, done) in shapes.items():
        done = done or _both_ways(shape)
        ours, bare = surface_score(done["mesh"], shape), surface_score(done["bare_mesh"], shape)
        seconds = sum(done["timings"].values())
        print(
            f"  {name:10s} {seconds:8.2f} {ours.fscore:6.3f} {ours.chamfer_l1_pct:7.3f}   "
            f"{done['bare_seconds']:8.2f} {bare.fscore:6.3f} {bare.chamfer_l1_pct:7.3f}   "
            f"{seconds / done['bare_seconds']:.2f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


def _both_ways(mesh) -> dict:
    """Project and back-project `mesh` with recon, and the same by open3d alone: timings and
    the meshes (source frame)."""
    import numpy as np

    from recon.pipelines.shapes.backprojection import (
        SurfaceOptions,
        lift_views,
        load_depth_views,
        reconstruct,
    )
    from recon.pipelines.shapes.projection import project_mesh, read_views, write_projection

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        clock = time.perf_counter()
        projection = project_mesh(mesh, views=8, caps=True, size=256)
        cast = time.perf_counter() - clock
        clock = time.perf_counter()
        write_projection(projection, folder, projection.views_json("bench", len(mesh.faces), 0))
        write = time.perf_counter() - clock
        result = reconstruct(folder)
        doc = read_views(folder)
        points, _ = lift_views(doc, load_depth_views(folder, doc))
    to_normalised = np.asarray(doc["frame"]["to_normalised"])
    pixel = 2 * float(doc["camera"]["extent"]) / int(doc["camera"]["size"])
    bare_seconds, bare_mesh = _bare_poisson(points, to_normalised, pixel, SurfaceOptions())
    return {
        "cast": cast,
        "write": write,
        "timings": result.timings,
        "mesh": result.mesh,
        "bare_cast": _bare_cast(mesh, to_normalised),
        "bare_seconds": bare_seconds,
        "bare_mesh": bare_mesh,
    }


def _bare_cast(mesh, transform) -> float:
    """Seconds for open3d alone to ray-cast the views project_mesh casts (scene + rays)."""
    import numpy as np
    import open3d as o3d

    from recon.pipelines.shapes.projection import camera_rays, ring_cameras

    vertices = np.asarray(mesh.vertices) @ transform[:3, :3].T + transform[:3, 3]
    rays = np.stack([camera_rays(c, 256) for c in ring_cameras(8, caps=True)])
    clock = time.perf_counter()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(vertices.astype(np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    return time.perf_counter() - clock


def _bare_poisson(points, to_normalised, pixel: float, options):
    """(seconds, trimesh in the source frame) of open3d's own route from a bare point cloud."""
    import numpy as np
    import open3d as o3d
    import trimesh

    from recon.pipelines.shapes.backprojection import POISSON_THREADS

    clock = time.perf_counter()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud = cloud.voxel_down_sample(options.voxel * pixel)
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=24))
    cloud.orient_normals_consistent_tangent_plane(24)
    surface, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        cloud, depth=options.depth, scale=1.1, linear_fit=False, n_threads=POISSON_THREADS
    )
    seconds = time.perf_counter() - clock
    vertices = np.asarray(surface.vertices)
    from_normalised = np.linalg.inv(to_normalised)
    vertices = vertices @ from_normalised[:3, :3].T + from_normalised[:3, 3]
    return seconds, trimesh.Trimesh(vertices, np.asarray(surface.triangles), process=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args()
    round_trip()


if __name__ == "__main__":
    main()
