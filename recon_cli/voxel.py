"""`recon synth pix3d|parts` and `recon predict voxel|parts`: the image -> voxel tasks."""

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from recon.cli.common import (
    Device,
    Json,
    Overwrite,
    Quiet,
    Reporter,
    Seed,
    ShardOption,
    SkipDone,
    check_range,
    check_seed,
    key_value_table,
    renamed,
    shown_names,
)

Images = Annotated[
    list[Path],
    typer.Argument(
        help="Image files (PNG, JPEG, TIFF, BMP, WebP) or folders: a folder stands for the images "
        "directly inside it, sorted by name (subfolders are not searched)."
    ),
]
Checkpoint = Annotated[Path, typer.Option("-c", "--checkpoint", help="A `recon train` checkpoint.")]
OutDir = Annotated[Path, typer.Option("-o", "--out", help="Output folder.")]
Format = Annotated[
    Literal["stl", "ply", "obj", "glb"],
    typer.Option("--format", case_sensitive=False, help="Mesh format."),
]
Render = Annotated[bool, typer.Option("--render", help="Also write a shaded PNG of each mesh.")]
Views = Annotated[int, typer.Option(help="Rendered images per model, 1 to 100.")]
MAX_COUNT = 20_000  # items per class
MAX_VIEWS = 100


def synth_pix3d(
    out: OutDir,
    count: Annotated[
        int, typer.Option("-n", "--count", help=f"3D models per category, 1 to {MAX_COUNT}.")
    ] = 6,
    views: Views = 8,
    seed: Seed = 0,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
    models: Annotated[int | None, typer.Option("--models", hidden=True)] = None,
) -> None:
    """Write a synthetic Pix3D data set (beds, bookcases, chairs, sofas, tables).

    pix3d.json, img/, mask/, model/<cat>/<id>/model.obj, voxel.mat (128^3; every third as
    MATLAB v7.3, the rest v5) and entries.json (that model's pix3d.json entries); shaded
    renders from random viewpoints. Each model depends only on the seed, its category and
    number, so shards (--shard K/N, or a SLURM array) together write the files of one run into
    the shared OUT; the shard that finds every model finished writes pix3d.json. The run's
    record is OUT/run.json (a shard's, OUT/run.shard-K-of-N.json).

    Example: recon synth pix3d -o pix3d_synth -n 6 --views 8
    """
    from recon.cli.synth_batch import SynthSet, run_synth
    from recon.pipelines.occupancy.pix3d import (
        model_entries,
        model_files,
        model_jobs,
        pix3d_summary,
        write_index,
        write_model,
    )

    ui = Reporter(json_out, quiet)
    count, flag = renamed("--models", "--count", models, count)
    check_range(flag, count, 1, MAX_COUNT)
    check_range("--views", views, 1, MAX_VIEWS)
    check_seed(seed)
    jobs = model_jobs(count)
    spec = SynthSet(
        "pix3d",
        len(jobs),
        "models",
        index="pix3d.json",
        outputs=lambda root, i: model_files(root, *jobs[i], views),
        done=lambda root, i: model_entries(root, *jobs[i], seed, views) is not None,
        make=lambda root, i: write_model(root, *jobs[i], views, seed),
        merge=lambda root: write_index(root, jobs, seed, views),
        config={"count": count, "views": views},
        flags={"views": "--views"},
        summarize=lambda made: (
            pix3d_summary(jobs, [e for entries in made for e in entries]) | {"models": len(made)}
        ),
    )
    out, _, fields = run_synth(spec, out, seed, shard, skip_done, overwrite, ui)
    ui.result(
        {"out": str(out), **fields},
        key_value_table(
            f"synth pix3d -> {out}",
            [
                ("models made", fields["models"]),
                ("images", fields["images"]),
                *((f"{name} images", n) for name, n in fields["per_class"].items()),
                *_batch_rows(fields),
            ],
        ),
    )


def _batch_rows(fields: dict) -> list[tuple[str, object]]:
    rows = [("index", fields["index"] or f"not yet ({fields['missing_items']} items to make)")]
    if fields["shard"] != "1/1" or fields["skipped"]:
        rows += [("shard", fields["shard"]), ("skipped (done)", fields["skipped"])]
    return rows


