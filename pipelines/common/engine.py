"""The one training engine behind `recon train TASK`, on Lightning.

A task supplies a TaskSpec: its config dataclass (a TrainConfig subclass holding the task's
defaults), a `build(cfg) -> (LightningModule, LightningDataModule)` function, and the validation
metric that picks the best checkpoint. The engine resolves the config (defaults < --config YAML <
flags), seeds everything, runs the Trainer, and leaves a run folder:

    config.yaml            the resolved config
    checkpoints/best.ckpt  best by the task's monitor metric;  checkpoints/last.ckpt
    metrics.csv            every logged value (Lightning's CSVLogger)
    curves.png             training curves
    run.json               command, version, seed, config, timings, final metrics

Reproducibility: shuffling (seeded_loader) and the global RNGs (reseeded at every epoch start)
depend only on (seed, epoch), so a run interrupted and resumed from last.ckpt ends where an
uninterrupted run ends, on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon.pipelines.common.errors import BadInput


@dataclass
class TrainConfig:
    """Fields every task has. Tasks subclass this with their own fields and defaults."""

    data: str | None = None  # data set root
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-4
    seed: int = 0
    num_workers: int = 0
    val_fraction: float = 0.2


@dataclass(frozen=True)
class TaskSpec:
    name: str
    config: type[TrainConfig]
    build: Callable[[Any], tuple[Any, Any]]  # cfg -> (LightningModule, LightningDataModule)
    monitor: str  # validation metric for the best checkpoint, e.g. "val/iou"
    mode: str = "max"  # "max" | "min"
    check: Callable[[Any], None] | None = None  # early input validation, raises BadInput


@dataclass
class RunOptions:
    """How to run, as opposed to what to learn (not part of the task config)."""

    out: Path
    resume: Path | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    devices: str = "auto"  # Lightning devices: "auto", a count, or a list "0,1"
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    precision: str = "32-true"  # e.g. bf16-mixed, 16-mixed
    max_time: str | None = None  # "DD:HH:MM:SS", or minutes
    limit_batches: float | None = None  # fraction (<= 1.0) or count of batches per epoch
    overwrite: bool = False
    quiet: bool = False
    extra_callbacks: list = field(default_factory=list)
    announce: Callable[[Path], None] | None = None  # told the run folder once inputs are checked


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain types (for YAML, JSON and weights_only checkpoints)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


def resolve_config(
    task: TaskSpec, config_file: Path | None, overrides: dict[str, Any]
) -> TrainConfig:
    """Task defaults, then the YAML file, then flags (None values are skipped)."""
    import yaml

    values: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise BadInput(f"{path}: no such config file")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise BadInput(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from error
        if not isinstance(loaded, dict):
            raise BadInput(f"{path}: a config file must be a mapping of field: value")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(task.config)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BadInput(
            f"task {task.name} has no setting {', '.join(unknown)} (settings: {', '.join(fields)})"
        )
    cfg = task.config(**{k: _coerce(fields[k], k, v) for k, v in values.items()})
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise BadInput("epochs and batch size must be >= 1 and the learning rate > 0")
    return cfg


def _coerce(spec: dataclasses.Field, name: str, value: Any) -> Any:
    default = spec.default if spec.default is not dataclasses.MISSING else None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise BadInput(f"setting {name} takes true or false, not {value!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise BadInput(f"setting {name} takes a whole number, not {value!r}")
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise BadInput(f"setting {name} takes a number, not {value!r}")
    if isinstance(value, Path):
        return str(value)
    return value


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs -> dict, values parsed as YAML scalars (numbers, true/false, lists)."""
    import yaml

    result = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--set takes KEY=VALUE, not {pair!r}")
        try:
            result[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise BadInput(f"--set {key}: cannot parse {raw!r}") from error
    return result


class EpochShuffle:
    """A sampler whose order depends only on (seed, epoch); Lightning calls set_epoch."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        import torch

        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def seeded_loader(dataset, batch_size: int, seed: int, shuffle: bool, num_workers: int = 0):
    """DataLoader whose shuffling depends only on (seed, epoch).

    It carries its own generator, so creating its iterator draws nothing from the global RNG.
    """
    import torch
    from torch.utils.data import DataLoader

    sampler = EpochShuffle(len(dataset), seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),
    )


class SplitLoaders:
    """Mixin for a LightningDataModule holding `cfg`, `train_set` and `val_set`: seeded loaders."""

    def train_dataloader(self):
        cfg = self.cfg
        return seeded_loader(self.train_set, cfg.batch_size, cfg.seed, True, cfg.num_workers)

    def val_dataloader(self):
        cfg = self.cfg
        return seeded_loader(self.val_set, cfg.batch_size, cfg.seed, False, cfg.num_workers)


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _accelerator(device: str, devices: str) -> tuple[str, Any]:
    """--device and --devices -> Lightning's (accelerator, devices)."""
    count: Any = devices
    if isinstance(devices, str) and devices != "auto":
        parts = [p for p in devices.split(",") if p.strip()]
        if len(parts) > 1 or devices.endswith(","):
            count = [int(p) for p in parts]
        elif parts and parts[0].strip().lstrip("-").isdigit():
            count = int(parts[0])
        else:
            raise BadInput(f"--devices takes auto, a count or a list like 0,1, not {devices!r}")
    if device == "auto":
        return "auto", count
    if device == "cpu":
        return "cpu", 1 if count == "auto" else count
    if device == "cuda":
        return "gpu", count
    if device.startswith("cuda:") and device[5:].isdigit():
        return "gpu", [int(device[5:])]
    raise BadInput(f"--device takes auto, cpu, cuda or cuda:N, not {device!r}")


def _max_time(value: str | None):
    from datetime import timedelta

    if value is None:
        return None
    try:
        return timedelta(minutes=float(value))
    except ValueError:
        pass
    parts = value.split(":")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        d, h, m, s = (int(p) for p in parts)
        return timedelta(days=d, hours=h, minutes=m, seconds=s)
    raise BadInput(f"--max-time takes minutes or DD:HH:MM:SS, not {value!r}")


def _limit(value: float | None):
    if value is None:
        return None
    if value <= 0:
        raise BadInput("--limit-batches must be positive")
    return value if value <= 1.0 else int(value)


def prepare_run_dir(run: RunOptions) -> Path:
    """Check the run folder: a non-empty one is refused unless --overwrite or --resume."""
    out = Path(run.out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (run.overwrite or run.resume):
        raise BadInput(
            f"{out}: run folder is not empty (pass --overwrite, or --resume a checkpoint)"
        )
    if run.resume is not None:
        resume = Path(run.resume)
        if not resume.is_file():
            raise BadInput(f"{resume}: no such checkpoint")
        load_checkpoint_file(resume)  # validates before any work starts
    out.mkdir(parents=True, exist_ok=True)
    return out


def fit(task: TaskSpec, cfg: TrainConfig, run: RunOptions) -> dict[str, Any]:
    """Train task with cfg; returns the final metrics, best score and output paths."""
    import warnings

    import lightning as L
    import yaml
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from recon.pipelines.common.outputs import atomic_file, run_record, write_json

    if task.check is not None:
        task.check(cfg)
    accelerator, devices = _accelerator(run.device, run.devices)
    max_time, limit = _max_time(run.max_time), _limit(run.limit_batches)
    out = prepare_run_dir(run)
    if run.announce is not None:
        run.announce(out)
    with atomic_file(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({"task": task.name, **config_dict(cfg)}, sort_keys=False))

    seed_all(cfg.seed)
    module, datamodule = task.build(cfg)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor=task.monitor,
        mode=task.mode,
        save_last=True,
        enable_version_counter=False,
    )
    callbacks = [checkpoint, _EpochSeed(cfg.seed), *run.extra_callbacks]
    if not run.quiet:
        callbacks.append(RichProgressBar(leave=False, console_kwargs={"stderr": True}))
    with warnings.catch_warnings(), _lightning_chatter(run.quiet):
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        trainer = L.Trainer(
            default_root_dir=out,
            max_epochs=cfg.epochs,
            accelerator=accelerator,
            devices=devices,
            num_nodes=run.num_nodes,
            strategy=run.strategy,
            precision=run.precision,
            max_time=max_time,
            limit_train_batches=limit,
            limit_val_batches=limit,
            logger=CSVLogger(out, name="", version=""),
            callbacks=callbacks,
            deterministic=accelerator == "cpu" or "warn",
            enable_progress_bar=not run.quiet,
            enable_model_summary=not run.quiet,
            log_every_n_steps=1,
        )
        clock = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=run.resume)
    seconds = time.perf_counter() - clock

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if _scalar(v)}
    result = {
        "task": task.name,
        "out": str(out),
        "epochs_run": int(trainer.current_epoch),
        "best_checkpoint": str(checkpoint.best_model_path) if checkpoint.best_model_path else None,
        "last_checkpoint": str(out / "checkpoints" / "last.ckpt"),
        "best_score": float(checkpoint.best_model_score)
        if checkpoint.best_model_score is not None
        else None,
        "monitor": task.monitor,
        "metrics": metrics,
        "seconds": seconds,
    }
    if trainer.is_global_zero:
        plot_curves(out / "metrics.csv", out / "curves.png")
        record = run_record(
            f"train {task.name}", cfg.seed, config_dict(cfg), {"fit": seconds}, result
        )
        write_json(out / "run.json", record)
    return result


