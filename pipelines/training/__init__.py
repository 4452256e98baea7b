"""Training tasks on one Lightning engine. TASKS maps a task name to "module:TASK" (lazy)."""

from __future__ import annotations

import importlib

from recon.pipelines.errors import BadInput

TASKS: dict[str, str] = {
    "corset": "recon.pipelines.training.corset:TASK",
    "voxel": "recon.pipelines.training.voxel:TASK",
    "parts": "recon.pipelines.training.parts:TASK",
    "drr": "recon.pipelines.training.drr:TASK",
    "pose": "recon.pipelines.training.pose:TASK",
}


def load_task(name: str):
    """The TaskSpec registered under name; BadInput names the known tasks otherwise."""
    if name not in TASKS:
        known = ", ".join(sorted(TASKS)) or "none"
        raise BadInput(f"unknown training task {name!r} (known: {known})")
    module, attribute = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attribute)
