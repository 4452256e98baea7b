"""`recon synth corset` and `recon predict corset`."""

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
    check_range,
    check_seed,
    key_value_table,
)


def synth_corset(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder (the data set).")],
    patients: Annotated[int, typer.Option(help="Number of procedural patients, 1 to 100000.")] = 20,
    size: Annotated[int, typer.Option(help="View size in pixels: 64, 128, ... up to 1024.")] = 256,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Make procedural corset patients: torso views ("photos"), spine X-ray, corset views, truth.

    Each patient: a torso following a scoliotic spine (Cobb 0-50 deg, either side, varied body
    size), its 8 + 2 depth views (the `recon project` layout), a 16-bit AP spine X-ray and its
    embed-spine JSON, the corset's 8 side views in the torso's frame, torso.stl, corset.stl and
    truth.json. Layout in the README.

    Example: recon synth corset -o corset_data --patients 200 --size 128
    """
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.outputs import atomic_dir, check_output
    from recon.pipelines.corset.patients import synth_corset_dataset

    ui = Reporter(json_out, quiet)
    check_range("--patients", patients, 1, 100_000)
    check_range("--size", size, 64, 1024)
    if size % 64:
        raise BadInput(f"--size must be a multiple of 64 (64, 128, 256, ...), not {size}")
    check_seed(seed)
    out = check_output(out, overwrite)
    with atomic_dir(out) as folder:
        doc = synth_corset_dataset(folder, patients, size, seed, ui.track)
    cobbs = [abs(p["cobb_deg"]) for p in doc["patients"]]
    ui.result(
        {
            "out": str(out),
            "patients": len(cobbs),
            "size": size,
            "cobb_deg_range": [min(cobbs), max(cobbs)],
        },
        key_value_table(
            f"synth corset -> {out}",
            [
                ("patients", len(cobbs)),
                ("size", f"{size} px"),
                ("Cobb range (deg)", f"{min(cobbs):.1f} - {max(cobbs):.1f}"),
            ],
        ),
    )


def predict_corset(
    photos: Annotated[
        Path, typer.Option("--photos", help="Torso views: a `recon project` folder (8 + 2 views).")
    ],
    spine: Annotated[Path, typer.Option("--spine", help="Spine X-ray, PNG or DICOM.")],
    checkpoint: Annotated[Path, typer.Option("-c", "--checkpoint", help="`train corset` ckpt.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output corset mesh (.stl/.ply/.obj).")],
    render: Annotated[
        Path | None, typer.Option("--render", help="Also write a shaded picture (PNG).")
    ] = None,
    views_out: Annotated[
        Path | None, typer.Option("--views-out", help="Keep the predicted corset views here.")
    ] = None,
    thickness: Annotated[
        float, typer.Option(help="Corset wall thickness, mm, above 0 and at most 30.")
    ] = 4.0,
    spacing: Annotated[
        float | None, typer.Option(help="X-ray pixel spacing in mm for PNG input.")
    ] = None,
    device: Device = "cpu",
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Predict a corset from torso views and a spine X-ray, as a closed shell ready to print.

    The network turns the torso views and the spine embedding into the corset's 8 side views,
    which are back-projected (as `recon backproject`), cut at the seen height range and thickened.

    Example: recon predict corset --photos p0/photos --spine p0/spine.png -c best.ckpt -o c.stl
    """
    import tempfile
    import time

    import torch

    from recon.pipelines.common.io import (
        MESH_SUFFIXES,
        require_dir,
        require_file,
        save_mesh,
        write_png,
    )
    from recon.pipelines.common.outputs import atomic_dir, check_output, write_json
    from recon.pipelines.corset.predict import predict_corset as run_prediction
    from recon.pipelines.shapes import render_mesh

    ui = Reporter(json_out, quiet)
    check_range("--thickness", thickness, 0.0, 30.0, low_open=True)
    check_range("--spacing", spacing, 0.01, 10.0)
    check_seed(seed)
    torch.manual_seed(seed)
    inputs = [photos, spine, checkpoint]
    out = check_output(out, overwrite, MESH_SUFFIXES, inputs=inputs)
    if render is not None:
        render = check_output(render, overwrite, (".png",), inputs=inputs)
    if views_out is not None:
        views_out = check_output(views_out, overwrite, inputs=inputs)
    require_dir(photos, "photos folder")
    require_file(spine, "spine X-ray")
    require_file(checkpoint, "checkpoint")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="corset_views.") as scratch:
        folder = Path(scratch)
        result = run_prediction(photos, spine, checkpoint, folder, device, spacing, thickness)
        if views_out is not None:
            with atomic_dir(views_out) as keep:
                for item in folder.iterdir():
                    (keep / item.name).write_bytes(item.read_bytes())
    picture = render_mesh(result.mesh) if render is not None else None
    save_mesh(result.mesh, out)
    if picture is not None:
        write_png(render, picture)
    seconds = time.perf_counter() - clock
    record = {
        "out": str(out),
        "render": str(render) if render else None,
        "cobb_deg": result.cobb_deg,
        "faces": len(result.mesh.faces),
        "watertight": bool(result.mesh.is_watertight),
        "timings_s": result.timings,
        "seconds": seconds,
    }
    if views_out is not None:
        write_json(views_out / "run.json", record)
    ui.result(
        record,
        key_value_table(
            f"predict corset -> {out}",
            [
                ("spine Cobb (deg)", result.cobb_deg),
                ("faces", len(result.mesh.faces)),
                ("watertight", record["watertight"]),
                ("seconds", seconds),
            ],
        ),
    )
