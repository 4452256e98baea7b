"""`recon synth pix3d|parts` and `recon predict voxel|parts`: the image -> voxel tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    Device,
    Json,
    Overwrite,
    Quiet,
    Reporter,
    Seed,
    ShardOption,
    SkipDone,
    key_value_table,
)

Images = Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, ...).")]
Checkpoint = Annotated[Path, typer.Option("-c", "--checkpoint", help="A `recon train` checkpoint.")]
OutDir = Annotated[Path, typer.Option("-o", "--out", help="Output folder.")]
Format = Annotated[str, typer.Option("--format", help="Mesh format: stl | ply | obj | glb.")]
Render = Annotated[bool, typer.Option("--render", help="Also write a shaded PNG of each mesh.")]


def synth_pix3d(
    out: OutDir,
    models: Annotated[int, typer.Option(help="3D models per category (5 categories).")] = 6,
    views: Annotated[int, typer.Option(help="Rendered images per model.")] = 8,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Write a synthetic Pix3D data set (beds, bookcases, chairs, sofas, tables).

    pix3d.json, img/, mask/, model/<cat>/<id>/model.obj and voxel.mat (128^3; every third as
    MATLAB v7.3, the rest v5); shaded renders from random viewpoints.

    Example: recon synth pix3d -o pix3d_synth --models 6 --views 8
    """
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.outputs import atomic_dir, check_output
    from recon.pipelines.occupancy.pix3d import synth_pix3d as make

    ui = Reporter(json_out, quiet)
    if models < 1 or views < 1:
        raise BadInput("--models and --views must be at least 1")
    out = check_output(out, overwrite)
    with atomic_dir(out) as folder:
        summary = make(folder, models, views, seed, track=ui.track)
    ui.result(
        {"out": str(out), **summary},
        key_value_table(
            f"synth pix3d -> {out}",
            [
                ("images", summary["images"]),
                ("models", summary["models"]),
                *summary["per_class"].items(),
            ],
        ),
    )


def synth_parts(
    out: OutDir,
    parts: Annotated[int, typer.Option(help="Parts per class (5 classes).")] = 6,
    views: Annotated[int, typer.Option(help="Rendered images per part.")] = 8,
    size: Annotated[int, typer.Option(help="Image side, pixels.")] = 160,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Write a synthetic machine-parts set: STL models and shaded images.

    models/<class>/<part>.stl (mm) and images/<class>/<part>/view_NN.png: plates with holes,
    brackets, L-profiles, flanges and shafts.

    Example: recon synth parts -o parts_synth --parts 6 --views 8
    """
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.outputs import atomic_dir, check_output
    from recon.pipelines.occupancy.parts import synth_parts as make

    ui = Reporter(json_out, quiet)
    if parts < 1 or views < 1 or size < 32:
        raise BadInput("--parts and --views must be at least 1, --size at least 32")
    out = check_output(out, overwrite)
    with atomic_dir(out) as folder:
        summary = make(folder, parts, views, seed, size, track=ui.track)
    ui.result(
        {"out": str(out), **summary},
        key_value_table(
            f"synth parts -> {out}",
            [
                ("images", summary["images"]),
                ("parts", summary["parts"]),
                *summary["per_class"].items(),
            ],
        ),
    )


def _predict(task: str, images, checkpoint, out, fmt, render, device, batch, json_out, quiet):
    import time

    from rich.table import Table

    from recon.pipelines.common.batch import (
        check_batch_output,
        output_folder,
        parse_shard,
        plan_batch,
    )
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import require_file
    from recon.pipelines.common.outputs import run_record, write_json
    from recon.pipelines.occupancy.predict import FORMATS, output_names, predict_images

    shard, skip_done, overwrite = batch
    ui = Reporter(json_out, quiet)
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise BadInput(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    names = output_names(images)  # from the whole list, so every shard names files alike
    for path in images:
        require_file(path, "image")
    require_file(checkpoint, "checkpoint")
    target = Path(out).expanduser().absolute()
    suffixes = (".npy", f".{fmt}", ".png")
    plan = plan_batch(
        len(images),
        lambda i: [target / f"{names[i]}{suffix}" for suffix in suffixes],
        parse_shard(shard),
        skip_done,
        overwrite,
        is_done=lambda i: _prediction_complete(target, names[i], fmt, render),
    )
    out = check_batch_output(out, plan, overwrite)
    clock = time.perf_counter()
    with output_folder(out, plan) as folder:
        results = []
        if plan.todo:
            todo = [images[i] for i in plan.todo]
            todo_names = [names[i] for i in plan.todo]
            results = predict_images(
                task, checkpoint, todo, todo_names, folder, fmt, render, device, ui.track
            )
        seconds = time.perf_counter() - clock
        for record in results:
            for key in ("grid", "mesh", "render"):
                if record.get(key):
                    record[key] = str(out / Path(record[key]).name)
        config = {"checkpoint": str(checkpoint), "format": fmt, "render": render}
        skipped = [str(images[i]) for i in plan.done]
        write_json(
            folder / plan.shard.results_name(),
            run_record(
                f"predict {task}",
                None,
                config,
                {"predict": seconds},
                {"results": results, "skipped_inputs": skipped, **plan.summary()},
            ),
        )
    table = Table(title=f"predict {task} -> {out}", title_justify="left")
    for column in ("image", "occupied voxels", "mesh"):
        table.add_column(column)
    for record in results:
        table.add_row(
            Path(record["image"]).name,
            str(record["occupied"]),
            record["mesh"] or "(empty: no surface)",
        )
    summary = {"out": str(out), "task": task, "seconds": round(seconds, 3), "results": results}
    ui.result({**summary, "skipped_inputs": skipped, **plan.summary()}, table)


def _prediction_complete(out: Path, stem: str, fmt: str, render: bool) -> bool:
    """The grid is there, and so are the mesh and render it calls for (none when it is empty)."""
    import numpy as np

    grid = out / f"{stem}.npy"
    if not grid.is_file():
        return False
    try:
        occupied = bool((np.load(grid) >= 0.5).any())
    except (OSError, ValueError):
        return False
    wanted = [out / f"{stem}.{fmt}"] + ([out / f"{stem}.png"] if render else [])
    return not occupied or all(p.is_file() and p.stat().st_size > 0 for p in wanted)


def predict_voxel(
    images: Images,
    checkpoint: Checkpoint,
    out: OutDir,
    fmt: Format = "stl",
    render: Render = False,
    device: Device = "auto",
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Predict a 3D shape from each image with a `recon train voxel` model.

    Writes a 32^3 occupancy grid (.npy) and its closed surface (marching cubes at 0.5) in the
    unit cube, z up. With --shard K/N (or in a SLURM array job) or --skip-done the outputs go
    straight into OUT, which the shards share, and each shard writes run.shard-K-of-N.json.

    Example: recon predict voxel chair.png sofa.png -c run/checkpoints/best.ckpt -o shapes
    """
    batch = (shard, skip_done, overwrite)
    _predict("voxel", images, checkpoint, out, fmt, render, device, batch, json_out, quiet)


def predict_parts(
    images: Images,
    checkpoint: Checkpoint,
    out: OutDir,
    fmt: Format = "stl",
    render: Render = False,
    device: Device = "auto",
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Predict a part's 3D shape from each image with a `recon train parts` model.

    Writes the occupancy grid (.npy) and closed surface in the unit cube.

    Example: recon predict parts flange.png -c run/checkpoints/best.ckpt -o parts_out --render
    """
    batch = (shard, skip_done, overwrite)
    _predict("parts", images, checkpoint, out, fmt, render, device, batch, json_out, quiet)
