"""Training checkpoints: the best/last callbacks, and safe loading (weights_only=True).

best.ckpt holds weights only (best by the task's monitor metric); last.ckpt holds weights,
optimizer, loop and callback state, written every epoch: what --resume needs. Both carry
hyper_parameters {"task": NAME, "config": {...}}. A resume reads last.ckpt from disk once: the
checks and Lightning's restore share what load_resume_checkpoint read (resume_checkpoint_io).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from recon.pipelines.common.errors import BadInput, first_line


def checkpoint_callbacks(monitor: str, mode: str, folder: Path) -> tuple[Any, Any]:
    """best.ckpt (weights only, by monitor) and last.ckpt (full state, each epoch)."""
    checkpoint_class = _run_checkpoint_class()
    best = checkpoint_class(
        dirpath=folder,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_weights_only=True,
        enable_version_counter=False,
    )
    last = checkpoint_class(  # no monitor: the newest epoch, under one fixed name
        dirpath=folder, filename="last", save_top_k=1, enable_version_counter=False
    )
    return best, last


def checkpoint_in(folder: Path, name: str) -> Path | None:
    """A training run's checkpoint file `name` (best.ckpt, last.ckpt) in folder: a run folder
    keeps it in checkpoints/, a checkpoints folder holds it; None when neither does."""
    folder = Path(folder)
    for candidate in (folder / "checkpoints" / name, folder / name):
        if candidate.is_file():
            return candidate
    return None


def require_checkpoint_file(path: Path) -> Path:
    """path as a checkpoint file, or BadInput: a run folder given instead is named with the
    checkpoints it holds (see require_file for the rest)."""
    from recon.pipelines.common.io import require_file

    path = Path(path)
    if path.is_dir():
        found = [p for p in (checkpoint_in(path, n) for n in ("best.ckpt", "last.ckpt")) if p]
        held = f" (it holds {' and '.join(map(str, found))}: give one)" if found else ""
        raise BadInput(f"{path}: is a folder, not a checkpoint file{held}")
    return require_file(path, "checkpoint")


def load_checkpoint_file(path: Path) -> dict:
    """torch.load with weights_only=True; pickled code or a non-checkpoint -> BadInput."""
    path = require_checkpoint_file(path)
    checkpoint = read_torch_file(path, "checkpoint", "give the .ckpt that training wrote")
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise BadInput(f"{path}: not a recon training checkpoint (no state_dict)")
    return checkpoint


def read_torch_file(path: Path, what: str, hint: str) -> Any:
    """torch.load(path, weights_only=True), or one BadInput line naming the file as `what`
    ("checkpoint", "weights file") and, for a file torch.save did not write, what to give
    (hint): never torch's own paragraph, which advises weights_only=False."""
    import pickle
    import zipfile

    import torch

    with Path(path).open("rb") as handle:
        head = handle.read(4)
    # torch.save writes a zip archive; files of torch before 1.6 start with a pickle protocol
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise BadInput(f"{path}: not a PyTorch {what} ({hint})")
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):  # no end record: cut short
        raise BadInput(
            f"{path}: the {what} is cut short or damaged (its zip archive does not end); "
            "copy it again"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise BadInput(
            f"{path}: refusing to load: the {what} carries pickled objects or code "
            "(only tensors and plain values are accepted)"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        raise BadInput(f"{path}: not a readable {what} ({first_line(error)})") from error


def write_torch_file(content: Any, path: Path) -> None:
    """torch.save(content) into the file at path, through a file object: torch names the
    archive inside after a path's file name (a temporary's, different on every run) but after
    nothing for a file object, and a full disk is then an OSError (ENOSPC) where torch.save to
    a path raises a bare RuntimeError ("unexpected pos"). The caller makes the write atomic."""
    import torch

    with Path(path).open("wb") as handle:
        torch.save(content, handle)


def load_checkpoint(path: Path, task_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config dict, state_dict) of a checkpoint written by `recon train task_name`."""
    checkpoint = load_checkpoint_file(path)
    hyper = hyper_parameters_of_task(path, checkpoint, task_name)
    config = hyper.get("config") or {}
    if not isinstance(config, dict):
        raise BadInput(
            f"{path}: the checkpoint's settings are a {type(config).__name__}, not a mapping "
            f"(give a checkpoint that `recon train {task_name}` wrote)"
        )
    state = checkpoint["state_dict"]
    _require_finite_weights(path, state)
    return dict(config), state


def _require_finite_weights(path: Path, state: dict) -> None:
    """BadInput naming the first tensor of state that holds NaN or infinite values (a run saved
    after it diverged, a damaged file): such weights predict NaN everywhere."""
    import torch

    bad = [
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise BadInput(
            f"{path}: the checkpoint's weights hold NaN or infinite values ({bad[0]}{more}); "
            "the run that saved it diverged or the file is damaged: give an earlier checkpoint"
        )


def load_weights(
    path: Path, build: Callable[[dict], Any], config: dict, state: dict, prefix: str, what: str
):
    """build(config) in eval mode with the weights of state under prefix ("net.") loaded
    strictly; BadInput naming the checkpoint, what ("the skull model") and the first problem
    when they do not fit (or build fails on the checkpoint's settings)."""
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        module = build(config)
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise BadInput(f"{path}: weights do not fit {what} ({first_problem(error)})") from error
    _load_strict(path, module, weights, what)
    return module.eval()


def _load_strict(path: Path, module, weights: dict, what: str) -> None:
    """module.load_state_dict(weights, strict), or BadInput naming the checkpoint, what ("the
    skull model") and the first missing or misshapen tensor."""
    try:
        module.load_state_dict(weights, strict=True)
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise BadInput(f"{path}: weights do not fit {what} ({first_problem(error)})") from error


def first_problem(error: Exception, width: int = 200) -> str:
    """The first informative line of an exception, at most width characters: torch's
    load_state_dict puts only a heading ("Error(s) in loading ...:") on its first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= width else text[: width - 3] + "..."


def prediction_settings(path: Path, config: dict, schema, names, task_name: str) -> dict:
    """The checkpoint's config with the settings `names` that prediction uses present and as
    the training config class `schema` takes them (type, range, choices); BadInput naming the
    checkpoint and the setting otherwise (a damaged or edited checkpoint: a size of 'abc' or
    100000 failed deep in the model, or ran the machine out of memory)."""
    from recon.pipelines.common.settings import check_setting

    config = dict(config)
    for name in names:
        if name not in config:
            raise BadInput(
                f"{path}: the checkpoint's config has no setting {name} (give a checkpoint "
                f"that `recon train {task_name}` wrote)"
            )
        label = f"{path}: the checkpoint's setting {name}"
        config[name] = check_setting(schema, name, config[name], label)
    return config


def hyper_parameters_of_task(path: Path, checkpoint: dict, task_name: str) -> dict[str, Any]:
    """The hyper-parameters a checkpoint records; BadInput unless they name task_name."""
    hyper = checkpoint.get("hyper_parameters")
    hyper = hyper if isinstance(hyper, dict) else {}
    task = hyper.get("task")
    if task is None:
        raise BadInput(f"{path}: not a recon checkpoint of task {task_name!r} (it records no task)")
    if task != task_name:
        raise BadInput(f"{path}: a checkpoint of task {task!r}, not {task_name!r}")
    return hyper


SPLIT_KEY = "recon_split"  # a full-state checkpoint's record of its training and validation items


class ResumePoint(NamedTuple):
    """What a full-state checkpoint (last.ckpt) says about the run it continues."""

    config: dict[str, Any]  # the run's settings
    state_dict: dict  # the weights
    epoch: int  # the index of the last epoch it saw (metrics.csv keeps the rows up to it)
    split: dict | None  # sampling.split_record of the data it trained on (SPLIT_KEY)
    epochs_done: int  # the epochs it finished: a resume with --epochs at most this has no work
    run_folders: tuple[Path, ...]  # where its checkpoint callbacks wrote (RUN of RUN/checkpoints)


def load_resume_checkpoint(path: Path, task_name: str) -> ResumePoint:
    """The ResumePoint of a full-state checkpoint (last.ckpt) of task_name; a weights-only
    best.ckpt, another task's checkpoint or an unreadable file -> BadInput. The file is read
    once: a second call, and Lightning's restore (resume_checkpoint_io), reuse what was read
    while the file is unchanged."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such checkpoint")
    checkpoint = _read_once(path)
    hyper = hyper_parameters_of_task(path, checkpoint, task_name)
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise BadInput(
            f"{path}: holds weights only, no optimizer or loop state (a run's best.ckpt is "
            "such a file); resume from the run's checkpoints/last.ckpt, or the run folder"
        )
    if not isinstance(hyper.get("config"), dict):
        raise BadInput(f"{path}: the checkpoint holds no training config")
    split = checkpoint.get(SPLIT_KEY)
    epoch = int(checkpoint.get("epoch", 0))
    return ResumePoint(
        config=dict(hyper["config"]),
        state_dict=checkpoint["state_dict"],
        epoch=epoch,
        split=split if isinstance(split, dict) else None,
        epochs_done=_epochs_done(checkpoint, epoch),
        run_folders=_recorded_run_folders(checkpoint),
    )


def _epochs_done(checkpoint: dict, epoch: int) -> int:
    """The epochs a full-state checkpoint finished, as Lightning counts them when it resumes
    (the fit loop's processed epochs; epoch + 1 for a checkpoint without loop state)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return epoch + 1


def _recorded_run_folders(checkpoint: dict) -> tuple[Path, ...]:
    """The run folders (parents of the checkpoint callbacks' dirpath) a checkpoint was written
    to, as its callback state records them."""
    states = checkpoint.get("callbacks")
    folders = {
        Path(state["dirpath"]).parent
        for state in (states.values() if isinstance(states, dict) else ())
        if isinstance(state, dict) and isinstance(state.get("dirpath"), str)
    }
    return tuple(sorted(folders))


# the full-state checkpoint read last: (path, size, mtime) -> its content (one entry at most)
_READ: dict[tuple[str, int, int], dict] = {}


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _read_once(path: Path) -> dict:
    """load_checkpoint_file(path), kept until Lightning takes it or another file is read."""
    key = _file_key(path)
    if key not in _READ:
        _READ.clear()
        _READ[key] = load_checkpoint_file(path)
    return _READ[key]


def forget_read_checkpoint() -> None:
    """Drop the checkpoint load_resume_checkpoint kept (a fit that ends without a restore)."""
    _READ.clear()


def resume_checkpoint_io():
    """Lightning's checkpoint I/O, restoring a resume from the checkpoint already read (and
    checked) by load_resume_checkpoint instead of reading the file again; everything else as
    Lightning's TorchCheckpointIO, loading with weights_only=True."""
    from lightning.fabric.plugins import TorchCheckpointIO

    class ReadOnceCheckpointIO(TorchCheckpointIO):
        def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
            try:
                key = _file_key(Path(path))
            except OSError:
                key = None
            if key is not None and key in _READ:
                return _READ.pop(key)
            where = {} if map_location is None else {"map_location": map_location}
            return super().load_checkpoint(path, weights_only=True, **where)

    return ReadOnceCheckpointIO()


@functools.cache
def _run_checkpoint_class():
    from lightning.pytorch.callbacks import ModelCheckpoint

    class RunCheckpoint(ModelCheckpoint):
        """ModelCheckpoint that follows a moved run folder: a resume from the folder's new
        place reads the saved paths (best.ckpt and its score, last.ckpt) under that place, where
        the stock callback drops the best score and lets a worse epoch overwrite best.ckpt. A run
        continued into a new folder finds best.ckpt there too (runfolder.carry_over copies
        it); a folder that holds none of those files searches the best afresh."""

        def _generate_state_key(self, **kwargs: Any) -> str:
            return f"ModelCheckpoint{kwargs!r}"  # the stock key: checkpoints of either restore

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            saved = state_dict.get("dirpath")
            if self.dirpath is not None and saved is not None and saved != self.dirpath:
                state_dict = _moved_state(state_dict, saved, self.dirpath, self.kth_value)
            super().load_state_dict(state_dict)

    return RunCheckpoint


def _moved_state(state: dict[str, Any], old: str, new: str, fresh_kth: Any) -> dict[str, Any]:
    """A ModelCheckpoint state saved in folder old, with its paths under folder new (paths
    whose file is not there dropped); a fresh state when new holds no file of it."""

    def moved(path: Any) -> str:
        if not isinstance(path, str) or not path:
            return ""
        relative = os.path.relpath(path, old)
        if relative.startswith(os.pardir):
            return ""
        there = os.path.join(new, relative)
        return there if os.path.isfile(there) else ""

    best_k = {moved(p): score for p, score in (state.get("best_k_models") or {}).items()}
    best_k.pop("", None)
    best = moved(state.get("best_model_path"))
    if not best:
        return {
            **state,
            "dirpath": new,
            "best_model_path": "",
            "best_model_score": None,
            "best_k_models": {},
            "kth_best_model_path": "",
            "kth_value": fresh_kth,
            "last_model_path": "",
        }
    return {
        **state,
        "dirpath": new,
        "best_model_path": best,
        "best_k_models": best_k,
        "kth_best_model_path": moved(state.get("kth_best_model_path")),
        "last_model_path": moved(state.get("last_model_path")),
    }


def require_fitting_weights(path: Path, state_dict: dict, module, task_name: str) -> None:
    """The checkpoint's weights load into the freshly built module, or BadInput."""
    _load_strict(path, module, state_dict, f"the {task_name} model")
