"""`recon train TASK`: one command over every training task, on the shared Lightning engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import Device, Json, Overwrite, Quiet, Reporter, key_value_table
from recon.pipelines.common.tasks import TASKS

SCALE = "Scale-out (Lightning)"
HYPER = "Hyper-parameters"


def train(
    task: Annotated[str, typer.Argument(help=" | ".join(TASKS))],
    data: Annotated[Path | None, typer.Option(help="Data set root.", rich_help_panel=HYPER)] = None,
    volume: Annotated[
        Path | None, typer.Option("-v", "--volume", help="CT volume (task pose).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML file of settings (overrides the task's defaults).", rich_help_panel=HYPER
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Passes over the training set.", rich_help_panel=HYPER)
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Samples per step, per process.", rich_help_panel=HYPER),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.", rich_help_panel=HYPER)] = None,
    pretrained_weights: Annotated[
        Path | None,
        typer.Option(
            help="Local torchvision weights file for the image encoder (voxel, parts).",
            rich_help_panel=HYPER,
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Any task setting, KEY=VALUE (repeatable).", rich_help_panel=HYPER
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Run folder (default runs/TASK-TIME).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue RUN/checkpoints/last.ckpt with its task, data and settings; only "
            "--epochs, --max-time and the scale-out flags may change. --out defaults to RUN."
        ),
    ] = None,
    logger: Annotated[
        str, typer.Option(help="csv, or tensorboard (event files in RUN/tensorboard as well).")
    ] = "csv",
    devices: Annotated[
        str,
        typer.Option(
            help="Devices per node: auto, a count, or ids like 0,1.", rich_help_panel=SCALE
        ),
    ] = "auto",
    num_nodes: Annotated[int, typer.Option(help="Nodes (SLURM).", rich_help_panel=SCALE)] = 1,
    strategy: Annotated[
        str, typer.Option(help="auto, ddp, fsdp, ...", rich_help_panel=SCALE)
    ] = "auto",
    precision: Annotated[
        str, typer.Option(help="32-true, bf16-mixed, 16-mixed, ...", rich_help_panel=SCALE)
    ] = "32-true",
    max_time: Annotated[
        str | None, typer.Option(help="Stop after minutes, or DD:HH:MM:SS.")
    ] = None,
    limit_batches: Annotated[
        float | None, typer.Option(help="Batches per epoch: a fraction <= 1 or a count.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the task's).")] = None,
    device: Device = "auto",
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Train a model for TASK; checkpoints, metrics.csv, curves.png and run.json go to --out.

    Settings resolve as: task defaults < --config YAML < flags < --set. Multi-GPU and SLURM
    multi-node runs need no code change: pass --devices, --num-nodes and --strategy ddp
    (--batch-size is per process). Only global rank 0 writes the run folder and the summary.

    Example: recon train voxel --data pix3d_synth --epochs 20 --out runs/voxel
    """
    import time

    from recon.pipelines.common.engine import (
        RunOptions,
        fit,
        parse_set,
        resolve_config,
        resume_config,
    )
    from recon.pipelines.common.tasks import load_task

    ui = Reporter(json_out, quiet)
    spec = load_task(task)
    overrides = {
        "data": str(data) if data else None,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
    }
    if volume is not None:
        overrides["volume"] = str(volume)
    if pretrained_weights is not None:
        overrides["pretrained_weights"] = str(pretrained_weights)
    overrides.update(parse_set(set_ or []))
    if resume is not None:
        cfg = resume_config(spec, resume, config, overrides)
        run_dir = out or _run_folder_of(resume)
    else:
        cfg = resolve_config(spec, config, overrides)
        run_dir = out or Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunOptions(
        out=run_dir,
        resume=resume,
        device=device,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        max_time=max_time,
        limit_batches=limit_batches,
        logger=logger,
        overwrite=overwrite,
        quiet=quiet or json_out,
        announce=lambda folder: ui.info(f"training [bold]{task}[/bold] -> {folder}"),
    )
    result = fit(spec, cfg, run)
    if result["global_rank"] != 0:
        return  # every process trained; rank 0 alone reports
    rows = [
        ("run folder", result["out"]),
        ("epochs", result["epochs_run"]),
        (f"best {result['monitor']}", result["best_score"]),
        ("best checkpoint", result["best_checkpoint"]),
        ("processes", result["processes"]),
        ("seconds", result["seconds"]),
    ]
    rows += [(k, v) for k, v in sorted(result["metrics"].items())]
    ui.result(result, key_value_table(f"train {task}", rows))


def _run_folder_of(checkpoint: Path) -> Path:
    """RUN for RUN/checkpoints/last.ckpt; otherwise --out must be given."""
    from recon.pipelines.common.errors import BadInput

    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent
    raise BadInput(f"{checkpoint}: not in a RUN/checkpoints folder; pass --out RUN")
