"""The one training engine behind `recon train TASK`, on Lightning.

A task supplies a TaskSpec (settings.py): its config dataclass (a TrainConfig subclass holding
the task's defaults), a `build(cfg) -> (LightningModule, LightningDataModule)` function, the
validation metric that picks the best checkpoint, and the baselines its metrics must beat. The
engine checks every input (the flags and the run folder before Lightning is imported, the data
and the batches of its splits before a Trainer is built), seeds everything, runs the Trainer,
and leaves a run folder (runfolder.py): config.yaml, checkpoints/ (checkpoints.py), metrics.csv,
curves.png (curves.py), run.json. A fit that fails or is stopped before it has a checkpoint
(nothing there to resume or use) takes back what it added to the run folder, so the corrected
command is not refused.

Several processes (Lightning's DDP launcher re-running the command, or `srun` starting every rank
at once): only global rank 0 checks and writes the run folder; the other ranks skip it and meet
rank 0 at the process-group rendezvous. Seeded, sharded loading is in sampling.py; the run flags
are checked in trainer_flags.py. This module keeps the names other modules import from it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from recon.pipelines.common.checkpoints import (
    SPLIT_KEY,
    ResumePoint,
    checkpoint_callbacks,
    forget_read_checkpoint,
    load_checkpoint,
    load_checkpoint_file,
    load_resume_checkpoint,
    require_fitting_weights,
    resume_checkpoint_io,
)
from recon.pipelines.common.curves import baseline_summary, plot_curves
from recon.pipelines.common.errors import BadInput, JobFailed
from recon.pipelines.common.ranks import launched_as_rank_zero
from recon.pipelines.common.runfolder import (
    RUN_FOLDERS,
    RUN_OUTPUTS,
    check_resume_dir,
    check_run_dir,
    folder_entries,
    history_writer_class,
    missing_parents,
    prepare_run_dir,
    remove_added,
    run_loggers,
)
from recon.pipelines.common.sampling import (
    EpochSeed,
    EpochShuffle,
    SplitLoaders,
    process_group,
    seed_all,
    seeded_loader,
    split_batches,
    split_record,
)
from recon.pipelines.common.settings import (
    RESUMABLE_SETTINGS,
    Baseline,
    RunOptions,
    TaskSpec,
    TrainConfig,
    config_dict,
    parse_set,
    renamed_settings,
    requested_settings,
    require_same_config,
    resolve_config,
    resume_config,
    setting,
)
from recon.pipelines.common.trainer_flags import (
    LOGGERS,
    accelerator,
    batch_limit,
    check_batch_limit,
    check_scale,
    max_time,
    process_count,
    resume_command,
    task_strategy,
    trainer_error,
)

__all__ = [
    "LOGGERS",
    "RESUMABLE_SETTINGS",
    "RUN_FOLDERS",
    "RUN_OUTPUTS",
    "Baseline",
    "EpochShuffle",
    "RunOptions",
    "SplitLoaders",
    "TaskSpec",
    "TrainConfig",
    "check_run_dir",
    "config_dict",
    "fit",
    "load_checkpoint",
    "load_checkpoint_file",
    "load_resume_checkpoint",
    "parse_set",
    "plot_curves",
    "prepare_run_dir",
    "process_group",
    "requested_settings",
    "resolve_config",
    "resume_config",
    "seed_all",
    "seeded_loader",
    "setting",
]


def fit(task: TaskSpec, cfg: TrainConfig, run: RunOptions) -> dict[str, Any]:
    """Train task with cfg; returns the final metrics, best score, baselines, output paths and
    this process's rank (only global rank 0 writes the run folder).

    The flags and the run folder are checked before Lightning is imported, the data and its
    splits before a Trainer is built; a fit that fails or is stopped before it has a
    checkpoint takes back what it added to the run folder, and one stopped by Ctrl-C or
    SIGTERM after that still writes curves.png and run.json for the epochs done."""
    import warnings

    started = time.perf_counter()
    kind, devices = accelerator(run.device, run.devices)
    check_scale(kind, devices, run)
    limits = max_time(run.max_time), batch_limit(run.limit_batches)
    rank_zero = launched_as_rank_zero()
    inputs = _path_settings(cfg)
    if rank_zero:  # the other ranks never judge the folder rank 0 prepares
        check_run_dir(run, f"train {task.name}", inputs)
    if task.check is not None:
        task.check(cfg, run.resume)
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        stack.callback(forget_read_checkpoint)  # a resume's checkpoint Lightning did not take
        stack.callback(_leave_process_group)
        resumed = _resume_point(task, cfg, run, rank_zero)
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        seed_all(cfg.seed)
        module, datamodule = task.build(cfg)
        resumed_epoch, trained_on = None, None
        if resumed is not None:
            require_fitting_weights(Path(run.resume), resumed.state_dict, module, task.name)
            resumed_epoch, trained_on = resumed.epoch, resumed.split
        processes = process_count(kind, devices, run.num_nodes)
        check_splits(task, cfg, datamodule, limits[1], processes, run.resume is not None)
        split = split_record(datamodule, cfg.data)
        if trained_on is not None and split is not None:
            require_same_split(Path(run.resume), trained_on, split, cfg.data)
        with _lightning_chatter(run.quiet):
            trainer, checkpoints, first_step = _trainer(
                task, cfg, run, (kind, devices), limits, split
            )
            if trainer.is_global_zero and not rank_zero:  # a launcher variable misled the guess
                check_run_dir(run, f"train {task.name}", inputs)
                if resumed is not None:
                    check_resume_dir(_run_out(run), Path(run.resume), resumed.run_folders)
            resumed = None  # Lightning restores the checkpoint itself
            if trainer.world_size != processes:
                check_splits(
                    task, cfg, datamodule, limits[1], trainer.world_size, run.resume is not None
                )
            if trainer.world_size > 1:
                _reduce_logs_across_processes(module)
            out = _run_out(run)
            before = folder_entries(out) if trainer.is_global_zero else None
            parents = missing_parents(out)
            try:
                if trainer.is_global_zero:
                    _prepare(task, cfg, run, out, trainer, resumed_epoch)
                clock = time.perf_counter()
                trainer.fit(module, datamodule=datamodule, ckpt_path=run.resume, weights_only=True)
            except BaseException as error:
                _quiet_worker_deaths()
                stopped = first_step.done and _stopped(trainer, error)
                if (
                    trainer.is_global_zero
                    and _trains_here(trainer)
                    and not (first_step.done and _has_checkpoint(out))
                ):
                    remove_added(out, before, parents)  # nothing to use: as if never started
                elif trainer.is_global_zero and stopped:
                    timings = {"setup": clock - started, "fit": time.perf_counter() - clock}
                    _record_stopped(task, cfg, run, trainer, checkpoints[0], out, timings)
                raise
            if trainer.is_global_zero and _trains_here(trainer) and not _has_checkpoint(out):
                # --max-time ran out before the first checkpoint: nothing to resume or use
                remove_added(out, before, parents)
                raise BadInput(
                    f"--max-time {run.max_time}: the time ran out before the first epoch ended "
                    "(nothing to keep); give it more time"
                )
    timings = {"setup": clock - started, "fit": time.perf_counter() - clock}
    return _finish(task, cfg, trainer, checkpoints[0], out, timings)


def _leave_process_group() -> None:
    """Destroy this process's torch.distributed group once its fit is over (Lightning leaves it
    up): its gloo threads then stop before the interpreter's exit tears them down, where a rank
    can abort now and then. Local to the process: no rank waits for another."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def _run_out(run: RunOptions) -> Path:
    """The run folder of run as an absolute path."""
    return Path(run.out).expanduser().absolute()