_EXPECTED_WARNINGS = (
    ".*does not have many workers.*",
    ".*is smaller than the logging interval.*",
    ".*exists and is not empty.*",  # the run folder holds config.yaml; resumed runs reuse it
    ".*isinstance\\(treespec, LeafSpec\\).*",
)


class _NoTips:
    """logging filter: drops Lightning's advertising tips."""

    def filter(self, record) -> bool:
        return "Tip:" not in str(record.msg)


@contextlib.contextmanager
def _lightning_chatter(quiet: bool):
    """Drop Lightning's tips always, and its INFO lines (hardware, summary) with --quiet."""
    import logging

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    tips = _NoTips()
    for lg in loggers:
        for handler in [*lg.handlers, *logging.getLogger().handlers]:
            handler.addFilter(tips)
        lg.addFilter(tips)
        if quiet:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
            lg.removeFilter(tips)
            for handler in [*lg.handlers, *logging.getLogger().handlers]:
                handler.removeFilter(tips)


def _scalar(value: Any) -> bool:
    return getattr(value, "numel", lambda: 1)() == 1


def _epoch_seed_callback():
    import lightning as L

    class EpochSeed(L.Callback):
        """Reseed the global RNGs at each epoch start from (seed, epoch)."""

        def __init__(self, seed: int) -> None:
            self.seed = seed

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            seed_all(self.seed * 1000 + trainer.current_epoch + 7 * trainer.global_rank)

    return EpochSeed


