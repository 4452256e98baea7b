"""`recon embed-spine`: spine X-ray -> centre line, tilts, Cobb angle(s), embedding vector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    Json,
    Overwrite,
    Quiet,
    Reporter,
    check_range,
    key_value_table,
    renamed,
)

SPACING_RANGE = (0.01, 10.0)  # mm per pixel


def embed_spine(
    xray: Annotated[Path, typer.Argument(help="Spine X-ray, AP view: PNG (8/16-bit) or DICOM.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output JSON (EMB.json).")],
    pixel_spacing: Annotated[
        tuple[float, float] | None,
        typer.Option(
            metavar="ROW COL",
            help="Pixel spacing in mm, each in [0.01, 10]. A PNG/TIFF without it is measured in "
            "pixels, with vertebra sizes guessed from the image width (less accurate); "
            "overrides a DICOM's own.",
        ),
    ] = None,
    spacing: Annotated[float | None, typer.Option("--spacing", hidden=True)] = None,
    span: Annotated[
        str,
        typer.Option(
            "--span",
            metavar="FIRST-LAST",
            help="The vertebrae the film shows, top to bottom, which name the 17 levels: T1-L5 "
            "(a spine film) or T1-L1 (a chest film), C1..C7, T1..T12, L1..L5, S1. Names only: "
            "no number changes.",
        ),
    ] = "T1-L5",
    debug_image: Annotated[
        Path | None, typer.Option("--debug-image", help="Write an overlay PNG of what was found.")
    ] = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Find the spine centre line on an X-ray and measure it.

    Writes JSON with the centre line, the tilt of 17 vertebral levels (top first: the traced
    column split into 17 equal parts, each named after the vertebra of --span that lies there
    for typical vertebra heights), the Cobb angle with its uncertainty
    and its end vertebrae, a secondary Cobb angle, and a 39-float embedding vector (layout in
    the README).
    Exit 1 when no spine is found.

    A chest film showing T1 to L1 takes --span T1-L1.

    Example: recon embed-spine spine.png -o spine.json --pixel-spacing 0.2 0.2 --debug-image dbg.png
    """
    import sys
    import time

    from recon.pipelines.common.io import write_png
    from recon.pipelines.common.outputs import atomic_file, check_output, write_json
    from recon.pipelines.corset.spine import debug_overlay, load_spine_xray, measure_spine
    from recon.pipelines.corset.vertebrae import level_names

    ui = Reporter(json_out, quiet)
    level_names(span)
    check_range("--spacing", spacing, *SPACING_RANGE)
    for value in pixel_spacing or ():
        check_range("--pixel-spacing", value, *SPACING_RANGE)
    pixel_spacing, _ = renamed(
        "--spacing",
        "--pixel-spacing",
        None if spacing is None else (spacing, spacing),
        pixel_spacing,
    )
    out = check_output(out, overwrite, (".json",), inputs=[xray])
    if debug_image is not None:
        debug_image = check_output(debug_image, overwrite, (".png",), inputs=[xray])
    clock = time.perf_counter()
    loaded = load_spine_xray(xray, pixel_spacing)
    measure = measure_spine(loaded.image, loaded.known_spacing, span)
    seconds = time.perf_counter() - clock
    doc = {
        **measure.as_dict(),
        "spacing_from": loaded.spacing_source,
        "source": str(Path(xray).resolve()),
        "seconds": seconds,
    }
    overlay = debug_overlay(loaded.image, measure) if debug_image is not None else None
    with atomic_file(out) as json_tmp:  # both files are renamed into place, or neither
        write_json(json_tmp, doc)
        if overlay is not None:
            with atomic_file(debug_image) as png_tmp:
                write_png(png_tmp, overlay)
    if loaded.spacing_source == "none":
        sys.stderr.write(
            f"note: {xray} carries no pixel spacing, so its millimetres are pixels "
            "(pass --pixel-spacing ROW COL)\n"
        )
    upper, lower = measure.end_vertebrae
    result = {
        "out": str(out),
        "cobb_deg": measure.cobb_deg,
        "cobb_sd_deg": measure.cobb_sd_deg,
        "cobb_interval_deg": list(measure.cobb_interval_deg),
        "border_asymmetry": measure.border_asymmetry,
        "end_vertebrae": [upper, lower],
        "apex_vertebra": measure.apex_vertebra,
        "span": measure.span,
        "secondary_cobb_deg": measure.secondary_cobb_deg,
        "pixel_spacing_mm": list(measure.spacing_mm),
        "spacing_from": loaded.spacing_source,
        "debug_image": str(debug_image) if debug_image else None,
        "seconds": seconds,
    }
    ui.result(
        result,
        key_value_table(
            f"embed-spine {xray}",
            [
                ("Cobb (deg)", f"{measure.cobb_deg:.1f} +- {measure.cobb_sd_deg:.1f}"),
                ("uncertainty (deg)", _uncertainty_parts(measure)),
                (
                    "end vertebrae",
                    f"{upper} - {lower} (apex {measure.apex_vertebra}; span {measure.span})",
                ),
                ("secondary Cobb (deg)", measure.secondary_cobb_deg),
                ("pixel spacing (mm)", f"{measure.spacing_mm[0]:g} x {measure.spacing_mm[1]:g}"),
                ("out", out),
            ],
        ),
    )


def _uncertainty_parts(measure) -> str:
    """'path 0.6, borders 0.4 (asymmetry 0.06)': the two parts of cobb_sd_deg."""
    return (
        f"path {measure.cobb_sd_bootstrap_deg:.1f}, borders {measure.cobb_sd_border_deg:.1f} "
        f"(asymmetry {measure.border_asymmetry:.2f})"
    )
