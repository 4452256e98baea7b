"""Training checkpoints: the best/last callbacks, and safe loading (weights_only=True).

best.ckpt holds weights only (best by the task's monitor metric); last.ckpt holds weights,
optimizer, loop and callback state, written every epoch: what --resume needs. Both carry
hyper_parameters {"task": NAME, "config": {...}}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recon.pipelines.common.errors import BadInput


def checkpoint_callbacks(monitor: str, mode: str, folder: Path) -> tuple[Any, Any]:
    """best.ckpt (weights only, by monitor) and last.ckpt (full state, each epoch)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = ModelCheckpoint(
        dirpath=folder,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_weights_only=True,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(  # no monitor: the newest epoch, under one fixed name
        dirpath=folder, filename="last", save_top_k=1, enable_version_counter=False
    )
    return best, last


def load_checkpoint_file(path: Path) -> dict:
    """torch.load with weights_only=True; pickled code or a non-checkpoint -> BadInput."""
    import pickle

    import torch

    from recon.pipelines.common.io import require_file

    path = require_file(path, "checkpoint")
    with path.open("rb") as handle:
        head = handle.read(4)
    # torch.save writes a zip archive; files of torch before 1.6 start with a pickle protocol
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise BadInput(f"{path}: not a PyTorch checkpoint (give the .ckpt that training wrote)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise BadInput(
            f"{path}: refusing to load: the checkpoint carries pickled objects or code "
            "(only tensors and plain values are accepted)"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        raise BadInput(
            f"{path}: not a readable checkpoint ({str(error).splitlines()[0]})"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise BadInput(f"{path}: not a recon training checkpoint (no state_dict)")
    return checkpoint


def load_checkpoint(path: Path, task_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config dict, state_dict) of a checkpoint written by `recon train task_name`."""
    checkpoint = load_checkpoint_file(path)
    hyper = checkpoint.get("hyper_parameters") or {}
    task = hyper.get("task")
    if task != task_name:
        raise BadInput(f"{path}: a checkpoint of task {task!r}, not {task_name!r}")
    return dict(hyper.get("config") or {}), checkpoint["state_dict"]


SPLIT_KEY = "recon_split"  # a full-state checkpoint's record of its training and validation items


def load_resume_checkpoint(
    path: Path, task_name: str
) -> tuple[dict[str, Any], dict, int, dict | None]:
    """(config dict, state_dict, epoch, split record or None) of a full-state checkpoint
    (last.ckpt) of task_name (the split record: sampling.split_record of the data it trained
    on, SPLIT_KEY); a weights-only best.ckpt, another task's checkpoint or an unreadable file
    -> BadInput."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such checkpoint")
    checkpoint = load_checkpoint_file(path)
    hyper = checkpoint.get("hyper_parameters") or {}
    if hyper.get("task") != task_name:
        raise BadInput(f"{path}: a checkpoint of task {hyper.get('task')!r}, not {task_name!r}")
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise BadInput(
            f"{path}: holds weights only (like best.ckpt); resume from checkpoints/last.ckpt"
        )
    if not isinstance(hyper.get("config"), dict):
        raise BadInput(f"{path}: the checkpoint holds no training config")
    split = checkpoint.get(SPLIT_KEY)
    return (
        dict(hyper["config"]),
        checkpoint["state_dict"],
        int(checkpoint.get("epoch", 0)),
        split if isinstance(split, dict) else None,
    )


def require_fitting_weights(path: Path, state_dict: dict, module, task_name: str) -> None:
    """The checkpoint's weights load into the freshly built module, or BadInput."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except (RuntimeError, KeyError, ValueError) as error:
        text = str(error).strip().splitlines()
        raise BadInput(
            f"{path}: weights do not fit the {task_name} model "
            f"({text[0] if text else type(error).__name__})"
        ) from error