def synth_parts(
    out: OutDir,
    count: Annotated[
        int, typer.Option("-n", "--count", help=f"Parts per class (5 classes), 1 to {MAX_COUNT}.")
    ] = 6,
    views: Annotated[int, typer.Option(help="Rendered images per part, 1 to 100.")] = 8,
    size: Annotated[int, typer.Option(help="Image side, pixels, 32 to 1024.")] = 160,
    seed: Seed = 0,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
    parts: Annotated[int | None, typer.Option("--parts", hidden=True)] = None,
) -> None:
    """Write a synthetic machine-parts set: STL models and shaded images.

    models/<class>/<part>.stl (mm) with a record <part>.json beside it (its files and settings),
    and images/<class>/<part>/view_NN.png: plates with holes, brackets, L-profiles, flanges and
    shafts. Each part depends only on the seed, its class and number, so shards (--shard K/N, or
    a SLURM array) together write the files of one run into the shared OUT. The run's record
    is OUT/run.json (a shard's, OUT/run.shard-K-of-N.json). Until every part is made,
    check-data reports the set as unfinished-set and train parts refuses it.

    Example: recon synth parts -o parts_synth -n 6 --views 8
    """
    from recon.cli.synth_batch import SynthSet, run_synth
    from recon.pipelines.occupancy.parts import (
        part_files,
        part_jobs,
        part_record,
        parts_summary,
        write_part,
    )

    ui = Reporter(json_out, quiet)
    count, flag = renamed("--parts", "--count", parts, count)
    check_range(flag, count, 1, MAX_COUNT)
    check_range("--views", views, 1, MAX_VIEWS)
    check_range("--size", size, 32, 1024)
    check_seed(seed)
    jobs = part_jobs(count)
    spec = SynthSet(
        "parts",
        len(jobs),
        "parts",
        outputs=lambda root, i: part_files(root, *jobs[i], views),
        done=lambda root, i: part_record(root, *jobs[i], seed, views, size) is not None,
        make=lambda root, i: write_part(root, *jobs[i], views, seed, size, per_class=count),
        config={"count": count, "views": views, "size": size},
        flags={"views": "--views", "size": "--size"},
        summarize=parts_summary,
    )
    out, _, fields = run_synth(spec, out, seed, shard, skip_done, overwrite, ui)
    rows = [("parts made", fields["parts"]), ("images", fields["images"])]
    rows += [(f"{name} parts", n) for name, n in fields["per_class"].items()]
    if fields["shard"] != "1/1" or fields["skipped"]:
        rows += [("shard", fields["shard"]), ("skipped (done)", fields["skipped"])]
    ui.result({"out": str(out), **fields}, key_value_table(f"synth parts -> {out}", rows))


