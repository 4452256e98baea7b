"""Geometry benchmark: project + backproject of a 100k-face mesh.

Run: uv run python benchmarks/geometry.py   (prints figures; no assertions)
Target: project + backproject at 8 x 256 px under 10 s on 2 cores.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def round_trip() -> None:
    import open3d as o3d

    from recon.pipelines.common.metrics import surface_score
    from recon.pipelines.shapes.backprojection import reconstruct
    from recon.pipelines.shapes.meshes import torso_tube
    from recon.pipelines.shapes.projection import project_mesh, write_projection

    mesh = torso_tube(rings=250, around=200)
    project_mesh(mesh, size=32)  # warm up open3d
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        clock = time.perf_counter()
        projection = project_mesh(mesh, views=8, caps=True, size=256)
        cast = time.perf_counter() - clock
        clock = time.perf_counter()
        write_projection(projection, folder, projection.views_json("bench", len(mesh.faces), 0))
        write = time.perf_counter() - clock
        result = reconstruct(folder)
    stages = {"project: ray cast": cast, "project: write PNGs": write}
    stages.update({f"backproject: {k}": v for k, v in result.timings.items()})
    total = sum(stages.values())
    score = surface_score(result.mesh, mesh)
    print(
        f"\nproject + backproject, {len(mesh.faces):,} faces, 8 + 2 views x 256 px "
        f"({o3d.utility.get_num_threads() if hasattr(o3d.utility, 'get_num_threads') else '?'}"
        " open3d threads)"
    )
    for name, seconds in stages.items():
        print(f"  {name:28s} {seconds:6.2f} s  {100 * seconds / total:5.1f}%")
    print(f"  {'total':28s} {total:6.2f} s  (target < 10 s)")
    print(f"  F-score@1% {score.fscore:.3f}, Chamfer-L1 {score.chamfer_l1_pct:.3f}% of diagonal")
    print(
        f"  surface step / open3d Poisson share: {result.timings['surface'] / total:.2f} of total"
    )


if __name__ == "__main__":
    round_trip()