def _EpochSeed(seed: int):  # noqa: N802 - factory keeps lightning out of module import
    return _epoch_seed_callback()(seed)


def plot_curves(metrics_csv: Path, png: Path) -> None:
    """One panel per logged metric, against epoch (training curves)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.pipelines.common.outputs import atomic_file

    if not metrics_csv.is_file():
        return
    series: dict[str, list[tuple[float, float]]] = {}
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            epoch = row.get("epoch")
            for key, value in row.items():
                if key in ("epoch", "step") or value in ("", None) or epoch in ("", None):
                    continue
                series.setdefault(key, []).append((float(epoch), float(value)))
    names = sorted(k for k in series if k.endswith("_epoch") or k.startswith("val"))
    names = names or sorted(series)
    if not names:
        return
    columns = min(3, len(names))
    rows = (len(names) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        xs, ys = zip(*series[name], strict=True)
        axis.plot(xs, ys, marker="o", markersize=2)
        axis.set_title(name)
        axis.set_xlabel("epoch")
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    figure.tight_layout()
    with atomic_file(png) as tmp:
        figure.savefig(tmp, dpi=80)
    plt.close(figure)


def load_checkpoint_file(path: Path) -> dict:
    """torch.load with weights_only=True; pickled code or a non-checkpoint -> BadInput."""
    import pickle

    import torch

    from recon.pipelines.common.io import require_file

    path = require_file(path, "checkpoint")
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
