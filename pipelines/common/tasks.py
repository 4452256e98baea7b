"""Training tasks on one Lightning engine. TASKS maps a task name to "module:TASK" (lazy)."""

from __future__ import annotations

import importlib
from typing import Literal

from recon.pipelines.common.errors import BadInput

TaskName = Literal["corset", "voxel", "parts", "drr", "pose", "skull"]  # the keys of TASKS
TASKS: dict[str, str] = {
    "corset": "recon.pipelines.corset.task:TASK",
    "voxel": "recon.pipelines.occupancy.voxel_task:TASK",
    "parts": "recon.pipelines.occupancy.parts_task:TASK",
    "drr": "recon.pipelines.xray.drr_task:TASK",
    "pose": "recon.pipelines.xray.pose_task:TASK",
    "skull": "recon.pipelines.skull.task:TASK",
}


def load_task(name: str):
    """The TaskSpec registered under name; BadInput names the known tasks otherwise."""
    if name not in TASKS:
        known = ", ".join(sorted(TASKS)) or "none"
        raise BadInput(f"unknown training task {name!r} (known: {known})")
    module, attribute = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attribute)