def _resume_point(
    task: TaskSpec, cfg: TrainConfig, run: RunOptions, rank_zero: bool
) -> ResumePoint | None:
    """The checked ResumePoint of --resume (None without one): a checkpoint of task, with cfg's
    settings, with epochs left to train under cfg.epochs, continued (rank 0 checks) into its own
    run folder or an empty or new one."""
    if run.resume is None:
        return None
    checkpoint = Path(run.resume)
    resumed = load_resume_checkpoint(checkpoint, task.name)
    saved = renamed_settings(task, resumed.config, notice=False)
    require_same_config(checkpoint, saved, config_dict(cfg))
    if resumed.epochs_done >= cfg.epochs:
        done = resumed.epochs_done
        raise BadInput(
            f"{checkpoint}: the run already finished {done} epoch{'' if done == 1 else 's'} "
            f"(--epochs {cfg.epochs}); raise --epochs above {done} to train on"
        )
    if rank_zero:
        check_resume_dir(_run_out(run), checkpoint, resumed.run_folders)
    return resumed


def _has_checkpoint(out: Path) -> bool:
    """Whether the run folder holds its last.ckpt (this run's, or its own from before): a run
    stopped before its first one leaves nothing to resume. A stop between best.ckpt and
    last.ckpt (written one after the other at an epoch's end) counts as before it."""
    return (out / "checkpoints" / "last.ckpt").is_file()


