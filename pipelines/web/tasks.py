"""The tasks `recon serve` runs: one entry each, their predict function named lazily.

A task's predict function follows `recon.pipelines.occupancy.predict.predict_images`:
fn(task, checkpoint, images, names, out, fmt, render, device, track) -> one record per image,
whose path values ("mesh", "grid", "render", ...) are files in out. A task whose function differs
names its own runner (see runners.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from recon.pipelines.common.errors import BadInput

DEFAULT_RUNNER = "recon.pipelines.web.runners:run_mesh_task"


@dataclass(frozen=True)
class ServeTask:
    name: str  # the training task whose checkpoints it takes
    title: str  # one line for the page's task menu
    hint: str  # what to upload
    predict: str  # "module:function" of the task's predict function
    runner: str = DEFAULT_RUNNER  # "module:function" that calls it in a worker process


SERVE_TASKS: dict[str, ServeTask] = {
    task.name: task
    for task in (
        ServeTask(
            "voxel",
            "Object photo -> 3D shape (voxel)",
            "A photo of one piece of furniture on a plain background.",
            "recon.pipelines.occupancy.predict:predict_images",
        ),
        ServeTask(
            "parts",
            "Machine part image -> 3D shape (parts)",
            "A shaded image of one machine part on a plain background.",
            "recon.pipelines.occupancy.predict:predict_images",
        ),
        ServeTask(
            "skull",
            "Skull radiograph -> skull and face (skull)",
            "A lateral skull radiograph or a face photo, as `recon synth skull` makes them.",
            "recon.pipelines.skull.predict:predict_skull",
            "recon.pipelines.web.runners:run_skull_task",
        ),
    )
}


def resolve(target: str):
    """The object named by "module:attribute"."""
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def parse_checkpoint_specs(specs: list[str]) -> dict[str, Path]:
    """["TASK=CKPT", ...] -> {task: checkpoint}; BadInput for an unknown task, a missing file,
    a task given twice or a spec without '='."""
    from recon.pipelines.common.checkpoints import require_checkpoint_file

    if not specs:
        raise BadInput("give at least one -c TASK=CHECKPOINT")
    checkpoints: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise BadInput(f"-c {spec!r}: expected TASK=CHECKPOINT, e.g. voxel=run/best.ckpt")
        if name not in SERVE_TASKS:
            known = ", ".join(sorted(SERVE_TASKS))
            raise BadInput(f"-c {spec!r}: unknown task {name!r} (served tasks: {known})")
        if name in checkpoints:
            raise BadInput(f"-c {spec!r}: task {name!r} given twice")
        checkpoints[name] = require_checkpoint_file(Path(path).expanduser()).absolute()
    return checkpoints


def check_checkpoints(checkpoints: dict[str, Path]) -> None:
    """Open every checkpoint as its task's (weights only); BadInput names the first bad one."""
    from recon.pipelines.common.engine import load_checkpoint

    for name, path in checkpoints.items():
        load_checkpoint(path, name)