def _predict(
    task: str, images, checkpoint, out, fmt, render, device, batch, json_out, quiet, boxes=None
):
    import time

    from rich.table import Table

    from recon.cli.predict import add_skipped_row
    from recon.pipelines.common.batch import (
        earlier_results,
        every_result,
        output_folder,
        plan_inputs,
    )
    from recon.pipelines.common.outputs import run_record, write_json
    from recon.pipelines.occupancy.parts import IMAGE_SUFFIXES
    from recon.pipelines.occupancy.predict import listed_prediction, predict_images

    ui = Reporter(json_out, quiet)
    fmt = fmt.lower()
    command = f"predict {task}"
    kinds = ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
    suffixes = (".npy", f".{fmt}", ".png")
    inputs = plan_inputs(
        images,
        lambda p: p.suffix.lower() in IMAGE_SUFFIXES,
        f"images ({kinds})",
        out,
        lambda target, name: [target / f"{name}{suffix}" for suffix in suffixes],
        batch,
        command=command,
        checkpoint=checkpoint,
        settings=({"format": fmt, "render": render}, {"format": "--format", "render": "--render"}),
        is_done=lambda target, name: _prediction_complete(target, name, fmt, render),
    )
    images, names, plan, out = inputs.files, inputs.names, inputs.plan, inputs.out
    if boxes is not None:
        from recon.pipelines.occupancy.images import boxes_of

        boxes = boxes_of(boxes, images)  # per input, None where the file names none
    earlier = earlier_results(out, command, "grid") if plan.done else {}

    def skipped_result(index: int) -> dict:
        name = names[index]
        result = dict(earlier.get(f"{name}.npy") or listed_prediction(out, name, fmt))
        return {**result, "image": str(images[index])}

    clock = time.perf_counter()
    with output_folder(out, plan) as folder:
        made = []
        if plan.todo:
            todo = [images[i] for i in plan.todo]
            todo_names = [names[i] for i in plan.todo]
            todo_boxes = None if boxes is None else [boxes[i] for i in plan.todo]
            made = predict_images(
                task, checkpoint, todo, todo_names, folder, fmt, render, device, ui.track,
                todo_boxes,
            )  # fmt: skip
        seconds = time.perf_counter() - clock
        for record in made:
            if record.get("warning"):
                sys.stderr.write(f"warning: {record['warning']}\n")
        results = every_result(plan, made, skipped_result)
        for record in results:
            for key in ("grid", "mesh", "render"):
                if record.get(key):
                    record[key] = str(out / Path(record[key]).name)
        config = {
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": inputs.checkpoint_sha256,
            "format": fmt,
            "render": render,
        }
        skipped = [str(images[i]) for i in plan.done]
        write_json(
            folder / plan.shard.results_name(),
            run_record(
                command,
                None,
                config,
                {"predict": seconds},
                {"results": results, "skipped_inputs": skipped, **plan.summary()},
            ),
        )
    table = Table(title=f"{command} -> {out}", title_justify="left")
    for column in ("image", "occupied voxels", "mesh"):
        table.add_column(column, overflow="fold")  # paths wrap, never cut
    for record, name in zip(results, shown_names([r["image"] for r in results]), strict=True):
        if not record.get("skipped"):
            table.add_row(
                name,
                str(record["occupied"]),
                escape(record["mesh"]) if record["mesh"] else "(empty: no surface)",
            )
    add_skipped_row(table, plan)
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
    boxes: Annotated[
        Path | None,
        typer.Option(
            help="JSON file of object boxes, {IMAGE: \\[x0, y0, x1, y1]} in pixels (IMAGE: the "
            "file's name or its path as given), cropped to as training crops to pix3d.json's "
            "bbox; images without one are cropped to what differs from their border colour.",
        ),
    ] = None,
    device: Device = "auto",
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Predict a 3D shape from each image with a `recon train voxel` model.

    Writes OUT/NAME.npy, the occupancy probabilities (float16, on the checkpoint's grid: 32^3
    by default), and OUT/NAME.stl (or --format), its closed
    surface (marching cubes at 0.5) in the unit cube, z up. NAME is the image's file stem; when
    two inputs share a stem every output is named FOLDER_STEM (then FOLDER_STEM_SUFFIX), and
    run.json maps inputs to outputs. OUT may not be, or lie inside, an input folder. With
    --shard K/N (or in a SLURM array job) or --skip-done the outputs go straight into OUT, which
    the shards share, and each shard writes run.shard-K-of-N.json.

    Example: recon predict voxel photos/ sofa.png -c run/checkpoints/best.ckpt -o shapes
    """
    from recon.pipelines.occupancy.images import read_boxes

    batch = (shard, skip_done, overwrite)
    given = read_boxes(boxes) if boxes is not None else None
    _predict("voxel", images, checkpoint, out, fmt, render, device, batch, json_out, quiet, given)


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

    Writes OUT/NAME.npy (occupancy probabilities, float16, on the checkpoint's grid) and the
    closed surface in the unit cube, named and
    sharded as in `recon predict voxel`; folders stand for the images directly inside them.

    Example: recon predict parts photos/ -c run/checkpoints/best.ckpt -o parts_out --render
    """
    batch = (shard, skip_done, overwrite)
    _predict("parts", images, checkpoint, out, fmt, render, device, batch, json_out, quiet)