def _quiet_worker_deaths() -> None:
    """The fit is over: torch's SIGCHLD handler, which raises a DataLoader worker's death in
    the main process wherever it then is, would cut short the run record of a stop that ended
    the workers too (scancel signals the whole group). Their death no longer matters."""
    import signal
    import threading

    if hasattr(signal, "SIGCHLD") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


# what a DataLoader worker's death by the same stop signal ends the fit with (a stop sent to
# the process group, as scancel and a SLURM time limit send it, reaches the workers too)
_WORKER_STOPPED = re.compile(r"DataLoader worker .* killed by signal: (Terminated|Interrupt)")


def _stopped(trainer, error: BaseException) -> bool:
    """Whether the fit ended by Ctrl-C or SIGTERM (which the CLI raises as KeyboardInterrupt;
    Lightning shuts down and exits 1 on it), not by an error: also when the stop ended a data
    worker first and the fit ends with that worker's error."""
    from recon.pipelines.common.stops import STOPS_RECEIVED

    if trainer.interrupted and isinstance(error, KeyboardInterrupt | SystemExit):
        return True
    return isinstance(error, RuntimeError) and bool(
        STOPS_RECEIVED or _WORKER_STOPPED.search(str(error))
    )


def _record_stopped(
    task: TaskSpec,
    cfg: TrainConfig,
    run: RunOptions,
    trainer,
    best,
    out: Path,
    timings: dict[str, float],
) -> None:
    """curves.png and run.json of a fit stopped by Ctrl-C or SIGTERM, for the epochs done
    (run.json says "interrupted": true), and the command that continues it (STOP_NOTES); a
    failure here is one line, the stop goes on."""
    from recon.pipelines.common.stops import STOP_NOTES

    try:
        result = _finish(task, cfg, trainer, best, out, timings, interrupted=True)
    except Exception as error:  # noqa: BLE001 - the exit code of the stop matters more
        sys.stderr.write(f"warning: {out}: run.json and curves.png not written ({error})\n")
        return
    if result["last_checkpoint"]:
        epochs = result["epochs_run"]
        STOP_NOTES.append(
            f"the run is kept after {epochs} epoch{'s' * (epochs != 1)}: continue it with "
            f"`{resume_command(task.name, out, run)}`"
        )


def _path_settings(cfg: TrainConfig) -> tuple[Path, ...]:
    """The settings that name an existing file or folder (the data root, weights, a CT)."""
    values = [v for v in config_dict(cfg).values() if isinstance(v, str) and v.strip()]
    return tuple(Path(v).expanduser() for v in values if Path(v).expanduser().exists())


def check_splits(
    task: TaskSpec,
    cfg: TrainConfig,
    datamodule,
    limit: float | None,
    processes: int,
    resumed: bool = False,
) -> None:
    """One line, before the run folder is written, for a training split whose batches would
    hold fewer samples than the task's batch normalisation needs, and for a fractional
    --limit-batches that leaves a split no batch (Lightning's refusal, after the run began).
    resumed: a resume, whose data and settings are the checkpoint's (the advice differs)."""
    sizes = split_batches(datamodule, processes)
    need = task.min_batch(cfg) if task.min_batch is not None else 1
    items, batch, _, smallest = sizes["training"]
    if 0 < smallest < need:
        why = "its batch normalisation cannot train on a batch of one sample"
        least = (need - 1) * processes + 1
        if math.ceil(items / processes) < need:
            on = f" on {processes} processes" if processes > 1 else ""
            advice = (
                "resume on fewer processes (the data and settings are the checkpoint's)"
                if resumed
                else f"add data, or lower val_fraction ({cfg.val_fraction:g})"
            )
            raise BadInput(
                f"{cfg.data or task.name}: the training split has {items} "
                f"item{'' if items == 1 else 's'}, and task {task.name} needs at least "
                f"{least}{on} ({why}); {advice}"
            )
        raise BadInput(
            f"--batch-size {batch}: task {task.name} needs at least {need} samples in a "
            f"training batch with these settings ({why})"
        )
    each = f", on each of {processes} processes" if processes > 1 else ""
    for split, (items, batch, batches, _) in sizes.items():
        detail = f"{items} item{'' if items == 1 else 's'} at batch size {batch}{each}"
        check_batch_limit(limit, split, batches, detail)


