"""The one training engine behind `recon train TASK`, on Lightning.

A task supplies a TaskSpec: its config dataclass (a TrainConfig subclass holding the task's
defaults), a `build(cfg) -> (LightningModule, LightningDataModule)` function, and the validation
metric that picks the best checkpoint. The engine resolves the config (defaults < --config YAML <
flags), seeds everything, runs the Trainer, and leaves a run folder:

    config.yaml            the resolved config
    checkpoints/best.ckpt  weights only, best by the task's monitor metric
    checkpoints/last.ckpt  weights + optimizer, loops and callback state: what --resume needs
    metrics.csv            every logged value, every epoch (kept whole across resumes)
    tensorboard/           event files, with --logger tensorboard
    curves.png             training curves
    run.json               command, version, seed, config, processes, timings, final metrics

Several processes (Lightning's DDP launcher re-running the command, or `srun` starting every rank
at once): only global rank 0 checks and writes the run folder; the other ranks skip it and meet
rank 0 at the process-group rendezvous. Samplers give each rank an interleaved shard of one
(seed, epoch) order, so N processes with batch B step through the same global batches as one
process with batch N*B.

Reproducibility: shuffling (seeded_loader) and the global RNGs (reseeded at every epoch start)
depend only on (seed, epoch), so a run interrupted and resumed from last.ckpt ends where an
uninterrupted run ends, on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon.pipelines.common.errors import BadInput

LOGGERS = ("csv", "tensorboard")
RESUMABLE_SETTINGS = ("epochs", "num_workers")  # the only settings a resume may change
RUN_OUTPUTS = ("config.yaml", "hparams.yaml", "metrics.csv", "curves.png", "run.json")
RUN_FOLDERS = ("checkpoints", "tensorboard", "examples")


@dataclass
class TrainConfig:
    """Fields every task has. Tasks subclass this with their own fields and defaults."""

    data: str | None = None  # data set root
    epochs: int = 10
    batch_size: int = 16  # per process: the global batch is batch_size x processes
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
    logger: str = "csv"  # csv | tensorboard (TensorBoard in addition to metrics.csv)
    overwrite: bool = False
    quiet: bool = False
    extra_callbacks: list = field(default_factory=list)
    announce: Callable[[Path], None] | None = None  # told the run folder once inputs are checked


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain types (for YAML, JSON and weights_only checkpoints)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


def requested_settings(
    task: TaskSpec, config_file: Path | None, overrides: dict[str, Any]
) -> dict[str, Any]:
    """The settings a user asked for: the YAML file, then flags (None values are skipped);
    unknown names and wrong types are refused."""
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
    return {k: _coerce(fields[k], k, v) for k, v in values.items()}


def resolve_config(
    task: TaskSpec, config_file: Path | None, overrides: dict[str, Any]
) -> TrainConfig:
    """Task defaults, then the YAML file, then flags (None values are skipped)."""
    cfg = task.config(**requested_settings(task, config_file, overrides))
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise BadInput("epochs and batch size must be >= 1 and the learning rate > 0")
    return cfg


def resume_config(
    task: TaskSpec, checkpoint: Path, config_file: Path | None, overrides: dict[str, Any]
) -> TrainConfig:
    """The config saved in a last.ckpt of task, with only RESUMABLE_SETTINGS changed by the
    YAML file or flags; asking for any other setting to differ is refused."""
    saved = load_resume_checkpoint(checkpoint, task.name)[0]
    requested = requested_settings(task, config_file, overrides)
    changed = sorted(
        k
        for k, v in requested.items()
        if k not in RESUMABLE_SETTINGS and not _same_setting(saved.get(k), v)
    )
    if changed:
        raise BadInput(
            f"{checkpoint}: a resumed run keeps the checkpoint's settings, and these differ "
            f"from them: {', '.join(changed)}; only {', '.join(RESUMABLE_SETTINGS)}, the time "
            "limit and the devices may change (start a new run to change the others)"
        )
    resumable = {k: v for k, v in requested.items() if k in RESUMABLE_SETTINGS}
    return resolve_config(task, None, {**saved, **resumable})


def _same_setting(saved: Any, value: Any) -> bool:
    """Equal values, or two spellings of the same path."""
    if saved == value:
        return True
    if isinstance(saved, str) and isinstance(value, str):
        return Path(saved).expanduser().resolve() == Path(value).expanduser().resolve()
    return False


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


def process_group() -> tuple[int, int]:
    """(global rank, world size) of this process; (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@functools.cache
def _shard_sampler_class():
    from torch.utils.data import DistributedSampler

    class EpochShuffle(DistributedSampler):
        """This process's shard of one order that depends only on (seed, epoch).

        The order (a seeded permutation, or 0..size-1 without shuffle) is padded by wrapping to a
        multiple of the world size, and rank r takes every world-th index from r on: with N
        processes of batch B, the k-th batches of all ranks together are the k-th batch of B*N
        that one process would draw. A DistributedSampler, so Lightning keeps it as it is and
        calls set_epoch.
        """

        def __init__(self, size: int, seed: int, shuffle: bool, rank: int, world: int) -> None:
            super().__init__(range(size), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
            self.size = size

        def __iter__(self):
            import torch

            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
                order = torch.randperm(self.size, generator=generator).tolist()
            else:
                order = list(range(self.size))
            if order and len(order) < self.total_size:
                order = (order * math.ceil(self.total_size / len(order)))[: self.total_size]
            return iter(order[self.rank : self.total_size : self.num_replicas])

    return EpochShuffle


def EpochShuffle(  # noqa: N802 - a factory, so torch loads only when a sampler is made
    size: int, seed: int, shuffle: bool = True, rank: int | None = None, world: int | None = None
):
    """A sampler of one process's shard of a (seed, epoch) order (see _shard_sampler_class);
    rank and world default to this process's place in the process group."""
    if rank is None or world is None:
        rank, world = process_group()
    return _shard_sampler_class()(size, seed, shuffle, rank, world)


def seeded_loader(dataset, batch_size: int, seed: int, shuffle: bool, num_workers: int = 0):
    """DataLoader over this process's shard; the order depends only on (seed, epoch).

    It carries its own generator, so creating its iterator draws nothing from the global RNG.
    Validation loaders are sharded too (padded by wrapping), so metrics logged with
    sync_dist=True are reduced over every sample.
    """
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShuffle(len(dataset), seed, shuffle),
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
    if count == 0:
        raise BadInput(
            "--devices 0: at least one device is needed (a count, ids like 0,1, or auto)"
        )
    if device == "auto":
        return "auto", count
    if device == "cpu":
        return "cpu", 1 if count == "auto" else count
    if device == "cuda":
        return "gpu", count
    if device.startswith("cuda:") and device[5:].isdigit():
        return "gpu", [int(device[5:])]
    raise BadInput(f"--device takes auto, cpu, cuda or cuda:N, not {device!r}")


def _check_scale(accelerator: str, devices: Any, run: RunOptions) -> None:
    """One-line errors for what Lightning would refuse with a traceback, or accept and regret:
    no GPU for --device cuda, more CPU processes than cores, fewer than one node."""
    import torch

    if run.num_nodes < 1:
        raise BadInput(f"--num-nodes {run.num_nodes}: at least one node is needed")
    if run.logger not in LOGGERS:
        raise BadInput(f"--logger takes {' or '.join(LOGGERS)}, not {run.logger!r}")
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise BadInput(f"--device {run.device}: no CUDA GPU is visible (use --device cpu or auto)")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and isinstance(devices, int) and devices > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if devices > (cores or 1):
            raise BadInput(
                f"--devices {devices}: this machine gives the run {cores} CPU cores; "
                f"start at most {cores} CPU processes"
            )


_FLAG_WORDS = (
    ("strategy", "--strategy", "strategy"),
    ("precision", "--precision", "precision"),
    ("num_nodes", "--num-nodes", "num_nodes"),
    ("nodes", "--num-nodes", "num_nodes"),
    ("gpu", "--device", "device"),
    ("cuda", "--device", "device"),
    ("accelerator", "--device", "device"),
    ("devices", "--devices", "devices"),
)


def _trainer_error(error: Exception, run: RunOptions) -> BadInput:
    """Lightning's refusal of a scale-out flag -> one line naming the flag and its value."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    lowered = first.lower()
    for word, flag, attribute in _FLAG_WORDS:
        if word in lowered:
            return BadInput(f"{flag} {getattr(run, attribute)}: {first}")
    return BadInput(f"--device/--devices/--strategy/--precision: {first}")


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


def check_run_dir(run: RunOptions) -> Path:
    """The run folder as an absolute path; a non-empty one is refused unless --overwrite or
    --resume. Reads only."""
    out = Path(run.out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (run.overwrite or run.resume):
        raise BadInput(
            f"{out}: run folder is not empty (pass --overwrite, or --resume a checkpoint)"
        )
    return out


def prepare_run_dir(out: Path, run: RunOptions, resumed_epoch: int | None) -> None:
    """Rank 0 only, after every check: create the folder; --overwrite clears the engine's own
    outputs; a resume keeps metrics.csv up to the checkpoint's epoch."""
    out.mkdir(parents=True, exist_ok=True)
    if resumed_epoch is not None:
        _trim_metrics(out / "metrics.csv", resumed_epoch)
        return
    for name in RUN_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def _trim_metrics(metrics_csv: Path, last_epoch: int) -> None:
    """Keep the rows of epochs <= last_epoch (those after it are run again)."""
    import csv

    from recon.pipelines.common.outputs import atomic_file

    if not metrics_csv.is_file():
        return
    with metrics_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames or [], list(reader)
    kept = [r for r in rows if r.get("epoch") in ("", None) or float(r["epoch"]) <= last_epoch]
    if len(kept) == len(rows):
        return
    with atomic_file(metrics_csv) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(kept)


def fit(task: TaskSpec, cfg: TrainConfig, run: RunOptions) -> dict[str, Any]:
    """Train task with cfg; returns the final metrics, best score, output paths and this
    process's rank (only global rank 0 writes the run folder)."""
    import warnings

    import lightning as L
    import yaml
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from recon.pipelines.common.outputs import atomic_file, run_record, write_json

    if task.check is not None:
        task.check(cfg)
    accelerator, devices = _accelerator(run.device, run.devices)
    _check_scale(accelerator, devices, run)
    max_time, limit = _max_time(run.max_time), _limit(run.limit_batches)
    resumed = None
    if run.resume is not None:
        resumed = load_resume_checkpoint(Path(run.resume), task.name)
        _require_same_config(Path(run.resume), resumed[0], config_dict(cfg))
    out = Path(run.out).expanduser().absolute()

    checkpoints = _checkpoint_callbacks(task, out / "checkpoints")
    callbacks = [*checkpoints, _EpochSeed(cfg.seed), *run.extra_callbacks]
    if not run.quiet:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=False, console_kwargs={"stderr": True}))
    loggers = _loggers(out, run.logger)
    with warnings.catch_warnings(), _lightning_chatter(run.quiet):
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
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
                logger=loggers,
                callbacks=callbacks,
                deterministic=accelerator == "cpu" or "warn",
                enable_progress_bar=not run.quiet,
                enable_model_summary=not run.quiet,
                log_every_n_steps=1,
            )
        except (MisconfigurationException, ValueError, TypeError, RuntimeError) as error:
            raise _trainer_error(error, run) from error
        if trainer.is_global_zero:  # the other ranks never judge the folder rank 0 prepares
            check_run_dir(run)
        seed_all(cfg.seed)
        module, datamodule = task.build(cfg)
        if trainer.world_size > 1:
            _reduce_logs_across_processes(module)
        if resumed is not None:
            _require_fitting_weights(Path(run.resume), resumed[1], module, task.name)
        if trainer.is_global_zero:
            if run.announce is not None:
                run.announce(out)
            prepare_run_dir(out, run, resumed[2] if resumed is not None else None)
            # metrics.csv through a writer that keeps a resumed run's history (the stock one
            # deletes the file); set before fit, so Lightning never makes its own
            loggers[0]._experiment = _history_writer_class()(str(out))
            with atomic_file(out / "config.yaml") as tmp:
                config = {"task": task.name, **config_dict(cfg)}
                tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        resumed = None  # the weights are checked; Lightning loads the file itself
        clock = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=run.resume)
    seconds = time.perf_counter() - clock

    best = checkpoints[0]
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if _scalar(v)}
    result = {
        "task": task.name,
        "out": str(out),
        "epochs_run": int(trainer.current_epoch),
        "best_checkpoint": str(best.best_model_path) if best.best_model_path else None,
        "last_checkpoint": str(out / "checkpoints" / "last.ckpt"),
        "best_score": float(best.best_model_score) if best.best_model_score is not None else None,
        "monitor": task.monitor,
        "metrics": metrics,
        "seconds": seconds,
        "processes": int(trainer.world_size),
        "global_rank": int(trainer.global_rank),
    }
    if trainer.is_global_zero:
        plot_curves(out / "metrics.csv", out / "curves.png")
        record = run_record(
            f"train {task.name}", cfg.seed, config_dict(cfg), {"fit": seconds}, result
        )
        write_json(out / "run.json", record)
    return result


