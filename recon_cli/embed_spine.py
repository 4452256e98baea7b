"""`recon embed-spine`: spine X-ray -> centre line, tilts, Cobb angle(s), embedding vector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import Json, Overwrite, Quiet, Reporter, check_range, key_value_table


def embed_spine(
    xray: Annotated[Path, typer.Argument(help="Spine X-ray, AP view: PNG (8/16-bit) or DICOM.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output JSON (EMB.json).")],
    spacing: Annotated[
        float | None,
        typer.Option(help="Pixel spacing in mm for PNG input, 0.01 to 10 (DICOM carries its own)."),
    ] = None,
    debug_image: Annotated[
        Path | None, typer.Option("--debug-image", help="Write an overlay PNG of what was found.")
    ] = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Find the spine centre line on an X-ray and measure it.

    Writes JSON with the centre line, the tilt of 17 vertebral levels (T1..L5, top first), the
    Cobb angle with its end vertebrae, a secondary Cobb angle, and a 39-float embedding vector
    (layout in the README). Exit 1 when no spine is found.

    Example: recon embed-spine spine.png -o spine.json --debug-image spine_debug.png
    """
    import time

    from recon.pipelines.common.io import write_png
    from recon.pipelines.common.outputs import atomic_file, check_output, write_json
    from recon.pipelines.corset.spine import debug_overlay, load_spine_image, measure_spine

    ui = Reporter(json_out, quiet)
    check_range("--spacing", spacing, 0.01, 10.0)
    out = check_output(out, overwrite, (".json",), inputs=[xray])
    if debug_image is not None:
        debug_image = check_output(debug_image, overwrite, (".png",), inputs=[xray])
    clock = time.perf_counter()
    image, pixel = load_spine_image(xray, spacing)
    measure = measure_spine(image, pixel)
    seconds = time.perf_counter() - clock
    doc = {**measure.as_dict(), "source": str(Path(xray).resolve()), "seconds": seconds}
    overlay = debug_overlay(image, measure) if debug_image is not None else None
    with atomic_file(out) as json_tmp:  # both files are renamed into place, or neither
        write_json(json_tmp, doc)
        if overlay is not None:
            write_png(debug_image, overlay)
    result = {
        "out": str(out),
        "cobb_deg": measure.cobb_deg,
        "end_vertebrae": [measure.upper_end, measure.lower_end],
        "secondary_cobb_deg": measure.secondary_cobb_deg,
        "debug_image": str(debug_image) if debug_image else None,
        "seconds": seconds,
    }
    ui.result(
        result,
        key_value_table(
            f"embed-spine {xray}",
            [
                ("Cobb (deg)", measure.cobb_deg),
                ("end levels", f"{measure.upper_end} - {measure.lower_end} (0 = top)"),
                ("secondary Cobb (deg)", measure.secondary_cobb_deg),
                ("out", out),
            ],
        ),
    )
