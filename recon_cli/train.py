"""`recon train TASK`: one command over every training task, on the shared Lightning engine."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from recon.cli.common import Device, Json, Overwrite, Quiet, Reporter, key_value_table
from recon.pipelines.common.tasks import TaskName

SCALE = "Scale-out (Lightning)"
HYPER = "Hyper-parameters"
# no half-precision weights ("16-true", "bf16-true"): Adam's eps underflows to 0 in float16
# (NaN after the first step) and bfloat16 rounds most updates away; the mixed ones keep float32
# weights
Precision = Literal["32-true", "16-mixed", "bf16-mixed", "64-true"]
FLAGS = {  # setting -> the flag that sets it, for error messages
    "data": "--data",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "seed": "--seed",
    "num_workers": "--workers",
    "volume": "--volume",
    "pretrained_weights": "--pretrained-weights",
}


def train(
    task: Annotated[TaskName, typer.Argument(help="The training task.")],
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
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print the task's settings with defaults, valid ranges and help (YAML usable "
            "as --config; JSON with --json) and exit; needs no data.",
            rich_help_panel=HYPER,
        ),
    ] = False,
    epochs: Annotated[
        int | None,
        typer.Option(help="Passes over the training set, 1 to 100000.", rich_help_panel=HYPER),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Samples per step, per process, 1 to 65536.", rich_help_panel=HYPER),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate, in (0, 10].", rich_help_panel=HYPER)
    ] = None,
    pretrained_weights: Annotated[
        Path | None,
        typer.Option(
            help="Local torchvision weights file for the image encoder (voxel, parts, skull).",
            rich_help_panel=HYPER,
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Any task setting, KEY=VALUE (repeatable); see --print-config.",
            rich_help_panel=HYPER,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Run folder (default runs/TASK-TIME).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue RUN (its checkpoints/last.ckpt) with its task, data and settings; only "
            "--epochs (above the epochs it finished), --workers, --max-time, --limit-batches, "
            "--data (the same set moved) and the scale-out flags may change. --out defaults to "
            "RUN (moved is fine); another --out must be empty or new."
        ),
    ] = None,
    logger: Annotated[
        Literal["csv", "tensorboard"],
        typer.Option(help="csv, or tensorboard (event files in RUN/tensorboard as well)."),
    ] = "csv",
    workers: Annotated[
        int | None, typer.Option(help="Data-loading worker processes, 0 to 256.")
    ] = None,
    devices: Annotated[
        str,
        typer.Option(
            help="Devices per node: auto, a count (1 to 1024; on CPU at most the cores), or "
            "GPU ids like 0,1.",
            rich_help_panel=SCALE,
        ),
    ] = "auto",
    num_nodes: Annotated[
        int, typer.Option(help="Nodes (SLURM), 1 to 10000.", rich_help_panel=SCALE)
    ] = 1,
    strategy: Annotated[
        str,
        typer.Option(
            help="auto, ddp, fsdp, ... (a Lightning strategy name; not ddp_spawn: use ddp).",
            rich_help_panel=SCALE,
        ),
    ] = "auto",
    precision: Annotated[
        Precision,
        typer.Option(
            help="Numeric precision: 32-true, 16-mixed / bf16-mixed (half-precision arithmetic, "
            "float32 weights; on a GPU), or 64-true.",
            rich_help_panel=SCALE,
        ),
    ] = "32-true",
    channels_last: Annotated[
        bool,
        typer.Option(
            "--channels-last",
            help="Store 2D convolution weights channels-last (NHWC): faster on recent NVIDIA "
            "GPUs, with bf16-mixed above all; same numbers, 3D layers unchanged.",
            rich_help_panel=SCALE,
        ),
    ] = False,
    max_time: Annotated[
        str | None, typer.Option(help="Stop after minutes (above 0), or DD:HH:MM:SS.")
    ] = None,
    limit_batches: Annotated[
        str | None,
        typer.Option(
            help="Batches per epoch (training and validation): a whole number is a count "
            "(1 = one batch), a number with a decimal point a fraction in (0, 1] (1.0 = all).",
            metavar="N|FRACTION",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed, 0 to 2^32-1 (default: the task's).")
    ] = None,
    device: Device = "auto",
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Train a model for TASK; checkpoints, metrics.csv, curves.png and run.json go to --out.

    Settings resolve as: task defaults < --config YAML < flags < --set; `--print-config` lists
    every setting of TASK with its default, valid range and meaning. curves.png shows the losses
    and each metric against the baseline it must beat. Multi-GPU and SLURM multi-node runs need
    no code change: pass --devices, --num-nodes and --strategy ddp (--batch-size is per
    process). Only global rank 0 writes the run folder and the summary.

    Example: recon train voxel --data pix3d_synth --epochs 20 --out runs/voxel
    """
    import contextlib
    import sys
    import time

    from recon.pipelines.common.engine import (
        RunOptions,
        fit,
        parse_set,
        resolve_config,
        resume_config,
    )
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.tasks import load_task
    from recon.pipelines.common.trainer_flags import resume_command

    ui = Reporter(json_out, quiet)
    if resume is not None and overwrite:  # --overwrite did nothing beside --resume
        raise BadInput(
            "--resume continues the run in its folder and --overwrite would start it again: "
            "give one"
        )
    spec = load_task(task)
    overrides = {
        "data": str(data) if data else None,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "num_workers": workers,
    }
    if volume is not None:
        overrides["volume"] = str(volume)
    if pretrained_weights is not None:
        overrides["pretrained_weights"] = str(pretrained_weights)
    labels = {k: FLAGS[k] for k, v in overrides.items() if v is not None}
    extra = parse_set(set_ or [])
    overrides.update(extra)
    labels.update({k: f"--set {k}" for k in extra})
    if print_config:  # the settings as --config, flags and --set make them, checked as a run
        given = config is not None or any(v is not None for v in overrides.values())
        if resume is not None:  # the checkpoint's settings, as the resumed run would use them
            cfg = resume_config(spec, _resume_file(resume), config, overrides, labels)
        else:
            cfg = resolve_config(spec, config, overrides, labels) if given else None
        if cfg is not None and spec.check_settings is not None:
            spec.check_settings(cfg)  # the run's checks that read no files
        _print_config(spec, json_out, cfg)
        return
    if resume is not None:
        resume = _resume_file(resume)
        cfg = resume_config(spec, resume, config, overrides, labels)
        run_dir = out or _run_folder_of(resume)
    else:
        cfg = resolve_config(spec, config, overrides, labels)
        run_dir = out or Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
        if out is None:  # a given --out was checked as the command started
            from recon.pipelines.common.outputs import check_outside_runs

            check_outside_runs(run_dir)
    run = RunOptions(
        out=run_dir,
        resume=resume,
        device=device,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        channels_last=channels_last,
        max_time=max_time,
        limit_batches=limit_batches,
        logger=logger,
        overwrite=overwrite,
        quiet=quiet,
        inputs=(config,) if config is not None else (),
        announce=lambda folder: ui.info(f"training [bold]{task}[/bold] -> {folder}"),
    )
    with contextlib.redirect_stdout(sys.stderr):  # progress and model summary: stderr only
        result = fit(spec, cfg, run)
    if result["global_rank"] != 0:
        return  # every process trained; rank 0 alone reports
    if result["time_limit_reached"]:
        done = result["epochs_run"]
        sys.stderr.write(
            f"note: --max-time reached after {done} of {cfg.epochs} epochs; the run is kept: "
            f"continue it with `{resume_command(task, Path(result['out']), run)}`\n"
        )
    rows = [
        ("run folder", result["out"]),
        ("epochs", result["epochs_run"]),
        (f"best {result['monitor']}", result["best_score"]),
        ("best checkpoint", result["best_checkpoint"]),
        ("processes", result["processes"]),
        ("seconds (setup + fit)", f"{result['timings_s']['setup']:.1f} + {result['seconds']:.1f}"),
    ]
    rows += [(k, v) for k, v in sorted(result["metrics"].items())]
    for metric, line in result["baselines"].items():
        if line["beats_baseline"] is not None:
            verdict = "beats" if line["beats_baseline"] else "does not beat"
            rows.append(
                (
                    f"{metric} vs {line['label']}",
                    f"{line['value']:.4g} {verdict} {line['baseline_value']:.4g} "
                    f"({line['value'] - line['baseline_value']:+.2g})",
                )
            )
    ui.result(result, key_value_table(f"train {task}", rows))


