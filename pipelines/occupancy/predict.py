"""Trained occupancy networks (tasks `voxel` and `parts`) applied to image files -> meshes.

Each image gives a probability grid (R, R, R); the surface is marching cubes at 0.5 on the grid
padded by one empty voxel (so the mesh is closed), in the unit cube [-0.5, 0.5]^3, z up,
written as STL/PLY/OBJ/GLB; the grid itself is kept as float16 .npy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from recon.pipelines.common.devices import choose_device
from recon.pipelines.common.errors import BadInput

FORMATS = ("stl", "ply", "obj", "glb")


def task_functions(task: str):
    """(build_net, input_fn, config class, the settings prediction reads) of a task:
    input_fn(path, config, box or None) -> ((3, S, S) tensor, the object box cropped to, where
    it came from: "given", "border colour", "whole picture")."""
    if task == "voxel":
        from recon.pipelines.occupancy.voxel_task import (
            PREDICTION_SETTINGS,
            VoxelConfig,
            build_net,
            voxel_input,
        )

        return build_net, voxel_input, VoxelConfig, PREDICTION_SETTINGS
    if task == "parts":
        from recon.pipelines.occupancy.parts_task import (
            PREDICTION_SETTINGS,
            PartsConfig,
            build_net,
            parts_input,
        )

        return build_net, parts_input, PartsConfig, PREDICTION_SETTINGS
    raise BadInput(f"unknown occupancy task {task!r}")


def grid_mesh(probability: np.ndarray, level: float = 0.5):
    """The closed surface of a probability grid in the unit cube; None when it has none."""
    from recon.pipelines.shapes import grid_to_mesh

    try:
        mesh = grid_to_mesh(probability, level)
    except ValueError:
        return None
    mesh.apply_scale(1.0 / probability.shape[0])
    mesh.apply_translation([-0.5, -0.5, -0.5])
    return mesh


def render_png(mesh, path: Path, size: int = 512) -> None:
    """A shaded headless render of a unit-cube mesh from the front right and above, z up."""
    from recon.pipelines.common.io import write_png
    from recon.pipelines.shapes import render_mesh

    write_png(path, render_mesh(mesh, size, azimuth_deg=-54.0, elevation_deg=25.0))


def predict_images(
    task: str,
    checkpoint: Path,
    images: list[Path],
    names: list[str],
    out: Path,
    fmt: str = "stl",
    render: bool = False,
    device: str = "auto",
    track: Callable = lambda items, _d: items,
    boxes: list | None = None,
) -> list[dict]:
    """Predict a mesh for every image into the folder out; one result dict per image. boxes:
    per image an object box [x0, y0, x1, y1] to crop to, or None (found from the border)."""
    import torch

    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.common.outputs import atomic_file
    from recon.pipelines.occupancy.images import rgb_image, whole_picture_warning
    from recon.pipelines.occupancy.voxel_task import load_net

    build_net, input_fn, schema, settings = task_functions(task)
    net, config = load_net(checkpoint, task, build_net, schema, settings)
    target = torch.device(choose_device(device))
    net = net.to(target)
    boxes = boxes or [None] * len(images)
    for path, box in zip(images, boxes, strict=True):  # every image checked before any output,
        input_fn(path, config, box)  # but none kept: memory does not grow with the image count
    results = []
    jobs = list(zip(images, names, boxes, strict=True))
    for path, stem, given in track(jobs, f"predict {task}"):
        tensor, box, box_from = input_fn(path, config, given)
        with torch.no_grad():
            probability = torch.sigmoid(net(tensor[None].to(target)))[0].float().cpu().numpy()
        # the grid as the file keeps it: the count, the mesh and --skip-done all read it so
        stored = probability.astype(np.float16)
        probability = stored.astype(np.float32)
        grid_path = out / f"{stem}.npy"
        with atomic_file(grid_path) as tmp, tmp.open("wb") as handle:
            np.save(handle, stored)
        mesh = grid_mesh(probability)
        record = {
            "image": str(path),
            "grid": str(grid_path),
            "occupied": int((probability >= 0.5).sum()),
            "mesh": None,
            "render": None,
            "box": box,  # the crop around the object, [x0, y0, x1, y1] pixels
            "box_from": box_from,  # "given" (--boxes), "border colour", or "whole picture"
            "warning": None,  # with "whole picture": why, and what to do
        }
        if box_from == "whole picture":
            record["warning"] = whole_picture_warning(str(path), rgb_image(path))
        if mesh is not None:
            record["mesh"] = str(save_mesh(mesh, out / f"{stem}.{fmt}"))
            record["watertight"] = bool(mesh.is_watertight)
            if render:
                render_png(mesh, out / f"{stem}.png")
                record["render"] = str(out / f"{stem}.png")
        results.append(record)
    return results


def listed_prediction(out: Path, stem: str, fmt: str) -> dict:
    """A finished image's result as its files in out show it (a --skip-done run's record of an
    input it skipped, when no earlier record names it): grid, occupied count, mesh, render."""
    from recon.pipelines.common.batch import existing_files

    grid = out / f"{stem}.npy"
    files = existing_files({"mesh": out / f"{stem}.{fmt}", "render": out / f"{stem}.png"})
    return {"grid": str(grid), "occupied": int((np.load(grid) >= 0.5).sum()), **files}
