"""`recon synth corset` and `recon predict corset`."""

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
    UnusedSeed,
    check_range,
    check_seed,
    key_value_table,
    renamed,
)


def synth_corset(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder (the data set).")],
    count: Annotated[
        int, typer.Option("-n", "--count", help="Number of procedural patients, 1 to 100000.")
    ] = 20,
    size: Annotated[
        int, typer.Option(help="View size in pixels, a multiple of 64 from 64 to 1024.")
    ] = 256,
    seed: Seed = 0,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
    patients: Annotated[int | None, typer.Option("--patients", hidden=True)] = None,
) -> None:
    """Make procedural corset patients: torso views ("photos"), spine X-ray, corset views, truth.

    Each patient: a torso following a scoliotic spine (Cobb 0-50 deg, either side, varied body
    size), its 8 + 2 depth views (the `recon project` layout), a 16-bit AP spine X-ray and its
    embed-spine JSON, the corset's 8 side views in the torso's frame, torso.stl, corset.stl and
    truth.json. Layout in the README. Each patient depends only on the seed and its number, so
    shards (--shard K/N, or a SLURM array) together write the files of one run into the shared
    OUT; the shard that finds every patient finished writes dataset.json. The run's record is
    OUT/run.json (a shard's, OUT/run.shard-K-of-N.json).

    Example: recon synth corset -o corset_data -n 200 --size 128
    """
    from recon.cli.synth_batch import SynthSet, run_synth
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.corset.patients import (
        DATA_FORMAT,
        patient_complete,
        patient_files,
        write_dataset_index,
        write_patient_item,
    )

    ui = Reporter(json_out, quiet)
    count, flag = renamed("--patients", "--count", patients, count)
    check_range(flag, count, 1, 100_000)
    check_range("--size", size, 64, 1024)
    if size % 64:
        raise BadInput(f"--size must be a multiple of 64 (64, 128, 256, ...), not {size}")
    check_seed(seed)
    spec = SynthSet(
        "corset",
        count,
        "patients",
        index="dataset.json",
        outputs=patient_files,
        done=lambda root, i: patient_complete(root, i, size, seed),
        make=lambda root, i: write_patient_item(root, i, size, seed),
        merge=lambda root: write_dataset_index(root, count, size, seed),
        config={"count": count, "size": size, "format": DATA_FORMAT},
        flags={"size": "--size"},
        summarize=lambda made: _patients_summary(made, size),
    )
    out, _, fields = run_synth(spec, out, seed, shard, skip_done, overwrite, ui)
    rows = [("patients made", fields["patients"]), ("size", f"{size} px")]
    if fields["cobb_deg_range"]:
        low, high = fields["cobb_deg_range"]
        rows.append(("|Cobb| range (deg)", f"{low:.1f} - {high:.1f}"))
    rows.append(("index", fields["index"] or f"not yet ({fields['missing_items']} to make)"))
    if fields["shard"] != "1/1" or fields["skipped"]:
        rows += [("shard", fields["shard"]), ("skipped (done)", fields["skipped"])]
    ui.result({"out": str(out), **fields}, key_value_table(f"synth corset -> {out}", rows))


def _patients_summary(made: list[dict], size: int) -> dict:
    """The patients made (their dataset.json records) -> the counts `synth corset` reports:
    cobb_deg_range is the range of |Cobb| (the curve's size), signed_cobb_deg_range that of the
    signed angles (> 0 convex toward +x, as truth.json gives them)."""
    signed = [p["cobb_deg"] for p in made]
    sizes = [abs(cobb) for cobb in signed]
    return {
        "patients": len(made),
        "size": size,
        "cobb_deg_range": [min(sizes), max(sizes)] if made else None,
        "signed_cobb_deg_range": [min(signed), max(signed)] if made else None,
    }