def _trainer(
    task: TaskSpec,
    cfg: TrainConfig,
    run: RunOptions,
    hardware: tuple,
    limits: tuple,
    split: dict | None = None,
):
    """(Trainer, checkpoint callbacks, first-step callback) for a checked run; Lightning's
    refusal of a scale-out flag becomes one line naming it. split: the data's split_record,
    kept in each full-state checkpoint for a resume to compare."""
    import lightning as L
    from lightning.fabric.plugins import TorchCheckpointIO
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    out = _run_out(run)
    checkpoints = checkpoint_callbacks(task.monitor, task.mode, out / "checkpoints")
    first_step = _first_step_class()()
    callbacks = [*checkpoints, EpochSeed(cfg.seed), first_step, _finite_loss_class()()]
    callbacks.append(_stop_check_class()())
    callbacks.append(_epochs_done_class()())
    if split is not None:
        callbacks.append(_split_keeper_class()(split))
    callbacks += run.extra_callbacks
    if run.channels_last:
        callbacks.append(ChannelsLast())
    if task.examples is not None and getattr(cfg, "examples", 0) > 0:
        from recon.pipelines.common.examples import example_grids_callback

        callbacks.append(example_grids_callback(task.examples, cfg.examples))
    # the epoch bar shows on a stderr that is no terminal too: a batch job's log shows how it went
    bar = not run.quiet
    if bar:
        callbacks.append(_epoch_bar_class()(leave=False, console_kwargs={"stderr": True}))
    kind, devices = hardware
    limit_time, limit = limits
    if limit_time is not None:
        callbacks.append(_job_timer_class()(limit_time))
    try:
        trainer = L.Trainer(
            default_root_dir=out,
            max_epochs=cfg.epochs,
            accelerator=kind,
            devices=devices,
            num_nodes=run.num_nodes,
            strategy=task_strategy(task, run.strategy, process_count(kind, devices, run.num_nodes)),
            precision=run.precision,
            limit_train_batches=limit,
            limit_val_batches=limit,
            logger=run_loggers(out, run.logger),
            callbacks=callbacks,
            deterministic=kind == "cpu" or "warn",
            enable_progress_bar=bar,
            enable_model_summary=not run.quiet,
            log_every_n_steps=1,
        )
    except (MisconfigurationException, ValueError, TypeError, RuntimeError, ImportError) as error:
        raise trainer_error(error, run) from error
    if run.resume is not None and type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = resume_checkpoint_io()  # restores what was read
    if (run.precision, trainer.precision) == ("16-mixed", "bf16-mixed") and trainer.is_global_zero:
        sys.stderr.write(
            f"note: --precision {run.precision} runs as {trainer.precision} on CPU "
            "(float16 autocast needs a GPU)\n"
        )
    return trainer, checkpoints, first_step


def _prepare(
    task: TaskSpec, cfg: TrainConfig, run: RunOptions, out: Path, trainer, resumed_epoch: int | None
) -> None:
    """Rank 0: announce the run, create or clear the folder, metrics.csv's writer, config.yaml."""
    import yaml

    from recon.pipelines.common.outputs import atomic_file

    if run.announce is not None:
        run.announce(out)
    prepare_run_dir(out, run, resumed_epoch)
    # metrics.csv through a writer that keeps a resumed run's history (the stock one deletes
    # the file); set before fit, so Lightning never makes its own
    trainer.loggers[0]._experiment = history_writer_class()(str(out))
    with atomic_file(out / "config.yaml") as tmp:
        config = {"task": task.name, **config_dict(cfg)}
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))


