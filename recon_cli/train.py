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
    epochs: Annotated[int | None, typer.Option(rich_help_panel=HYPER)] = None,
    batch_size: Annotated[int | None, typer.Option(rich_help_panel=HYPER)] = None,
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
        typer.Option(help="Continue from a checkpoint (e.g. RUN/checkpoints/last.ckpt)."),
    ] = None,
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
    multi-node runs need no code change: pass --devices, --num-nodes and --strategy ddp.

    Example: recon train voxel --data pix3d_synth --epochs 20 --out runs/voxel
    """
    import time

    from recon.pipelines.common.engine import RunOptions, fit, parse_set, resolve_config
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
        overwrite=overwrite,
        quiet=quiet or json_out,
        announce=lambda folder: ui.info(f"training [bold]{task}[/bold] -> {folder}"),
    )
    result = fit(spec, cfg, run)
    rows = [
        ("run folder", result["out"]),
        ("epochs", result["epochs_run"]),
        (f"best {result['monitor']}", result["best_score"]),
        ("best checkpoint", result["best_checkpoint"]),
        ("seconds", result["seconds"]),
    ]
    rows += [(k, v) for k, v in sorted(result["metrics"].items())]
    ui.result(result, key_value_table(f"train {task}", rows))