def predict_corset(
    photos: Annotated[
        Path, typer.Option("--photos", help="Torso views: a `recon project` folder (8 + 2 views).")
    ],
    checkpoint: Annotated[Path, typer.Option("-c", "--checkpoint", help="`train corset` ckpt.")],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Corset: .stl, .ply, .obj, .glb, .gltf or .off.")
    ],
    spine: Annotated[
        Path | None,
        typer.Option(
            "--spine",
            help="Spine X-ray: PNG, JPEG, TIFF, BMP, WebP or DICOM. Needed by a checkpoint "
            "trained on spine X-rays (the default); one trained with spine_conditioning=false "
            "does not read it.",
        ),
    ] = None,
    render: Annotated[
        bool,
        typer.Option("--render", help="Also write a shaded PNG beside the mesh (c.stl -> c.png)."),
    ] = False,
    views_out: Annotated[
        Path | None,
        typer.Option(
            "--views-out", help="A folder to keep the predicted corset views in (not NAME.png)."
        ),
    ] = None,
    thickness: Annotated[
        float, typer.Option(help="Corset wall thickness, mm, above 0 and at most 30.")
    ] = 4.0,
    pixel_spacing: Annotated[
        tuple[float, float] | None,
        typer.Option(
            "--pixel-spacing",
            metavar="ROW COL",
            help="Spine X-ray pixel spacing in mm (PNG/TIFF, or to override DICOM), 0.01 to 10.",
        ),
    ] = None,
    spacing: Annotated[float | None, typer.Option("--spacing", hidden=True)] = None,
    device: Device = "auto",
    seed: UnusedSeed = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Predict a corset from torso views and a spine X-ray, as a closed shell ready to print.

    The network turns the torso views and the spine embedding into the corset's 8 side views,
    which are back-projected (as `recon backproject`), cut at the seen height range and thickened.
    The run record goes beside the mesh, named after its whole file name (c.stl ->
    c.stl.run.json); --render adds a shaded picture, the mesh's suffix replaced (c.stl -> c.png);
    --views-out keeps the predicted views in a folder, with their own run.json.

    Example: recon predict corset --photos p/photos --spine p/spine.png -c m.ckpt -o c.stl --render
    """
    import sys
    import tempfile
    import time
    from contextlib import nullcontext

    from recon.pipelines.common.batch import file_suffix
    from recon.pipelines.common.checkpoints import require_checkpoint_file
    from recon.pipelines.common.devices import choose_device
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import (
        MESH_SUFFIXES,
        require_dir,
        require_file,
        save_mesh,
        write_png,
    )
    from recon.pipelines.common.outputs import (
        atomic_dir,
        atomic_file,
        check_output,
        check_run_record,
        run_record,
        write_json,
    )
    from recon.pipelines.corset.embed import unscaled_note
    from recon.pipelines.corset.predict import predict_corset as run_prediction
    from recon.pipelines.shapes import render_mesh

    ui = Reporter(json_out, quiet)
    check_range("--thickness", thickness, 0.0, 30.0, low_open=True)
    check_range("--spacing", spacing, 0.01, 10.0)
    for value in pixel_spacing or ():
        check_range("--pixel-spacing", value, 0.01, 10.0)
    pixel_spacing, _ = renamed(
        "--spacing",
        "--pixel-spacing",
        None if spacing is None else (spacing, spacing),
        pixel_spacing,
    )
    if spine is None and pixel_spacing is not None:
        raise BadInput("--pixel-spacing scales the --spine X-ray; give --spine with it")
    inputs = [photos, spine, checkpoint]
    out = check_output(out, overwrite, MESH_SUFFIXES, inputs=inputs)
    sidecar = check_run_record(out, overwrite, inputs=inputs)
    picture_path = None
    if render:
        picture_path = check_output(out.with_suffix(".png"), overwrite, (".png",), inputs=inputs)
    if views_out is not None:
        if file_suffix(views_out) is not None:
            raise BadInput(
                f"{views_out}: names a {file_suffix(views_out)} file, but --views-out is a "
                "folder of views; give it a name without a file suffix"
            )
        views_out = check_output(views_out, overwrite, inputs=inputs, command="predict corset")
        for path in (out, sidecar, picture_path):
            if path is not None and (path == views_out or views_out in path.parents):
                raise BadInput(
                    f"{views_out}: --views-out would be or hold {path.name}, another output of "
                    "this run (the views folder is replaced whole); give the views a folder of "
                    "their own"
                )
    require_dir(photos, "photos folder")
    if spine is not None:
        require_file(spine, "spine X-ray")
    require_checkpoint_file(checkpoint)
    device = choose_device(device)
    config = {
        "thickness": thickness,
        "pixel_spacing": pixel_spacing,
        "device": device,
        "render": render,
        "views_out": str(views_out) if views_out is not None else None,
    }
    clock = time.perf_counter()
    # the views folder and the record are renamed into place last, after the mesh: a failed
    # run leaves neither a views folder without its record nor a record without its mesh
    with (
        tempfile.TemporaryDirectory(prefix="corset_views.") as scratch,
        atomic_file(sidecar) as tmp,
        atomic_dir(views_out) if views_out is not None else nullcontext() as keep,
    ):
        folder = Path(scratch)
        result = run_prediction(photos, spine, checkpoint, folder, device, pixel_spacing, thickness)
        picture = render_mesh(result.mesh) if render else None
        if not result.spine_used and spine is not None:
            sys.stderr.write(
                f"warning: --spine {spine} is not used: {checkpoint} was trained without spine "
                "X-rays (spine_conditioning=false)\n"
            )
        if result.spine_warning:
            sys.stderr.write(f"warning: {spine}: {result.spine_warning}\n")
        if result.spine_used and result.spacing_from == "none":
            sys.stderr.write(unscaled_note(spine, result.spacing_unknown))
        metrics = {
            "cobb_deg": result.cobb_deg,
            "faces": len(result.mesh.faces),
            "watertight": bool(result.mesh.is_watertight),
        }
        save_mesh(result.mesh, out)
        if picture is not None:
            write_png(picture_path, picture)
        seconds = time.perf_counter() - clock
        timings = {**result.timings, "total": seconds}
        run = run_record("predict corset", seed, config, timings, metrics)
        write_json(tmp, run)
        if keep is not None:
            for item in folder.iterdir():
                (keep / item.name).write_bytes(item.read_bytes())
            write_json(keep / "run.json", run)
    record = {
        "out": str(out),
        "render": str(picture_path) if picture_path else None,
        "views_out": str(views_out) if views_out is not None else None,
        **metrics,
        "timings_s": result.timings,
        "seconds": seconds,
    }
    ui.result(
        record,
        key_value_table(
            f"predict corset -> {out}",
            [
                (
                    "spine Cobb (deg)",
                    "not measured (the model reads no X-ray)"
                    if result.cobb_deg is None
                    else result.cobb_deg,
                ),
                ("faces", len(result.mesh.faces)),
                ("watertight", record["watertight"]),
                ("seconds", seconds),
            ],
        ),
    )
