"""`recon embed-spine`: spine X-ray -> centre line, tilts, Cobb angle(s), embedding vector."""

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    Json,
    Overwrite,
    Quiet,
    Reporter,
    ShardOption,
    SkipDone,
    check_range,
    key_value_table,
    renamed,
    shown_names,
)
from recon.pipelines.common.errors import BadInput, JobFailed

SPACING_RANGE = (0.01, 10.0)  # mm per pixel
SETTING_FLAGS = {"span": "--span", "pixel_spacing": "--pixel-spacing"}


def embed_spine(
    xrays: Annotated[
        list[Path],
        typer.Argument(
            help="Spine X-rays, AP view: PNG/JPEG/TIFF/BMP/WebP (8/16-bit) or DICOM files, or "
            "folders of them (the files directly inside, sorted by name)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out",
            help="EMB.json for one X-ray; else an output folder: NAME.json and NAME.png (the "
            "overlay) per X-ray, cobb.csv and run.json.",
        ),
    ],
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
        Path | None,
        typer.Option(
            "--debug-image",
            help="With one X-ray and -o EMB.json: write an overlay PNG of what was found (an "
            "output folder gets NAME.png for every X-ray).",
        ),
    ] = None,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Find the spine centre line on X-rays and measure it.

    Writes JSON with the centre line, the tilt of 17 vertebral levels (top first: the traced
    column split into 17 equal parts, each named after the vertebra of --span that lies there
    for typical vertebra heights), the Cobb angle with its uncertainty
    and its end vertebrae, a secondary Cobb angle, and a 39-float embedding vector (layout in
    the README).
    Exit 1 when no spine is found.

    Several X-rays, or a folder, go to an output folder: OUT/NAME.json and OUT/NAME.png for each,
    OUT/cobb.csv with one row per X-ray and OUT/run.json. An X-ray that cannot be read or shows no
    spine gets a row with its error and no files; the others are measured, and the command exits
    1. With --shard K/N (or in a SLURM array job) or --skip-done the outputs go straight into
    OUT, which the shards share; each shard writes cobb.shard-K-of-N.csv and run.shard-K-of-N.json.

    A chest film showing T1 to L1 takes --span T1-L1.

    Example: recon embed-spine films/ -o cobb --span T1-L1
    """
    from recon.pipelines.common.batch import file_suffix
    from recon.pipelines.corset.vertebrae import level_names

    ui = Reporter(json_out, quiet)
    level_names(span)
    span = span.strip().upper()  # as the JSON states it, and as run records compare it
    check_range("--spacing", spacing, *SPACING_RANGE)
    for value in pixel_spacing or ():
        check_range("--pixel-spacing", value, *SPACING_RANGE)
    pixel_spacing, _ = renamed(
        "--spacing",
        "--pixel-spacing",
        None if spacing is None else (spacing, spacing),
        pixel_spacing,
    )
    one = len(xrays) == 1 and not Path(xrays[0]).is_dir()
    if one and Path(out).suffix.lower() == ".json":
        if shard is not None or skip_done:
            raise BadInput("--shard and --skip-done need an output folder, not a .json file")
        _embed_one(xrays[0], out, pixel_spacing, span, debug_image, overwrite, ui)
        return
    if Path(out).suffix.lower() == ".json":
        raise BadInput(f"{out}: several X-rays need an output folder, not a .json file")
    if file_suffix(out) is not None:
        raise BadInput(
            f"{out}: names a {file_suffix(out)} file, but -o is EMB.json for one X-ray (its "
            "overlay goes to --debug-image NAME.png) or else an output folder"
        )
    if debug_image is not None:
        raise BadInput(
            "--debug-image names one overlay for one X-ray; an output folder gets NAME.png for "
            "every X-ray"
        )
    _embed_many(xrays, out, pixel_spacing, span, (shard, skip_done, overwrite), ui)


def _embed_one(xray, out, pixel_spacing, span, debug_image, overwrite, ui) -> None:
    import sys

    from recon.pipelines.common.outputs import (
        check_output,
        check_run_record,
        run_record,
        write_json,
    )
    from recon.pipelines.corset.embed import (
        embed_xray,
        film_record,
        unscaled_note,
        write_embedding,
    )

    out = check_output(out, overwrite, (".json",), inputs=[xray])
    sidecar = check_run_record(out, overwrite, inputs=[xray])
    if debug_image is not None:
        debug_image = check_output(debug_image, overwrite, (".png",), inputs=[xray])
    embedded = embed_xray(xray, pixel_spacing, span, overlay=debug_image is not None)
    write_embedding(embedded, out, debug_image)
    config = {"xray": str(xray), "span": span, "pixel_spacing": pixel_spacing}
    timings = {"embed": embedded.doc["seconds"]}
    record = film_record(xray, embedded.doc)
    write_json(sidecar, run_record("embed-spine", None, config, timings, record))
    if measure_warning := embedded.measure.warning:
        sys.stderr.write(f"warning: {xray}: {measure_warning}\n")
    if embedded.spacing_source == "none":
        sys.stderr.write(unscaled_note(xray, embedded.spacing_unknown))
    measure = embedded.measure
    result = {"out": str(out), **record, "debug_image": str(debug_image) if debug_image else None}
    del result["xray"], result["status"]
    upper, lower = record["end_vertebrae"].values()
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
                ("secondary Cobb (deg)", f"{measure.secondary_cobb_deg:.1f}"),
                (
                    "pixel spacing (mm)",
                    "none (lengths in pixels)"
                    if embedded.spacing_source == "none"
                    else f"{measure.spacing_mm[0]:g} x {measure.spacing_mm[1]:g}",
                ),
                ("film as measured", embedded.doc["orientation"]),
                ("out", out),
            ],
        ),
    )


def _embed_many(xrays, out, pixel_spacing, span, batch, ui) -> None:
    import re
    import sys

    from rich.table import Table

    from recon.pipelines.common.batch import plan_inputs
    from recon.pipelines.common.inputs import XRAY_KINDS, is_xray_file, xray_name
    from recon.pipelines.corset.embed import embed_batch

    inputs = plan_inputs(
        xrays,
        is_xray_file,
        XRAY_KINDS,
        out,
        lambda target, name: [target / f"{name}.json", target / f"{name}.png"],
        batch,
        command="embed-spine",
        # films kept or added must be measured alike
        settings=({"span": span, "pixel_spacing": pixel_spacing}, SETTING_FLAGS),
        stem=xray_name,
        reserved=re.compile(r"run(\.shard-\d+-of-\d+)?", re.IGNORECASE).fullmatch,
    )
    files, names, plan, out = inputs.files, inputs.names, inputs.plan, inputs.out
    records, every, seconds = embed_batch(files, names, plan, out, pixel_spacing, span, ui.track)
    skipped = [str(files[i]) for i in plan.done]
    measured = [r for r in records if r["status"] == "ok"]
    unscaled = sum(r["spacing_from"] == "none" for r in measured)
    if unscaled:
        sys.stderr.write(
            f"note: {unscaled} of {len(measured)} measured X-rays carry no pixel spacing, so "
            "their millimetres are pixels (pass --pixel-spacing ROW COL)\n"
        )
    table = Table(title=f"embed-spine -> {out}", title_justify="left")
    for column in ("X-ray", "Cobb (deg)", "end vertebrae", "apex", "status"):
        table.add_column(column, overflow="fold")  # paths wrap, never cut
    for r, name in zip(every, shown_names([r["xray"] for r in every]), strict=True):
        ok = r["status"] == "ok"
        table.add_row(
            name,
            f"{r['cobb_deg']:.1f} +- {r['cobb_sd_deg']:.1f}" if ok else "",
            " - ".join(r["end_vertebrae"].values()) if ok else "",
            r.get("apex_vertebra", ""),
            "ok (earlier run)" if r.get("skipped") else r["status"],
        )
    # every film of the shard; those measured by an earlier run carry "skipped": true
    summary = {"out": str(out), "seconds": round(seconds, 3), "results": every}
    ui.result({**summary, "skipped_inputs": skipped, **plan.summary()}, table)
    doubtful = [r for r in measured if r["warning"]]
    if doubtful:
        sys.stderr.write(
            f"warning: {len(doubtful)} of {len(measured)} measured X-rays carry a warning (very "
            "unequal traced borders, a film that may be turned, or a doubtful pixel spacing): see "
            "the warning column of cobb.csv and the overlays\n"
        )
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        rest = "the rest are" if len(failed) < len(records) else "each film's status is"
        raise JobFailed(
            f"{len(failed)} of {len(records)} X-rays not measured (first: {failed[0]['error']}); "
            f"{rest} in {out}"
        )


def _uncertainty_parts(measure) -> str:
    """'path 0.6, borders 0.4 (asymmetry 0.06)': the two parts of cobb_sd_deg."""
    return (
        f"path {measure.cobb_sd_bootstrap_deg:.1f}, borders {measure.cobb_sd_border_deg:.1f} "
        f"(asymmetry {measure.border_asymmetry:.2f})"
    )