def _print_config(spec, json_out: bool, cfg=None) -> None:
    """The task's settings on stdout: YAML with comments, or one JSON object; with cfg (the
    settings --config and --set resolve to), each setting's value in it too."""
    import json

    from recon.pipelines.common.engine import config_dict
    from recon.pipelines.common.settings import describe_settings, settings_yaml

    values = None if cfg is None else config_dict(cfg)
    if json_out:
        document = {"task": spec.name, "settings": describe_settings(spec, values)}
        typer.echo(json.dumps(document))
    else:
        typer.echo(settings_yaml(spec, values), nl=False)


def _resume_file(resume: Path) -> Path:
    """--resume as a checkpoint file: a run folder gives its checkpoints/last.ckpt (and a
    checkpoints folder its last.ckpt)."""
    from recon.pipelines.common.checkpoints import checkpoint_in
    from recon.pipelines.common.errors import BadInput

    if not resume.is_dir():
        return resume
    last = checkpoint_in(resume, "last.ckpt")
    if last is not None:
        return last
    if (resume / "run.json").is_file():
        raise BadInput(
            f"{resume}: this run wrote no checkpoints/last.ckpt (it stopped before its first "
            "epoch ended), so it cannot be resumed; start it again with --overwrite"
        )
    raise BadInput(
        f"{resume}: a folder without checkpoints/last.ckpt; --resume takes a run folder or "
        "its last.ckpt"
    )


def _run_folder_of(checkpoint: Path) -> Path:
    """RUN for RUN/checkpoints/last.ckpt; otherwise --out must be given."""
    from recon.pipelines.common.errors import BadInput

    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent
    raise BadInput(f"{checkpoint}: not in a RUN/checkpoints folder; pass --out RUN")