def _reduce_logs_across_processes(module) -> None:
    """Every self.log / self.log_dict of module averages over the processes (sync_dist=True
    unless a call says otherwise), so a task needs no logging of its own for DDP: the best
    checkpoint and the learning-rate plateaus then follow the same numbers on every rank."""
    module.log = functools.partial(module.log, sync_dist=True)
    module.log_dict = functools.partial(module.log_dict, sync_dist=True)


def _checkpoint_callbacks(task: TaskSpec, folder: Path) -> tuple[Any, Any]:
    """best.ckpt (weights only, by the task's monitor) and last.ckpt (full state, each epoch)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = ModelCheckpoint(
        dirpath=folder,
        filename="best",
        monitor=task.monitor,
        mode=task.mode,
        save_weights_only=True,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(  # no monitor: the newest epoch, under one fixed name
        dirpath=folder, filename="last", save_top_k=1, enable_version_counter=False
    )
    return best, last


def _loggers(out: Path, kind: str) -> list:
    """metrics.csv always; TensorBoard event files in out/tensorboard with --logger tensorboard."""
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = [CSVLogger(out, name="", version="")]
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(
            TensorBoardLogger(out, name="", version="tensorboard", default_hp_metric=False)
        )
    return loggers


@functools.cache
def _history_writer_class():
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class HistoryWriter(ExperimentWriter):
        """Lightning's metrics.csv writer, appending to the file a resumed run kept instead of
        deleting it; prepare_run_dir decides what the file holds when training starts."""

        def _check_log_dir_exists(self) -> None:
            import csv

            if os.path.isfile(self.metrics_file_path):
                with open(self.metrics_file_path, newline="") as handle:
                    self.metrics_keys = list(next(csv.reader(handle), []))

    return HistoryWriter


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


def load_resume_checkpoint(path: Path, task_name: str) -> tuple[dict[str, Any], dict, int]:
    """(config dict, state_dict, epoch) of a full-state checkpoint (last.ckpt) of task_name;
    a weights-only best.ckpt, another task's checkpoint or an unreadable file -> BadInput."""
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
    return dict(hyper["config"]), checkpoint["state_dict"], int(checkpoint.get("epoch", 0))


def _require_same_config(path: Path, saved: dict[str, Any], config: dict[str, Any]) -> None:
    changed = sorted(
        k
        for k, v in config.items()
        if k not in RESUMABLE_SETTINGS and k in saved and not _same_setting(saved[k], v)
    )
    if changed:
        raise BadInput(
            f"{path}: the run's settings {', '.join(changed)} differ from the checkpoint's "
            f"(a resume may change only {', '.join(RESUMABLE_SETTINGS)})"
        )


def _require_fitting_weights(path: Path, state_dict: dict, module, task_name: str) -> None:
    """The checkpoint's weights load into the freshly built module, or BadInput."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except (RuntimeError, KeyError, ValueError) as error:
        text = str(error).strip().splitlines()
        raise BadInput(
            f"{path}: weights do not fit the {task_name} model "
            f"({text[0] if text else type(error).__name__})"
        ) from error
