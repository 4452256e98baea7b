"""`recon synth skull` and `recon predict skull`: one image -> skull and face volumes."""

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

OutDir = Annotated[Path, typer.Option("-o", "--out", help="Output folder.")]


def synth_skull(
    out: OutDir,
    count: Annotated[
        int, typer.Option("-n", "--count", help="Heads to generate, 1 to 100000.")
    ] = 40,
    subjects: Annotated[int | None, typer.Option("--subjects", hidden=True)] = None,
    view: Annotated[
        Literal["lateral", "frontal"], typer.Option(help="Radiograph or photo view.")
    ] = "lateral",
    photo: Annotated[
        bool, typer.Option("--photo", help="A shaded photograph of the face, not a radiograph.")
    ] = False,
    resolution: Annotated[
        Literal[8, 16, 32, 64, 128], typer.Option(help="Grid side in voxels.")
    ] = 64,
    seed: Seed = 0,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Write procedural heads: a radiograph (or photo) and skull + face voxel grids each.

    skull_NNN.png, skull_NNN_vox.npz (bool `skull`, `face`), dataset.json (voxel size, axes,
    orientation) and truth.json (landmarks in mm, tissue depths, render geometry). The grid
    covers 240 mm (3.75 mm voxels at 64); radiographs are rendered with diffdrr. Each head also
    writes a record skull_NNN.json and depends only on the seed and its number, so shards
    (--shard K/N, or a SLURM array) together write the files of one run into the shared OUT; the
    shard that finds every head finished writes dataset.json and truth.json.

    Example: recon synth skull -o skulls --count 40 --view lateral
    """
    from recon.cli.synth_batch import SynthSet, run_synth
    from recon.pipelines.skull.synth import SkullSet, subject_files

    ui = Reporter(json_out, quiet)
    count, flag = renamed("--subjects", "--count", subjects, count)
    check_range(flag, count, 1, 100_000)
    check_seed(seed)
    heads = SkullSet(seed, resolution, view, photo)
    spec = SynthSet(
        "skull",
        count,
        "heads",
        index="dataset.json",
        outputs=subject_files,
        done=lambda root, i: heads.record(root, i) is not None,
        make=heads.make,
        merge=lambda root: heads.merge(root, count),
        config={"count": count, **heads.settings()},
        flags={"resolution": "--resolution", "view": "--view", "photo": "--photo"},
    )
    out, made, fields = run_synth(spec, out, seed, shard, skip_done, overwrite, ui)
    summary = heads.summary(count) | {"subjects": len(made)}
    rows = [(key + " made" * (key == "subjects"), value) for key, value in summary.items()]
    rows.append(("index", fields["index"] or f"not yet ({fields['missing_items']} to make)"))
    if fields["shard"] != "1/1" or fields["skipped"]:
        rows += [("shard", fields["shard"]), ("skipped (done)", fields["skipped"])]
    ui.result(
        {"out": str(out), **summary, **fields},
        key_value_table(f"synth skull -> {out}", rows),
    )


def predict_skull(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    checkpoint: Annotated[
        Path, typer.Option("-c", "--checkpoint", help="A `recon train skull` checkpoint.")
    ],
    out: OutDir,
    render: Annotated[
        bool, typer.Option("--render", help="Also write a front + side PNG (skull in the face).")
    ] = False,
    device: Device = "auto",
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Predict the skull and the face over it from each image with a `recon train skull` model.

    Writes NAME_skull.ply and NAME_face.ply (marching cubes at 0.5, in mm when the training
    data gave a voxel size), NAME_vox.npz (float16 probabilities) and with --render
    NAME_render.png. NAME is the image's file stem, or FOLDER_STEM when stems clash (see
    `recon predict voxel`). With --shard K/N (or in a SLURM array job) or --skip-done the outputs
    go straight into OUT, which the shards share, and each shard writes run.shard-K-of-N.json.

    Example: recon predict skull skulls/skull_000.png -c runs/skull/checkpoints/best.ckpt -o out
    """
    import time

    from rich.table import Table

    from recon.cli.predict import add_skipped_row
    from recon.pipelines.common.batch import (
        earlier_results,
        every_result,
        existing_files,
        output_folder,
        plan_inputs,
    )
    from recon.pipelines.common.outputs import run_record, write_json
    from recon.pipelines.skull.data import IMAGE_SUFFIXES
    from recon.pipelines.skull.predict import output_files, prediction_done
    from recon.pipelines.skull.predict import predict_skull as run_predict

    ui = Reporter(json_out, quiet)
    inputs = plan_inputs(
        images,
        lambda p: p.suffix.lower() in IMAGE_SUFFIXES,
        f"images ({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)})",
        out,
        output_files,
        (shard, skip_done, overwrite),
        command="predict skull",
        checkpoint=checkpoint,
        settings=({"render": render}, {"render": "--render"}),
        is_done=lambda target, name: prediction_done(target, name, render),
    )
    files, names, plan, out = inputs.files, inputs.names, inputs.plan, inputs.out
    earlier = earlier_results(out, "predict skull", "grids") if plan.done else {}

    def skipped_record(index: int) -> dict:
        name = names[index]
        listed = dict(
            zip(("grids", "skull", "face", "render"), output_files(out, name), strict=True)
        )
        record = earlier.get(f"{name}_vox.npz") or existing_files(listed)
        return {**record, "image": str(files[index])}

    clock = time.perf_counter()
    with output_folder(out, plan) as folder:
        made = []
        if plan.todo:
            todo, todo_names = [files[i] for i in plan.todo], [names[i] for i in plan.todo]
            made = run_predict(checkpoint, todo, todo_names, folder, render, device, ui.track)
        seconds = time.perf_counter() - clock
        records = every_result(plan, made, skipped_record)
        for record in records:
            for key in ("grids", "skull", "face", "render"):
                if record.get(key):
                    record[key] = str(out / Path(record[key]).name)
        config = {
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": inputs.checkpoint_sha256,
            "render": render,
        }
        skipped = [str(files[i]) for i in plan.done]
        write_json(
            folder / plan.shard.results_name(),
            run_record(
                "predict skull",
                None,
                config,
                {"predict": seconds},
                {"results": records, "skipped_inputs": skipped, **plan.summary()},
            ),
        )
    table = Table(title=f"predict skull -> {out}", title_justify="left")
    for column in ("image", "skull voxels", "face voxels", "face mesh"):
        table.add_column(column, overflow="fold")  # paths wrap, never cut
    for record, name in zip(made, shown_names([r["image"] for r in made]), strict=True):
        table.add_row(
            name,
            str(record["skull_voxels"]),
            str(record["face_voxels"]),
            escape(record["face"]) if record["face"] else "(empty: no surface)",
        )
    add_skipped_row(table, plan)
    summary = {"out": str(out), "seconds": round(seconds, 3), "results": records}
    ui.result({**summary, "skipped_inputs": skipped, **plan.summary()}, table)