def _finish(
    task: TaskSpec,
    cfg: TrainConfig,
    trainer,
    best,
    out: Path,
    timings: dict[str, float],
    interrupted: bool = False,
) -> dict[str, Any]:
    """The fit's result; rank 0 also draws curves.png and writes run.json. timings: seconds
    of "setup" (checks, data, model, Trainer) and of "fit" (training and validation);
    interrupted: the fit was stopped by Ctrl-C or SIGTERM."""
    from recon.pipelines.common.outputs import run_record, write_json

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if _scalar(v)}
    result = {
        "task": task.name,
        "out": str(out),
        "epochs_run": epochs_done(trainer),
        "best_checkpoint": str(best.best_model_path) if best.best_model_path else None,
        "last_checkpoint": str(last)
        if (last := out / "checkpoints" / "last.ckpt").is_file()
        else None,
        "best_score": float(best.best_model_score) if best.best_model_score is not None else None,
        "monitor": task.monitor,
        "metrics": metrics,
        "baselines": baseline_summary(metrics, task.baselines),
        "seconds": timings["fit"],  # training and validation; timings_s adds the setup
        "timings_s": timings,
        "processes": int(trainer.world_size),
        "global_rank": int(trainer.global_rank),
        "interrupted": interrupted,
        # --max-time, the only other way a fit ends before its epochs: the run is resumable
        "time_limit_reached": not interrupted and epochs_done(trainer) < cfg.epochs,
    }
    if trainer.is_global_zero:
        # the record first: a stop while the curves are drawn (matplotlib loading) still
        # leaves the finished run described
        record = run_record(f"train {task.name}", cfg.seed, config_dict(cfg), timings, result)
        write_json(out / "run.json", record)
        plot_curves(out / "metrics.csv", out / "curves.png", task.baselines)
    return result


def _trains_here(trainer) -> bool:
    """Whether this process runs rank 0's training loop itself (alone, or as the process that
    Lightning's DDP launcher re-runs the command beside), so its callbacks see the first step;
    under a spawning launcher (ddp_spawn, ddp_fork, xla) a copy trains and nothing is undone."""
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    launcher = trainer.strategy.launcher
    return launcher is None or isinstance(launcher, _SubprocessScriptLauncher)


@functools.cache
def _first_step_class():
    import lightning as L

    class FirstStep(L.Callback):
        """Notes that a training step of this fit completed: a fit that fails before one takes
        back what it added to the run folder, so the same command can simply be run again."""

        done = False

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.done = True

    return FirstStep


@functools.cache
def _stop_check_class():
    import lightning as L

    from recon.pipelines.common.stops import raise_unseen_stop

    class StopCheck(L.Callback):
        """Raises again a Ctrl-C or SIGTERM that was swallowed where it landed (in a finaliser,
        or a library's import), which let the run train on to its last epoch (outputs'
        UNSEEN_STOPS): checked after every batch."""

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            raise_unseen_stop()

        def on_validation_batch_end(self, trainer, pl_module, *args, **kwargs) -> None:
            raise_unseen_stop()

    return StopCheck


def epochs_done(trainer) -> int:
    """Epochs whose training finished: trainer.current_epoch, or one more between the hook
    where ModelCheckpoint writes an epoch's last.ckpt (its on_train_epoch_end, or its last
    validation) and Lightning's count of that epoch, where a stop left a checkpoint of N
    epochs in a run that said N - 1 (EpochsDone)."""
    counted = [c.done for c in trainer.callbacks if isinstance(c, _epochs_done_class())]
    return max([int(trainer.current_epoch), *counted])


@functools.cache
def _epochs_done_class():
    import lightning as L

    class EpochsDone(L.Callback):
        """Counts an epoch as done at its on_train_epoch_end, or once its end-of-epoch
        validation ran: in either hook before the checkpoints are written, since Lightning
        calls checkpoint callbacks last."""

        def __init__(self) -> None:
            self.done = 0

        def on_validation_end(self, trainer, pl_module) -> None:
            if (
                not trainer.sanity_checking
                and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
            ):
                self.done = max(self.done, int(trainer.current_epoch) + 1)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.done = max(self.done, int(trainer.current_epoch) + 1)

    return EpochsDone


@functools.cache
def _epoch_bar_class():
    from lightning.pytorch.callbacks import RichProgressBar

    class EpochBar(RichProgressBar):
        """Lightning's bar, counting epochs from 1 as every recon line does (`Epoch 3/3` in the
        last of 3 epochs, where Lightning's said `Epoch 2/2`)."""

        def _get_train_description(self, current_epoch: int) -> str:
            text = f"Epoch {current_epoch + 1}/{self.trainer.max_epochs}"
            return f"{text:{len(self.validation_description)}}"  # as wide: no flicker

    return EpochBar


