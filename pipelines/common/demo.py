"""`recon demo`: every pipeline end to end on built-in data, each step scored against truth.

A step is a function (workdir, seed, track) -> list[DemoRow]; `track(iterable, description)`
is the caller's progress wrapper. Steps are listed in STEPS in the order they run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recon.pipelines.corset.predict import demo_step as corset_demo
from recon.pipelines.occupancy.pix3d import demo_voxel
from recon.pipelines.skull.demo import demo_step as skull_demo
from recon.pipelines.xray.register_demo import demo_step as registration_demo
from recon.pipelines.xray.synth_pairs import demo_translation


@dataclass
class DemoRow:
    step: str
    metric: str
    value: float
    target: str  # human-readable, e.g. ">= 0.95"
    ok: bool | None  # None: a reference row (baseline, start value, time), no verdict
    seconds: float = 0.0


def geometry_round_trip(workdir: Path, seed: int, track: Callable) -> list[DemoRow]:
    """Synthesise shapes, project them to 8 + 2 views at 256 px, back-project, score."""
    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.common.metrics import surface_score
    from recon.pipelines.shapes.backprojection import reconstruct
    from recon.pipelines.shapes.meshes import make_shape
    from recon.pipelines.shapes.projection import project_mesh, write_projection

    rows = []
    for name in track(["sphere", "capsule", "torso", "torus"], "project + backproject"):
        clock = time.perf_counter()
        mesh = make_shape(name)
        views = workdir / f"{name}_views"
        views.mkdir(parents=True, exist_ok=True)
        projection = project_mesh(mesh)
        write_projection(projection, views, projection.views_json(name, len(mesh.faces), 0))
        result = reconstruct(views)
        save_mesh(result.mesh, workdir / f"{name}_reconstructed.stl")
        score = surface_score(result.mesh, mesh)
        seconds = time.perf_counter() - clock
        rows.append(
            DemoRow(
                f"shape {name}",
                "F-score@1%",
                score.fscore,
                ">= 0.95",
                score.fscore >= 0.95,
                seconds,
            )
        )
        rows.append(
            DemoRow(
                f"shape {name}",
                "Chamfer-L1 % diag",
                score.chamfer_l1_pct,
                "<= 0.5",
                score.chamfer_l1_pct <= 0.5,
            )
        )
    return rows


STEPS: list[tuple[str, Callable[[Path, int, Callable], list[DemoRow]]]] = [
    ("geometry", geometry_round_trip),
    ("drr", demo_translation),
    ("corset", corset_demo),
    ("voxel", demo_voxel),
    ("register", registration_demo),
    ("skull", skull_demo),
]
