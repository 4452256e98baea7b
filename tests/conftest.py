"""Shared fixtures. Each xdist worker gets one compute thread: two workers share two cores."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# The suite may itself run inside a SLURM array job: batch commands would then take their shard
# from it. Tests that shard say so with --shard or set these variables themselves.
for _name in ("ID", "MIN", "MAX", "STEP", "COUNT"):
    os.environ.pop(f"SLURM_ARRAY_TASK_{_name}", None)

import pytest  # noqa: E402


@pytest.fixture
def recon(capsys):
    """Run `recon ARGS...` in-process as a user would; returns (exit code, stdout, stderr)."""
    from recon.cli.app import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def cobb_of(recon):
    """`recon embed-spine FILM --pixel-spacing S S` as a user runs it: the Cobb angle (deg) of
    its JSON, written beside the film."""
    import json

    def measure(film, spacing_mm: float) -> float:
        out = film.with_name(f"{film.name}.json")
        spacing = str(spacing_mm)
        rc, _, err = recon("embed-spine", film, "-o", out, "--pixel-spacing", spacing, spacing)
        assert rc == 0, err
        return json.loads(out.read_text())["cobb_deg"]

    return measure


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """The synthetic test shapes as STL files (session-wide)."""
    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.shapes.meshes import SHAPES, make_shape

    folder = tmp_path_factory.mktemp("shapes")
    for name in SHAPES:
        save_mesh(make_shape(name), folder / f"{name}.stl")
    return folder


def _pix3d_set(tmp_path_factory, models_per_class: int, seed: int):
    from recon.pipelines.occupancy.pix3d import synth_pix3d

    root = tmp_path_factory.mktemp("pix3d")
    synth_pix3d(root, models_per_class=models_per_class, views_per_model=2, seed=seed)
    return root


@pytest.fixture(scope="session")
def pix3d(tmp_path_factory):
    """5 models x 2 views (seed 1): 8 training images and 2 validation images (one model);
    read only."""
    return _pix3d_set(tmp_path_factory, 1, seed=1)


@pytest.fixture(scope="session")
def pix3d_root(tmp_path_factory):
    """10 models x 2 views (seed 3); read only."""
    return _pix3d_set(tmp_path_factory, 2, seed=3)