@functools.cache
def _job_timer_class():
    from lightning.pytorch.callbacks import Timer

    class JobTimer(Timer):
        """--max-time: stops at the end of the epoch that passes the limit (a checkpoint taken
        inside an epoch resumes at the next one, losing the rest of it), counting this
        invocation's time only, so each job of a resumed chain gets the whole limit (Lightning's
        Timer adds the time the checkpoint's run had taken)."""

        def __init__(self, duration) -> None:
            super().__init__(duration, interval="epoch")

        def state_dict(self) -> dict:
            return {}

        def load_state_dict(self, state_dict: dict) -> None:
            pass

    return JobTimer


def require_same_split(checkpoint: Path, trained_on: dict, split: dict, data: str | None) -> None:
    """A resume reads the items its checkpoint trained and validated on (split_record), or
    one line saying how the set differs: another set, or this one changed, would move items
    between the splits and let validation score what was trained on."""
    if trained_on == split:
        return
    counts = lambda record: (  # noqa: E731
        f"{record.get('training')} training and {record.get('validation')} validation items"
    )
    now = counts(split) if counts(split) != counts(trained_on) else "other items in the splits"
    raise BadInput(
        f"{data}: not the set {checkpoint} was trained on ({counts(trained_on)}; now {now}): "
        "resume with that set (moved is fine), or start a new run"
    )


@functools.cache
def _split_keeper_class():
    import lightning as L

    class SplitKeeper(L.Callback):
        """Writes the data's split_record into every full-state checkpoint (SPLIT_KEY)."""

        def __init__(self, split: dict) -> None:
            self.split = split

        def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
            checkpoint[SPLIT_KEY] = self.split

    return SplitKeeper


@functools.cache
def _finite_loss_class():
    import lightning as L

    class FiniteLoss(L.Callback):
        """Stops a run whose training loss is no longer a number (a learning rate too high, an
        overflow) with one line, instead of training on and checkpointing NaN weights."""

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None and hasattr(loss, "isfinite") and not bool(loss.isfinite().all()):
                self._stop(trainer, float(loss.detach().float().mean()))

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            loss = trainer.callback_metrics.get("train/loss")
            if loss is not None and not math.isfinite(float(loss)):
                self._stop(trainer, float(loss))

        @staticmethod
        def _stop(trainer, value: float):
            raise JobFailed(
                f"training diverged: the training loss is {value} at epoch "
                f"{trainer.current_epoch} (try a lower --lr, or --precision 32-true)"
            )

    return FiniteLoss


@functools.cache
def _channels_last_class():
    import lightning as L
    import torch

    class ChannelsLast(L.Callback):
        """Store the weights of every 2D (transposed) convolution channels-last (NHWC) before
        the strategy moves and wraps the model, so DDP's gradient buckets are laid out for them.
        The convolutions then run channels-last whatever their input's layout (PyTorch follows
        the weight), which the tensor cores of recent NVIDIA GPUs prefer, with bf16-mixed
        above all. 3D layers (rank-5 weights) and everything else are left as they are. The
        numbers are the same; the checkpoint loads into a model of either layout."""

        def setup(self, trainer, pl_module, stage: str) -> None:
            for layer in pl_module.modules():
                if isinstance(layer, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                    layer.to(memory_format=torch.channels_last)

    return ChannelsLast


def ChannelsLast():  # noqa: N802 - factory keeps lightning out of module import
    """A Lightning callback storing 2D convolution weights channels-last (--channels-last)."""
    return _channels_last_class()()


def _reduce_logs_across_processes(module) -> None:
    """Every self.log / self.log_dict of module averages over the processes (sync_dist=True
    unless a call says otherwise), so a task needs no logging of its own for DDP: the best
    checkpoint and the learning-rate plateaus then follow the same numbers on every rank."""
    module.log = functools.partial(module.log, sync_dist=True)
    module.log_dict = functools.partial(module.log_dict, sync_dist=True)


_EXPECTED_WARNINGS = (
    ".*does not have many workers.*",
    ".*is smaller than the logging interval.*",
    ".*exists and is not empty.*",  # the run folder holds config.yaml; resumed runs reuse it
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*AMP with fp16 is not supported on CPU.*",  # said in recon's own note
    ".*is not supported by the model summary.*",  # mixed precision keeps float32 weights
)


class _NoTips:
    """logging filter: drops Lightning's advertising tips."""

    def filter(self, record) -> bool:
        return "Tip:" not in str(record.msg)


@contextlib.contextmanager
def _lightning_chatter(quiet: bool):
    """Drop Lightning's tips always, and its INFO lines (hardware, summary) with --quiet."""
    import logging

    import lightning  # noqa: F401 - sets its loggers' level on import: first, so ours stands

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
